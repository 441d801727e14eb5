//! Test support shared by every integration test.
//!
//! Integration tests run against a real PostgreSQL and a real Kafka-compatible broker. They are
//! found through `DATABASE_URL` and `KAFKA_BROKERS`, or, when those are unset, through the
//! `target/infra/env` file that `cargo xtask infra up` writes. Without either, tests fail with a
//! message saying how to start them: a test that silently skips proves nothing.

pub mod cost;
pub mod net;
pub mod paced;

use std::collections::HashMap;
use std::path::PathBuf;

use tokio_postgres::NoTls;
use uuid::Uuid;

/// Where the local infrastructure is.
#[derive(Clone, Debug)]
pub struct Infra {
    pub database_url: String,
    pub kafka_brokers: String,
    /// Extra variables from `target/infra/env` (e.g. `GF_KAFKA_COMPRESSION`).
    pub env: HashMap<String, String>,
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

fn env_file() -> HashMap<String, String> {
    let path = workspace_root().join("target/infra/env");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The infrastructure to test against; panics with instructions when there is none.
pub fn infra() -> Infra {
    let file = env_file();
    let pick = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| file.get(name).cloned())
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not set and target/infra/env does not exist. \
                     Run the tests with `cargo xtask test`, or start the local infrastructure \
                     with `cargo xtask infra up` first."
                )
            })
    };
    Infra {
        database_url: pick("DATABASE_URL"),
        kafka_brokers: pick("KAFKA_BROKERS"),
        env: file,
    }
}

/// The TCP address of the infrastructure's PostgreSQL, for putting a [`net::TcpProxy`] in front.
pub fn postgres_addr() -> std::net::SocketAddr {
    let config: tokio_postgres::Config = infra().database_url.parse().expect("DATABASE_URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("tests need PostgreSQL over TCP, got {other:?}"),
    };
    format!("{host}:{}", config.get_ports()[0])
        .parse()
        .expect("PostgreSQL host:port")
}

/// A database of its own for one test, migrated, named `gf_test_…`.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    /// Creates an empty database (not migrated).
    pub async fn empty() -> TestDb {
        let base = infra().database_url;
        let name = format!("gf_test_{}", Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&base, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        drop(client);
        let _ = driver.await;
        TestDb {
            url: with_dbname(&base, &name),
            name,
        }
    }

    /// Creates a database and applies the migrations.
    pub async fn migrated() -> TestDb {
        let db = TestDb::empty().await;
        let pool = gf_runtime::db::pool(&db.url, 1).expect("pool");
        gf_runtime::db::migrate(&pool).await.expect("migrate");
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to test database");
        tokio::spawn(connection);
        client
    }
}

/// Replaces the database name of a `postgres://` URL.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let without_db = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{without_db}/{name}?{q}"),
        None => format!("{without_db}/{name}"),
    }
}

/// Pipeline configuration for one test: the local infrastructure, a topic prefix of its own, a
/// session timeout short enough for quick group joins, and `extra` on top.
pub fn test_config(extra: &[(&str, &str)]) -> gf_runtime::Config {
    let infra = infra();
    let mut vars = infra.env.clone();
    vars.insert("DATABASE_URL".into(), infra.database_url.clone());
    vars.insert("KAFKA_BROKERS".into(), infra.kafka_brokers.clone());
    vars.insert("GF_TOPIC_PREFIX".into(), unique_topic_prefix());
    vars.insert("GF_KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into());
    vars.insert("GF_SCRYPT_LOG_N".into(), "10".into());
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    gf_runtime::Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration")
}

/// A validator for one of the wire contract's JSON Schema files, with the other files registered
/// so cross-file references resolve, as a downstream consumer would set it up.
pub fn schema_validator(file: &str) -> jsonschema::Validator {
    use gf_schemas::{SCHEMA_BASE_URI, SCHEMA_FILES};
    let parse = |name: &str, text: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
    };
    let mut options = jsonschema::options();
    for (name, text) in SCHEMA_FILES {
        let resource = jsonschema::Resource::from_contents(parse(name, text))
            .unwrap_or_else(|e| panic!("{name} is not a schema: {e}"));
        options = options.with_resource(format!("{SCHEMA_BASE_URI}{name}"), resource);
    }
    let (_, text) = SCHEMA_FILES
        .iter()
        .find(|(name, _)| *name == file)
        .unwrap_or_else(|| panic!("{file} is not in SCHEMA_FILES"));
    options
        .build(&parse(file, text))
        .unwrap_or_else(|e| panic!("{file} does not compile: {e}"))
}

