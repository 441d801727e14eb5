//! The control plane through the real `gf` binary, against the real PostgreSQL and broker.

use std::process::{Command, Output};
use std::time::Duration;

use futures_util::StreamExt;
use gf_runtime::token::{IngestToken, verify_hash};
use gf_tests::{TestDb, infra, json_output, unique_topic_prefix};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tokio_postgres::{AsyncMessage, NoTls};

const PUBLIC_URL: &str = "https://ingest.example.test";

struct Gf {
    database_url: String,
    topic_prefix: String,
}

impl Gf {
    fn new(db: &TestDb) -> Gf {
        Gf {
            database_url: db.url.clone(),
            topic_prefix: unique_topic_prefix(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let infra = infra();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gf"));
        cmd.args(args)
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", &infra.kafka_brokers)
            .env("GF_PUBLIC_URL", PUBLIC_URL)
            .env("GF_TOPIC_PREFIX", &self.topic_prefix)
            // Cheaper hashing keeps the suite quick; the format is the same.
            .env("GF_SCRYPT_LOG_N", "12");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run gf")
    }

    /// Runs with `--json`, expects success and one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        json_output(&mut self.command(&all))
    }

    /// [`Gf::json`] with extra environment variables.
    fn json_env(&self, env: &[(&str, &str)], args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        json_output(self.command(&all).envs(env.iter().copied()))
    }

    /// Runs with `--json`, expects failure; returns the error message of the JSON document.
    fn json_error(&self, args: &[&str]) -> String {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(!out.status.success(), "gf {args:?} should fail");
        let doc: Value = serde_json::from_slice(&out.stdout).expect("an error document");
        doc["error"]["message"]
            .as_str()
            .expect("error.message")
            .to_owned()
    }

    fn product(&self) -> String {
        self.json(&["product", "create", "--name", "Checkout"])["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn token_of(url: &str, provider: &str) -> IngestToken {
    let prefix = format!("{PUBLIC_URL}/ingest/{provider}/");
    let token = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
    IngestToken::parse(token).expect("the URL ends in a valid token")
}

#[tokio::test]
async fn migrate_applies_once() {
    let db = TestDb::empty().await;
    let gf = Gf::new(&db);
    let first = gf.json(&["migrate"]);
    assert_eq!(first["applied"][0], "V1__control_plane");
    let second = gf.json(&["migrate"]);
    assert_eq!(second["applied"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn products_are_created_and_listed() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.json(&["product", "create", "--name", "  Acme Support Bot "]);
    assert_eq!(product["name"], "Acme Support Bot");
    let list = gf.json(&["product", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], product["id"]);
    assert!(
        gf.json_error(&["product", "create", "--name", "   "])
            .contains("product name")
    );
    let text = String::from_utf8(gf.run(&["product", "list"]).stdout).unwrap();
    assert!(text.contains("Acme Support Bot"), "{text}");
}

#[tokio::test]
async fn connection_create_prints_a_url_and_stores_no_plaintext() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();
    let shared = "correct-horse-battery";
    let created = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
        "--secret",
        shared,
    ]);
    assert_eq!(created["provider"], "amplitude");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["hasSharedSecret"], true);
    let token = token_of(created["url"].as_str().unwrap(), "amplitude");

    let client = db.client().await;
    // Every column of the row, as text: neither the token, its secret, nor the shared secret.
    let rows = client
        .query("SELECT row_to_json(c)::text FROM connections c", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: String = rows[0].get(0);
    for secret in [token.reveal().as_str(), token.secret(), shared] {
        assert!(
            !stored.contains(secret),
            "plaintext secret stored: {stored}"
        );
    }
    let row = client
        .query_one(
            "SELECT token_lookup, token_hash, secret_hash FROM connections",
            &[],
        )
        .await
        .unwrap();
    let (lookup, token_hash, secret_hash): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(lookup, token.lookup());
    assert!(
        token_hash.starts_with("$scrypt$ln=12,r=8,p=1$"),
        "{token_hash}"
    );
    assert_eq!(verify_hash(&token_hash, token.secret()), Ok(true));
    assert_eq!(verify_hash(&secret_hash, shared), Ok(true));
    assert_eq!(
        verify_hash(&secret_hash, "correct-horse-batterz"),
        Ok(false)
    );

    // The URL is shown once: show and list never print it (nor any hash).
    let id = created["id"].as_str().unwrap();
    let shown = gf.run(&["--json", "connection", "show", id]);
    let listed = gf.run(&["--json", "connection", "list", "--product", &product]);
    for out in [shown.stdout, listed.stdout] {
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(id));
        assert!(
            !text.contains(token.secret()) && !text.contains("$scrypt$") && !text.contains("url"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn rotate_replaces_the_token() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();
    let created = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "segment",
    ]);
    let id = created["id"].as_str().unwrap();
    let old = token_of(created["url"].as_str().unwrap(), "segment");

    let rotated = gf.json(&["connection", "rotate", id]);
    assert_eq!(rotated["id"], created["id"]);
    assert!(rotated["rotatedAt"].is_string());
    let new = token_of(rotated["url"].as_str().unwrap(), "segment");
    assert_ne!(new.lookup(), old.lookup());

    let client = db.client().await;
    let gone = client
        .query_opt(
            "SELECT 1 FROM connections WHERE token_lookup = $1",
            &[&old.lookup()],
        )
        .await
        .unwrap();
    assert!(gone.is_none(), "the old token still finds the connection");
    let hash: String = client
        .query_one(
            "SELECT token_hash FROM connections WHERE token_lookup = $1",
            &[&new.lookup()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verify_hash(&hash, new.secret()), Ok(true));
    assert_eq!(verify_hash(&hash, old.secret()), Ok(false));
}

#[tokio::test]
async fn status_changes_follow_the_rules() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();
    let created = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
    ]);
    let id = created["id"].as_str().unwrap();

