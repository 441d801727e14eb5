//! First/last event times of connections, recorded off the request path.
//!
//! Handlers send a note per accepted batch; a background task folds them per connection and writes
//! once a second. The first write flips a `pending` connection to `active`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_control::ControlPlane;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct ActivityRecorder {
    tx: mpsc::Sender<(Uuid, DateTime<Utc>)>,
}

impl ActivityRecorder {
    /// Starts the writer task on the current runtime; it writes what is pending and ends once
    /// `stop` is cancelled. Await the handle before exiting.
    pub fn spawn(
        control: ControlPlane,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_loop(control, rx, stop));
        (ActivityRecorder { tx }, task)
    }

    /// Never blocks a request: when the queue is full the note is dropped; a later one carries
    /// the same information.
    pub fn note(&self, connection: Uuid, at: DateTime<Utc>) {
        let _ = self.tx.try_send((connection, at));
    }
}

async fn write_loop(
    control: ControlPlane,
    mut rx: mpsc::Receiver<(Uuid, DateTime<Utc>)>,
    stop: CancellationToken,
) {
    let mut pending: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            note = rx.recv() => match note {
                Some((id, at)) => {
                    let latest = pending.entry(id).or_insert(at);
                    *latest = (*latest).max(at);
                }
                None => break,
            },
            _ = tick.tick() => flush(&control, &mut pending).await,
            _ = stop.cancelled() => break,
        }
    }
    while let Ok((id, at)) = rx.try_recv() {
        let latest = pending.entry(id).or_insert(at);
        *latest = (*latest).max(at);
    }
    flush(&control, &mut pending).await;
}

async fn flush(control: &ControlPlane, pending: &mut HashMap<Uuid, DateTime<Utc>>) {
    for (id, at) in std::mem::take(pending) {
        if let Err(e) = control.record_events(id, at).await {
            tracing::warn!(connection = %id, error = %e, "cannot record connection activity; will retry");
            pending.insert(id, at);
        }
    }
}
