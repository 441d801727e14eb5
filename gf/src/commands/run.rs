use gf_runtime::Config;

use crate::cli::RunCommand;

pub async fn run(cmd: RunCommand, config: &Config) -> anyhow::Result<()> {
    let stop = gf_runtime::shutdown::on_signal();
    match cmd {
        RunCommand::Receiver => gf_receiver::run(config, stop).await?,
        RunCommand::Normalizer => {
            gf_normalizer::consumer::run(config, Default::default(), stop).await?
        }
        RunCommand::Attributor => gf_attributor::consumer::run(config, stop).await?,
    }
    Ok(())
}
