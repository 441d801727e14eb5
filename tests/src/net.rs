//! Failures on demand: a TCP proxy that can be cut, and Apache Kafka brokers of a test's own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gf_localkafka::{Classpath, Node, NodeConfig, new_cluster_id};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A `127.0.0.1:PORT` no one listens on at the moment (for a server a test starts).
pub fn free_local_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("its address").port();
    format!("127.0.0.1:{port}")
}

/// Forwards TCP connections to `target` until [`TcpProxy::cut`]: then every open connection is
/// dropped and new ones are closed at once, as if the server were gone.
pub struct TcpProxy {
    pub addr: SocketAddr,
    state: watch::Sender<(bool, u64)>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel((false, 0u64));
        let states = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut watcher = states.subscribe();
                let (cut, generation) = *watcher.borrow();
                if cut {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watcher.wait_for(|(_, g)| *g != generation) => {}
                    }
                });
            }
        });
        TcpProxy { addr, state }
    }

    pub fn cut(&self) {
        self.state.send_modify(|(cut, generation)| {
            *cut = true;
            *generation += 1;
        });
    }

    pub fn restore(&self) {
        self.state.send_modify(|(cut, _)| *cut = false);
    }
}

/// An Apache Kafka node of one test's own, to stop, kill and start again on the same data.
pub struct PrivateBroker {
    /// Where clients reach it (what it advertises).
    pub address: String,
    node: Node,
}

/// A cold JVM on a busy 2-core machine running other tests.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The broker's jars, as `cargo xtask infra up` left them.
pub fn kafka_classpath() -> Classpath {
    Classpath::open(&Classpath::default_dir(&crate::workspace_root()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn scratch_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gf-{what}-{}", uuid::Uuid::new_v4().simple()))
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        Self::start_with(None)
    }

    /// Listening on `listen` and advertising `advertised`: with a [`TcpProxy`] at `advertised`
    /// forwarding to `listen`, every client connection goes through the proxy.
    pub fn behind(listen: &str, advertised: &str) -> PrivateBroker {
        let dir = scratch_dir("kafka");
        let controller = free_local_addr();
        let config = NodeConfig::single_on(&dir, listen, Some(advertised), &controller)
            .expect("a node's settings");
        Self::launch(config)
    }

    fn start_with(advertised: Option<&str>) -> PrivateBroker {
        let config =
            NodeConfig::single(&scratch_dir("kafka"), advertised).expect("a node's settings");
        Self::launch(config)
    }

    fn launch(config: NodeConfig) -> PrivateBroker {
        let address = config.advertised.clone();
        let node = Node::start(config, &kafka_classpath(), &new_cluster_id(), START_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        PrivateBroker { address, node }
    }

    /// Starts the broker again on the same address and data.
    pub fn restart(&mut self) {
        self.node
            .launch(START_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL: whatever it had not written is lost to it, as in a crash.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// A controlled shutdown (SIGTERM).
    pub fn stop(&mut self) {
        self.node.stop(Duration::from_secs(30));
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.node.kill();
        let _ = std::fs::remove_dir_all(&self.node.config.dir);
    }
}

/// A Kafka cluster of a test's own: `n` KRaft nodes, each broker and controller, on this machine.
pub struct PrivateCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl PrivateCluster {
    /// Starts `n` nodes and returns once every one serves clients. `extra` settings apply to all
    /// (e.g. faster failure detection).
    pub fn start(n: u32, extra: &[(&str, &str)]) -> PrivateCluster {
        let dir = scratch_dir("kafka-cluster");
        let classpath = kafka_classpath();
        let cluster_id = new_cluster_id();
        let mut nodes: Vec<Node> = gf_localkafka::cluster(&dir, n)
            .expect("the nodes' settings")
            .into_iter()
            .map(|mut config| {
                config.extra = extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                Node::prepare(config, &classpath, &cluster_id).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        // Together: no node is ready before a majority of the controllers runs.
        for node in &mut nodes {
            node.spawn().unwrap_or_else(|e| panic!("{e}"));
        }
        for node in &mut nodes {
            node.wait_ready(START_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        PrivateCluster { nodes, dir }
    }

    /// `host:port,...` of every broker, for `KAFKA_BROKERS`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.config.listen.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node with Kafka node id `id`.
    pub fn node(&mut self, id: u32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.config.id == id)
            .expect("a node of this cluster")
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
