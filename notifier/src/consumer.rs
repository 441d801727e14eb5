//! The consumer loop: `gf.signals.v1` and `gf.conversations.v1` in group `gf-notifier`, to rule
//! state, webhook events and pending deliveries in PostgreSQL (the outbox the [`crate::delivery`]
//! workers drain). One transaction per batch; offsets are stored after its commit.

use std::time::Duration;

use deadpool_postgres::Pool;
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::pipeline::{
    Backoff, Output, OutputError, commit_stored, dead_letter, next_batch, produce_all, producer,
    store, supervise, traceparent_of,
};
use gf_runtime::topics::{Topics, consumer_group};
use gf_schemas::conversation::ConversationMessage;
use gf_schemas::signal::Signal;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox;

/// The stage's name, in its consumer group (`gf-notifier`) and dead letters.
pub const STAGE: &str = "notifier";
const MAX_BATCH: usize = 500;
const LINGER: Duration = Duration::from_millis(20);
const COMMIT_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Policy(#[from] crate::ssrf::BadNetwork),
    #[error("cannot build the webhook client: {0}")]
    Client(String),
}

enum Item {
    Signal(Box<Signal>),
    Conversation(Box<ConversationMessage>),
    Invalid(String),
}

/// Consumes until `stop`, restarting after a Kafka failure from the committed offsets.
pub async fn run_with_pool(
    config: &Config,
    pool: &Pool,
    stop: CancellationToken,
) -> Result<(), NotifierError> {
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    supervise(STAGE, &stop, || {
        run_once(&settings, &topics, &config.topic_prefix, pool, &stop)
    })
    .await;
    Ok(())
}

async fn run_once(
    settings: &KafkaSettings,
    topics: &Topics,
    prefix: &str,
    pool: &Pool,
    stop: &CancellationToken,
) -> Result<(), NotifierError> {
    let group = consumer_group(prefix, STAGE);
    let consumer = settings.stage_consumer("gf-notifier", &group)?;
    consumer.subscribe(&[&topics.signals, &topics.conversations])?;
    let producer = producer(settings, "gf-notifier")?;
    tracing::info!(signals = %topics.signals, conversations = %topics.conversations, group, "notifier consuming");
    let mut last_commit = Instant::now();
    let result: Result<(), NotifierError> = async {
        loop {
            let Some(messages) = next_batch(&consumer, stop, MAX_BATCH, LINGER).await? else {
                return Ok(());
            };
            let mut items: Vec<Item> = messages.iter().map(|m| parse(topics, m)).collect();
            // One span per input record, open until the batch is written; the webhook events it
            // fires carry the span's context to their deliveries.
            let (spans, traceparents): (Vec<_>, Vec<_>) = messages
                .iter()
                .map(|m| {
                    let parent = traceparent_of(m);
                    let span = tracing::info_span!("gf.notifier.evaluate", topic = m.topic());
                    let next = gf_runtime::telemetry::continue_trace(&span, parent.as_deref());
                    (span, next)
                })
                .unzip();
            if !write_with_retries(pool, &mut items, &traceparents, stop).await {
                return Ok(()); // stopped before the batch was written: nothing is stored
            }
            drop(spans);
            let dead: Vec<Output> = messages
                .iter()
                .zip(&items)
                .filter_map(|(m, item)| match item {
                    Item::Invalid(reason) => {
                        Some(dead_letter(&topics.deadletter, STAGE, m, reason.clone()))
                    }
                    _ => None,
                })
                .collect();
            if !dead.is_empty() {
                produce_all(&producer, &dead).await?;
            }
            for m in &messages {
                store(&consumer, m.topic(), m.partition(), m.offset());
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                commit_stored(&consumer, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
    }
    .await;
    commit_stored(&consumer, CommitMode::Sync);
    result
}

fn parse(topics: &Topics, message: &BorrowedMessage<'_>) -> Item {
    let payload = message.payload().unwrap_or_default();
    if message.topic() == topics.conversations {
        match serde_json::from_slice(payload) {
            Ok(c) => Item::Conversation(Box::new(c)),
            Err(e) => Item::Invalid(format!("not a conversation message: {e}")),
        }
    } else {
        match serde_json::from_slice(payload) {
            Ok(s) => Item::Signal(Box::new(s)),
            Err(e) => Item::Invalid(format!("not a signal: {e}")),
        }
    }
}

/// Writes the batch, retrying with backoff while PostgreSQL is unavailable; data PostgreSQL
/// refuses is retried item by item and the refused items become `Invalid`. `false` once stopped.
async fn write_with_retries(
    pool: &Pool,
    items: &mut [Item],
    traceparents: &[Option<String>],
    stop: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    let all: Vec<usize> = (0..items.len()).collect();
    let mut pending = vec![all];
    while let Some(chosen) = pending.pop() {
        loop {
            match write(pool, items, traceparents, &chosen).await {
                Ok(()) => break,
                Err(e) if is_data_error(&e) && chosen.len() > 1 => {
                    pending.extend(chosen.iter().map(|&i| vec![i]));
                    break;
                }
                Err(e) if is_data_error(&e) => {
                    items[chosen[0]] = Item::Invalid(format!("PostgreSQL refused it: {e}"));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff.current(), "notifier batch not written; retrying");
                    if !backoff.wait(stop).await {
                        return false;
                    }
                }
            }
        }
    }
    true
}

fn is_data_error(e: &WriteError) -> bool {
    matches!(e, WriteError::Db(e) if gf_runtime::db::is_data_error(e))
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("PostgreSQL is unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
}

async fn write(
    pool: &Pool,
    items: &[Item],
    traceparents: &[Option<String>],
    chosen: &[usize],
) -> Result<(), WriteError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    for &i in chosen {
        let event = match &items[i] {
            Item::Signal(signal) => outbox::evaluate_signal(&txn, signal).await?,
            Item::Conversation(message) => outbox::conversation_started(message),
            Item::Invalid(_) => None,
        };
        if let Some(mut event) = event {
            event.traceparent = traceparents[i].clone();
            outbox::record(&txn, &event, None).await?;
        }
    }
    txn.commit().await?;
    Ok(())
}
