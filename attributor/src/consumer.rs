//! The consumer loop: `gf.events.v1` and `gf.conversations.v1` in group `gf-attributor`, to
//! PostgreSQL and `gf.events.attributed.v1`.
//!
//! Records are gathered into batches (up to [`MAX_BATCH`], or what arrives within [`LINGER`]),
//! each written in one transaction; offsets are stored only after the commit and committed every
//! second, so per-partition order holds and a crash replays at most uncommitted batches, whose
//! rows are absorbed by (product, insert id). PostgreSQL unavailable: the batch is retried with
//! backoff until it is written or the stage stops, and no offset moves meanwhile.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::Pool;
use gf_runtime::Config;
use gf_runtime::kafka::{KafkaSettings, StageConsumer};
use gf_runtime::pipeline::{
    Backoff, Output, OutputError, commit_stored, dead_letter, next_batch, produce_all, producer,
    store, supervise, traceparent_of,
};
use gf_runtime::topics::{Topics, consumer_group};
use gf_schemas::attributed::AttributedEvent;
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationMessage;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{self, Batch, Publisher, StoreError};

/// The stage's name, in its consumer group (`gf-attributor`) and dead letters.
pub const STAGE: &str = "attributor";
/// Records per transaction at most.
pub const MAX_BATCH: usize = 1_000;
/// How long a batch waits for more records once it has one.
pub const LINGER: Duration = Duration::from_millis(20);
const COMMIT_EVERY: Duration = Duration::from_secs(1);
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AttributorError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub written: u64,
    pub unchanged: u64,
    pub dead_letters: u64,
}

/// Runs the attributor until `stop`; restarts its consumer after a Kafka failure (resuming
/// from the committed offsets).
pub async fn run(config: &Config, stop: CancellationToken) -> Result<(), AttributorError> {
    let pool = gf_runtime::db::pool(config.database_url()?, 4)?;
    run_with_pool(config, &pool, stop).await
}

/// [`run`] with a pool of the caller's (`gf run all` shares one).
pub async fn run_with_pool(
    config: &Config,
    pool: &Pool,
    stop: CancellationToken,
) -> Result<(), AttributorError> {
    let settings = KafkaSettings::from_config(config)?;
    let topics = Topics::new(&config.topic_prefix);
    supervise(STAGE, &stop, || {
        run_once(&settings, &topics, &config.topic_prefix, pool, &stop)
    })
    .await;
    Ok(())
}

struct Stage<'a> {
    consumer: StageConsumer,
    producer: FutureProducer,
    topics: &'a Topics,
    pool: &'a Pool,
    stop: &'a CancellationToken,
}

