//! Attribution throughput against the local PostgreSQL: batches of 1000 canonical events written
//! by `store::write` (one transaction each), for several mixes of identities. Needs the local
//! infrastructure (`cargo xtask bench attributor` starts it). Prints one `RESULT {json}` line per
//! run, with what it cost: CPU per event of this process and of PostgreSQL (from `/proc`, when
//! xtask started PostgreSQL) and WAL bytes per event.
//!
//! The mixed load runs in rounds, each followed by its ceiling: the rows that round inserted
//! (users, their identities, the events) are read back in PostgreSQL's binary `COPY` format,
//! deleted, and written again by `COPY` alone, batch by batch in transactions of the same size:
//! the fastest way PostgreSQL has to put the same rows into the same tables, with no lookups. The
//! mixed load also runs with two writers at once, each taking the events of half the users by
//! their Kafka key, as two attributors on disjoint partitions would.

#[path = "../tests/attributor/support/mod.rs"]
mod support;

use std::hash::{Hash, Hasher};
use std::time::Instant;

use futures_util::SinkExt;
use gf_tests::cost::Processes;

use gf_attributor::store::{Batch, NoPublish, write};
use gf_runtime::stage::{RetryPolicy, rerun_conflicts};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::ConversationKind;
use gf_tests::TestDb;
use serde_json::json;
use support::{at, event, message, product, with_email, with_org};
use uuid::Uuid;

/// The binaries' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

const BATCH: usize = 1_000;
const EVENTS: usize = 20_000;
const KNOWN_USERS: usize = 5_000;
/// Rounds of the mixed load and its ceiling, interleaved, for a ratio with a spread.
const ROUNDS: usize = 3;

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
    client: &tokio_postgres::Client,
    name: &str,
    events: Vec<CanonicalEvent>,
    writers: usize,
) -> serde_json::Value {
    let total = events.len();
    let mut streams = vec![Vec::new(); writers];
    for e in events {
        let mut hasher = std::hash::DefaultHasher::new();
        e.kafka_key().hash(&mut hasher);
        streams[(hasher.finish() % writers as u64) as usize].push(e);
    }
    let cost = Cost::start(client).await;
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
    cost.finish(client, total, json!({"mix": name, "writers": writers}))
        .await
}

/// What a timed run cost: wall time, CPU of this process and PostgreSQL, WAL written.
struct Cost {
    processes: gf_tests::cost::Start,
    wal: i64,
    started: Instant,
}

impl Cost {
    async fn start(client: &tokio_postgres::Client) -> Cost {
        let processes = Processes::new(vec![("gf".to_owned(), std::process::id())])
            .without_broker()
            .start();
        Cost {
            processes,
            wal: wal_position(client).await,
            started: Instant::now(),
        }
    }

    /// `run`'s fields with the rate and the cost per event added.
    async fn finish(
        self,
        client: &tokio_postgres::Client,
        events: usize,
        mut run: serde_json::Value,
    ) -> serde_json::Value {
        let seconds = self.started.elapsed().as_secs_f64();
        let end = wal_position(client).await;
        let wal = end - self.wal;
        run["events"] = json!(events);
        run["batch"] = json!(BATCH);
        run["seconds"] = json!(seconds);
        run["events_per_second"] = json!(events as f64 / seconds);
        run["cost"] = self.processes.per_event(events as u64, seconds);
        run["wal_bytes_per_event"] = json!(wal as f64 / events as f64);
        // The range, for `pg_waldump --stats -s FROM -e TO` to say which records wrote it.
        run["wal_from"] = json!(lsn(self.wal));
        run["wal_to"] = json!(lsn(end));
        run
    }
}

/// Bytes of WAL PostgreSQL has written since it began.
async fn wal_position(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            &[],
        )
        .await
        .expect("WAL position")
        .get(0)
}

/// A WAL position as PostgreSQL writes it (`16/B374D848`).
fn lsn(position: i64) -> String {
    format!("{:X}/{:X}", position >> 32, position & 0xFFFF_FFFF)
}

