//! The verification queue: scrypt runs a few at a time, off the async threads; requests that
//! present the same thing share one run, and a place in the queue is bounded per lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gf_runtime::token::verify_hash;
use tokio::sync::Semaphore;

use gf_runtime::quota::{KeyedQuota, Permit};

use super::{Digest32, MAX_WAITING, MAX_WAITING_PER_LOOKUP, lock, remember};

/// What one verification checks: a lookup, the stored hash it is checked against, and the
/// digest of what was presented.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct VerifyKey {
    pub(super) lookup: String,
    pub(super) hash: Digest32,
    pub(super) presented: Digest32,
}

/// A verification's verdict, awaited by every request presenting the same thing; `None` when it
/// could not run.
pub(super) type SharedVerdict =
    futures_util::future::Shared<futures_util::future::BoxFuture<'static, Option<bool>>>;

/// Verifications admitted and not yet running: [`MAX_WAITING`] in all, [`MAX_WAITING_PER_LOOKUP`]
/// for one lookup.
pub(super) type Queue = KeyedQuota<String>;

/// A place in the [`Queue`], given back when dropped (when the run starts, or if it never
/// does), whatever happens to the requests.
pub(super) type Queued = Permit<String>;

pub(super) fn queue() -> Arc<Queue> {
    KeyedQuota::new(MAX_WAITING, MAX_WAITING_PER_LOOKUP)
}

/// One verification, run on its own task so that no request's cancellation can interrupt its
/// bookkeeping.
pub(super) struct Run {
    pub(super) key: VerifyKey,
    pub(super) hash: String,
    pub(super) secret: String,
    pub(super) queued: Queued,
    pub(super) slots: Arc<Semaphore>,
    pub(super) failures: Arc<Mutex<HashMap<(String, Digest32), Instant>>>,
    pub(super) inflight: Arc<Mutex<HashMap<VerifyKey, SharedVerdict>>>,
    pub(super) verifications: prometheus::IntCounter,
}

impl Run {
    pub(super) async fn verify(self) -> Option<bool> {
        let Run {
            key,
            hash,
            secret,
            queued,
            slots,
            failures,
            inflight,
            verifications,
        } = self;
        let verdict = async {
            let permit = slots.acquire_owned().await.ok()?;
            drop(queued);
            verifications.inc();
            // The permit lives as long as scrypt runs.
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                verify_hash(&hash, &secret).unwrap_or(false)
            })
            .await
            .ok()
        }
        .await;
        if verdict == Some(false) {
            remember(&failures, (key.lookup.clone(), key.presented));
        }
        lock(&inflight).remove(&key);
        verdict
    }
}