/// One record read back from a topic.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (the producer's clock when it was sent).
    pub timestamp_ms: Option<i64>,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Everything in `topic` from the beginning: up to each partition's high watermark when called,
/// then until it stays quiet for a second (a stage may still be writing). Blocking: call it from a multi-threaded test runtime or `spawn_blocking`.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<ReadRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use std::time::{Duration, Instant};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(low))
            .expect("partition");
        if high > low {
            remaining.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    // To the end, then a second more: a stage may still be writing.
    while !remaining.is_empty() || quiet_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions {remaining:?} not read to their end"
        );
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("a record");
        quiet_since = Instant::now();
        if remaining
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            remaining.remove(&m.partition());
        }
        out.push(ReadRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            value: m.payload().unwrap_or_default().to_vec(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = h.value.unwrap_or_default();
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(value).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out
}

/// A topic prefix no other test uses, so tests share one broker without seeing each other.
pub fn unique_topic_prefix() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// What an end-to-end test or benchmark starts from: a migrated database of its own, a
/// configuration with topics of its own (created), and a product.
pub struct Stack {
    pub db: TestDb,
    pub config: gf_runtime::Config,
    pub settings: gf_runtime::kafka::KafkaSettings,
    pub topics: gf_runtime::topics::Topics,
    pub control: gf_control::ControlPlane,
    pub product: Uuid,
}

impl Stack {
    /// `extra` goes on top of [`test_config`]; topics get `partitions` partitions.
    pub async fn new(extra: &[(&str, &str)], partitions: i32) -> Stack {
        let db = TestDb::migrated().await;
        let mut vars = vec![("DATABASE_URL", db.url.as_str())];
        vars.extend_from_slice(extra);
        let config = test_config(&vars);
        let settings = gf_runtime::kafka::KafkaSettings::from_config(&config).expect("settings");
        let topics = gf_runtime::topics::Topics::new(&config.topic_prefix);
        gf_runtime::kafka::ensure_topics(
            &settings,
            &topics.specs(&gf_runtime::topics::TopicLayout::local(
                partitions,
                settings.max_record_bytes,
            )),
        )
        .await
        .expect("topics");
        let control = gf_control::ControlPlane::new(
            gf_runtime::db::pool(&db.url, 4).expect("pool"),
            gf_runtime::token::SecretHasher::new(config.scrypt_log_n).expect("hasher"),
        );
        let product = control.create_product("test").await.expect("product").id;
        Stack {
            db,
            config,
            settings,
            topics,
            control,
            product,
        }
    }

    /// A new connection of the product; returns its URL token.
    pub async fn connection(&self, provider: gf_schemas::Provider) -> String {
        self.control
            .create_connection(self.product, provider, None)
            .await
            .expect("connection")
            .token
            .reveal()
    }
}

/// Runs `command` (a `gf --json …`), expects success, and returns the one JSON document it
/// printed; panics with what it printed otherwise.
pub fn json_output(command: &mut std::process::Command) -> serde_json::Value {
    let out = command.output().expect("run gf");
    let args: Vec<_> = command.get_args().collect();
    assert!(
        out.status.success(),
        "gf {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "gf {args:?} printed no JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `secret` with its next-to-last character changed: the same lookup prefix and shape, a
/// different secret. (The last character of unpadded base64 holds padding bits, so changing it
/// may not change the decoded bytes; the character changed always differs from the original.)
pub fn nearly(secret: &str) -> String {
    let mut near = secret.to_owned();
    let Some(at) = near.len().checked_sub(2) else {
        return format!("{near}x");
    };
    let other = if &near[at..at + 1] == "A" { "B" } else { "A" };
    near.replace_range(at..at + 1, other);
    near
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nearly_right_secret_always_differs() {
        for secret in ["gfa_x_AU", "gfa_x_AA", "gfa_x_BA", "gfa_x_zz", "ab"] {
            let near = nearly(secret);
            assert_ne!(near, secret);
            assert_eq!(near.len(), secret.len());
        }
    }

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5432/gf", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_dbname("postgres://u:p@h:1/gf?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
