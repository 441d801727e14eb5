//! `gf-receiver`: the receiver alone, for scaling it out behind a load balancer.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gf_runtime::telemetry::init("info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_receiver::run(&config, stop).await?;
    Ok(())
}
