//! A sink in memory, for tests of the handler's answers: it keeps what it was given, and can be
//! told to fail the way the broker fails.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use gf_schemas::raw::RawRecordMeta;

use super::{Appended, RawSink, SinkError};

/// How the next appends end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    #[default]
    Store,
    /// The broker is away: nothing is stored.
    Unavailable,
    /// The broker refuses the record's size.
    TooLarge,
}

/// Records appended, in order.
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<(RawRecordMeta, Bytes)>>,
    behaviour: Mutex<Behaviour>,
}

impl MemorySink {
    pub fn records(&self) -> Vec<(RawRecordMeta, Bytes)> {
        lock(&self.records).clone()
    }

    pub fn behave(&self, behaviour: Behaviour) {
        *lock(&self.behaviour) = behaviour;
    }
}

impl RawSink for MemorySink {
    fn append<'a>(
        &'a self,
        meta: &'a RawRecordMeta,
        body: &'a Bytes,
    ) -> BoxFuture<'a, Result<Appended, SinkError>> {
        let outcome = match *lock(&self.behaviour) {
            Behaviour::Store => {
                let mut records = lock(&self.records);
                records.push((meta.clone(), body.clone()));
                // One partition; the offset is the record's place.
                Ok(Appended {
                    took: Duration::ZERO,
                    partition: 0,
                    offset: records.len() as i64 - 1,
                })
            }
            Behaviour::Unavailable => {
                Err(SinkError::Unavailable("the sink is told to fail".into()))
            }
            Behaviour::TooLarge => Err(SinkError::TooLarge),
        };
        Box::pin(std::future::ready(outcome))
    }

    fn reachable(&self, _timeout: Duration) -> bool {
        *lock(&self.behaviour) != Behaviour::Unavailable
    }

    fn flush(&self, _timeout: Duration) {}
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
