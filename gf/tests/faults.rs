//! Fault injection across the whole pipeline: each stage runs as its own `gf run` process, load
//! flows through the receiver's HTTP endpoint, and the test breaks the broker, PostgreSQL or a
//! stage on purpose. Every scenario ends with counts, not "no error": events sent, acknowledged
//! with 200, stored in PostgreSQL, and duplicates the ids absorbed. Each writes its counts to
//! `target/reliability/SCENARIO.json`, which RELIABILITY.md quotes.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use gf_tests::net::{PrivateBroker, PrivateCluster, TcpProxy, free_local_addr};
use gf_tests::{infra, postgres_addr};
use support::{Load, Pipeline, one_at_a_time, pause};

/// The broker becomes unreachable under load (every connection dropped, new ones closed at once)
/// for 8 s: the receiver answers 503, never 200, for what the broker did not acknowledge; the
/// stages wait with their consumers, and once it is back every acknowledged event reaches
/// PostgreSQL once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_unreachable_under_load() {
    let _alone = one_at_a_time().await;
    let listen = free_local_addr();
    let proxy = TcpProxy::start(listen.parse().unwrap()).await;
    let brokers = proxy.addr.to_string();
    let _broker = PrivateBroker::behind(&listen, &brokers);
    let mut pipeline = Pipeline::new("broker_unreachable", None, &brokers).await;
    let product = pipeline.product();
    let path = pipeline.connection(&product);
    let (load, handles) = pipeline.start_under_load(&path).await;
    through_broker_outage(&load, handles, &mut |up| {
        if up { proxy.restore() } else { proxy.cut() }
    })
    .await;
    let outcome = pipeline
        .outcome("broker_unreachable", &load, &brokers)
        .await;
    outcome.assert_exactly_once();
    for stage in ["normalizer", "attributor"] {
        assert_eq!(
            pipeline.log_lines(stage, "stage failed"),
            0,
            "{stage} dropped its consumer instead of waiting for the broker"
        );
    }
}

/// The broker process is killed with SIGKILL under the whole pipeline's load and started again on
/// its data: 503 while it is gone, never 200 for what it did not store, 200 again after the
/// restart, every acknowledged event in PostgreSQL once, and no stage needed a restart (each
/// reconnects, renewing its producer where the old one cannot go on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_under_load() {
    let _alone = one_at_a_time().await;
    let mut broker = PrivateBroker::start();
    let mut pipeline = Pipeline::new("broker_killed", None, &broker.address).await;
    let product = pipeline.product();
    let path = pipeline.connection(&product);
    let (load, handles) = pipeline.start_under_load(&path).await;
    through_broker_outage(&load, handles, &mut |up| {
        // Starting a JVM takes seconds: off the async worker's queue meanwhile.
        tokio::task::block_in_place(|| if up { broker.restart() } else { broker.kill() })
    })
    .await;
    let outcome = pipeline
        .outcome("broker_killed", &load, &broker.address)
        .await;
    outcome.assert_exactly_once();
    assert_eq!(pipeline.exited(), Vec::<&str>::new(), "stages gave up");
    assert_drained_by_kafkas_own_tool(&broker.address, pipeline.prefix()).await;
}

/// Load for 4 s, the broker gone for 8 s (`set_up(false)`), back for 12 s, then the load stops:
/// 200s before, 503s meanwhile, 200s again after. (That nothing was answered 200 without being
/// stored is for the counts to show.)
async fn through_broker_outage(
    load: &Load,
    handles: Vec<tokio::task::JoinHandle<()>>,
    set_up: &mut dyn FnMut(bool),
) {
    pause(4).await;
    let before = load.mark();
    set_up(false);
    pause(8).await;
    let during = load.mark();
    set_up(true);
    pause(12).await;
    let after = load.mark();
    load.finish(handles).await;
    assert!(before.contains_key("200"), "before: {before:?}");
    assert!(
        during.contains_key("503"),
        "the receiver did not refuse while the broker was gone: {during:?}"
    );
    assert!(
        after.contains_key("200"),
        "no recovery after the broker came back: {after:?}"
    );
}