    assert_eq!(gf.json(&["connection", "pause", id])["status"], "paused");
    // Never received an event: resume goes back to pending, not active.
    assert_eq!(gf.json(&["connection", "resume", id])["status"], "pending");

    // After a first event it resumes to active.
    let client = db.client().await;
    client
        .execute("UPDATE connections SET status = 'active', first_event_at = now() WHERE id = $1::text::uuid", &[&id])
        .await
        .unwrap();
    gf.json(&["connection", "pause", id]);
    assert_eq!(gf.json(&["connection", "resume", id])["status"], "active");

    assert_eq!(
        gf.json(&["connection", "disconnect", id])["status"],
        "disconnected"
    );
    for action in ["resume", "rotate", "pause"] {
        let message = gf.json_error(&["connection", action, id]);
        assert!(message.contains("is disconnected"), "{action}: {message}");
    }
    let missing = "00000000-0000-0000-0000-000000000000";
    assert!(
        gf.json_error(&["connection", "pause", missing])
            .contains("no connection with id")
    );
    assert!(
        gf.json_error(&["connection", "show", missing])
            .contains("no connection with id")
    );
}

#[tokio::test]
async fn shared_secrets_are_checked_set_and_cleared() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();
    let message = gf.json_error(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "segment",
        "--secret",
        "short",
    ]);
    assert!(
        message.contains("at least") || message.contains("8 to 256"),
        "{message}"
    );
    // Nothing was created for the refused request.
    assert_eq!(
        gf.json(&["connection", "list"]).as_array().unwrap().len(),
        0
    );

    let created = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "segment",
    ]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["hasSharedSecret"], false);
    assert!(
        gf.json_error(&["connection", "set-secret", id, "--secret", "1234567"])
            .contains("8 to 256")
    );
    assert_eq!(
        gf.json(&["connection", "set-secret", id, "--secret", "12345678"])["hasSharedSecret"],
        true
    );
    assert_eq!(
        gf.json(&["connection", "set-secret", id, "--clear"])["hasSharedSecret"],
        false
    );
    // Exactly one of --secret and --clear.
    assert!(!gf.run(&["connection", "set-secret", id]).status.success());
}

