//! Who is calling: the token (and optional shared secret) to a connection, fast.
//!
//! scrypt is slow by design, so it runs only on a cache miss, off the async threads, a few at a
//! time. A verified secret is remembered as its SHA-256 digest and later requests are compared
//! against that digest in constant time (microseconds). A request whose lookup is cached but
//! whose secret does not match the digest is refused without scrypt: the right secret is known.
//!
//! Cached state is dropped at once on `NOTIFY gf_connection_changes` (see [`listen_for_changes`]),
//! entirely whenever the listener (re)connects, and after a TTL as a last resort. While
//! PostgreSQL is unreachable, cached connections keep working and uncached ones get 500.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use gf_control::{ConnectionAuth, ConnectionStatus, ControlPlane};
use gf_runtime::token::IngestToken;
use gf_schemas::Provider;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// How long an unknown lookup is remembered as unknown (a rotation or a new connection notifies).
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
/// How long a (lookup, presented secret) pair that failed verification is answered as wrong
/// without scrypt: the same guess again costs nothing, and the right secret is never held up.
const FAILURE_BACKOFF: Duration = Duration::from_secs(60);
/// Bound on remembered unknown lookups and failures; cleared wholesale when reached.
const MAX_NEGATIVE: usize = 100_000;
/// Verifications waiting for a slot beyond this are refused (503 `auth_busy`).
const MAX_WAITING: usize = 64;
/// PostgreSQL lookups of uncached tokens at once: a flood of unknown tokens queues here instead
/// of taking every pooled connection (a quarter of the receiver's pool of 16).
const MAX_LOOKUPS: usize = 4;
/// How long an uncached request waits for a lookup slot before it is told to retry.
const LOOKUP_WAIT: Duration = Duration::from_secs(2);
/// While the change listener is down, a cached entry decides requests for this long after it
/// was fetched, then is checked against PostgreSQL again (a revocation may have been missed).
const LISTENER_GRACE: Duration = Duration::from_secs(30);
/// How often the listener's session is checked.
const LISTENER_PING: Duration = Duration::from_secs(10);
/// Verifications of one lookup waiting at once: a guesser on one URL cannot fill the queue that
/// every other connection's first request needs.
const MAX_WAITING_PER_LOOKUP: usize = 8;

/// The connection a request is for, once authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub connection_id: Uuid,
    pub product_id: Uuid,
    pub provider: Provider,
    pub status: ConnectionStatus,
    /// Whether the connection's request log keeps an excerpt of each body.
    pub log_bodies: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the URL token is not valid (unknown, rotated or malformed)")]
    InvalidToken,
    #[error("this URL belongs to a connection of another provider")]
    WrongProvider,
    #[error("the x-greenflash-secret header is missing")]
    SecretMissing,
    #[error("the x-greenflash-secret header does not match")]
    SecretWrong,
    #[error("the connection could not be looked up; retry later")]
    LookupFailed(#[source] gf_control::ControlError),
    #[error("too many credential checks in flight; retry shortly")]
    Busy,
}

type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

fn same(a: &Digest32, b: &Digest32) -> bool {
    a.ct_eq(b).into()
}

#[derive(Clone)]
struct Entry {
    caller: Caller,
    token_digest: Digest32,
    token_hash: String,
    secret_hash: Option<String>,
    /// Digest of the shared secret once verified with scrypt.
    secret_digest: Option<Digest32>,
    fetched: Instant,
}

pub struct Authenticator {
    control: ControlPlane,
    ttl: Duration,
    cache: RwLock<HashMap<String, Entry>>,
    unknown: Mutex<HashMap<String, Instant>>,
    /// (lookup, digest of what was presented) that failed verification, and when.
    failures: Arc<Mutex<HashMap<(String, Digest32), Instant>>>,
    /// scrypt runs at once; a permit is held by the blocking task itself, so a cancelled
    /// request cannot free its slot while its scrypt still runs.
    slots: Arc<Semaphore>,
    /// Verifications admitted and not yet running, in all and per lookup.
    queue: Arc<Queue>,
    /// PostgreSQL lookups of uncached tokens at once.
    lookups: Semaphore,
    /// Whether the `LISTEN` session is up; while it is not, entries are trusted less long.
    listening: AtomicBool,
    /// Verifications in progress, shared by every request presenting the same thing.
    inflight: Arc<Mutex<HashMap<VerifyKey, SharedVerdict>>>,
    /// Bumped by every invalidation; a lookup that raced an invalidation of its own lookup is
    /// answered but not cached (it may have read the row just before the change).
    epoch: AtomicU64,
    /// Recent invalidations as (epoch, lookup); `None` stands for "everything".
    invalidations: Mutex<VecDeque<(u64, Option<String>)>>,
    /// scrypt runs, exported so an operator sees a guessing attack's cost.
    verifications: prometheus::IntCounter,
}

