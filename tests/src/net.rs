//! Failures on demand: a TCP proxy that can be cut, and a broker process of a test's own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A tansu broker of one test's own, to stop and start at will.
pub struct PrivateBroker {
    /// Where clients reach it (what it advertises).
    pub address: String,
    /// Where it listens: `address`, or the port a proxy at `address` forwards to.
    listen: String,
    child: Option<Child>,
    /// The sqlite engine's directory when durable; `None` for the memory engine.
    data: Option<PathBuf>,
}

impl PrivateBroker {
    /// Memory engine: fast, and empty again after a restart.
    pub fn start() -> PrivateBroker {
        let address = free_local_addr();
        Self::start_with(address.clone(), address, None)
    }

    /// Memory engine listening on `listen` and advertising `advertised`: with a [`TcpProxy`] at
    /// `advertised` forwarding to `listen`, every client connection goes through the proxy.
    pub fn behind(listen: &str, advertised: &str) -> PrivateBroker {
        Self::start_with(advertised.to_owned(), listen.to_owned(), None)
    }

    /// sqlite engine: what it acknowledged survives a restart. It does not serve compressed
    /// batches back, so clients must use `GF_KAFKA_COMPRESSION=none`.
    pub fn durable() -> PrivateBroker {
        let dir = std::env::temp_dir().join(format!("gf-broker-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("broker data directory");
        let address = free_local_addr();
        Self::start_with(address.clone(), address, Some(dir))
    }

    fn start_with(address: String, listen: String, data: Option<PathBuf>) -> PrivateBroker {
        let mut broker = PrivateBroker {
            address,
            listen,
            child: None,
            data,
        };
        broker.restart();
        broker
    }

    /// Starts the broker again on the same address (memory engine: it comes back empty).
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.listen);
        let advertised = format!("tcp://{}", self.address);
        let storage = match &self.data {
            Some(_) => "sqlite://tansu.db",
            None => "memory://tansu/",
        };
        // Its own log, kept across restarts, for when a test fails.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(
                std::env::temp_dir()
                    .join(format!("gf-broker-{}.log", self.address.replace(':', "-"))),
            )
            .expect("broker log");
        let mut command = Command::new(tansu());
        if let Some(dir) = &self.data {
            command.current_dir(dir);
        }
        let child = command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", storage, "--cluster-id", "gf-test"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            // GF_TEST_BROKER_LOG=debug to see what the broker did in a failed test.
            .env(
                "RUST_LOG",
                std::env::var("GF_TEST_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start tansu (install it with `cargo xtask infra up`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on {}",
                self.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn tansu() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home.map(|h| h.join("bin")))
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
        .expect("tansu is not installed; `cargo xtask infra up` installs it")
}