/// PostgreSQL goes away: the receiver keeps accepting for connections it has verified and
/// answers 500 for others; the attributor stalls without losing or skipping anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load() {
    let _alone = one_at_a_time().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("postgres_stopped", None, &brokers).await;
    // The stages reach PostgreSQL through the proxy; the test itself does not.
    let through_proxy = pipeline
        .db
        .url
        .replace(&postgres_addr().to_string(), &proxy.addr.to_string());
    assert_ne!(through_proxy, pipeline.db.url);
    pipeline
        .env
        .push(("DATABASE_URL".into(), through_proxy.clone()));
    let product = pipeline.product();
    let cached = pipeline.connection(&product);
    let uncached = pipeline.connection(&product);
    let (load, handles) = pipeline.start_under_load(&cached).await;
    pause(4).await;
    let before = load.mark();

    proxy.cut();
    pause(2).await;
    let stalled_at = pipeline.stored_rows().await;
    let http = reqwest::Client::new();
    let unknown = http
        .post(format!("http://{}{uncached}", pipeline.addr))
        .body(r#"{"events":[{"event_type":"x","user_id":"u","insert_id":"never"}]}"#)
        .send()
        .await
        .unwrap()
        .status();
    pause(6).await;
    let during = load.mark();
    let stalled_until = pipeline.stored_rows().await;

    proxy.restore();
    pause(8).await;
    load.finish(handles).await;
    let outcome = pipeline.outcome("postgres_stopped", &load, &brokers).await;
    assert!(before.contains_key("200"), "before: {before:?}");
    assert_eq!(unknown, 500, "an unverified connection without PostgreSQL");
    assert!(
        during.get("200").is_some_and(|n| *n > 10),
        "the cached connection was not served without PostgreSQL: {during:?}"
    );
    assert_eq!(
        stalled_at, stalled_until,
        "rows were stored while PostgreSQL was unreachable?"
    );
    outcome.assert_exactly_once();
    assert!(outcome.stored_rows > stalled_until as u64);
}

/// Every stage is killed with SIGKILL mid-stream and started again, one after the other, under
/// load: no acknowledged event is missing, and what was processed twice is absorbed by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_killed_mid_stream() {
    let _alone = one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("stages_killed", None, &brokers).await;
    let product = pipeline.product();
    let path = pipeline.connection(&product);
    let (load, handles) = pipeline.start_under_load(&path).await;
    pause(4).await;
    let mut phases = BTreeMap::new();
    for stage in ["normalizer", "attributor", "receiver"] {
        pipeline.kill(stage);
        // The new member joins at once; Kafka evicts the dead one after the session timeout.
        pause(2).await;
        pipeline.start(stage);
        if stage == "receiver" {
            pipeline.wait_ready().await;
        }
        pause(6).await;
        phases.insert(stage, load.mark());
    }
    load.finish(handles).await;
    let outcome = pipeline.outcome("stages_killed", &load, &brokers).await;
    for (stage, answers) in &phases {
        assert!(
            answers.contains_key("200"),
            "nothing accepted around the {stage} kill: {answers:?}"
        );
    }
    assert!(
        outcome.answered("error") > 0 || outcome.answered("503") > 0,
        "the receiver's death went unnoticed? {outcome:?}"
    );
    outcome.assert_exactly_once();
}

/// How long a phase with a broker killed is watched: longer than intake can pause while the dead
/// broker is fenced (its 6 s session timeout, then produce timeouts and backoff; up to 12 s seen),
/// so the phase shows whether 200s come back while the broker is still down.
const KILLED_PHASE_SECS: u64 = 20;

