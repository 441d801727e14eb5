//! Receiving batches, and storing and committing offsets only for what is durable.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;

use crate::kafka::StageConsumer;

/// The next record. Connection trouble is reported and waited out with the same consumer:
/// librdkafka reconnects and rejoins the group by itself, while a new consumer for every
/// outage would leave members behind that the group waits for.
pub async fn recv(consumer: &StageConsumer) -> Result<BorrowedMessage<'_>, KafkaError> {
    loop {
        match consumer.recv().await {
            Err(KafkaError::MessageConsumption(code)) if is_transient(code) => {
                tracing::warn!(error = %code, "consumer waiting for the brokers");
            }
            other => return other,
        }
    }
}

/// How long a stage waits for records before committing what it stored.
const IDLE_COMMIT: Duration = Duration::from_secs(1);

/// [`recv`], but when nothing comes for [`IDLE_COMMIT`], commits the stored offsets first: a
/// stage that commits between batches would otherwise leave its last batch uncommitted (and its
/// lag showing) for as long as it stays idle.
async fn recv_committing_when_idle(
    consumer: &StageConsumer,
) -> Result<BorrowedMessage<'_>, KafkaError> {
    // recv is cancellation safe: a record is taken off the queue only when it is returned.
    match tokio::time::timeout(IDLE_COMMIT, recv(consumer)).await {
        Ok(message) => message,
        Err(_) => {
            commit_stored(consumer, CommitMode::Async);
            recv(consumer).await
        }
    }
}

/// Errors librdkafka recovers from on its own.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        AllBrokersDown
            | BrokerTransportFailure
            | Resolve
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | CoordinatorNotAvailable
            | NotCoordinator
    )
}

/// Waits for a record, then gathers more for up to `linger` or until `max`; `None` once stopped.
pub async fn next_batch<'c>(
    consumer: &'c StageConsumer,
    stop: &CancellationToken,
    max: usize,
    linger: Duration,
) -> Result<Option<Vec<BorrowedMessage<'c>>>, KafkaError> {
    let first = tokio::select! {
        _ = stop.cancelled() => return Ok(None),
        m = recv_committing_when_idle(consumer) => m?,
    };
    let mut messages = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while messages.len() < max {
        match tokio::time::timeout_at(deadline, recv(consumer)).await {
            Ok(m) => messages.push(m?),
            Err(_) => break,
        }
    }
    Ok(Some(messages))
}

/// Marks a record as done; the next commit includes it.
pub fn store(consumer: &StageConsumer, topic: &str, partition: i32, offset: i64) {
    // Fails only for a partition revoked meanwhile; its new owner processes the record again.
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::debug!(error = %e, partition, offset, "offset not stored");
    }
}

/// Which finished records may have their offsets stored, when records of one partition finish
/// in order but some fail: once a record's outputs failed, nothing after it on its partition is
/// stored in this run. Storing a later offset would commit past the failed record, and the next
/// run would start after it: its events would be lost although the sender was answered 200.
#[derive(Debug, Default)]
pub struct OffsetGate {
    failed: HashSet<(String, i32)>,
}

impl OffsetGate {
    /// Whether the offset of a record that finished (`ok`: its outputs were acknowledged) may be
    /// stored.
    pub fn settle(&mut self, topic: &str, partition: i32, ok: bool) -> bool {
        if !ok {
            self.failed.insert((topic.to_owned(), partition));
            return false;
        }
        !self.failed.contains(&(topic.to_owned(), partition))
    }
}

/// Commits the stored offsets; a failure is retried by the next commit.
pub fn commit_stored(consumer: &StageConsumer, mode: CommitMode) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetGate;

    #[test]
    fn nothing_after_a_failed_record_of_its_partition_is_stored() {
        let mut gate = OffsetGate::default();
        assert!(gate.settle("raw", 0, true), "before any failure");
        assert!(!gate.settle("raw", 0, false), "the failed record itself");
        assert!(
            !gate.settle("raw", 0, true),
            "a later record of the same partition"
        );
        assert!(gate.settle("raw", 1, true), "another partition goes on");
        assert!(
            gate.settle("other", 0, true),
            "the same partition of another topic"
        );
    }
}
