use gf_runtime::Config;

use crate::cli::RunCommand;

pub async fn run(cmd: RunCommand, config: &Config) -> anyhow::Result<()> {
    let stop = gf_runtime::shutdown::on_signal();
    gf_runtime::metrics::serve_if_configured(config, &stop);
    match cmd {
        RunCommand::Receiver => gf_receiver::run(config, stop).await?,
        RunCommand::Normalizer => {
            gf_normalizer::consumer::run(config, Default::default(), stop).await?
        }
        RunCommand::Attributor => gf_attributor::consumer::run(config, stop).await?,
        RunCommand::Notifier => gf_notifier::run(config, stop).await?,
        RunCommand::Console => gf_console::run(config, stop).await?,
        RunCommand::All => {
            // One process, one PostgreSQL pool for the stages that write; each stage stops on the
            // same signal and commits what it finished.
            let pool = gf_runtime::db::pool(
                config.database_url()?,
                8 + config.webhook_concurrency.min(16),
            )?;
            // A stage that fails stops the others, so the process exits with its error.
            let stopping = |r: Result<(), anyhow::Error>| {
                if r.is_err() {
                    stop.cancel();
                }
                r
            };
            let (received, normalized, attributed, notified, console) = tokio::join!(
                async {
                    stopping(
                        gf_receiver::run(config, stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_normalizer::consumer::run(config, Default::default(), stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_attributor::consumer::run_with_pool(config, &pool, stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_notifier::run_with_pool(config, &pool, stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async { stopping(gf_console::run(config, stop.clone()).await) },
            );
            received?;
            normalized?;
            attributed?;
            notified?;
            console?;
        }
    }
    Ok(())
}
