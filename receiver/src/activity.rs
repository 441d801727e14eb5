//! What each connection was sent and answered, recorded off the request path: first/last event
//! times (the first accepted event flips a `pending` connection to `active`), the newest
//! requests of each connection and hourly counts per answer status.
//!
//! Handlers send one note per request to a bounded queue; a background task folds them and
//! writes once a second: at most [`REQUESTS_KEPT`] requests per connection, one counter row per
//! (connection, hour, status). A note that finds the queue full is dropped (the request is
//! answered regardless); the counts are then short by it, and a later note carries the times.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use gf_control::ControlPlane;
use gf_control::traffic::{HourKey, HourlyCount, REQUESTS_KEPT, RequestRecord, Traffic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct ActivityRecorder {
    tx: mpsc::Sender<RequestRecord>,
}

impl ActivityRecorder {
    /// Starts the writer task on the current runtime; it writes what is pending and ends once
    /// `stop` is cancelled. Await the handle before exiting.
    pub fn spawn(
        control: ControlPlane,
        traffic: Traffic,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_loop(control, traffic, rx, stop));
        (ActivityRecorder { tx }, task)
    }

    /// Never blocks a request: when the queue is full the note is dropped.
    pub fn note(&self, request: RequestRecord) {
        let _ = self.tx.try_send(request);
    }
}

/// What is waiting to be written.
#[derive(Default)]
struct Pending {
    /// The latest accepted-request time per connection.
    events: HashMap<Uuid, DateTime<Utc>>,
    /// The newest requests per connection.
    requests: HashMap<Uuid, VecDeque<RequestRecord>>,
    hourly: HashMap<HourKey, HourlyCount>,
}

impl Pending {
    fn add(&mut self, r: RequestRecord) {
        if r.accepted > 0 {
            let latest = self.events.entry(r.connection_id).or_insert(r.at);
            *latest = (*latest).max(r.at);
        }
        let hour =
            r.at.duration_trunc(chrono::Duration::hours(1))
                .unwrap_or(r.at);
        self.hourly
            .entry((r.connection_id, r.product_id, hour, r.status))
            .or_default()
            .add(&r);
        let kept = self.requests.entry(r.connection_id).or_default();
        if kept.len() == REQUESTS_KEPT as usize {
            kept.pop_front();
        }
        kept.push_back(r);
    }
}

async fn write_loop(
    control: ControlPlane,
    traffic: Traffic,
    mut rx: mpsc::Receiver<RequestRecord>,
    stop: CancellationToken,
) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            note = rx.recv() => match note {
                Some(request) => pending.add(request),
                None => break,
            },
            _ = tick.tick() => flush(&control, &traffic, &mut pending).await,
            _ = stop.cancelled() => break,
        }
    }
    while let Ok(request) = rx.try_recv() {
        pending.add(request);
    }
    flush(&control, &traffic, &mut pending).await;
}

async fn flush(control: &ControlPlane, traffic: &Traffic, pending: &mut Pending) {
    for (id, at) in std::mem::take(&mut pending.events) {
        if let Err(e) = control.record_events(id, at).await {
            tracing::warn!(connection = %id, error = %e, "cannot record connection activity; will retry");
            pending.events.insert(id, at);
        }
    }
    if pending.requests.is_empty() && pending.hourly.is_empty() {
        return;
    }
    let requests: Vec<RequestRecord> = pending.requests.values().flatten().cloned().collect();
    let hourly: Vec<(HourKey, HourlyCount)> =
        pending.hourly.iter().map(|(k, v)| (*k, *v)).collect();
    match traffic.record(&requests, &hourly).await {
        Ok(()) => {
            pending.requests.clear();
            pending.hourly.clear();
        }
        // Kept (bounded per connection) and written with the next flush.
        Err(e) => tracing::warn!(error = %e, "cannot record the request log; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(connection: u128, minute: u32, status: u16, accepted: u32) -> RequestRecord {
        RequestRecord {
            id: Uuid::now_v7(),
            connection_id: Uuid::from_u128(connection),
            product_id: Uuid::from_u128(9),
            at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 5, 18, 12, minute, 0).unwrap(),
            method: "POST".into(),
            status,
            received: accepted + 1,
            accepted,
            dropped: 1,
            error_code: None,
            error_message: None,
            bytes: 10,
            raw: None,
            excerpt: None,
        }
    }

    #[test]
    fn requests_are_kept_bounded_and_counted_by_hour_and_status() {
        let mut pending = Pending::default();
        for i in 0..150 {
            pending.add(request(1, (i % 60) as u32, 200, 2));
        }
        pending.add(request(1, 5, 400, 0));
        pending.add(request(2, 59, 200, 1));
        assert_eq!(
            pending.requests[&Uuid::from_u128(1)].len(),
            REQUESTS_KEPT as usize
        );
        // The newest is kept: the 400 came last.
        assert_eq!(
            pending.requests[&Uuid::from_u128(1)].back().unwrap().status,
            400
        );
        let hour = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 5, 18, 12, 0, 0).unwrap();
        let ok = pending.hourly[&(Uuid::from_u128(1), Uuid::from_u128(9), hour, 200)];
        assert_eq!(
            (ok.requests, ok.accepted, ok.received, ok.dropped),
            (150, 300, 450, 150)
        );
        assert_eq!(
            pending.hourly[&(Uuid::from_u128(1), Uuid::from_u128(9), hour, 400)].requests,
            1
        );
        // A refused request carries no event time.
        assert_eq!(pending.events.len(), 2);
    }
}
