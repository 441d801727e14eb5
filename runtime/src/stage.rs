//! The one batch-stage runner: every consumer stage that writes batches (the attributor, the
//! notifier) is a [`BatchStage`] that says what it reads, how to [`BatchStage::parse`] a record
//! and how to [`BatchStage::write`] a batch of them. The runner owns the rest, once:
//!
//! 1. gather a batch (up to [`BatchLimits::max_records`], or what arrives within the linger);
//! 2. parse each record; one that cannot be parsed is refused on its own;
//! 3. write the parsed ones, in order, as one batch. The [`classify`]ed failure decides:
//!    an outage is retried with [`Backoff`] (no offset moves, however long it lasts); a conflict
//!    is run again a bounded number of times; a refusal splits the batch in halves, left before
//!    right, until the refused record stands alone and is dead-lettered. Every other record is
//!    written exactly once and in its original order, so per-partition order holds by
//!    construction;
//! 4. produce the dead letters, then store every offset of the batch; committed every second,
//!    when idle, and at shutdown.
//!
//! A record the stage cannot process therefore costs only itself: its siblings in the batch and
//! every other product flow on, and nothing is retried forever unless the outage is real.

use std::future::Future;
use std::time::Duration;

use gf_schemas::deadletter::ReasonClass;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::Class;
use crate::db::DbError;
use crate::kafka::KafkaSettings;
use crate::pipeline::{
    Backoff, Incoming, Output, OutputError, Refusal, commit_stored, dead_letter, next_batch,
    produce_all, store, traceparent_of,
};
use crate::producer::{SharedProducer, supervise_leasing};
use crate::topics::{Topics, consumer_group};

/// How a stage batches its input.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Records per write at most.
    pub max_records: usize,
    /// How long a batch waits for more records once it has one.
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: 500,
            linger: Duration::from_millis(20),
        }
    }
}

/// How the runner retries a write: the one retry policy of every stage's writes.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Waits through an outage (PostgreSQL or the broker away), however long it lasts.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Runs of a batch that conflicted (a deadlock, a race to create or insert a row) before it
    /// is split and its records refused, with short jittered waits between them so racing
    /// writers part ways.
    pub conflicts: u32,
    pub first_conflict_wait: Duration,
    pub max_conflict_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            conflicts: 8,
            first_conflict_wait: Duration::from_millis(5),
            max_conflict_wait: Duration::from_millis(500),
        }
    }
}

/// Runs `attempt` again after a conflict, up to [`RetryPolicy::conflicts`] times with short
/// jittered waits; any other outcome, or the last conflict, is returned. The runner's writes
/// go through it ([`write_isolating`]); so may a caller that writes without the runner.
pub async fn rerun_conflicts<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<T, StageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StageError>>,
{
    let mut waits = Backoff::new(policy.first_conflict_wait, policy.max_conflict_wait);
    let mut conflicts = 0;
    loop {
        match attempt().await {
            Err(e) if e.class == Class::Conflict && conflicts < policy.conflicts => {
                conflicts += 1;
                tracing::debug!(error = %e, conflicts, "write conflicted; running it again");
                tokio::time::sleep(waits.next_delay()).await;
            }
            other => return other,
        }
    }
}

/// Why a write failed, classified once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub class: Class,
    /// The dead letter's class if this ends up refusing a record.
    pub reason_class: ReasonClass,
    pub message: String,
}

impl StageError {
    pub fn transient(message: impl Into<String>) -> Self {
        StageError {
            class: Class::Transient,
            reason_class: ReasonClass::DatabaseRefused,
            message: message.into(),
        }
    }

