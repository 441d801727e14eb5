//! The pipeline as separate `gf run` processes, load through the receiver's HTTP endpoint, and
//! the counts a scenario ends with. Shared by the fault and security tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gf_tests::{TestDb, infra, json_output, read_topic, unique_topic_prefix, workspace_root};
use serde_json::{Value, json};

/// One scenario at a time: three pipelines of processes at once starve each other on a small
/// machine, and a scenario's counts then measure the machine, not the fault.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SCENARIO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SCENARIO.lock().await
}

pub const STAGES: [&str; 3] = ["receiver", "normalizer", "attributor"];

/// The pipeline's stages as separate processes, each logging to a file of its own.
pub struct Pipeline {
    pub db: TestDb,
    pub env: Vec<(String, String)>,
    pub addr: String,
    pub logs: PathBuf,
    children: HashMap<&'static str, Child>,
    prefix: String,
}

impl Pipeline {
    /// `database_url` and `brokers` are what the stages connect to (a proxy, a private broker).
    pub async fn new(scenario: &str, database_url: Option<String>, brokers: &str) -> Pipeline {
        Self::with_env(scenario, database_url, brokers, &[]).await
    }

    /// [`Pipeline::new`] with further variables for every command (`gf topics ensure` too).
    pub async fn with_env(
        scenario: &str,
        database_url: Option<String>,
        brokers: &str,
        extra: &[(&str, &str)],
    ) -> Pipeline {
        let db = TestDb::migrated().await;
        let infra = infra();
        let addr = gf_tests::net::free_local_addr();
        let prefix = unique_topic_prefix();
        let mut env: Vec<(String, String)> = infra.env.clone().into_iter().collect();
        env.extend(
            [
                (
                    "DATABASE_URL",
                    database_url.unwrap_or_else(|| db.url.clone()),
                ),
                ("KAFKA_BROKERS", brokers.to_owned()),
                ("GF_TOPIC_PREFIX", prefix.clone()),
                ("GF_RECEIVER_ADDR", addr.clone()),
                ("GF_CONSOLE_ADDR", gf_tests::net::free_local_addr()),
                ("GF_PUBLIC_URL", format!("http://{addr}")),
                ("GF_KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
                ("GF_SCRYPT_LOG_N", "12".into()),
                ("GF_PRODUCE_TIMEOUT_MS", "3000".into()),
                // The receiver's line per stored request names its raw partition and offset, so
                // a missing acknowledged request can be followed to where the broker put it.
                ("RUST_LOG", "info,gf_receiver::handler=debug".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let logs = workspace_root().join("target/faults").join(scenario);
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        let pipeline = Pipeline {
            db,
            env,
            addr,
            logs,
            children: HashMap::new(),
            prefix,
        };
        pipeline.gf(&["topics", "ensure"]);
        pipeline
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gf"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs a control-plane command against the real database (not a proxy) and returns its
    /// JSON answer.
    pub fn gf(&self, args: &[&str]) -> Value {
        json_output(
            self.command(&[&["--json"], args].concat())
                .env("DATABASE_URL", &self.db.url),
        )
    }

    /// A new Amplitude connection; returns the path its URL points at.
    pub fn connection(&self, product: &str) -> String {
        let url = self.gf(&[
            "connection",
            "create",
            "--product",
            product,
            "--provider",
            "amplitude",
        ])["url"]
            .as_str()
            .unwrap()
            .to_owned();
        url.strip_prefix(&format!("http://{}", self.addr))
            .expect("the URL uses GF_PUBLIC_URL")
            .to_owned()
    }

    /// The topic prefix, which starts the stages' group names too.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pipeline's topic names.
    pub fn topics(&self) -> gf_runtime::topics::Topics {
        gf_runtime::topics::Topics::new(&self.prefix)
    }

    pub fn product(&self) -> String {
        self.gf(&["product", "create", "--name", "faults"])["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn start(&mut self, stage: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{stage}.log")))
            .unwrap();
        let child = self
            .command(&["run", stage])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a stage");
        self.children.insert(stage, child);
    }

    pub fn start_all(&mut self) {
        for stage in STAGES {
            self.start(stage);
        }
    }

    /// Lines of `stage`'s log that contain `needle`.
    pub fn log_lines(&self, stage: &str, needle: &str) -> usize {
        std::fs::read_to_string(self.logs.join(format!("{stage}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Stages that exited on their own (none should: a stage waits out an outage).
    pub fn exited(&mut self) -> Vec<&'static str> {
        self.children
            .iter_mut()
            .filter_map(|(stage, child)| child.try_wait().ok().flatten().map(|_| *stage))
            .collect()
    }

    pub fn pid(&self, stage: &str) -> u32 {
        self.children[stage].id()
    }

    /// SIGKILL: no shutdown hook runs, whatever was in flight is cut off.
    pub fn kill(&mut self, stage: &str) {
        let mut child = self.children.remove(stage).expect("a running stage");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the stages, and once the receiver is ready, load on the URL `path`.
    pub async fn start_under_load(
        &mut self,
        path: &str,
    ) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        self.start_all();
        self.wait_ready().await;
        Load::start(format!("http://{}{path}", self.addr))
    }

    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the receiver never got ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How many of `insert_ids` are stored, and whether any is stored twice.
    pub async fn stored(&self, insert_ids: &[String]) -> (usize, i64) {
        let client = self.db.client().await;
        let ids: Vec<String> = insert_ids
            .iter()
            .map(|i| format!("amplitude:{i}"))
            .collect();
        let row = client
            .query_one(
                "SELECT count(DISTINCT insert_id), count(*) - count(DISTINCT insert_id)
                   FROM business_events WHERE insert_id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) as usize, row.get(1))
    }

    pub async fn stored_rows(&self) -> i64 {
        let client = self.db.client().await;
        client
            .query_one("SELECT count(*) FROM business_events", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until every acknowledged event is stored, then counts.
    pub async fn outcome(&self, scenario: &str, load: &Load, brokers: &str) -> Outcome {
        let acked = load.acked.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(180);
        let (mut stored, mut duplicate_rows) = self.stored(&acked).await;
        while stored < acked.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (stored, duplicate_rows) = self.stored(&acked).await;
        }
        // Duplicates the ids absorbed: canonical records beyond one per event.
        let records = read_all(brokers, &self.topics().events).await;
        let ids: HashSet<String> = records
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        let missing = if stored < acked.len() {
            self.where_missing(load, &records, brokers).await
        } else {
            Vec::new()
        };
        let outcome = Outcome {
            scenario: scenario.to_owned(),
            stored_in: "business_events",
            sent: load.sent.load(Ordering::SeqCst),
            acknowledged: acked.len() as u64,
            stored_of_acknowledged: stored as u64,
            stored_rows: self.stored_rows().await as u64,
            duplicate_rows: duplicate_rows as u64,
            duplicates_absorbed: (records.len() - ids.len()) as u64,
            answers: load.answers.lock().unwrap().clone(),
            missing,
        };
        outcome.write();
        outcome
    }

    /// For acknowledged events that are not stored, which stage lost them: the raw record that
    /// holds them and how many canonical records of them exist, one line per raw record.
    async fn where_missing(
        &self,
        load: &Load,
        canonical: &[gf_tests::ReadRecord],
        brokers: &str,
    ) -> Vec<String> {
        let acked = load.acked.lock().unwrap().clone();
        let client = self.db.client().await;
        let prefixed: Vec<String> = acked.iter().map(|i| format!("amplitude:{i}")).collect();
        let stored: HashSet<String> = client
            .query(
                "SELECT insert_id FROM business_events WHERE insert_id = ANY($1)",
                &[&prefixed],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let missing: HashSet<&str> = acked
            .iter()
            .filter(|id| !stored.contains(&format!("amplitude:{id}")))
            .map(String::as_str)
            .collect();
        let canonical_ids: Vec<String> = canonical
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok())
            .filter_map(|v| v["insertId"].as_str().map(str::to_owned))
            .collect();
        let raw = read_all(brokers, &self.topics().raw).await;
        let mut out = Vec::new();
        let mut in_raw: HashSet<String> = HashSet::new();
        for record in &raw {
            let Ok(batch) = serde_json::from_slice::<Value>(&record.value) else {
                continue;
            };
            let ids: Vec<&str> = batch["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["insert_id"].as_str())
                .filter(|id| missing.contains(id))
                .collect();
            if let Some(first) = ids.first() {
                in_raw.extend(ids.iter().map(|id| (*id).to_owned()));
                let copies = canonical_ids
                    .iter()
                    .filter(|c| {
                        ids.iter()
                            .any(|id| c.as_str() == *id || c.ends_with(&format!(":{id}")))
                    })
                    .count();
                out.push(format!(
                    "raw partition {} offset {}: {} missing (e.g. {first}), {copies} canonical records of them",
                    record.partition,
                    record.offset,
                    ids.len()
                ));
            }
        }
        let dead = read_all(brokers, &self.topics().deadletter).await;
        let dead_with_missing = dead
            .iter()
            .filter(|r| {
                let text = String::from_utf8_lossy(&r.value);
                missing.iter().any(|id| text.contains(id))
            })
            .count();
        out.push(format!(
            "{dead_with_missing} of {} dead letters hold missing events",
            dead.len()
        ));
        let nowhere: Vec<&&str> = missing.iter().filter(|id| !in_raw.contains(**id)).collect();
        if !nowhere.is_empty() {
            out.push(format!(
                "{} missing ones not in the raw topic at all",
                nowhere.len()
            ));
        }
        // Each missing batch's request, and what the receiver logged when it stored it.
        let receiver_log =
            std::fs::read_to_string(self.logs.join("receiver.log")).unwrap_or_default();
        let request_ids = load.request_ids.lock().unwrap().clone();
        let mut firsts: Vec<String> = nowhere
            .iter()
            .filter_map(|id| id.rsplit_once("-e").map(|(batch, _)| format!("{batch}-e0")))
            .collect();
        firsts.sort();
        firsts.dedup();
        for first in firsts {
            let Some(request_id) = request_ids.get(&first) else {
                out.push(format!("batch {first}: no request id answered"));
                continue;
            };
            let logged = receiver_log
                .lines()
                .find(|l| l.contains(request_id.as_str()) && l.contains("ingest request stored"))
                .map(|l| {
                    l.rsplit_once("ingest request stored")
                        .map_or(l, |(_, rest)| rest)
                });
            out.push(format!(
                "batch {first}: request {request_id}, receiver logged: {}",
                logged.unwrap_or("nothing stored")
            ));
        }
        out
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub scenario: String,
    /// Where `stored_*` and `duplicate_rows` were counted.
    pub stored_in: &'static str,
    pub sent: u64,
    pub acknowledged: u64,
    pub stored_of_acknowledged: u64,
    pub stored_rows: u64,
    pub duplicate_rows: u64,
    pub duplicates_absorbed: u64,
    /// HTTP answers by status ("error" when no answer came).
    pub answers: BTreeMap<String, u64>,
    /// Where the acknowledged events that are not stored were last seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl Outcome {
    pub fn write(&self) {
        let dir = workspace_root().join("target/reliability");
        std::fs::create_dir_all(&dir).unwrap();
        let text = serde_json::to_string_pretty(self).unwrap();
        println!("{text}");
        std::fs::write(dir.join(format!("{}.json", self.scenario)), text).unwrap();
    }

    /// Nothing acknowledged is missing, nothing is stored twice.
    pub fn assert_exactly_once(&self) {
        assert!(self.acknowledged > 0, "{self:?}");
        assert_eq!(
            self.stored_of_acknowledged, self.acknowledged,
            "acknowledged events missing: {self:?}"
        );
        assert_eq!(self.duplicate_rows, 0, "{self:?}");
    }

    pub fn answered(&self, status: &str) -> u64 {
        self.answers.get(status).copied().unwrap_or(0)
    }
}

/// Batches of Amplitude events with unique insert ids, posted by a few concurrent senders.
#[derive(Default)]
pub struct Load {
    pub sent: AtomicU64,
    pub acked: Mutex<Vec<String>>,
    pub answers: Mutex<BTreeMap<String, u64>>,
    /// Answers seen since [`Load::mark`], to check what a phase of the scenario got.
    pub since_mark: Mutex<BTreeMap<String, u64>>,
    pub stop: AtomicBool,
    /// When each 200 came, to find the longest pause in intake.
    pub accepted_at: Mutex<Vec<Instant>>,
    /// The receiver's request id of each acknowledged batch, by the batch's first insert id.
    pub request_ids: Mutex<HashMap<String, String>>,
}

pub const SENDERS: usize = 3;
pub const BATCH: usize = 20;

impl Load {
    pub fn start(url: String) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load::default());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let handles = (0..SENDERS)
            .map(|sender| {
                let (load, http, url) = (load.clone(), http.clone(), url.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !load.stop.load(Ordering::SeqCst) {
                        n += 1;
                        let ids: Vec<String> =
                            (0..BATCH).map(|i| format!("s{sender}-b{n}-e{i}")).collect();
                        load.post(&http, &url, ids).await;
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    }
                })
            })
            .collect();
        (load, handles)
    }

    async fn post(&self, http: &reqwest::Client, url: &str, ids: Vec<String>) {
        let events: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"event_type": "purchase", "user_id": format!("u-{id}"), "insert_id": id,
                       "time": 1_779_105_600_000u64, "revenue": 9.5})
            })
            .collect();
        self.sent.fetch_add(ids.len() as u64, Ordering::SeqCst);
        let (answer, request_id) = match http
            .post(url)
            .json(&json!({ "events": events }))
            .send()
            .await
        {
            Ok(r) => (
                r.status().as_u16().to_string(),
                r.headers()
                    .get(gf_receiver::handler::REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ),
            Err(_) => ("error".to_owned(), None),
        };
        if answer == "200" {
            if let Some(request_id) = request_id {
                self.request_ids
                    .lock()
                    .unwrap()
                    .insert(ids[0].clone(), request_id);
            }
            self.acked.lock().unwrap().extend(ids);
            self.accepted_at.lock().unwrap().push(Instant::now());
        }
        *self
            .answers
            .lock()
            .unwrap()
            .entry(answer.clone())
            .or_default() += 1;
        *self.since_mark.lock().unwrap().entry(answer).or_default() += 1;
    }

    /// The longest time between two 200 answers (intake stalled for that long).
    pub fn longest_intake_pause(&self) -> Duration {
        let mut at = self.accepted_at.lock().unwrap().clone();
        at.sort();
        at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }

    /// Answers since the last mark; starts a new phase.
    pub fn mark(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.since_mark.lock().unwrap())
    }

    pub async fn finish(&self, handles: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in handles {
            handle.await.unwrap();
        }
    }
}

/// [`read_topic`] off the async runtime's threads.
pub async fn read_all(brokers: &str, topic: &str) -> Vec<gf_tests::ReadRecord> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic(&brokers, &topic))
        .await
        .unwrap()
}

pub async fn pause(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}