/// A quoted SQL list of bench-made names (letters, digits, `-` and `_` only).
fn sql_list(names: impl Iterator<Item = String>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn copy_out(client: &tokio_postgres::Client, select: &str) -> bytes::Bytes {
    use futures_util::TryStreamExt;
    let stream = client
        .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
        .await
        .expect("COPY out");
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("COPY out data");
    chunks.concat().into()
}

/// The ceiling for the rows run `run` of `total` events inserted: read back per batch, deleted,
/// written again by binary `COPY`, one transaction per batch.
async fn ceiling(
    client: &tokio_postgres::Client,
    product: Uuid,
    run: &str,
    ids: &[Uuid],
) -> serde_json::Value {
    let total = ids.len();
    let mut batches = Vec::new();
    for start in (0..total).step_by(BATCH) {
        let range = start..(start + BATCH).min(total);
        let events = sql_list(ids[range.clone()].iter().map(Uuid::to_string));
        let users = sql_list(range.map(|n| format!("{run}-new-{n}")));
        let new_users = format!("product_id = '{product}' AND external_user_id IN ({users})");
        batches.push([
            (
                "users",
                copy_out(client, &format!("SELECT * FROM users WHERE {new_users}")).await,
            ),
            (
                "user_identities",
                copy_out(
                    client,
                    &format!(
                        "SELECT * FROM user_identities WHERE user_id IN \
                         (SELECT id FROM users WHERE {new_users})"
                    ),
                )
                .await,
            ),
            (
                "business_events",
                copy_out(
                    client,
                    &format!("SELECT * FROM business_events WHERE id IN ({events})"),
                )
                .await,
            ),
        ]);
    }
    let deleted = client
        .execute("DELETE FROM business_events WHERE id = ANY($1)", &[&ids])
        .await
        .expect("events deleted");
    assert_eq!(deleted as usize, total, "the run's events, read back");
    client
        .execute(
            "DELETE FROM users WHERE product_id = $1 AND external_user_id LIKE $2",
            &[&product, &format!("{run}-new-%")],
        )
        .await
        .expect("users deleted");
    client
        .batch_execute("VACUUM ANALYZE business_events, users, user_identities")
        .await
        .expect("vacuum");

    let cost = Cost::start(client).await;
    for batch in batches {
        client.batch_execute("BEGIN").await.expect("begin");
        for (table, data) in batch {
            let sink = client
                .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
                .await
                .expect("COPY in");
            let mut sink = std::pin::pin!(sink);
            sink.send(data).await.expect("COPY data");
            sink.as_mut().finish().await.expect("COPY finished");
        }
        client.batch_execute("COMMIT").await.expect("commit");
    }
    cost.finish(
        client,
        total,
        json!({"mix": "ceiling", "of": run, "writers": 1}),
    )
    .await
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

    // 40 % known, 20 % new with email, 20 % anonymous, 20 % in a conversation window.
    let mixed = [
        Kind::Known,
        Kind::New,
        Kind::Known,
        Kind::Anonymous,
        Kind::Conversation,
    ];
    let mixes: [(&str, &[Kind]); 4] = [
        ("known users", &[Kind::Known]),
        ("new users with email", &[Kind::New]),
        ("anonymous", &[Kind::Anonymous]),
        ("conversation window", &[Kind::Conversation]),
    ];
    for (name, kinds) in mixes {
        let run = name.replace(' ', "_");
        let events = (0..EVENTS)
            .map(|n| make(product, &run, n, kinds[n % kinds.len()]))
            .collect();
        println!("RESULT {}", measure(&pool, &client, name, events, 1).await);
    }
    // The mixed load, each round followed by its ceiling.
    for round in 1..=ROUNDS {
        let run = format!("mixed_round{round}");
        let events: Vec<CanonicalEvent> = (0..EVENTS)
            .map(|n| make(product, &run, n, mixed[n % mixed.len()]))
            .collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let mut result = measure(&pool, &client, "mixed", events, 1).await;
        result["round"] = json!(round);
        println!("RESULT {result}");
        let mut ceiling = ceiling(&client, product, &run, &ids).await;
        ceiling["round"] = json!(round);
        println!("RESULT {ceiling}");
    }
    let events = (0..EVENTS)
        .map(|n| make(product, "mixed_two_writers", n, mixed[n % mixed.len()]))
        .collect();
    let two = measure(&pool, &client, "mixed, two writers", events, 2).await;
    println!("RESULT {two}");
    drop(client);
}
