//! The attributor as a [`BatchStage`]: `gf.events.v1` and `gf.conversations.v1` in group
//! `gf-attributor`, to PostgreSQL, `gf.events.attributed.v1` and `gf.outcomes.v1`. It only says how to parse a
//! record and how to write a batch; batching, retries, isolation of refused records, dead
//! letters and offsets are the runner's ([`gf_runtime::stage`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use gf_runtime::Config;
use gf_runtime::classify::ReasonClass;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::pipeline::{
    Incoming, Output, OutputError, Refusal, encode, parse_json, produce_all,
};
use gf_runtime::producer::SharedProducer;
use gf_runtime::stage::{self, BatchLimits, BatchStage, Record, Refused, StageError};
use gf_runtime::topics::Topics;
use gf_schemas::attributed::AttributedEvent;
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationMessage;
use gf_schemas::outcome::ConversationOutcome;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{self, Batch, OutcomeRules, Publisher};

/// The stage's name, in its consumer group (`gf-attributor`) and dead letters.
pub const STAGE: &str = "attributor";
/// Records per transaction at most.
pub const MAX_BATCH: usize = 1_000;
/// How long a batch waits for more records once it has one.
pub const LINGER: Duration = Duration::from_millis(20);
/// How often open conversations are judged again against their product's watermark, for those
/// two attributors wrote at once (each batch judges its own products).
pub const SETTLE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AttributorError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
}

/// Runs the attributor until `stop`; restarts its consumer after a Kafka failure (resuming
/// from the committed offsets).
pub async fn run(config: &Config, stop: CancellationToken) -> Result<(), AttributorError> {
    let pool = gf_runtime::db::pool(config.database_url()?, 4)?;
    let settings = KafkaSettings::from_config(config)?;
    let producer = SharedProducer::for_stages(&settings, "gf-attributor")?;
    run_with(config, &pool, &producer, stop).await
}

/// [`run`] with a pool and a producer of the caller's (`gf run all` shares both).
pub async fn run_with(
    config: &Config,
    pool: &Pool,
    producer: &SharedProducer,
    stop: CancellationToken,
) -> Result<(), AttributorError> {
    let settings = KafkaSettings::from_config(config)?;
    let attributor = Attributor {
        topics: Topics::new(&config.topic_prefix),
        pool: pool.clone(),
        producer: producer.clone(),
        rules: OutcomeRules::from_config(config),
        counts: Counts::default(),
    };
    tokio::join!(
        stage::run(
            &attributor,
            &settings,
            producer,
            &config.topic_prefix,
            &stop,
        ),
        settle_silent_churn(&attributor, &stop),
    );
    tracing::info!(
        written = attributor.counts.written.load(Ordering::Relaxed),
        unchanged = attributor.counts.unchanged.load(Ordering::Relaxed),
        "attributor stopped"
    );
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    unchanged: AtomicU64,
}

struct Attributor {
    topics: Topics,
    pool: Pool,
    /// Publishes attributed events inside the transaction, before its commit.
    producer: SharedProducer,
    rules: OutcomeRules,
    counts: Counts,
}

impl Attributor {
    fn publisher<'a>(&'a self, traceparents: &'a HashMap<Uuid, String>) -> KafkaPublisher<'a> {
        KafkaPublisher {
            producer: &self.producer,
            topics: &self.topics,
            traceparents,
        }
    }
}

/// Once, [`store::fill_missing_outcomes`]; then every [`SETTLE_EVERY`] until `stop`,
/// [`store::settle_silent_churn`]. A failure is logged and tried again next time; nothing is lost
/// meanwhile (the batches judge their own products).
async fn settle_silent_churn(attributor: &Attributor, stop: &CancellationToken) {
    let none = HashMap::new();
    let publisher = attributor.publisher(&none);
    // Conversations stored before outcomes were kept get theirs first, a chunk at a time.
    loop {
        match store::fill_missing_outcomes(&attributor.pool, &attributor.rules, &publisher, 500)
            .await
        {
            Ok(0) => break,
            Ok(n) => tracing::info!(
                conversations = n,
                "outcomes computed for earlier conversations"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "earlier conversations' outcomes not computed; trying again");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SETTLE_EVERY) => {}
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SETTLE_EVERY) => {}
        }
        match store::settle_silent_churn(
            &attributor.pool,
            &attributor.rules,
            &attributor.publisher(&none),
        )
        .await
        {
            Ok(settled) if !settled.is_empty() => {
                tracing::info!(conversations = settled.len(), "silent churn settled");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "silent churn could not be settled; trying again"),
        }
    }
}

/// A parsed record.
pub enum Item {
    Event(Box<CanonicalEvent>),
    Conversation(Box<ConversationMessage>),
}

