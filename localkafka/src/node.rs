//! One KRaft node (broker and controller in one process): its settings, formatting its storage
//! once, starting it and knowing when it is ready.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::classpath::{JAVA, run};
use crate::{Classpath, Error, free_port};

/// What the broker logs once it serves clients (its port accepts connections earlier).
const READY_LINE: &str = "Kafka Server started";

/// log4j2 in its properties format, which log4j-core reads without further jars.
const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
";

/// A node of a local cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u32,
    /// `host:port` the broker listens on for clients.
    pub listen: String,
    /// `host:port` clients are told to use: `listen`, or a proxy in front of it.
    pub advertised: String,
    /// `host:port` of this node's controller listener.
    pub controller: String,
    /// Every controller of the cluster, `id@host:port,...`.
    pub voters: String,
    /// Nodes in the cluster: Kafka's internal topics are replicated this far (at most 3).
    pub nodes: u32,
    /// Settings, data (`data/`) and the broker's log (`broker.log`).
    pub dir: PathBuf,
    pub heap_mb: u32,
    /// Further broker settings, e.g. shorter failure detection in tests.
    pub extra: Vec<(String, String)>,
}

impl NodeConfig {
    /// A cluster of one on free ports; clients reach it at `advertised` (or where it listens).
    pub fn single(dir: &Path, advertised: Option<&str>) -> Result<NodeConfig, Error> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        Self::single_on(
            dir,
            &listen,
            advertised,
            &format!("127.0.0.1:{}", free_port()?),
        )
    }

    /// A cluster of one on given addresses (to start again where it ran before).
    pub fn single_on(
        dir: &Path,
        listen: &str,
        advertised: Option<&str>,
        controller: &str,
    ) -> Result<NodeConfig, Error> {
        Ok(NodeConfig {
            id: 1,
            listen: listen.to_owned(),
            advertised: advertised.unwrap_or(listen).to_owned(),
            controller: controller.to_owned(),
            voters: format!("1@{controller}"),
            nodes: 1,
            dir: dir.to_owned(),
            heap_mb: 512,
            extra: vec![],
        })
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn properties_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    /// `server.properties`. Kafka's defaults stand unless a line says why not.
    pub fn properties(&self) -> String {
        let internal_replication = self.nodes.min(3);
        let internal_min_isr = internal_replication.min(2);
        let mut settings: Vec<(&str, String)> = vec![
            ("process.roles", "broker,controller".into()),
            ("node.id", self.id.to_string()),
            ("controller.quorum.voters", self.voters.clone()),
            ("controller.listener.names", "CONTROLLER".into()),
            (
                "listeners",
                format!(
                    "PLAINTEXT://{},CONTROLLER://{}",
                    self.listen, self.controller
                ),
            ),
            (
                "advertised.listeners",
                format!("PLAINTEXT://{}", self.advertised),
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            ),
            ("inter.broker.listener.name", "PLAINTEXT".into()),
            ("log.dirs", self.data().display().to_string()),
            // Internal topics as replicated as the cluster allows (Kafka's default of 3 cannot
            // be created on fewer nodes, and then no consumer group works).
            (
                "offsets.topic.replication.factor",
                internal_replication.to_string(),
            ),
            // 50 partitions by default: slow to create on a small machine, and one is plenty.
            ("offsets.topic.num.partitions", "6".into()),
            (
                "transaction.state.log.replication.factor",
                internal_replication.to_string(),
            ),
            (
                "transaction.state.log.min.isr",
                internal_min_isr.to_string(),
            ),
            (
                "share.coordinator.state.topic.replication.factor",
                internal_replication.to_string(),
            ),
            (
                "share.coordinator.state.topic.min.isr",
                internal_min_isr.to_string(),
            ),
            (
                "default.replication.factor",
                internal_replication.to_string(),
            ),
            // Topics are made by `gf topics ensure` with their settings; a typo in a topic name
            // must fail, not create a topic with the defaults.
            ("auto.create.topics.enable", "false".into()),
            // A local group should not wait 3 s for members that are not coming.
            ("group.initial.rebalance.delay.ms", "0".into()),
        ];
        for (k, v) in &self.extra {
            settings.retain(|(name, _)| name != k);
            settings.push((k.as_str(), v.clone()));
        }
        let mut out = String::new();
        for (k, v) in settings {
            let _ = writeln!(out, "{k}={v}");
        }
        out
    }
}

/// `n` nodes on free ports, every one a controller too, under `base/node-ID`.
pub fn cluster(base: &Path, n: u32) -> Result<Vec<NodeConfig>, Error> {
    let ports = (0..n)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ports
        .iter()
        .enumerate()
        .map(|(i, (broker, controller))| {
            let id = i as u32 + 1;
            let listen = format!("127.0.0.1:{broker}");
            NodeConfig {
                id,
                advertised: listen.clone(),
                listen,
                controller: format!("127.0.0.1:{controller}"),
                voters: voters.clone(),
                nodes: n,
                dir: base.join(format!("node-{id}")),
                heap_mb: 384,
                extra: vec![],
            }
        })
        .collect())
}

/// A new cluster id: 16 random bytes in URL-safe base64, as Kafka's own `random-uuid` prints.
/// Like Kafka's, never one that starts with `-`: the storage tool would read it as an option.
pub fn new_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A node and, while it runs, its process.
pub struct Node {
    pub config: NodeConfig,
    classpath: Classpath,
    child: Option<Child>,
    /// Where the log stood when the process last started: readiness is read after it.
    ready_from: u64,
}

