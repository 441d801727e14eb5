//! `gf-receiver`: the receiver alone, for scaling it out behind a load balancer.

#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = gf_runtime::telemetry::init("gf-receiver", "info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_runtime::metrics::serve_if_configured(&config, &stop);
    gf_receiver::run(&config, stop).await?;
    Ok(())
}
