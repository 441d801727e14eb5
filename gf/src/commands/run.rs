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
            // One Kafka producer for every stage: each librdkafka client has broker threads of
            // its own. Its delivery timeout is the receiver's, which answers senders within it.
            let producer = gf_runtime::producer::SharedProducer::new(
                &gf_runtime::kafka::KafkaSettings::from_config(config)?,
                "gf",
                std::time::Duration::from_millis(config.produce_timeout_ms),
            )?;
            let receiver_options = gf_receiver::ReceiverOptions {
                producer: Some(producer.clone()),
                ..gf_receiver::ReceiverOptions::from_config(config)
            };
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
                        gf_receiver::run_with(config, receiver_options, stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_normalizer::consumer::run_with_producer(
                            config,
                            Default::default(),
                            &producer,
                            stop.clone(),
                        )
                        .await
                        .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_attributor::consumer::run_with(config, &pool, &producer, stop.clone())
                            .await
                            .map_err(Into::into),
                    )
                },
                async {
                    stopping(
                        gf_notifier::run_with(config, &pool, &producer, stop.clone())
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