async fn run_once(
    settings: &KafkaSettings,
    topics: &Topics,
    prefix: &str,
    pool: &Pool,
    stop: &CancellationToken,
) -> Result<(), AttributorError> {
    let group = consumer_group(prefix, STAGE);
    let consumer = settings.stage_consumer("gf-attributor", &group)?;
    consumer.subscribe(&[&topics.events, &topics.conversations])?;
    let stage = Stage {
        producer: producer(settings, "gf-attributor")?,
        consumer,
        topics,
        pool,
        stop,
    };
    tracing::info!(events = %topics.events, conversations = %topics.conversations, group, "attributor consuming");
    let mut counts = Counts::default();
    let mut last_commit = Instant::now();
    let result: Result<(), AttributorError> = async {
        loop {
            let Some(messages) = next_batch(&stage.consumer, stage.stop, MAX_BATCH, LINGER).await?
            else {
                return Ok(());
            };
            if !stage.process(&messages, &mut counts).await? {
                return Ok(()); // stopped before the batch was written: nothing is stored
            }
            for m in &messages {
                store(&stage.consumer, m.topic(), m.partition(), m.offset());
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                commit_stored(&stage.consumer, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
    }
    .await;
    commit_stored(&stage.consumer, CommitMode::Sync);
    tracing::info!(
        records = counts.records,
        written = counts.written,
        unchanged = counts.unchanged,
        dead_letters = counts.dead_letters,
        "attributor stopped"
    );
    result
}

/// A parsed record, or why it cannot be processed.
enum Item {
    Event(Box<CanonicalEvent>),
    Conversation(Box<ConversationMessage>),
    Invalid(String),
}

impl Item {
    fn product_id(&self) -> Option<Uuid> {
        match self {
            Item::Event(e) => Some(e.product_id),
            Item::Conversation(c) => Some(c.product_id),
            Item::Invalid(_) => None,
        }
    }
}

impl Stage<'_> {
    fn parse(&self, message: &BorrowedMessage<'_>) -> Item {
        let payload = message.payload().unwrap_or_default();
        if message.topic() == self.topics.conversations {
            match serde_json::from_slice::<ConversationMessage>(payload) {
                Ok(c) => Item::Conversation(Box::new(c)),
                Err(e) => Item::Invalid(format!("not a conversation message: {e}")),
            }
        } else {
            match serde_json::from_slice::<CanonicalEvent>(payload) {
                // Rows are keyed by the id, which must stand for (product, insert id).
                Ok(e) if e.id != CanonicalEvent::derive_id(e.product_id, &e.insert_id) => {
                    Item::Invalid(format!(
                        "event id {} is not derived from its product and insert id",
                        e.id
                    ))
                }
                Ok(e) => Item::Event(Box::new(e)),
                Err(e) => Item::Invalid(format!("not a canonical event: {e}")),
            }
        }
    }

    /// Writes one batch; `false` when stopped before it could be written.
    async fn process(
        &self,
        messages: &[BorrowedMessage<'_>],
        counts: &mut Counts,
    ) -> Result<bool, AttributorError> {
        counts.records += messages.len() as u64;
        let mut items: Vec<Item> = messages.iter().map(|m| self.parse(m)).collect();
        let products: Vec<Uuid> = {
            let set: HashSet<Uuid> = items.iter().filter_map(Item::product_id).collect();
            set.into_iter().collect()
        };
        if !products.is_empty() {
            let Some(known) = self
                .until_written(|| store::known_products(self.pool, &products))
                .await
            else {
                return Ok(false);
            };
            for item in &mut items {
                if let Some(p) = item.product_id().filter(|p| !known.contains(p)) {
                    *item = Item::Invalid(format!("unknown product {p}"));
                }
            }
        }
        // One span per event, a child of the normalizer's span, open until the batch is written.
        let mut spans = Vec::new();
        let traceparents: HashMap<Uuid, String> = messages
            .iter()
            .zip(&items)
            .filter_map(|(m, item)| match item {
                Item::Event(e) => {
                    let parent = traceparent_of(m);
                    let span = tracing::info_span!("gf.attributor.attribute", event_id = %e.id);
                    let next = gf_runtime::telemetry::continue_trace(&span, parent.as_deref());
                    spans.push(span);
                    next.map(|t| (e.id, t))
                }
                _ => None,
            })
            .collect();
        let publisher = KafkaPublisher {
            producer: &self.producer,
            topic: &self.topics.attributed,
            traceparents: &traceparents,
        };

        let mut dead: Vec<Output> = Vec::new();
        let all: Vec<usize> = (0..items.len()).collect();
        match self.write(&items, &all, &publisher, counts).await {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                // Something in the batch is refused: write record by record and dead-letter
                // only what PostgreSQL refuses on its own.
                for i in all {
                    match self.write(&items, &[i], &publisher, counts).await {
                        Some(Ok(())) => {}
                        Some(Err(reason)) => items[i] = Item::Invalid(reason),
                        None => return Ok(false),
                    }
                }
            }
            None => return Ok(false),
        }
        for (message, item) in messages.iter().zip(&items) {
            if let Item::Invalid(reason) = item {
                counts.dead_letters += 1;
                dead.push(dead_letter(
                    &self.topics.deadletter,
                    STAGE,
                    message,
                    reason.clone(),
                ));
            }
        }
        if !dead.is_empty() {
            produce_all(&self.producer, &dead).await?;
        }
        drop(spans);
        Ok(true)
    }

    /// Writes the chosen items, retrying while PostgreSQL or the broker is unavailable.
    /// `Some(Err(reason))` when PostgreSQL refuses the data; `None` once stopped.
    async fn write(
        &self,
        items: &[Item],
        chosen: &[usize],
        publisher: &KafkaPublisher<'_>,
        counts: &mut Counts,
    ) -> Option<Result<(), String>> {
        let mut batch = Batch::default();
        for &i in chosen {
            match &items[i] {
                Item::Event(e) => batch.events.push((**e).clone()),
                Item::Conversation(c) => batch.conversations.push((**c).clone()),
                Item::Invalid(_) => {}
            }
        }
        if batch.events.is_empty() && batch.conversations.is_empty() {
            return Some(Ok(()));
        }
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            match store::write(self.pool, &batch, publisher).await {
                Ok(written) => {
                    counts.written += written.attributed.len() as u64;
                    counts.unchanged += written.unchanged as u64;
                    return Some(Ok(()));
                }
                Err(StoreError::Data { code, message }) => {
                    return Some(Err(format!("PostgreSQL refused it ({code}): {message}")));
                }
                Err(e) => self.retrying(&e, backoff.current()),
            }
            if !backoff.wait(self.stop).await {
                return None;
            }
        }
    }

    /// Runs `attempt` until it succeeds, backing off while it fails; `None` once stopped.
    async fn until_written<T, F, Fut>(&self, mut attempt: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(e) => self.retrying(&e, backoff.current()),
            }
            if !backoff.wait(self.stop).await {
                return None;
            }
        }
    }

    fn retrying(&self, error: &StoreError, backoff: Duration) {
        tracing::warn!(%error, retry_in = ?backoff, "batch not written; retrying (offsets stay where they are)");
    }
}

/// Publishes attributed events to `gf.events.attributed.v1` with their input's trace context.
struct KafkaPublisher<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    traceparents: &'a HashMap<Uuid, String>,
}

impl Publisher for KafkaPublisher<'_> {
    async fn publish(&self, events: &[AttributedEvent]) -> Result<(), OutputError> {
        let outputs: Vec<Output> = events
            .iter()
            .map(|a| Output {
                topic: self.topic.to_owned(),
                key: a.event.kafka_key(),
                value: serde_json::to_vec(a).unwrap_or_default(),
                traceparent: self.traceparents.get(&a.event.id).cloned(),
            })
            .collect();
        produce_all(self.producer, &outputs).await
    }
}
