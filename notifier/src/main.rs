//! `gf-notifier`: the notifier alone (consumer and delivery workers), for scaling it out.

#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = gf_runtime::telemetry::init("gf-notifier", "info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_runtime::metrics::serve_if_configured(&config, &stop);
    gf_notifier::run(&config, stop).await?;
    Ok(())
}
