//! The notifier's consumer as a [`BatchStage`]: `gf.signals.v1` and `gf.conversations.v1` in
//! group `gf-notifier`, to rule state, webhook events and pending deliveries in PostgreSQL (the
//! outbox the [`crate::delivery`] workers drain). It only parses and writes; the runner
//! ([`gf_runtime::stage`]) batches, retries, isolates refused records in order, dead-letters
//! and commits.

use deadpool_postgres::Pool;
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::pipeline::{Incoming, Refusal, parse_json};
use gf_runtime::producer::SharedProducer;
use gf_runtime::stage::{self, BatchStage, Record, Refused, StageError};
use gf_runtime::topics::Topics;
use gf_schemas::conversation::ConversationMessage;
use gf_schemas::signal::Signal;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use crate::outbox;

/// The stage's name, in its consumer group (`gf-notifier`) and dead letters.
pub const STAGE: &str = "notifier";

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Policy(#[from] gf_webhooks::ssrf::BadNetwork),
    #[error(transparent)]
    Client(#[from] gf_webhooks::delivery::ClientError),
}

/// A parsed record.
pub enum Item {
    Signal(Box<Signal>),
    Conversation(Box<ConversationMessage>),
}

/// Consumes until `stop`, restarting after a Kafka failure from the committed offsets.
pub async fn run_with(
    config: &Config,
    pool: &Pool,
    producer: &SharedProducer,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    let settings = KafkaSettings::from_config(config)?;
    let notifier = Notifier {
        topics: Topics::new(&config.topic_prefix),
        pool: pool.clone(),
    };
    stage::run(&notifier, &settings, producer, &config.topic_prefix, &stop).await;
    Ok(())
}

struct Notifier {
    topics: Topics,
    pool: Pool,
}

/// A record of `topic` as the notifier's item.
pub fn parse(topics: &Topics, topic: &str, payload: &[u8]) -> Result<Item, Refusal> {
    if topic == topics.conversations {
        parse_json(payload, "a conversation message").map(|c| Item::Conversation(Box::new(c)))
    } else {
        parse_json(payload, "a signal").map(|s| Item::Signal(Box::new(s)))
    }
}

impl BatchStage for Notifier {
    type Item = Item;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn inputs(&self) -> Vec<String> {
        vec![
            self.topics.signals.clone(),
            self.topics.conversations.clone(),
        ]
    }

    fn parse(&self, record: &Incoming<'_>) -> Result<Item, Refusal> {
        parse(&self.topics, record.topic, record.payload)
    }

    /// The webhook events a record fires carry this span's context to their deliveries.
    fn span(&self, record: &Incoming<'_>) -> tracing::Span {
        tracing::info_span!("gf.notifier.evaluate", topic = record.topic)
    }

    /// Rule state, webhook events and deliveries of the records, in one transaction.
    async fn write(&self, records: &[Record<'_, Item>]) -> Result<Refused, StageError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        for record in records {
            let event = match record.item {
                Item::Signal(signal) => outbox::evaluate_signal(&txn, signal).await?,
                Item::Conversation(message) => outbox::conversation_started(message),
            };
            if let Some(mut event) = event {
                event.traceparent = record.traceparent.map(str::to_owned);
                gf_webhooks::events::record(&txn, &event, None).await?;
            }
        }
        txn.commit().await?;
        Ok(Vec::new())
    }
}