/// Invalidations remembered for the race check; older races are treated as conflicting.
const REMEMBERED_INVALIDATIONS: usize = 1024;

impl Authenticator {
    pub fn new(control: ControlPlane, ttl: Duration, verify_concurrency: usize) -> Self {
        Authenticator {
            control,
            ttl,
            cache: RwLock::default(),
            unknown: Mutex::default(),
            failures: Arc::default(),
            slots: Arc::new(Semaphore::new(verify_concurrency.max(1))),
            queue: verify::queue(),
            lookups: Semaphore::new(MAX_LOOKUPS),
            listening: AtomicBool::new(false),
            inflight: Arc::default(),
            epoch: AtomicU64::new(0),
            invalidations: Mutex::default(),
            verifications: prometheus::IntCounter::new(
                "gf_receiver_scrypt_verifications_total",
                "scrypt verifications of URL tokens and shared secrets (cache misses)",
            )
            .expect("a valid metric name"),
        }
    }

    /// Counts scrypt runs in `counter` (the receiver's registered one) instead of its own.
    pub fn counting_into(mut self, counter: prometheus::IntCounter) -> Self {
        self.verifications = counter;
        self
    }

    /// Runs `change` on the cache unless `lookup` was invalidated since `epoch` (the check that
    /// started then may have read the row just before the change). Holds the invalidation log
    /// throughout, so no invalidation slips between the check and the change.
    fn update_if_unchanged(
        &self,
        epoch: u64,
        lookup: &str,
        change: impl FnOnce(&mut HashMap<String, Entry>),
    ) {
        let log = self.invalidations.lock().unwrap_or_else(|e| e.into_inner());
        if self.unchanged_in(&log, epoch, lookup) {
            change(&mut self.cache.write().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Whether `lookup` was not invalidated since `epoch`.
    fn unchanged_since(&self, epoch: u64, lookup: &str) -> bool {
        let log = self.invalidations.lock().unwrap_or_else(|e| e.into_inner());
        self.unchanged_in(&log, epoch, lookup)
    }

    fn unchanged_in(
        &self,
        log: &VecDeque<(u64, Option<String>)>,
        epoch: u64,
        lookup: &str,
    ) -> bool {
        let now = self.epoch.load(Ordering::SeqCst);
        now == epoch
            || (log.front().is_some_and(|(first, _)| *first <= epoch + 1)
                && !log
                    .iter()
                    .filter(|(e, _)| *e > epoch)
                    .any(|(_, l)| l.as_deref().is_none_or(|l| l == lookup)))
    }

    /// Records an invalidation of `lookup` (`None`: everything) and applies it to the cache.
    fn invalidate(&self, lookups: &[Option<&str>]) {
        let mut log = self.invalidations.lock().unwrap_or_else(|e| e.into_inner());
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        let mut failures = lock(&self.failures);
        for lookup in lookups {
            let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            if log.len() == REMEMBERED_INVALIDATIONS {
                log.pop_front();
            }
            log.push_back((epoch, lookup.map(str::to_owned)));
            match lookup {
                Some(l) => {
                    cache.remove(*l);
                    unknown.remove(*l);
                    failures.retain(|(lookup, _), _| lookup != l);
                }
                None => {
                    cache.clear();
                    unknown.clear();
                    failures.clear();
                }
            }
        }
    }

    pub async fn authenticate(
        &self,
        provider: Provider,
        token: &str,
        shared_secret: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let token = IngestToken::parse(token).map_err(|_| AuthError::InvalidToken)?;
        let token_digest = digest(token.secret());

        if let Some(caller) =
            self.decide_from_cache(provider, &token, &token_digest, shared_secret)?
        {
            return Ok(caller);
        }
        // A fresh cached entry that could not decide needs only its shared secret verified.
        if let Some(caller) = self.cached_caller(token.lookup(), &token_digest) {
            self.verify_shared_secret(token.lookup(), shared_secret)
                .await?;
            return Ok(caller);
        }
        self.verify_uncached(provider, &token, token_digest, shared_secret)
            .await
    }

    /// Fast path. `Ok(None)` means: not decidable from the cache alone.
    fn decide_from_cache(
        &self,
        provider: Provider,
        token: &IngestToken,
        token_digest: &Digest32,
        shared_secret: Option<&str>,
    ) -> Result<Option<Caller>, AuthError> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = cache.get(token.lookup()) else {
            drop(cache);
            return self.check_negative(token.lookup()).map(|()| None);
        };
        if !self.fresh(entry) {
            return Ok(None);
        }
        if !same(&entry.token_digest, token_digest) {
            return Err(AuthError::InvalidToken);
        }
        check_provider(entry.caller, provider)?;
        match (&entry.secret_hash, shared_secret, &entry.secret_digest) {
            (None, _, _) => Ok(Some(entry.caller)),
            (Some(_), None, _) => Err(AuthError::SecretMissing),
            (Some(_), Some(given), Some(known)) => {
                if same(known, &digest(given)) {
                    Ok(Some(entry.caller))
                } else {
                    Err(AuthError::SecretWrong)
                }
            }
            (Some(_), Some(_), None) => Ok(None),
        }
    }

    /// The caller of a fresh cached entry whose token matches (its shared secret is unverified).
    fn cached_caller(&self, lookup: &str, token_digest: &Digest32) -> Option<Caller> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .get(lookup)
            .filter(|e| self.fresh(e) && same(&e.token_digest, token_digest))
            .map(|e| e.caller)
    }

    /// Whether an entry may decide a request: within its TTL, and, while the change listener is
    /// down (revocations could be missed), fetched at most [`LISTENER_GRACE`] ago.
    fn fresh(&self, entry: &Entry) -> bool {
        let age = entry.fetched.elapsed();
        age <= self.ttl && (self.listening() || age <= LISTENER_GRACE)
    }

    fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// The change listener is up (`true`) or lost (`false`).
    pub fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::SeqCst);
    }

    fn check_negative(&self, lookup: &str) -> Result<(), AuthError> {
        let unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown
            .get(lookup)
            .is_some_and(|t| t.elapsed() < UNKNOWN_TTL)
        {
            return Err(AuthError::InvalidToken);
        }
        Ok(())
    }

    /// Whether `presented` failed verification for `lookup` within [`FAILURE_BACKOFF`].
    fn failed_recently(&self, lookup: &str, presented: &Digest32) -> bool {
        lock(&self.failures)
            .get(&(lookup.to_owned(), *presented))
            .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF)
    }

    async fn verify_uncached(
        &self,
        provider: Provider,
        token: &IngestToken,
        token_digest: Digest32,
        shared_secret: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let stale = self.expired(token.lookup());
        let looked_up = {
            // Dropped with the request if it is cancelled: the slot is a guard.
            let Ok(Ok(_slot)) = tokio::time::timeout(LOOKUP_WAIT, self.lookups.acquire()).await
            else {
                return Err(AuthError::Busy);
            };
            self.control.auth_by_lookup(token.lookup()).await
        };
        let row = match looked_up {
            Ok(row) => row,
            // PostgreSQL is down: an expired entry still beats refusing a known sender.
            Err(e) => match stale {
                Some(mut entry) if same(&entry.token_digest, &token_digest) => {
                    tracing::warn!(error = %e, connection = %entry.caller.connection_id,
                        "connection lookup failed; serving from expired cache");
                    let caller = check_provider(entry.caller, provider)?;
                    if entry.secret_hash.is_some() {
                        let known = entry.secret_digest;
                        let given = shared_secret.map(digest);
                        match (known, given) {
                            (_, None) => return Err(AuthError::SecretMissing),
                            (Some(k), Some(g)) if same(&k, &g) => {}
                            // Verifying a new secret needs the stored hash: refuse while PostgreSQL is away.
                            (None, Some(_)) => return Err(AuthError::LookupFailed(e)),
                            (Some(_), Some(_)) => return Err(AuthError::SecretWrong),
                        }
                    }
                    // A NOTIFY that evicted it while we were waiting on PostgreSQL wins: an
                    // expired copy read before it must not come back.
                    if !self.unchanged_since(epoch, token.lookup()) {
                        return Err(AuthError::LookupFailed(e));
                    }
                    // Serve from it for another TTL rather than wait on PostgreSQL per request.
                    entry.fetched = Instant::now();
                    self.update_if_unchanged(epoch, token.lookup(), |cache| {
                        cache.insert(token.lookup().to_owned(), entry);
                    });
                    return Ok(caller);
                }
                _ => return Err(AuthError::LookupFailed(e)),
            },
        };
        let Some(row) = row else {
            remember(&self.unknown, token.lookup().to_owned());
            return Err(AuthError::InvalidToken);
        };
        // Unchanged hash: the expired entry's digest is still proof, no scrypt needed.
        let reusable = stale
            .filter(|s| s.token_hash == row.token_hash && same(&s.token_digest, &token_digest));
        if reusable.is_none()
            && !self
                .verify(token.lookup(), &row.token_hash, token.secret())
                .await?
        {
            return Err(AuthError::InvalidToken);
        }
        let secret_digest = match (&row.secret_hash, reusable.as_ref()) {
            (Some(hash), Some(old)) if old.secret_hash.as_ref() == Some(hash) => old.secret_digest,
            _ => None,
        };
        let caller = caller_of(&row);
        let entry = Entry {
            caller,
            token_digest,
            token_hash: row.token_hash.clone(),
            secret_hash: row.secret_hash.clone(),
            secret_digest,
            fetched: Instant::now(),
        };
        self.update_if_unchanged(epoch, token.lookup(), |cache| {
            cache.insert(token.lookup().to_owned(), entry);
        });
        check_provider(caller, provider)?;
        if secret_digest
            .is_some_and(|known| shared_secret.is_some_and(|g| same(&known, &digest(g))))
        {
            return Ok(caller);
        }
        match (&row.secret_hash, shared_secret) {
            (None, _) => Ok(caller),
            (Some(_), None) => Err(AuthError::SecretMissing),
            (Some(_), Some(_)) => {
                self.verify_shared_secret_against(token.lookup(), &row, shared_secret, epoch)
                    .await?;
                Ok(caller)
            }
        }
    }

    async fn verify_shared_secret(
        &self,
        lookup: &str,
        shared_secret: Option<&str>,
    ) -> Result<(), AuthError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let hash = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.get(lookup).and_then(|e| e.secret_hash.clone())
        };
        let Some(hash) = hash else { return Ok(()) };
        let Some(given) = shared_secret else {
            return Err(AuthError::SecretMissing);
        };
        self.check_secret(lookup, &hash, given, epoch).await
    }

    async fn verify_shared_secret_against(
        &self,
        lookup: &str,
        row: &ConnectionAuth,
        shared_secret: Option<&str>,
        epoch: u64,
    ) -> Result<(), AuthError> {
        match (&row.secret_hash, shared_secret) {
            (Some(hash), Some(given)) => self.check_secret(lookup, hash, given, epoch).await,
            (Some(_), None) => Err(AuthError::SecretMissing),
            (None, _) => Ok(()),
        }
    }

    async fn check_secret(
        &self,
        lookup: &str,
        hash: &str,
        given: &str,
        epoch: u64,
    ) -> Result<(), AuthError> {
        if !self.verify(lookup, hash, given).await? {
            return Err(AuthError::SecretWrong);
        }
        self.update_if_unchanged(epoch, lookup, |cache| {
            if let Some(entry) = cache
                .get_mut(lookup)
                .filter(|e| e.secret_hash.as_deref() == Some(hash))
            {
                entry.secret_digest = Some(digest(given));
            }
        });
        Ok(())
    }

    /// Whether `secret` matches `hash`: one scrypt run on the blocking pool, bounded in
    /// concurrency and queue length, run once per (lookup, hash, presented secret) however many
    /// requests present it, and run to the end (its verdict recorded) even if every request that
    /// waited for it is gone.
    async fn verify(&self, lookup: &str, hash: &str, secret: &str) -> Result<bool, AuthError> {
        let presented = digest(secret);
        if self.failed_recently(lookup, &presented) {
            return Ok(false);
        }
        let key = VerifyKey {
            lookup: lookup.to_owned(),
            hash: digest(hash),
            presented,
        };
        let verdict = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let queued: Queued = self
                        .queue
                        .try_take(lookup.to_owned(), 1)
                        .ok_or(AuthError::Busy)?;
                    let run = Run {
                        key: key.clone(),
                        hash: hash.to_owned(),
                        secret: secret.to_owned(),
                        queued,
                        slots: self.slots.clone(),
                        failures: self.failures.clone(),
                        inflight: self.inflight.clone(),
                        verifications: self.verifications.clone(),
                    };
                    let task = tokio::spawn(run.verify());
                    let shared = async move { task.await.ok().flatten() }.boxed().shared();
                    inflight.insert(key, shared.clone());
                    shared
                }
            }
        };
        verdict.await.ok_or(AuthError::Busy)
    }

    /// A copy of the expired entry for `lookup`, if there is one.
    fn expired(&self, lookup: &str) -> Option<Entry> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .get(lookup)
            .filter(|e| e.fetched.elapsed() > self.ttl)
            .cloned()
    }

    /// Forgets everything known about these lookups.
    pub fn evict(&self, lookups: &[&str]) {
        let lookups: Vec<Option<&str>> = lookups.iter().map(|l| Some(*l)).collect();
        self.invalidate(&lookups);
    }

    /// Forgets everything (the listener reconnected and may have missed notifications).
    pub fn clear(&self) {
        self.invalidate(&[None]);
    }

    pub fn cached_connections(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn caller_of(row: &ConnectionAuth) -> Caller {
    Caller {
        connection_id: row.id,
        product_id: row.product_id,
        provider: row.provider,
        status: row.status,
        log_bodies: row.log_bodies,
    }
}

fn check_provider(caller: Caller, provider: Provider) -> Result<Caller, AuthError> {
    if caller.provider == provider {
        Ok(caller)
    } else {
        Err(AuthError::WrongProvider)
    }
}

fn remember<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Instant>>, key: K) {
    let mut map = lock(map);
    if map.len() >= MAX_NEGATIVE {
        map.clear();
    }
    map.insert(key, Instant::now());
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

mod listener;
mod verify;

pub use listener::listen_for_changes;
use verify::{Queue, Queued, Run, SharedVerdict, VerifyKey};

#[cfg(test)]
mod tests {
    use super::listener::evict_from_payload;
    use super::*;

    fn authenticator() -> Authenticator {
        // The pool connects lazily; these tests never reach PostgreSQL.
        let pool = gf_runtime::db::pool("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        let control = ControlPlane::new(pool, gf_runtime::token::SecretHasher::new(10).unwrap());
        Authenticator::new(control, Duration::from_secs(60), 1)
    }

    fn entry() -> Entry {
        Entry {
            caller: Caller {
                connection_id: Uuid::nil(),
                product_id: Uuid::nil(),
                provider: Provider::Amplitude,
                status: ConnectionStatus::Active,
                log_bodies: false,
            },
            token_digest: digest("secret"),
            token_hash: String::new(),
            secret_hash: None,
            secret_digest: None,
            fetched: Instant::now(),
        }
    }

    fn cache_after(auth: &Authenticator, epoch: u64, lookup: &str) -> bool {
        auth.update_if_unchanged(epoch, lookup, |c| {
            c.insert(lookup.to_owned(), entry());
        });
        auth.cache.read().unwrap().contains_key(lookup)
    }

    #[test]
    fn a_check_that_raced_an_invalidation_of_its_lookup_is_not_cached() {
        let auth = authenticator();
        let epoch = auth.epoch.load(Ordering::SeqCst);
        auth.evict(&["other"]);
        assert!(
            cache_after(&auth, epoch, "mine"),
            "another lookup's change does not matter"
        );

        let epoch = auth.epoch.load(Ordering::SeqCst);
        auth.evict(&["mine2"]);
        assert!(!cache_after(&auth, epoch, "mine2"), "its own change does");

        let epoch = auth.epoch.load(Ordering::SeqCst);
        auth.clear();
        assert!(!cache_after(&auth, epoch, "mine3"), "a full clear does");
    }

    #[test]
    fn eviction_drops_cached_and_negative_state() {
        let auth = authenticator();
        auth.cache.write().unwrap().insert("a".into(), entry());
        remember(&auth.unknown, "b".to_owned());
        auth.evict(&["a", "b"]);
        assert_eq!(auth.cached_connections(), 0);
        assert!(auth.unknown.lock().unwrap().is_empty());
    }

    #[test]
    fn while_the_listener_is_down_entries_are_trusted_only_briefly() {
        let auth = Authenticator::new(
            authenticator().control.clone(),
            Duration::from_secs(3600),
            1,
        );
        let token = IngestToken::generate().unwrap();
        let mut old = entry();
        old.token_digest = digest(token.secret());
        old.fetched = Instant::now() - LISTENER_GRACE - Duration::from_secs(1);
        auth.cache
            .write()
            .unwrap()
            .insert(token.lookup().to_owned(), old);
        let decide = |auth: &Authenticator| {
            auth.decide_from_cache(Provider::Amplitude, &token, &digest(token.secret()), None)
                .map(|c| c.is_some())
        };
        auth.set_listening(true);
        assert!(
            matches!(decide(&auth), Ok(true)),
            "listening: within its TTL"
        );
        auth.set_listening(false);
        assert!(
            matches!(decide(&auth), Ok(false)),
            "listener lost: checked against PostgreSQL again"
        );
    }

    #[test]
    fn only_our_trigger_s_payload_evicts_selectively() {
        let auth = authenticator();
        for l in ["00112233445566aa", "ffeeddccbbaa9988"] {
            auth.cache.write().unwrap().insert(l.into(), entry());
        }
        evict_from_payload(
            &auth,
            r#"{"op":"update","id":"x","tokenLookup":"00112233445566aa","previousTokenLookup":null}"#,
        );
        assert_eq!(auth.cached_connections(), 1, "only the named lookup");
        for bad in [
            "not json",
            r#"{"tokenLookup": 5}"#,
            r#"{"tokenLookup": "../../etc"}"#,
            r#"{"op":"update"}"#,
            r#"["ffeeddccbbaa9988"]"#,
        ] {
            auth.cache
                .write()
                .unwrap()
                .insert("ffeeddccbbaa9988".into(), entry());
            evict_from_payload(&auth, bad);
            assert_eq!(auth.cached_connections(), 0, "{bad}: everything cleared");
        }
    }

    /// The serve-stale fallback read its expired copy before waiting on PostgreSQL; a NOTIFY
    /// that evicted the entry meanwhile used to be undone when the lookup failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_during_a_failed_lookup_is_not_undone() {
        // PostgreSQL that accepts and never answers: the lookup hangs, then fails.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let pool = gf_runtime::db::pool(&format!("postgres://nobody@{addr}/none"), 1).unwrap();
        let control = ControlPlane::new(pool, gf_runtime::token::SecretHasher::new(10).unwrap());
        let auth = Arc::new(Authenticator::new(control, Duration::from_secs(60), 1));
        let token = IngestToken::generate().unwrap();
        let mut expired = entry();
        expired.token_digest = digest(token.secret());
        expired.fetched = Instant::now() - Duration::from_secs(3600);
        auth.cache
            .write()
            .unwrap()
            .insert(token.lookup().to_owned(), expired);
        let text = token.reveal();
        let checking = tokio::spawn({
            let auth = auth.clone();
            async move { auth.authenticate(Provider::Amplitude, &text, None).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        auth.evict(&[token.lookup()]);
        let result = checking.await.unwrap();
        assert!(
            matches!(result, Err(AuthError::LookupFailed(_))),
            "served after its revocation: {result:?}"
        );
        assert_eq!(auth.cached_connections(), 0, "the revoked entry came back");
    }
}