#[tokio::test]
async fn every_connection_change_notifies_listeners() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();

    let (client, mut connection) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(serde_json::from_str::<Value>(n.payload()).unwrap());
            }
        }
    });
    client
        .batch_execute("LISTEN gf_connection_changes")
        .await
        .unwrap();

    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("a notification within 1 s")
            .unwrap()
    };
    let created = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
    ]);
    let id = created["id"].clone();
    let lookup = token_of(created["url"].as_str().unwrap(), "amplitude")
        .lookup()
        .to_owned();
    let n = next().await;
    assert_eq!((n["op"].as_str(), &n["id"]), (Some("insert"), &id));

    let id_text = id.as_str().unwrap();
    for args in [
        vec!["connection", "pause", id_text],
        vec!["connection", "resume", id_text],
        vec![
            "connection",
            "set-secret",
            id_text,
            "--secret",
            "a-long-secret",
        ],
        vec!["connection", "set-secret", id_text, "--clear"],
    ] {
        gf.json(&args);
        let n = next().await;
        assert_eq!(
            (n["op"].as_str(), &n["id"]),
            (Some("update"), &id),
            "{args:?}"
        );
        assert_eq!(n["tokenLookup"], lookup.as_str());
    }
    let rotated = gf.json(&["connection", "rotate", id_text]);
    let n = next().await;
    assert_eq!(n["previousTokenLookup"], lookup.as_str());
    let new_lookup = token_of(rotated["url"].as_str().unwrap(), "amplitude")
        .lookup()
        .to_owned();
    assert_eq!(n["tokenLookup"], new_lookup.as_str());
    // No secret ever travels in a notification.
    assert!(!n.to_string().contains("scrypt"));

    gf.json(&["connection", "disconnect", id_text]);
    assert_eq!(next().await["op"], "update");
}

#[tokio::test]
async fn topics_ensure_creates_every_topic_once() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let first = gf.json(&["topics", "ensure"]);
    let names: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    let p = &gf.topic_prefix;
    let expected: Vec<String> = [
        "raw.v1",
        "events.v1",
        "events.attributed.v1",
        "conversations.v1",
        "signals.v1",
        "deadletter.v1",
        "outcomes.v1",
    ]
    .iter()
    .map(|s| format!("{p}.{s}"))
    .collect();
    assert_eq!(names, expected);
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["created"] == true && t["partitions"] == 3)
    );

    let second = gf.json(&["topics", "ensure"]);
    assert!(
        second
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["created"] == false)
    );

    // The broker itself knows them.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra().kafka_brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    for name in &expected {
        let topic = metadata.topics().iter().find(|t| t.name() == name);
        assert_eq!(topic.map(|t| t.partitions().len()), Some(3), "{name}");
    }
}

/// Three replicas asked of a one-broker cluster: refused, naming the variable, and nothing made.
#[tokio::test]
async fn topics_ensure_refuses_a_replication_the_cluster_cannot_give() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let out = gf
        .command(&["topics", "ensure"])
        .env("GF_TOPIC_REPLICATION", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 replicas") && stderr.contains("GF_TOPIC_REPLICATION"),
        "{stderr}"
    );
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra().kafka_brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert!(
        !metadata
            .topics()
            .iter()
            .any(|t| t.name().starts_with(&format!("{}.", gf.topic_prefix))),
        "a topic was made anyway"
    );
}