impl Item {
    fn product_id(&self) -> Uuid {
        match self {
            Item::Event(e) => e.product_id,
            Item::Conversation(c) => c.product_id,
        }
    }
}

/// A record of `topic` as the attributor's item: a conversation message, or a canonical event
/// whose id stands for (product, insert id), since rows are keyed by it.
pub fn parse(topics: &Topics, topic: &str, payload: &[u8]) -> Result<Item, Refusal> {
    if topic == topics.conversations {
        parse_json::<ConversationMessage>(payload, "a conversation message")
            .map(|c| Item::Conversation(Box::new(c)))
    } else {
        let e: CanonicalEvent = parse_json(payload, "a canonical event")?;
        if e.id != CanonicalEvent::derive_id(e.product_id, &e.insert_id) {
            return Err(Refusal::new(
                ReasonClass::Invalid,
                format!(
                    "event id {} is not derived from its product and insert id",
                    e.id
                ),
            ));
        }
        Ok(Item::Event(Box::new(e)))
    }
}

impl BatchStage for Attributor {
    type Item = Item;

    fn name(&self) -> &'static str {
        STAGE
    }

    fn inputs(&self) -> Vec<String> {
        vec![
            self.topics.events.clone(),
            self.topics.conversations.clone(),
        ]
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: MAX_BATCH,
            linger: LINGER,
        }
    }

    fn parse(&self, record: &Incoming<'_>) -> Result<Item, Refusal> {
        parse(&self.topics, record.topic, record.payload)
    }

    fn span(&self, record: &Incoming<'_>) -> tracing::Span {
        tracing::info_span!(
            "gf.attributor.attribute",
            topic = record.topic,
            partition = record.partition,
            offset = record.offset
        )
    }

    async fn write(&self, records: &[Record<'_, Item>]) -> Result<Refused, StageError> {
        let products: Vec<Uuid> = records
            .iter()
            .map(|r| r.item.product_id())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let known = store::known_products(&self.pool, &products)
            .await
            .map_err(StageError::from)?;
        let mut refused = Vec::new();
        let mut batch = Batch::default();
        let mut traceparents = HashMap::new();
        for r in records {
            let product = r.item.product_id();
            if !known.contains(&product) {
                refused.push((
                    r.index,
                    Refusal::new(ReasonClass::Unknown, format!("unknown product {product}")),
                ));
                continue;
            }
            match r.item {
                Item::Event(e) => {
                    if let Some(tp) = r.traceparent {
                        traceparents.insert(e.id, tp.to_owned());
                    }
                    batch.events.push((**e).clone());
                }
                Item::Conversation(c) => batch.conversations.push((**c).clone()),
            }
        }
        if batch.events.is_empty() && batch.conversations.is_empty() {
            return Ok(refused);
        }
        let written = store::write_with(
            &self.pool,
            &batch,
            &self.rules,
            &self.publisher(&traceparents),
        )
        .await
        .map_err(StageError::from)?;
        self.counts
            .written
            .fetch_add(written.attributed.len() as u64, Ordering::Relaxed);
        self.counts
            .unchanged
            .fetch_add(written.unchanged as u64, Ordering::Relaxed);
        Ok(refused)
    }
}

/// Publishes attributed events to `gf.events.attributed.v1` with their input's trace context,
/// and changed outcomes to `gf.outcomes.v1` keyed by conversation id.
struct KafkaPublisher<'a> {
    producer: &'a SharedProducer,
    topics: &'a Topics,
    traceparents: &'a HashMap<Uuid, String>,
}

impl Publisher for KafkaPublisher<'_> {
    async fn publish(
        &self,
        events: &[AttributedEvent],
        outcomes: &[ConversationOutcome],
    ) -> Result<(), OutputError> {
        let mut outputs = events
            .iter()
            .map(|a| {
                Ok(Output {
                    topic: self.topics.attributed.clone(),
                    key: a.event.kafka_key(),
                    value: encode(a)?,
                    traceparent: self.traceparents.get(&a.event.id).cloned(),
                })
            })
            .collect::<Result<Vec<Output>, OutputError>>()?;
        for outcome in outcomes {
            outputs.push(Output {
                topic: self.topics.outcomes.clone(),
                key: outcome.conversation_id.to_string(),
                value: encode(outcome)?,
                traceparent: None,
            });
        }
        if outputs.is_empty() {
            return Ok(());
        }
        let lease = self.producer.lease();
        let produced = produce_all(&lease.producer, &outputs).await;
        if let Err(e) = &produced {
            // The batch is retried; with a fresh producer if this one is stuck.
            self.producer.renew(&lease, e);
        }
        produced
    }
}
