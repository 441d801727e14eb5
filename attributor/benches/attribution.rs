//! Attribution throughput against the local PostgreSQL: batches of 1000 canonical events written
//! by `store::write` (one transaction each), for several mixes of identities. Needs the local
//! infrastructure (`cargo xtask bench attributor` starts it). Prints one `RESULT {json}` line per
//! mix. The mixed load also runs with two writers at once, each taking the events of half the
//! users by their Kafka key, as two attributors on disjoint partitions would.

#[path = "../tests/attributor/support/mod.rs"]
mod support;

use std::hash::{Hash, Hasher};
use std::time::Instant;

use gf_attributor::store::{Batch, NoPublish, write};
use gf_runtime::stage::{RetryPolicy, rerun_conflicts};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationKind;
use gf_tests::TestDb;
use serde_json::json;
use support::{at, event, message, product, with_email, with_org};
use uuid::Uuid;

const BATCH: usize = 1_000;
const EVENTS: usize = 20_000;
const KNOWN_USERS: usize = 5_000;

#[derive(Clone, Copy)]
enum Kind {
    Known,
    New,
    Anonymous,
    Conversation,
}

fn make(product: Uuid, run: &str, n: usize, kind: Kind) -> CanonicalEvent {
    let t = at(30, (n % 600) as i64);
    let id = format!("{run}-{n}");
    match kind {
        Kind::Known => with_org(
            event(product, &id, Some(&format!("known-{}", n % KNOWN_USERS)), t),
            &format!("org-{}", n % 100),
            Some("Acme"),
        ),
        Kind::New => with_email(
            event(product, &id, Some(&format!("{run}-new-{n}")), t),
            &format!("{run}-new-{n}@example.com"),
            Some("Ada Lovelace"),
        ),
        Kind::Anonymous => event(product, &id, None, t),
        Kind::Conversation => event(product, &id, Some(&format!("known-{}", n % 500)), t),
    }
}

/// Writes `events` in batches, split over `writers` concurrent writers by the events' Kafka key
/// (the partitioner's unit: one user's events stay with one writer, in order).
async fn measure(
    pool: &deadpool_postgres::Pool,
    name: &str,
    events: Vec<CanonicalEvent>,
    writers: usize,
) {
    let total = events.len();
    let mut streams = vec![Vec::new(); writers];
    for e in events {
        let mut hasher = std::hash::DefaultHasher::new();
        e.kafka_key().hash(&mut hasher);
        streams[(hasher.finish() % writers as u64) as usize].push(e);
    }
    let started = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for chunk in stream.chunks(BATCH) {
                    let batch = Batch {
                        conversations: Vec::new(),
                        events: chunk.to_vec(),
                    };
                    // Writers racing on shared users conflict; rerun as the runner does.
                    rerun_conflicts(&RetryPolicy::default(), || async {
                        Ok(write(&pool, &batch, &NoPublish).await?)
                    })
                    .await
                    .expect("batch written");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer finished");
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = total as f64 / seconds;
    println!(
        "RESULT {}",
        json!({"mix": name, "events": total, "batch": BATCH, "writers": writers,
               "seconds": seconds, "events_per_second": rate})
    );
}

#[tokio::main]
async fn main() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let product = product(&client).await;
    let pool = gf_runtime::db::pool(&db.url, 4).unwrap();

    // Known users and their conversations exist before anything is timed.
    let setup: Vec<CanonicalEvent> = (0..KNOWN_USERS)
        .map(|n| {
            with_email(
                event(
                    product,
                    &format!("setup-{n}"),
                    Some(&format!("known-{n}")),
                    at(0, 0),
                ),
                &format!("known-{n}@example.com"),
                None,
            )
        })
        .collect();
    for chunk in setup.chunks(BATCH) {
        let batch = Batch {
            conversations: Vec::new(),
            events: chunk.to_vec(),
        };
        write(&pool, &batch, &NoPublish).await.unwrap();
    }
    let conversations: Vec<_> = (0..500)
        .map(|n| {
            message(
                product,
                &format!("conv-{n}"),
                ConversationKind::Started,
                Some(&format!("known-{n}")),
                at(25, 0),
            )
        })
        .collect();
    write(
        &pool,
        &Batch {
            conversations,
            events: Vec::new(),
        },
        &NoPublish,
    )
    .await
    .unwrap();

    let mixes: [(&str, &[Kind]); 5] = [
        ("known users", &[Kind::Known]),
        ("new users with email", &[Kind::New]),
        ("anonymous", &[Kind::Anonymous]),
        ("conversation window", &[Kind::Conversation]),
        // 40 % known, 20 % new with email, 20 % anonymous, 20 % in a conversation window.
        (
            "mixed",
            &[
                Kind::Known,
                Kind::New,
                Kind::Known,
                Kind::Anonymous,
                Kind::Conversation,
            ],
        ),
    ];
    for (name, kinds) in mixes {
        let run = name.replace(' ', "_");
        let events = (0..EVENTS)
            .map(|n| make(product, &run, n, kinds[n % kinds.len()]))
            .collect();
        measure(&pool, name, events, 1).await;
    }
    let (_, mixed) = mixes[4];
    let events = (0..EVENTS)
        .map(|n| make(product, "mixed_two_writers", n, mixed[n % mixed.len()]))
        .collect();
    measure(&pool, "mixed, two writers", events, 2).await;
    drop(client);
}
