//! A consumed record as stage logic sees it: plain values, no broker client behind them, so
//! parsing and spans are tested without a broker.

use rdkafka::message::{BorrowedMessage, Message};

/// One consumed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// Empty for a record without a value (a tombstone).
    pub payload: &'a [u8],
}

impl<'a> Incoming<'a> {
    pub fn of(message: &'a BorrowedMessage<'_>) -> Self {
        Incoming {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
        }
    }
}