/// The topics' settings are the broker's, read back with the admin API: the layout's
/// `min.insync.replicas`, the raw topic's retention from `GF_RAW_RETENTION_HOURS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_ensure_sets_each_topics_config() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    json_output(
        gf.command(&["--json", "topics", "ensure"])
            .env("GF_RAW_RETENTION_HOURS", "48"),
    );
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra().kafka_brokers)
        .create()
        .unwrap();
    let p = &gf.topic_prefix;
    let (raw, events) = (format!("{p}.raw.v1"), format!("{p}.events.v1"));
    let outcomes = format!("{p}.outcomes.v1");
    let configs = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic(&raw),
                &ResourceSpecifier::Topic(&events),
                &ResourceSpecifier::Topic(&outcomes),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let value = |i: usize, key: &str| {
        configs[i]
            .as_ref()
            .unwrap()
            .get(key)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value(0, "retention.ms").as_deref(), Some("172800000"));
    assert_eq!(value(1, "retention.ms").as_deref(), Some("604800000"));
    assert_eq!(value(1, "cleanup.policy").as_deref(), Some("delete"));
    // Outcomes keep each conversation's last record however old.
    assert_eq!(value(2, "cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(value(0, "min.insync.replicas").as_deref(), Some("1"));
    assert_eq!(
        value(0, "unclean.leader.election.enable").as_deref(),
        Some("false")
    );
    let max: usize = value(0, "max.message.bytes").unwrap().parse().unwrap();
    assert!(max > gf_runtime::config::DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn missing_configuration_says_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_gf"))
        .args(["product", "list"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL is not set") && stderr.contains("cargo xtask infra up"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_gf"))
        .args(["topics", "ensure"])
        .env_clear()
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the Kafka brokers"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_conversation_publishes_a_schema_valid_message() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    gf.json(&["topics", "ensure"]);
    let product = gf.product();
    let emitted = gf.json(&[
        "emit",
        "conversation",
        "--product",
        &product,
        "--conversation",
        "conv-42",
        "--kind",
        "started",
        "--user",
        "u-42",
        "--email",
        "u42@example.com",
        "--at",
        "2026-05-18T12:00:00Z",
    ]);
    let topic = format!("{}.conversations.v1", gf.topic_prefix);
    assert_eq!(emitted["topic"], topic.as_str());
    let records =
        tokio::task::block_in_place(|| gf_tests::read_topic(&infra().kafka_brokers, &topic));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, format!("{product}:conv-42"));
    let message: Value = serde_json::from_slice(&records[0].value).unwrap();
    assert_eq!(message, emitted["message"]);
    assert_eq!(message["kind"], "started");
    assert_eq!(message["externalUserId"], "u-42");
    assert_eq!(message["occurredAt"], "2026-05-18T12:00:00.000Z");
    let validator = gf_tests::schema_validator("conversation.v1.schema.json");
    assert!(validator.is_valid(&message), "{message:#}");

    let error = gf.json_error(&[
        "emit",
        "conversation",
        "--product",
        &product,
        "--conversation",
        " ",
    ]);
    assert!(error.contains("--conversation"), "{error}");
}

/// Answers every HTTP request with `status` and counts them.
async fn tiny_sink(
    status: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_created_tested_rotated_and_deliveries_retried() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.product();
    let (url, hits) = tiny_sink("503 Service Unavailable").await;
    let nets = [("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8")];
    let with_nets = |args: &[&str]| gf.json_env(&nets, args);

    // Without the allow-list, a loopback URL is refused with the reason.
    let refused = gf.json_error(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        &url,
        "--events",
        "*",
    ]);
    assert!(refused.contains("loopback"), "{refused}");
    let bad_type = gf.json_error(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        "https://example.com/x",
        "--events",
        "conversation.nope",
    ]);
    assert!(bad_type.contains("conversation.nope"), "{bad_type}");

    let created = with_nets(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        &url,
        "--events",
        "conversation.*,product.quality_index",
    ]);
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        created["eventTypes"],
        serde_json::json!(["conversation.*", "product.quality_index"])
    );
    let listed = gf.json(&["endpoint", "list", "--product", &product]);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains(&secret[6..]),
        "list never shows the secret"
    );

    let rotated = gf.json(&["endpoint", "rotate-secret", &id]);
    assert_ne!(rotated["secret"], secret.as_str());
    assert!(rotated["previousSecretExpiresAt"].is_string());

    // A test delivery reaches the sink; its 503 is reported and the delivery stays pending.
    let tested = with_nets(&["endpoint", "test", &id]);
    assert_eq!(tested["status"], 503);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let deliveries = gf.json(&["deliveries", "list", "--endpoint", &id]);
    assert_eq!(deliveries[0]["status"], "pending");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(deliveries[0]["lastStatusCode"], 503);

    // Mark it failed, as the schedule eventually would, then retry everything failed since then.
    let client = db.client().await;
    client
        .execute("UPDATE deliveries SET status = 'failed'", &[])
        .await
        .unwrap();
    let retried = gf.json(&[
        "deliveries",
        "retry",
        "--endpoint",
        &id,
        "--failed-since",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(retried["retried"].as_array().unwrap().len(), 1);
    let pending = gf.json(&["deliveries", "list", "--status", "pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);

    let disabled = gf.json(&["endpoint", "disable", &id]);
    assert_eq!(disabled["enabled"], false);
    let enabled = gf.json(&["endpoint", "enable", &id]);
    assert_eq!(enabled["enabled"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_signal_publishes_a_schema_valid_signal() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    gf.json(&["topics", "ensure"]);
    let product = gf.product();
    let emitted = gf.json(&[
        "emit",
        "signal",
        "--product",
        &product,
        "--kind",
        "conversation-sentiment",
        "--conversation",
        "conv-9",
        "--score",
        "-0.4",
    ]);
    let topic = format!("{}.signals.v1", gf.topic_prefix);
    let records =
        tokio::task::block_in_place(|| gf_tests::read_topic(&infra().kafka_brokers, &topic));
    assert_eq!(records.len(), 1);
    let signal: Value = serde_json::from_slice(&records[0].value).unwrap();
    assert_eq!(signal, emitted["signal"]);
    assert_eq!(signal["kind"], "conversation_sentiment");
    assert_eq!(signal["score"], -0.4);
    assert!(
        gf_tests::schema_validator("signal.v1.schema.json").is_valid(&signal),
        "{signal:#}"
    );
    let missing = gf.json_error(&[
        "emit",
        "signal",
        "--product",
        &product,
        "--kind",
        "guardrail",
        "--conversation",
        "c",
    ]);
    assert!(missing.contains("--analysis-id"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_carries_an_event_from_the_ingest_url_to_postgres_and_a_webhook() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    gf.json(&["topics", "ensure"]);
    let product = gf.product();
    let addr = gf_tests::net::free_local_addr();
    let console = gf_tests::net::free_local_addr();
    let (sink, hits) = tiny_sink("200 OK").await;
    let env = [
        ("GF_RECEIVER_ADDR", addr.as_str()),
        ("GF_CONSOLE_ADDR", console.as_str()),
        ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
        ("GF_KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ];
    let json_with_env = |args: &[&str]| gf.json_env(&env, args);
    let url = json_with_env(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
    ])["url"]
        .as_str()
        .unwrap()
        .to_owned();
    json_with_env(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        &sink,
        "--events",
        "conversation.started",
    ]);
    let mut child = gf
        .command(&["run", "all"])
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The ingest URL printed for users uses GF_PUBLIC_URL; post to the local receiver instead.
    let path = url.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let body = r#"{"events":[{"user_id":"u-all","event_type":"purchase","time":1747569600000,"insert_id":"all-1","revenue":49.0,"user_properties":{"email":"all@example.com"}}]}"#;
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match http
            .post(format!("http://{addr}{path}"))
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("the receiver never accepted the event: {other:?}"),
        }
    }
    json_with_env(&[
        "emit",
        "conversation",
        "--product",
        &product,
        "--conversation",
        "c-all",
        "--kind",
        "started",
        "--user",
        "u-all",
    ]);

    let client = db.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 = client
            .query_one("SELECT count(*) FROM business_events WHERE insert_id = 'amplitude:all-1' AND user_id IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        if stored == 1 && hits.load(std::sync::atomic::Ordering::SeqCst) >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stored {stored}, webhooks {}",
            hits.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One /metrics for the process: the receiver's counters and every consumer's lag per
    // partition from librdkafka's statistics (reported every 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lag_of = |client: &str| {
            metrics.lines().any(|l| {
                l.starts_with("gf_kafka_consumer_lag{")
                    && l.contains(&format!("client=\"{client}\""))
                    && l.contains("partition=\"")
            })
        };
        if metrics.contains("gf_receiver_requests_total")
            && metrics.contains("gf_kafka_broker_rtt_seconds")
            && ["gf-normalizer", "gf-attributor", "gf-notifier"]
                .iter()
                .all(|c| lag_of(c))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics lacks consumer lag:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // SIGTERM: every stage stops and the process exits cleanly.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "gf run all exited with {status}");
}

#[tokio::test]
async fn admin_keys_are_shown_once_and_every_change_is_audited() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let created = gf.json(&["admin-key", "create", "--name", "release bot"]);
    let key = created["key"].as_str().expect("the key").to_owned();
    assert!(key.starts_with("gfa_"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let listed = gf.json(&["admin-key", "list"]);
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("key").is_none());
    assert!(
        !listed.to_string().contains(&key[21..]),
        "a list shows the secret"
    );
    // Only a hash is stored.
    let client = db.client().await;
    let dump: String = client
        .query_one("SELECT string_agg(t::text, ' ') FROM admin_keys t", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !dump.contains(&key[21..]),
        "the key is stored in plain text"
    );

    let product = gf.product();
    let connection = gf.json(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "posthog",
        "--secret",
        "hunter2hunter2",
    ]);
    let connection_id = connection["id"].as_str().unwrap().to_owned();
    gf.json(&["connection", "pause", &connection_id]);
    // A change that failed changed nothing and is not recorded.
    gf.json_error(&["connection", "resume", &uuid::Uuid::now_v7().to_string()]);
    gf.json(&["admin-key", "revoke", &id]);

    let audit = gf.json(&["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "admin_key.create",
            "product.create",
            "connection.create",
            "connection.pause",
            "admin_key.revoke"
        ]
    );
    let text = audit.to_string();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("cli:"))
    );
    assert_eq!(audit[3]["subjectId"], connection_id.as_str());
    for secret in [
        key.as_str(),
        "hunter2hunter2",
        connection["url"].as_str().unwrap(),
    ] {
        assert!(
            !text.contains(secret),
            "the audit log holds a secret: {text}"
        );
    }
}

/// Produces `value` to `topic` with `headers`, acknowledged.
async fn produce(topic: &str, key: &str, headers: &[(&str, String)], value: &str) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &infra().kafka_brokers)
        .create()
        .expect("producer");
    let mut owned = OwnedHeaders::new();
    for (name, v) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(v.as_bytes()),
        });
    }
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(value)
        .headers(owned);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("produced");
}

