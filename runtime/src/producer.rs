//! One Kafka producer for every stage of a process, replaced after a failure.
//!
//! Each librdkafka client has broker threads of its own that poll and read the clock; `gf run
//! all` with a producer per stage spent a third of its CPU there. Every stage of a process
//! therefore produces through one [`SharedProducer`]: a stage takes a [`Lease`] for a run, and
//! after a failed run (or a failed append) asks for the producer to be renewed.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use crate::kafka::KafkaSettings;
use crate::pipeline::{DELIVERY_TIMEOUT, supervise};

/// A stuck producer is replaced at most this often, however many callers fail on it.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// Whether a successful delivery report says where the record is: only then is it stored.
///
/// librdkafka also reports success without an offset when it infers it: once a later record of
/// a partition is acknowledged, it marks the earlier ones still unconfirmed as delivered
/// ("implicitly acked"), trusting the broker to have refused the later one otherwise. A
/// partition's new leader that has no state for a producer id (a new producer, or one whose
/// earlier record never reached it) takes a later record alone, so the earlier one is gone
/// while its caller was told it is stored. That fits how the three-broker test lost a request it
/// had answered 200 (in no raw record). Without an offset the record is produced again; the
/// duplicate this may make is absorbed by the event ids downstream.
pub fn stored(delivery: &Delivery) -> bool {
    delivery.offset >= 0
}

/// The producer every stage of a process shares; cloning it is cheap and shares it.
#[derive(Clone)]
pub struct SharedProducer {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    settings: KafkaSettings,
    client_id: String,
    delivery_timeout: Duration,
    current: RwLock<Lease>,
    last_renewal: Mutex<Option<Instant>>,
}

/// The producer a caller uses until it fails; the generation says which one it was.
#[derive(Clone)]
pub struct Lease {
    pub producer: FutureProducer,
    generation: u64,
}

impl SharedProducer {
    /// A producer with the stages' durable settings; `delivery_timeout` is librdkafka's
    /// `message.timeout.ms`: past it a record fails instead of waiting for the broker.
    pub fn new(
        settings: &KafkaSettings,
        client_id: &str,
        delivery_timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let producer = build(settings, client_id, delivery_timeout)?;
        Ok(SharedProducer {
            inner: std::sync::Arc::new(Inner {
                settings: settings.clone(),
                client_id: client_id.to_owned(),
                delivery_timeout,
                current: RwLock::new(Lease {
                    producer,
                    generation: 0,
                }),
                last_renewal: Mutex::new(None),
            }),
        })
    }

    /// The current producer.
    pub fn lease(&self) -> Lease {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A process's producer for its stages, with [`DELIVERY_TIMEOUT`]: long enough to ride out
    /// a broker restart within one run.
    pub fn for_stages(settings: &KafkaSettings, client_id: &str) -> Result<Self, KafkaError> {
        Self::new(settings, client_id, DELIVERY_TIMEOUT)
    }

    pub fn delivery_timeout(&self) -> Duration {
        self.inner.delivery_timeout
    }

    /// After `lease` failed: replaces the producer with a new one (a new idempotent producer
    /// id), unless another caller already replaced that one, or the last replacement is less
    /// than [`RENEW_INTERVAL`] old. librdkafka treats some idempotence errors (a sequence gap it
    /// cannot bridge with an epoch bump, a fenced producer id) as fatal: that producer refuses
    /// every later record, so only a new one gets the stage going again. Whoever still holds
    /// the old producer finishes with it; what it held unacknowledged was not acknowledged
    /// upstream either. Returns whether it replaced it.
    pub fn renew(&self, lease: &Lease, error: &dyn fmt::Display) -> bool {
        let inner = &self.inner;
        let mut last = inner.last_renewal.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < RENEW_INTERVAL) {
            return false;
        }
        let mut current = inner.current.write().unwrap_or_else(|e| e.into_inner());
        if current.generation != lease.generation {
            return false;
        }
        match build(&inner.settings, &inner.client_id, inner.delivery_timeout) {
            Ok(fresh) => {
                tracing::warn!(client = inner.client_id, error = %error, "replacing the Kafka producer after a failure");
                *current = Lease {
                    producer: fresh,
                    generation: lease.generation + 1,
                };
                *last = Some(Instant::now());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create a new Kafka producer");
                false
            }
        }
    }

    /// Waits for records still in flight (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.lease().producer.flush(timeout) {
            tracing::warn!(error = %e, "records still unacknowledged at shutdown");
        }
    }
}

impl fmt::Debug for SharedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedProducer")
            .field("client_id", &self.inner.client_id)
            .field("delivery_timeout", &self.inner.delivery_timeout)
            .finish_non_exhaustive()
    }
}

/// [`supervise`]: runs `run_once` with a lease of `producer` until `stop`, again after a failure
/// with the producer renewed.
pub async fn supervise_leasing<E, F, Fut>(
    stage: &str,
    stop: &CancellationToken,
    producer: &SharedProducer,
    mut run_once: F,
) where
    E: fmt::Display,
    F: FnMut(FutureProducer) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    supervise(stage, stop, || {
        let lease = producer.lease();
        let run = run_once(lease.producer.clone());
        async move {
            let result = run.await;
            if let Err(e) = &result {
                producer.renew(&lease, e);
            }
            result
        }
    })
    .await
}

pub(crate) fn build(
    settings: &KafkaSettings,
    client_id: &str,
    delivery_timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    settings
        .producer_config(client_id)
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .create()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> SharedProducer {
        // librdkafka creates a producer without reaching a broker.
        let settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            compression: crate::kafka::Compression::None,
            max_record_bytes: 1024 * 1024,
            session_timeout_ms: 6000,
        };
        SharedProducer::new(&settings, "test", Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn callers_share_one_producer_and_one_renewal() {
        let shared = shared();
        let a = shared.lease();
        let b = shared.clone().lease();
        assert_eq!(a.generation, b.generation);
        assert!(shared.renew(&a, &"broken"), "the first failure renews");
        // The second caller failed on the same producer: it is already replaced.
        assert!(!shared.renew(&b, &"broken"));
        let c = shared.lease();
        assert_eq!(c.generation, a.generation + 1);
        // A failure on the new one within the interval keeps it: no churn in an outage.
        assert!(!shared.renew(&c, &"broken"));
        assert_eq!(shared.lease().generation, c.generation);
    }

    #[test]
    fn only_a_delivery_with_its_offset_is_stored() {
        let at = |offset| Delivery {
            partition: 2,
            offset,
            timestamp: rdkafka::Timestamp::NotAvailable,
        };
        assert!(stored(&at(0)));
        assert!(stored(&at(41)));
        // librdkafka's implicit acknowledgement leaves the offset unset (-1001).
        assert!(!stored(&at(rdkafka::Offset::Invalid
            .to_raw()
            .unwrap_or(-1001))));
        assert!(!stored(&at(-1)));
    }
}
