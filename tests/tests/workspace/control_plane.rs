//! What the control plane tells receivers through `NOTIFY gf_connection_changes`.

use std::time::Duration;

use futures_util::StreamExt;
use gf_schemas::Provider;
use gf_tests::Stack;
use tokio_postgres::{AsyncMessage, NoTls};

/// Listens on the channel; returns the payloads that arrive within `wait` after `action`.
async fn notifications_during(
    url: &str,
    action: impl AsyncFnOnce(),
    wait: Duration,
) -> Vec<String> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute("LISTEN gf_connection_changes")
        .await
        .unwrap();
    action().await;
    tokio::time::sleep(wait).await;
    let mut seen = Vec::new();
    while let Ok(payload) = rx.try_recv() {
        seen.push(payload);
    }
    seen
}

#[tokio::test]
async fn recording_activity_does_not_evict_cached_credentials() {
    let stack = Stack::new(&[], 1).await;
    stack.connection(Provider::Amplitude).await;
    let id = stack
        .control
        .list_connections(None, &gf_runtime::paging::PageRequest::everything())
        .await
        .unwrap()
        .items[0]
        .id;
    let now = chrono::Utc::now();

    // Recording activity (the first events flip pending to active, which takes events just the
    // same) changes nothing authentication depends on: no eviction.
    let activity = notifications_during(
        &stack.db.url,
        async || {
            for i in 0..5 {
                let at = now + chrono::Duration::seconds(i);
                stack.control.record_events(id, at).await.unwrap();
            }
        },
        Duration::from_millis(300),
    )
    .await;
    assert!(activity.is_empty(), "{activity:?}");
    let status = stack.control.connection(id).await.unwrap().status;
    assert_eq!(format!("{status:?}").to_lowercase(), "active");

    // A real change (pause) still notifies.
    let paused = notifications_during(
        &stack.db.url,
        async || {
            stack.control.pause(id).await.unwrap();
        },
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(paused.len(), 1, "{paused:?}");
}