/// Three Kafka nodes (each broker and controller), every topic with three replicas and
/// `min.insync.replicas=2`, producers with `acks=all` and idempotence, load through the receiver:
/// the leader of the raw topic's first partition is killed with SIGKILL and later started again,
/// then another node is killed and started again, then all three restart one after the other.
/// Every event answered 200 is in PostgreSQL once and in the attributed topic, no stage needed a
/// restart, and the longest pauses in intake and in attributed output are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_lose_one_under_load() {
    let _alone = one_at_a_time().await;
    let mut cluster = tokio::task::block_in_place(|| {
        // Fenced within 6 s of its last heartbeat, so partitions move on sooner than the
        // default 9 s.
        PrivateCluster::start(
            3,
            &[
                ("broker.session.timeout.ms", "6000"),
                ("broker.heartbeat.interval.ms", "1000"),
            ],
        )
    });
    let brokers = cluster.bootstrap();
    let mut pipeline = Pipeline::with_env(
        "three_brokers",
        None,
        &brokers,
        &[("GF_TOPIC_REPLICATION", "3"), ("GF_TOPIC_MIN_INSYNC", "2")],
    )
    .await;
    let topics = pipeline.topics();
    assert_replicated_as_asked(&brokers, &topics.raw);
    let product = pipeline.product();
    let path = pipeline.connection(&product);
    let (load, handles) = pipeline.start_under_load(&path).await;
    pause(5).await;
    let mut phases = BTreeMap::new();
    phases.insert("0 before", load.mark());

    let leader = leader_of(&brokers, &topics.raw, 0);
    tokio::task::block_in_place(|| cluster.node(leader).kill());
    pause(KILLED_PHASE_SECS).await;
    phases.insert("1 raw leader killed", load.mark());
    restart_node(&mut cluster, leader, &brokers, &topics).await;
    phases.insert("2 raw leader back", load.mark());

    let other = (1..=3).find(|id| *id != leader).unwrap();
    tokio::task::block_in_place(|| cluster.node(other).kill());
    pause(KILLED_PHASE_SECS).await;
    phases.insert("3 another killed", load.mark());
    restart_node(&mut cluster, other, &brokers, &topics).await;
    phases.insert("4 another back", load.mark());

    for id in 1..=3 {
        tokio::task::block_in_place(|| cluster.node(id).stop(Duration::from_secs(60)));
        restart_node(&mut cluster, id, &brokers, &topics).await;
    }
    phases.insert("5 rolling restart", load.mark());
    pause(3).await;
    load.finish(handles).await;

    let outcome = pipeline.outcome("three_brokers", &load, &brokers).await;
    let attributed = support::read_all(&brokers, &topics.attributed).await;
    let attributed_ids: HashSet<String> = attributed
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).ok())
        .filter_map(|v| v["insertId"].as_str().map(str::to_owned))
        .collect();
    let acked = load.acked.lock().unwrap().clone();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| {
            !attributed_ids.contains(*id) && !attributed_ids.contains(&format!("amplitude:{id}"))
        })
        .collect();
    let mut output_at: Vec<i64> = attributed.iter().filter_map(|r| r.timestamp_ms).collect();
    output_at.sort_unstable();
    let output_pause_ms = output_at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let report = serde_json::json!({
        "scenario": "three_brokers",
        "killed_first": leader,
        "killed_second": other,
        "longest_intake_pause_ms": load.longest_intake_pause().as_millis() as u64,
        "longest_attributed_output_pause_ms": output_pause_ms,
        "answers_by_phase": phases,
    });
    println!("{report:#}");
    std::fs::write(
        gf_tests::workspace_root().join("target/reliability/three_brokers_pauses.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();

    outcome.assert_exactly_once();
    assert!(
        missing.is_empty(),
        "{} acknowledged events not in the attributed topic, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(pipeline.exited(), Vec::<&str>::new(), "stages gave up");
    for (phase, answers) in &phases {
        assert!(
            answers.contains_key("200"),
            "nothing accepted in phase {phase}: {answers:?}"
        );
    }
    assert_drained_by_kafkas_own_tool(&brokers, pipeline.prefix()).await;
}

/// Kafka's own consumer-group command (from the broker's classpath, not our client) reports lag
/// 0 on every partition of the pipeline's groups once everything acknowledged is stored.
async fn assert_drained_by_kafkas_own_tool(brokers: &str, prefix: &str) {
    let classpath = gf_tests::net::kafka_classpath();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<_> = tokio::task::block_in_place(|| classpath.describe_groups(brokers))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|r| r.group.starts_with(&format!("{prefix}-")))
            .collect();
        let groups: HashSet<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        let drained = groups.len() >= 2 && rows.iter().all(|r| r.drained());
        if drained {
            println!(
                "kafka-consumer-groups: {} partitions of {groups:?} at lag 0",
                rows.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained by Kafka's own count: {rows:#?}"
        );
        pause(2).await;
    }
}

/// Starts node `id` again on its data and waits until every partition of the pipeline's topics
/// has all three replicas in sync again, so the next failure does not hit an under-replicated
/// partition.
async fn restart_node(
    cluster: &mut PrivateCluster,
    id: u32,
    brokers: &str,
    topics: &gf_runtime::topics::Topics,
) {
    tokio::task::block_in_place(|| {
        cluster
            .node(id)
            .launch(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = topics
            .names()
            .into_iter()
            .chain(["__consumer_offsets"])
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !fully_in_sync(brokers, &names, 3) {
            assert!(
                Instant::now() < deadline,
                "replicas did not catch up after node {id} came back"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    pause(3).await;
}

fn metadata_client(brokers: &str) -> BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a metadata client")
}

/// The Kafka node that leads `partition` of `topic`.
fn leader_of(brokers: &str, topic: &str, partition: i32) -> u32 {
    let metadata = metadata_client(brokers)
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let leader = metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .expect("the partition")
        .leader();
    u32::try_from(leader).expect("a partition with a leader")
}

fn fully_in_sync(brokers: &str, topics: &[&str], replicas: usize) -> bool {
    let client = metadata_client(brokers);
    topics.iter().all(|topic| {
        client
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .is_ok_and(|m| {
                m.topics().iter().all(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.isr().len() == replicas)
                })
            })
    })
}

/// `gf topics ensure` made the topic with the replication and `min.insync.replicas` asked for.
fn assert_replicated_as_asked(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let metadata = metadata_client(brokers)
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    for p in metadata.topics()[0].partitions() {
        assert_eq!(p.replicas().len(), 3, "partition {} of {topic}", p.id());
    }
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("admin");
    let configs = futures_executor(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
    )
    .expect("describe configs");
    let config = configs[0].as_ref().expect("the topic's config");
    assert_eq!(
        config
            .get("min.insync.replicas")
            .and_then(|e| e.value.as_deref()),
        Some("2")
    );
}

fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}