impl Node {
    /// Writes the node's settings and formats its storage unless it holds data already.
    pub fn prepare(
        config: NodeConfig,
        classpath: &Classpath,
        cluster_id: &str,
    ) -> Result<Node, Error> {
        std::fs::create_dir_all(&config.dir)?;
        std::fs::write(config.properties_path(), config.properties())?;
        std::fs::write(config.dir.join("log4j2.properties"), LOG4J2)?;
        if !config.data().join("meta.properties").exists() {
            run(
                classpath
                    .java(128)
                    .arg("kafka.tools.StorageTool")
                    .args(["format", "-t", cluster_id, "-c"])
                    .arg(config.properties_path()),
                &format!("formatting the storage of Kafka node {}", config.id),
                JAVA,
            )?;
        }
        Ok(Node {
            config,
            classpath: classpath.clone(),
            child: None,
            ready_from: 0,
        })
    }

    /// Prepares and starts a node, returning once it serves clients.
    pub fn start(
        config: NodeConfig,
        classpath: &Classpath,
        cluster_id: &str,
        timeout: Duration,
    ) -> Result<Node, Error> {
        let mut node = Self::prepare(config, classpath, cluster_id)?;
        node.launch(timeout)?;
        Ok(node)
    }

    /// Starts the process on the node's data (again, after a stop or a kill) and waits until it
    /// logs that it serves clients.
    pub fn launch(&mut self, timeout: Duration) -> Result<(), Error> {
        self.spawn()?;
        self.wait_ready(timeout)
    }

    /// Starts the process without waiting (several nodes of a cluster must start together: none
    /// is ready before a majority of controllers runs).
    pub fn spawn(&mut self) -> Result<(), Error> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.log())?;
        let mut command = self.classpath.java(self.config.heap_mb);
        command
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.config.dir.join("log4j2.properties").display()
            ))
            .arg("kafka.Kafka")
            .arg(self.config.properties_path())
            .current_dir(&self.config.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the caller does not kill it halfway.
            .process_group(0);
        self.ready_from = std::fs::metadata(self.config.log()).map_or(0, |m| m.len());
        let child = command.spawn().map_err(|source| Error::Spawn {
            what: JAVA.into(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }
}

impl Node {
    /// Waits until the process started last logs that it serves clients.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logged_ready()? {
                return Ok(());
            }
            let exited = match &mut self.child {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.child = None;
                return Err(Error::Exited {
                    node: self.config.id,
                    log: self.config.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::NotStarted {
                    node: self.config.id,
                    seconds: timeout.as_secs(),
                    log: self.config.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logged_ready(&self) -> Result<bool, Error> {
        let mut log = std::fs::File::open(self.config.log())?;
        log.seek(SeekFrom::Start(self.ready_from))?;
        let mut text = Vec::new();
        log.read_to_end(&mut text)?;
        Ok(String::from_utf8_lossy(&text).contains(READY_LINE))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL: nothing is flushed or handed over; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, a controlled shutdown (leadership handed over first); SIGKILL past `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Leaves the process running after this value is gone (the local infrastructure outlives
    /// `cargo xtask infra up`); returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting<'a>(properties: &'a str, key: &str) -> Option<&'a str> {
        properties
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn a_single_node_advertises_its_proxy_and_replicates_internal_topics_once() {
        let config = NodeConfig::single_on(
            Path::new("/tmp/n"),
            "127.0.0.1:9000",
            Some("127.0.0.1:9100"),
            "127.0.0.1:9001",
        )
        .unwrap();
        let p = config.properties();
        assert_eq!(
            setting(&p, "advertised.listeners"),
            Some("PLAINTEXT://127.0.0.1:9100")
        );
        assert_eq!(
            setting(&p, "listeners"),
            Some("PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9001")
        );
        assert_eq!(
            setting(&p, "controller.quorum.voters"),
            Some("1@127.0.0.1:9001")
        );
        assert_eq!(setting(&p, "offsets.topic.replication.factor"), Some("1"));
        assert_eq!(setting(&p, "transaction.state.log.min.isr"), Some("1"));
        assert_eq!(setting(&p, "log.dirs"), Some("/tmp/n/data"));
    }

    #[test]
    fn a_cluster_of_three_shares_its_voters_and_replicates_internal_topics_three_times() {
        let nodes = cluster(Path::new("/tmp/c"), 3).unwrap();
        assert_eq!(nodes.len(), 3);
        let voters = setting(&nodes[0].properties(), "controller.quorum.voters")
            .unwrap()
            .to_owned();
        assert_eq!(voters.split(',').count(), 3);
        for (i, node) in nodes.iter().enumerate() {
            let p = node.properties();
            assert_eq!(setting(&p, "node.id"), Some((i + 1).to_string().as_str()));
            assert_eq!(
                setting(&p, "controller.quorum.voters"),
                Some(voters.as_str())
            );
            assert_eq!(setting(&p, "offsets.topic.replication.factor"), Some("3"));
            assert_eq!(setting(&p, "transaction.state.log.min.isr"), Some("2"));
        }
    }

    #[test]
    fn extra_settings_replace_defaults() {
        let mut config = NodeConfig::single(Path::new("/tmp/n"), None).unwrap();
        config.extra = vec![("auto.create.topics.enable".into(), "true".into())];
        let p = config.properties();
        assert_eq!(setting(&p, "auto.create.topics.enable"), Some("true"));
        assert_eq!(p.matches("auto.create.topics.enable").count(), 1);
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, new_cluster_id());
        // One in 64 random ids starts with '-', which `kafka-storage format -t` takes for an
        // option (a test run failed on it).
        assert!((0..2_000).all(|_| !new_cluster_id().starts_with('-')));
    }
}
