//! `gf-notifier`: the notifier alone (consumer and delivery workers), for scaling it out.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gf_runtime::telemetry::init("info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_notifier::run(&config, stop).await?;
    Ok(())
}
