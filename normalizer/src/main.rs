//! `gf-normalizer`: the normalizer alone, for scaling it out as consumer-group members.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gf_runtime::telemetry::init("info");
    let config = gf_runtime::Config::from_env()?;
    let stop = gf_runtime::shutdown::on_signal();
    gf_normalizer::consumer::run(&config, Default::default(), stop).await?;
    Ok(())
}
