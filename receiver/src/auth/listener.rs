//! The `LISTEN gf_connection_changes` session that keeps the cache honest.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gf_control::CONNECTION_CHANGES_CHANNEL;
use gf_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use super::{Authenticator, LISTENER_PING};

/// Keeps a `LISTEN gf_connection_changes` session open and evicts what each notification names.
/// Every (re)connection clears the whole cache: notifications may have been missed meanwhile.
pub async fn listen_for_changes(
    database_url: String,
    auth: Arc<Authenticator>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match listen_once(&database_url, &auth, &stop).await {
            Ok(()) => backoff.reset(),
            // Keep serving what is cached while PostgreSQL is away (nothing can change there
            // meanwhile); the cache is cleared once the listener is back (see `listen_once`).
            Err(e) => {
                backoff.after_run(started.elapsed());
                tracing::warn!(error = %e, retry_in = ?backoff.current(), "connection-change listener lost")
            }
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the listener's session stopped answering")]
    Lost,
}

async fn listen_once(
    database_url: &str,
    auth: &Authenticator,
    stop: &CancellationToken,
) -> Result<(), ListenError> {
    let (client, mut connection) =
        tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    let _ = tx.send(Ok(n.payload().to_owned()));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CONNECTION_CHANGES_CHANNEL}"))
        .await?;
    auth.clear();
    auth.set_listening(true);
    tracing::debug!("listening for connection changes");
    let mut ping = tokio::time::interval(LISTENER_PING);
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            message = rx.recv() => match message {
                Some(Ok(payload)) => evict_from_payload(auth, &payload),
                Some(Err(e)) => break Err(ListenError::Postgres(e)),
                None => break Err(ListenError::Lost),
            },
            // A session cut without a FIN (a dead network path) says nothing until written to.
            _ = ping.tick() => {
                match tokio::time::timeout(LISTENER_PING, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(ListenError::Postgres(e)),
                    Err(_) => break Err(ListenError::Lost),
                }
            }
        }
    };
    auth.set_listening(false);
    driver.abort();
    result
}

/// Evicts what a notification names. Anything but the payload our trigger writes (JSON with
/// token lookups of 16 hex digits) clears everything: a notification we cannot read may have
/// been a revocation.
pub(super) fn evict_from_payload(auth: &Authenticator, payload: &str) {
    match lookups_of(payload) {
        Some(lookups) => {
            let lookups: Vec<&str> = lookups.iter().map(String::as_str).collect();
            auth.evict(&lookups);
        }
        None => {
            tracing::warn!(
                bytes = payload.len(),
                "unreadable connection-change notification; cache cleared"
            );
            auth.clear();
        }
    }
}

fn lookups_of(payload: &str) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let object = value.as_object()?;
    let mut lookups = Vec::new();
    for key in ["tokenLookup", "previousTokenLookup"] {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(l))
                if l.len() == 16 && l.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                lookups.push(l.clone());
            }
            Some(_) => return None,
        }
    }
    (!lookups.is_empty()).then_some(lookups)
}
