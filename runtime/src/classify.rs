//! One answer, for every stage, to "is this failure the outage's or the record's?".
//!
//! An outage (PostgreSQL or the broker unreachable, overloaded, shutting down, a lock race) is
//! waited out: the batch is retried with backoff and no offset moves. Anything else PostgreSQL or
//! the broker refuses is a refusal of *this data*: the record is isolated and dead-lettered, and
//! never retried forever. A SQLSTATE we have never heard of is a refusal, not an outage: guessing
//! "outage" would stop the stage for every tenant on one record.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What a failure means for the record that met it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// PostgreSQL or the broker is unavailable: retry the same work later.
    Transient,
    /// A race with a concurrent writer (deadlock, serialization, a row created meanwhile): run
    /// the work again at once, a bounded number of times, then treat it as a refusal.
    Conflict,
    /// The data itself was refused: retrying the same record cannot succeed.
    Refused,
}

pub use gf_schemas::deadletter::ReasonClass;

/// SQLSTATEs that mean "PostgreSQL cannot serve right now", not "this data is wrong".
const TRANSIENT_SQLSTATES: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "57P04", // database_dropped
    "57P05", // idle_session_timeout
    "55P03", // lock_not_available
    "58000", // system_error
    "58030", // io_error
    "25006", // read_only_sql_transaction: a failover in progress
];
/// SQLSTATE classes that are outages as a whole.
const TRANSIENT_SQLSTATE_CLASSES: &[&str] = &[
    "08", // connection exception
    "53", // insufficient resources: too many connections, out of memory, disk full
];
const CONFLICT_SQLSTATES: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
];

/// The class of a SQLSTATE (five characters).
pub fn sqlstate(code: &str) -> Class {
    if CONFLICT_SQLSTATES.contains(&code) {
        Class::Conflict
    } else if TRANSIENT_SQLSTATES.contains(&code)
        || TRANSIENT_SQLSTATE_CLASSES
            .iter()
            .any(|c| code.starts_with(c))
    {
        Class::Transient
    } else {
        Class::Refused
    }
}

/// The class of a PostgreSQL error: without a SQLSTATE it never reached the server's judgement
/// (connection closed, I/O, timeout), so it is an outage.
pub fn postgres(e: &tokio_postgres::Error) -> Class {
    match e.code() {
        Some(code) => sqlstate(code.code()),
        None => Class::Transient,
    }
}

/// A pool error: failing to get a connection is an outage; a backend error is classified.
pub fn pool(e: &deadpool_postgres::PoolError) -> Class {
    match e {
        deadpool_postgres::PoolError::Backend(e) => postgres(e),
        _ => Class::Transient,
    }
}

/// librdkafka codes that blame the record itself: its size, its encoding, its timestamp. Every
/// other code says something about the brokers or the way to them (a leader moving, a topic's
/// metadata not yet known, a producer being fenced during a failover) and is waited out:
/// treating an unforeseen code as the record's fault would dead-letter good events whenever a
/// broker failover surfaced a code not listed.
fn kafka_code_blames_the_record(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BadMessage
            | InvalidMessage
            | InvalidMessageSize
            | MessageSizeTooLarge
            | MessageBatchTooLarge
            | InvalidTimestamp
            | InvalidRecord
            // A record sent in the same batch as one the broker refused. Waiting it out would
            // send the same batch again and again; it is dead-lettered with its sibling, where
            // a replay recovers it.
            | InvalidDifferentRecord
    )
}

/// The class of a produce error for one record. Size and validity refusals are the record's;
/// everything about reaching the broker is an outage. An error without a code is an outage:
/// it says nothing about the record.
pub fn kafka(e: &KafkaError) -> Class {
    match e.rdkafka_error_code() {
        Some(code) if kafka_code_blames_the_record(code) => Class::Refused,
        _ => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_class() {
        let table = [
            // Outages: wait, keep the offsets.
            ("08006", Class::Transient), // connection_failure
            ("08000", Class::Transient),
            ("53300", Class::Transient), // too_many_connections
            ("53100", Class::Transient), // disk_full
            ("57P01", Class::Transient), // admin_shutdown
            ("57P03", Class::Transient), // cannot_connect_now
            ("55P03", Class::Transient), // lock_not_available
            ("25006", Class::Transient), // read only during failover
            // Races: run again, bounded.
            ("40001", Class::Conflict),
            ("40P01", Class::Conflict),
            // The data: isolate and dead-letter.
            ("22001", Class::Refused), // string_data_right_truncation
            ("22P05", Class::Refused), // untranslatable_character (NUL in jsonb)
            ("22003", Class::Refused), // numeric_value_out_of_range
            ("23505", Class::Refused), // unique_violation
            ("23503", Class::Refused), // foreign_key_violation
            ("54000", Class::Refused), // program_limit_exceeded (index row too large)
            ("42P01", Class::Refused), // undefined_table: not an outage either
            // Never heard of: a refusal of the record, not an outage.
            ("ZZ999", Class::Refused),
            ("", Class::Refused),
        ];
        for (code, class) in table {
            assert_eq!(sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn produce_errors_by_class() {
        use RDKafkaErrorCode::*;
        let table = [
            (MessageSizeTooLarge, Class::Refused),
            (InvalidMessageSize, Class::Refused),
            (InvalidMessage, Class::Refused),
            (InvalidRecord, Class::Refused),
            (InvalidDifferentRecord, Class::Refused),
            (QueueFull, Class::Transient),
            (MessageTimedOut, Class::Transient),
            (AllBrokersDown, Class::Transient),
            (BrokerTransportFailure, Class::Transient),
            (NotLeaderForPartition, Class::Transient),
            // Seen while metadata catches up with a failover: never the record's fault.
            (UnknownPartition, Class::Transient),
            (UnknownTopic, Class::Transient),
            (UnknownTopicId, Class::Transient),
            (FencedLeaderEpoch, Class::Transient),
            (UnknownLeaderEpoch, Class::Transient),
            (State, Class::Transient),
        ];
        for (code, class) in table {
            assert_eq!(
                kafka(&KafkaError::MessageProduction(code)),
                class,
                "{code:?}"
            );
        }
        assert_eq!(kafka(&KafkaError::Canceled), Class::Transient);
    }
}
