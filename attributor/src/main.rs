//! `gf-attributor`: the attributor alone, for scaling it out as consumer-group members.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gf_runtime::telemetry::init("info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_attributor::consumer::run(&config, stop).await?;
    Ok(())
}