    pub fn refused(reason_class: ReasonClass, message: impl Into<String>) -> Self {
        StageError {
            class: Class::Refused,
            reason_class,
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        StageError {
            class: Class::Conflict,
            reason_class: ReasonClass::Conflict,
            message: message.into(),
        }
    }

    fn into_refusal(self) -> Refusal {
        let class = if self.class == Class::Conflict {
            ReasonClass::Conflict
        } else {
            self.reason_class
        };
        Refusal::new(class, self.message)
    }
}

impl From<DbError> for StageError {
    fn from(e: DbError) -> Self {
        let class = e.class();
        let message = match &e {
            DbError::Query(q) => match (q.as_db_error(), q.code()) {
                (Some(db), Some(code)) => {
                    format!("PostgreSQL refused it ({}): {}", code.code(), db.message())
                }
                _ => format!("PostgreSQL: {q}"),
            },
            other => other.to_string(),
        };
        StageError {
            class,
            reason_class: match class {
                Class::Conflict => ReasonClass::Conflict,
                _ => ReasonClass::DatabaseRefused,
            },
            message,
        }
    }
}

impl From<tokio_postgres::Error> for StageError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Query(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for StageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

impl From<OutputError> for StageError {
    fn from(e: OutputError) -> Self {
        StageError {
            class: e.class(),
            reason_class: ReasonClass::BrokerRefused,
            message: format!("the broker refused an output: {e}"),
        }
    }
}

/// One parsed record handed to [`BatchStage::write`].
pub struct Record<'a, T> {
    /// The record's position in the batch, to name it in [`Refused`].
    pub index: usize,
    pub item: &'a T,
    /// The trace context for what this record produces (a child of the record's span).
    pub traceparent: Option<&'a str>,
}

/// Records a write refused on its own terms (e.g. an unknown product) while writing the rest.
pub type Refused = Vec<(usize, Refusal)>;

/// A stage that consumes records in batches: what it reads, how it parses and writes.
pub trait BatchStage: Sync {
    type Item: Send + Sync;