fn tail_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "gf tail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_topic_decoded_and_filtered_by_product_and_connection() {
    use gf_schemas::raw::header;
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    gf.json(&["topics", "ensure"]);
    let (p1, p2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (c1, c2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let raw = format!("{}.raw.v1", gf.topic_prefix);
    for (i, (p, c)) in [(p1, c1), (p2, c2), (p1, c1)].into_iter().enumerate() {
        let headers = [
            (header::PRODUCT_ID, p.to_string()),
            (header::CONNECTION_ID, c.to_string()),
            (header::PROVIDER, "amplitude".to_owned()),
        ];
        let body = format!(r#"{{"events":[{{"event_type":"e{i}"}}]}}"#);
        produce(&raw, &c.to_string(), &headers, &body).await;
    }
    let events = format!("{}.events.v1", gf.topic_prefix);
    for (i, p) in [p2, p1, p2].into_iter().enumerate() {
        let event = serde_json::json!({"id": format!("ev{i}"), "productId": p, "connectionId": c2,
            "eventType": format!("e{i}")});
        produce(&events, "k", &[], &event.to_string()).await;
    }

    let mine = tail_lines(&gf.run(&[
        "--json",
        "tail",
        "raw",
        "--connection",
        &c1.to_string(),
        "--from-beginning",
        "--limit",
        "2",
    ]));
    assert_eq!(mine.len(), 2);
    for line in &mine {
        assert_eq!(line["topic"], raw.as_str());
        assert_eq!(line["key"], c1.to_string());
        assert_eq!(line["headers"][header::CONNECTION_ID], c1.to_string());
    }
    // The body is decoded, not a string of JSON.
    assert_eq!(mine[0]["value"]["events"][0]["event_type"], "e0");
    assert_eq!(mine[1]["value"]["events"][0]["event_type"], "e2");

    let p2_events = tail_lines(&gf.run(&[
        "--json",
        "tail",
        "events",
        "--product",
        &p2.to_string(),
        "--from-beginning",
        "--limit",
        "2",
    ]));
    let ids: Vec<&str> = p2_events
        .iter()
        .map(|l| l["value"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ev0", "ev2"]);

    // Text for people: one line per record.
    let text = gf.run(&[
        "tail",
        "events",
        "--product",
        &p1.to_string(),
        "--from-beginning",
        "--limit",
        "1",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with(&format!("{events} ")) && text.contains(" e1 "),
        "{text}"
    );

    // Without --from-beginning it starts at the end: what was there before is not shown.
    let mut follower = gf
        .command(&["--json", "tail", "events", "--limit", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gf tail");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while follower.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "gf tail showed nothing new"
        );
        let event =
            serde_json::json!({"id": format!("new{n}"), "productId": p1, "eventType": "late"});
        produce(&events, "k", &[], &event.to_string()).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let shown = tail_lines(&follower.wait_with_output().expect("output"));
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0]["value"]["id"].as_str().unwrap().starts_with("new"),
        "{shown:?}"
    );

    let error = gf.json_error(&["tail", "signals", "--connection", &c1.to_string()]);
    assert!(error.contains("--connection"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_listed_by_verdict_and_shown_with_their_timeline() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let product = gf.json(&["product", "create", "--name", "Outcomes"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p: uuid::Uuid = product.parse().unwrap();
    let message: gf_schemas::conversation::ConversationMessage = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "kind": "started", "productId": p,
        "externalConversationId": "chat-1", "externalUserId": "u1", "email": null, "name": null,
        "occurredAt": "2026-05-18T12:00:00.000Z", "role": "user", "metadata": {}
    }))
    .unwrap();
    let purchase: gf_schemas::canonical::CanonicalEvent = serde_json::from_value(json!({
        "id": gf_schemas::canonical::CanonicalEvent::derive_id(p, "a:1"), "productId": p,
        "connectionId": uuid::Uuid::nil(), "source": "amplitude", "eventType": "purchase",
        "externalUserId": "u1", "eventAt": "2026-05-18T12:01:00.000Z", "insertId": "a:1",
        "value": 49.0, "valueType": "currency", "properties": {}, "userHints": {},
        "externalOrganizationId": null, "organizationHints": {}, "influence": "positive",
        "influenceRule": "revenue", "qualityImpactScore": null, "externalConversationId": null,
        "receivedAt": "2026-05-18T12:01:00.000Z", "mapperVersion": 1,
        "origin": {"topic": "gf.raw.v1", "partition": 0, "offset": 0, "index": 0},
        "warnings": []
    }))
    .unwrap();
    let pool = gf_runtime::db::pool(&db.url, 1).unwrap();
    let batch = gf_attributor::store::Batch {
        conversations: vec![message],
        events: vec![purchase],
    };
    gf_attributor::store::write(&pool, &batch, &gf_attributor::store::NoPublish)
        .await
        .unwrap();

    let converted = gf.json(&[
        "outcomes",
        "list",
        "--product",
        &product,
        "--verdict",
        "converted",
    ]);
    let rows = converted.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["externalConversationId"], "chat-1");
    assert_eq!(rows[0]["revenue"], 49.0);
    let none = gf.json(&[
        "outcomes",
        "list",
        "--product",
        &product,
        "--verdict",
        "refunded",
    ]);
    assert_eq!(none, json!([]));
    let id = rows[0]["conversationId"].as_str().unwrap();
    let shown = gf.run(&["outcomes", "show", id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains("verdict converted"), "{text}");
    assert!(
        text.contains("conversation started") && text.contains("purchase"),
        "{text}"
    );
    let refused = gf.run(&[
        "outcomes",
        "list",
        "--product",
        &product,
        "--verdict",
        "maybe",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("churned_silently"));
    let missing = gf.json_error(&["outcomes", "show", &uuid::Uuid::new_v4().to_string()]);
    assert!(missing.contains("no conversation"), "{missing}");
}

#[tokio::test]
async fn admin_keys_take_a_role_and_products() {
    let db = TestDb::migrated().await;
    let gf = Gf::new(&db);
    let (first, second) = (gf.product(), gf.product());
    let read = gf.json(&[
        "admin-key",
        "create",
        "--name",
        "dashboard",
        "--role",
        "read",
        "--product",
        &first,
        "--product",
        &second,
    ]);
    let mut products = vec![first.clone(), second.clone()];
    products.sort();
    assert_eq!(read["role"], "read", "{read}");
    assert_eq!(read["productIds"], json!(products));
    assert!(read["key"].as_str().unwrap().starts_with("gfa_"));
    let admin = gf.json(&["admin-key", "create", "--name", "ops"]);
    assert_eq!(
        (&admin["role"], &admin["productIds"]),
        (&json!("admin"), &Value::Null)
    );

    let listed = gf.json(&["admin-key", "list"]);
    assert_eq!(listed[0]["id"], read["id"]);
    assert_eq!(listed[0]["role"], "read");
    assert_eq!(listed[0]["productIds"], json!(products));
    assert_eq!(listed[1]["productIds"], Value::Null);
    let text = String::from_utf8(gf.run(&["admin-key", "list"]).stdout).unwrap();
    for shown in [
        "ROLE",
        "PRODUCTS",
        "read",
        "admin",
        &first,
        &second,
        "every product",
    ] {
        assert!(text.contains(shown), "{shown} missing from:\n{text}");
    }

    // An unknown product or role is refused, and no key is made.
    let unknown = uuid::Uuid::new_v4().to_string();
    let message = gf.json_error(&[
        "admin-key",
        "create",
        "--name",
        "typo",
        "--product",
        &first,
        "--product",
        &unknown,
    ]);
    assert_eq!(message, format!("no product with id {unknown}"));
    let refused = gf.run(&["admin-key", "create", "--name", "x", "--role", "owner"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("admin or read"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(gf.json(&["admin-key", "list"]).as_array().unwrap().len(), 2);

    // The audit log says what the key may do.
    let audit = gf.json(&["audit", "list"]);
    let made = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subjectId"] == read["id"])
        .expect("the key's creation is audited");
    assert_eq!(made["action"], "admin_key.create");
    assert_eq!(made["detail"]["role"], "read");
    assert_eq!(made["detail"]["productIds"], json!(products));
}