    /// The stage's name: consumer group `gf-NAME`, client id, dead letters, logs.
    fn name(&self) -> &'static str;
    /// The topics it consumes.
    fn inputs(&self) -> Vec<String>;
    fn limits(&self) -> BatchLimits {
        BatchLimits::default()
    }
    /// The record as the stage's item, or why it cannot be processed.
    fn parse(&self, record: &Incoming<'_>) -> Result<Self::Item, Refusal>;
    /// The span for one record (open until its batch is written).
    fn span(&self, record: &Incoming<'_>) -> tracing::Span;
    /// Writes the records as one unit (all or nothing); returns the ones refused on their own.
    fn write(
        &self,
        records: &[Record<'_, Self::Item>],
    ) -> impl Future<Output = Result<Refused, StageError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Runs `stage` until `stop`, starting it again from the committed offsets after a Kafka
/// failure.
/// Its dead letters go through `producer`, the process's shared one.
pub async fn run<S: BatchStage>(
    stage: &S,
    settings: &KafkaSettings,
    producer: &SharedProducer,
    prefix: &str,
    stop: &CancellationToken,
) {
    supervise_leasing(stage.name(), stop, producer, |producer| {
        run_once(stage, settings, producer, prefix, stop)
    })
    .await
}

async fn run_once<S: BatchStage>(
    stage: &S,
    settings: &KafkaSettings,
    producer: FutureProducer,
    prefix: &str,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let name = stage.name();
    let group = consumer_group(prefix, name);
    let client_id = format!("gf-{name}");
    let consumer = settings.stage_consumer(&client_id, &group)?;
    let inputs = stage.inputs();
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let deadletter = Topics::new(prefix).deadletter;
    let limits = stage.limits();
    tracing::info!(stage = name, ?inputs, group, "consuming");
    let mut last_commit = Instant::now();
    let result: Result<(), RunError> = async {
        loop {
            let Some(messages) =
                next_batch(&consumer, stop, limits.max_records, limits.linger).await?
            else {
                return Ok(());
            };
            let incoming: Vec<Incoming<'_>> = messages.iter().map(Incoming::of).collect();
            let traceparents: Vec<Option<String>> = messages.iter().map(traceparent_of).collect();
            let Some(refusals) = process(stage, &incoming, &traceparents, stop).await else {
                return Ok(()); // stopped before the batch was written: nothing is stored
            };
            let dead: Vec<Output> = refusals
                .into_iter()
                .map(|(i, refusal)| dead_letter(&deadletter, name, &messages[i], refusal))
                .collect();
            if !dead.is_empty() {
                produce_all(&producer, &dead).await?;
            }
            for m in &messages {
                store(&consumer, m.topic(), m.partition(), m.offset());
            }
            if last_commit.elapsed() >= Duration::from_secs(1) {
                commit_stored(&consumer, CommitMode::Async);
                last_commit = Instant::now();
            }
        }
    }
    .await;
    commit_stored(&consumer, CommitMode::Sync);
    tracing::info!(stage = name, "stage stopped");
    result
}

/// Parses and writes one batch (each record with the trace context it came with); the records
/// refused, in order, or `None` once stopped.
async fn process<S: BatchStage>(
    stage: &S,
    records: &[Incoming<'_>],
    came_with: &[Option<String>],
    stop: &CancellationToken,
) -> Option<Vec<(usize, Refusal)>> {
    let parsed: Vec<Result<S::Item, Refusal>> = records.iter().map(|r| stage.parse(r)).collect();
    let (spans, traceparents): (Vec<tracing::Span>, Vec<Option<String>>) = records
        .iter()
        .zip(came_with)
        .map(|(r, traceparent)| {
            let span = stage.span(r);
            let next = crate::telemetry::continue_trace(&span, traceparent.as_deref());
            (span, next)
        })
        .unzip();
    let mut refused: Vec<(usize, Refusal)> = Vec::new();
    let mut good = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.iter().enumerate() {
        match p {
            Ok(_) => good.push(i),
            Err(refusal) => refused.push((i, refusal.clone())),
        }
    }
    let write = |chunk: Vec<usize>| {
        let records: Vec<Record<'_, S::Item>> = chunk
            .iter()
            .filter_map(|&i| {
                parsed[i].as_ref().ok().map(|item| Record {
                    index: i,
                    item,
                    traceparent: traceparents[i].as_deref(),
                })
            })
            .collect();
        async move { stage.write(&records).await }
    };
    let written = write_isolating(stage.name(), good, write, stop, RetryPolicy::default()).await?;
    drop(spans);
    refused.extend(written);
    refused.sort_by_key(|(i, _)| *i);
    Some(refused)
}

/// Writes `indices` as one unit, isolating what is refused: an outage is waited out, a
/// conflict is run again up to [`RetryPolicy::conflicts`] times, a refusal splits the unit in
/// halves (left written before right) until the refused record stands alone. Returns the
/// refused records; `None` when stopped while waiting.
pub async fn write_isolating<F, Fut>(
    stage: &str,
    indices: Vec<usize>,
    mut write: F,
    stop: &CancellationToken,
    policy: RetryPolicy,
) -> Option<Vec<(usize, Refusal)>>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Refused, StageError>>,
{
    let mut refused = Vec::new();
    // A stack: the left half is on top, so records are written in their order.
    let mut pending = vec![indices];
    while let Some(chunk) = pending.pop() {
        if chunk.is_empty() {
            continue;
        }
        let mut backoff = Backoff::new(policy.first_backoff, policy.max_backoff);
        loop {
            let error = match rerun_conflicts(&policy, || write(chunk.clone())).await {
                Ok(r) => {
                    refused.extend(r);
                    break;
                }
                Err(e) => e,
            };
            match error.class {
                Class::Transient => {
                    tracing::warn!(stage, error = %error, records = chunk.len(), retry_in = ?backoff.current(), "batch not written; retrying (offsets stay where they are)");
                }
                _ if chunk.len() == 1 => {
                    refused.push((chunk[0], error.into_refusal()));
                    break;
                }
                _ => {
                    let (left, right) = chunk.split_at(chunk.len() / 2);
                    pending.push(right.to_vec());
                    pending.push(left.to_vec());
                    break;
                }
            }
            if !backoff.wait(stop).await {
                return None;
            }
        }
    }
    Some(refused)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            conflicts: 2,
            first_conflict_wait: Duration::from_millis(1),
            max_conflict_wait: Duration::from_millis(2),
        }
    }

    /// A stage over plain records: "bad" does not parse, "poison" is refused by the store.
    struct Letters {
        written: std::sync::Mutex<Vec<String>>,
    }

    impl BatchStage for Letters {
        type Item = String;

        fn name(&self) -> &'static str {
            "letters"
        }

        fn inputs(&self) -> Vec<String> {
            vec!["letters".into()]
        }

        fn parse(&self, record: &Incoming<'_>) -> Result<String, Refusal> {
            match std::str::from_utf8(record.payload) {
                Ok("bad") | Err(_) => Err(Refusal::new(ReasonClass::Invalid, "not a letter")),
                Ok(text) => Ok(text.to_owned()),
            }
        }

        fn span(&self, record: &Incoming<'_>) -> tracing::Span {
            tracing::info_span!("letters", offset = record.offset)
        }

        async fn write(&self, records: &[Record<'_, String>]) -> Result<Refused, StageError> {
            if records.iter().any(|r| r.item == "poison") {
                return Err(StageError::refused(ReasonClass::DatabaseRefused, "poison"));
            }
            let mut written = self.written.lock().unwrap();
            written.extend(records.iter().map(|r| r.item.clone()));
            Ok(Vec::new())
        }
    }

    /// The runner's batch logic on plain records: no broker, no database.
    #[tokio::test]
    async fn a_batch_of_plain_records_is_parsed_written_and_isolated_in_order() {
        let payloads = ["a", "bad", "b", "poison", "c"];
        let records: Vec<Incoming<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Incoming {
                topic: "letters",
                partition: 0,
                offset: i as i64,
                key: None,
                payload: p.as_bytes(),
            })
            .collect();
        let stage = Letters {
            written: Default::default(),
        };
        let came_with = vec![None; records.len()];
        let refused = process(&stage, &records, &came_with, &CancellationToken::new())
            .await
            .expect("not stopped");
        let refused: Vec<(usize, ReasonClass)> =
            refused.into_iter().map(|(i, r)| (i, r.class)).collect();
        assert_eq!(
            refused,
            [(1, ReasonClass::Invalid), (3, ReasonClass::DatabaseRefused)]
        );
        assert_eq!(*stage.written.lock().unwrap(), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn only_conflicts_are_rerun_and_only_so_often() {
        let calls = std::cell::Cell::new(0);
        let count = || calls.set(calls.get() + 1);
        let always: Result<(), _> = rerun_conflicts(&fast(), || {
            count();
            async { Err(StageError::conflict("deadlock")) }
        })
        .await;
        assert_eq!(always.unwrap_err().class, Class::Conflict);
        assert_eq!(calls.get(), 3, "the first run and two reruns");
        calls.set(0);
        let cleared = rerun_conflicts(&fast(), || {
            count();
            let n = calls.get();
            async move {
                if n < 2 {
                    Err(StageError::conflict("a user created meanwhile"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(cleared.unwrap(), 2);
        calls.set(0);
        let outage: Result<(), _> = rerun_conflicts(&fast(), || {
            count();
            async { Err(StageError::transient("PostgreSQL is away")) }
        })
        .await;
        assert_eq!(outage.unwrap_err().class, Class::Transient);
        assert_eq!(
            calls.get(),
            1,
            "outages are the runner's backoff, not reruns"
        );
    }

    /// A store that refuses a whole unit when it holds a poisoned record, and otherwise
    /// "commits" it; records every committed record in order.
    struct FakeStore {
        poisoned: HashMap<usize, StageError>,
        outages_left: RefCell<u32>,
        committed: RefCell<Vec<usize>>,
        calls: RefCell<u32>,
    }

    impl FakeStore {
        fn new(poisoned: &[(usize, StageError)]) -> Self {
            FakeStore {
                poisoned: poisoned.iter().cloned().collect(),
                outages_left: RefCell::new(0),
                committed: RefCell::default(),
                calls: RefCell::new(0),
            }
        }

        async fn write(&self, chunk: Vec<usize>) -> Result<Refused, StageError> {
            *self.calls.borrow_mut() += 1;
            if *self.outages_left.borrow() > 0 {
                *self.outages_left.borrow_mut() -= 1;
                return Err(StageError::transient("connection refused"));
            }
            if let Some(e) = chunk.iter().find_map(|i| self.poisoned.get(i)) {
                return Err(e.clone());
            }
            self.committed.borrow_mut().extend(chunk);
            Ok(Vec::new())
        }
    }

    async fn isolate(store: &FakeStore, n: usize) -> Vec<(usize, Refusal)> {
        let stop = CancellationToken::new();
        write_isolating("test", (0..n).collect(), |c| store.write(c), &stop, fast())
            .await
            .expect("not stopped")
    }

    #[tokio::test]
    async fn a_refused_record_costs_only_itself_and_order_holds() {
        let refusal = StageError::refused(
            ReasonClass::DatabaseRefused,
            "PostgreSQL refused it (54000): index row size exceeds btree maximum",
        );
        let store = FakeStore::new(&[(37, refusal)]);
        let refused = isolate(&store, 100).await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 37);
        assert_eq!(refused[0].1.class, ReasonClass::DatabaseRefused);
        assert!(refused[0].1.reason.contains("54000"));
        let expected: Vec<usize> = (0..100).filter(|&i| i != 37).collect();
        assert_eq!(
            *store.committed.borrow(),
            expected,
            "written once each, in order"
        );
        // Bisection: a handful of writes, not one per record.
        assert!(
            *store.calls.borrow() < 20,
            "{} writes",
            store.calls.borrow()
        );
    }

    #[tokio::test]
    async fn several_refused_records_are_each_isolated() {
        let r = || StageError::refused(ReasonClass::DatabaseRefused, "22P05");
        let store = FakeStore::new(&[(0, r()), (5, r()), (6, r()), (9, r())]);
        let refused: Vec<usize> = isolate(&store, 10)
            .await
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(refused, vec![0, 5, 6, 9]);
        assert_eq!(*store.committed.borrow(), vec![1, 2, 3, 4, 7, 8]);
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_and_refuses_nothing() {
        let store = FakeStore::new(&[]);
        *store.outages_left.borrow_mut() = 5;
        let refused = isolate(&store, 10).await;
        assert!(refused.is_empty());
        assert_eq!(*store.committed.borrow(), (0..10).collect::<Vec<_>>());
        assert_eq!(*store.calls.borrow(), 6);
    }

    #[tokio::test]
    async fn a_conflict_that_repeats_is_capped_and_refused() {
        let store = FakeStore::new(&[(2, StageError::conflict("a new user conflicts"))]);
        let refused = isolate(&store, 4).await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 2);
        assert_eq!(refused[0].1.class, ReasonClass::Conflict);
        assert_eq!(*store.committed.borrow(), vec![0, 1, 3]);
    }

    #[tokio::test]
    async fn an_outage_that_never_ends_stops_with_the_stage() {
        let store = FakeStore::new(&[]);
        *store.outages_left.borrow_mut() = u32::MAX;
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        let result = write_isolating("test", vec![0, 1], |c| store.write(c), &stop, fast()).await;
        assert!(result.is_none());
        assert!(store.committed.borrow().is_empty());
    }

    #[test]
    fn postgres_errors_without_a_sqlstate_are_outages() {
        let e = StageError::from(OutputError::Delivery("no acknowledgement".into()));
        assert_eq!(e.class, Class::Transient);
        let e = StageError::from(OutputError::Rejected(KafkaError::MessageProduction(
            rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
        )));
        assert_eq!(e.class, Class::Refused);
        assert_eq!(e.reason_class, ReasonClass::BrokerRefused);
    }
}
