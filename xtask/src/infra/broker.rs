//! The local broker: Apache Kafka (KRaft, one combined broker + controller node) on 127.0.0.1 and
//! free ports, data and log under `target/infra/kafka/`, jars from the pinned Maven project that
//! gf-localkafka materializes once into `target/infra/kafka-lib/`.
//!
//! Its data survives `infra down` and a crash: a broker that died is started again on the ports
//! and data it had, so a running pipeline reconnects and finds its offsets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use gf_localkafka::{Classpath, KAFKA_VERSION, Node, NodeConfig};

use super::{Service, Started, infra_dir};
use crate::process::{cmdline, find_executable, is_root, kafka_answers, pid_alive, run, terminate};

/// A cold JVM on a busy 2-core machine takes 5 to 20 s.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The Debian packages that provide `java` ≥ 17 and `mvn`.
const PACKAGES: &[&str] = &["openjdk-17-jre-headless", "maven"];

pub fn healthy(service: &Service) -> bool {
    service.started.as_ref().is_none_or(|s| pid_alive(s.pid))
        && service.address.split(',').any(kafka_answers)
}

/// `KAFKA_BROKERS` when one of them answers, else an Apache Kafka broker of our own, on the
/// address and data of the one that ran before when there was one.
pub fn provide(
    root: &Path,
    external: Option<&str>,
    before: Option<&Service>,
) -> anyhow::Result<Service> {
    if let Some(brokers) = external {
        if brokers.split(',').any(kafka_answers) {
            return Ok(Service {
                address: brokers.to_owned(),
                started: None,
                env: vec![],
            });
        }
        eprintln!("KAFKA_BROKERS is set but no broker answers; starting a local Kafka instead.");
    }
    start(root, before.and_then(|s| s.started.as_ref()))
}

/// The classpath, installing Java and Maven first where it can.
pub fn classpath(root: &Path) -> anyhow::Result<Classpath> {
    let lib = Classpath::default_dir(root);
    if let Ok(classpath) = Classpath::open(&lib) {
        return Ok(classpath);
    }
    ensure_tools()?;
    eprintln!(
        "Fetching Apache Kafka {KAFKA_VERSION}'s jars from Maven Central into {} (once; about 55 MB)...",
        lib.display()
    );
    let bar = crate::process::spinner("mvn dependency:copy-dependencies");
    let classpath = Classpath::materialize(&lib);
    bar.finish_and_clear();
    Ok(classpath?)
}

fn start(root: &Path, before: Option<&Started>) -> anyhow::Result<Service> {
    let classpath = classpath(root)?;
    ensure_tools()?;
    let dir = infra_dir(root).join("kafka");
    let config = match before {
        // The same ports, so clients that knew the old broker find the new one.
        Some(old)
            if old.data_dir.is_some()
                && old.controller_port.is_some()
                && port_free(old.port)
                && old.controller_port.is_some_and(port_free) =>
        {
            NodeConfig::single_on(
                &dir,
                &format!("127.0.0.1:{}", old.port),
                None,
                &format!("127.0.0.1:{}", old.controller_port.unwrap_or_default()),
            )?
        }
        _ => NodeConfig::single(&dir, None)?,
    };
    let cluster_id = cluster_id(&dir)?;
    let address = config.listen.clone();
    let controller_port = port_of(&config.controller);
    let log = config.log();
    let bar = crate::process::spinner(&format!("starting Apache Kafka {KAFKA_VERSION}"));
    let node = Node::start(config, &classpath, &cluster_id, START_TIMEOUT);
    bar.finish_and_clear();
    let node = node.with_context(|| format!("starting Apache Kafka; see {}", log.display()))?;
    // The broker outlives this process on purpose; `infra down` stops it by pid.
    let pid = node.detach().context("the broker has no process")?;
    Ok(Service {
        started: Some(Started {
            pid,
            port: port_of(&address),
            controller_port: Some(controller_port),
            data_dir: Some(dir),
            log,
        }),
        address,
        env: vec![],
    })
}

/// The cluster id the data directory was formatted with, or a new one (kept beside the data so a
/// restart on the same data uses the same id).
fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("cluster-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && dir.join("data/meta.properties").exists()
    {
        return Ok(id.trim().to_owned());
    }
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let id = gf_localkafka::new_cluster_id();
    std::fs::write(&path, &id)?;
    Ok(id)
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_default()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn stop(service: &Service) -> anyhow::Result<()> {
    let Some(started) = &service.started else {
        return Ok(());
    };
    // Only a process that is still our broker: pids are reused.
    if pid_alive(started.pid) && cmdline(started.pid).contains("kafka.Kafka") {
        // A controlled shutdown writes a clean marker, so the next start skips log recovery.
        terminate(started.pid, Duration::from_secs(30))?;
    }
    Ok(())
}

/// `java` ≥ 17 and `mvn`: installed with apt-get as root, else the one command to run is named.
fn ensure_tools() -> anyhow::Result<()> {
    let java_ok = java_major().is_some_and(|v| v >= 17);
    let mvn_ok = find_executable("mvn", &[]).is_some();
    if java_ok && mvn_ok {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", PACKAGES.join(" "));
    if !(is_root() && find_executable("apt-get", &[]).is_some()) {
        bail!("Apache Kafka needs Java 17 or newer and Maven; install them, e.g.: sudo {install}");
    }
    eprintln!("Installing {} with apt-get...", PACKAGES.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("installing Java and Maven failed; run: {install}"))?;
    if java_major().is_none_or(|v| v < 17) {
        bail!("`java -version` is still older than 17; set JAVA_HOME to a JDK 17 or newer");
    }
    Ok(())
}

/// The major version `java -version` reports (it prints to stderr: `openjdk version "17.0.15"`).
fn java_major() -> Option<u32> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|h| Path::new(&h).join("bin/java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "java".into());
    let output = Command::new(java).arg("-version").output().ok()?;
    parse_java_major(&String::from_utf8_lossy(&output.stderr))
}

fn parse_java_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+']);
    match parts.next()?.parse().ok()? {
        // Java 8 and older: "1.8.0_392".
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions_are_read_as_printed() {
        for (printed, major) in [
            (r#"openjdk version "17.0.15" 2025-04-15"#, Some(17)),
            (r#"openjdk version "21" 2023-09-19"#, Some(21)),
            (r#"java version "1.8.0_392""#, Some(8)),
            (r#"openjdk version "25-ea" 2025-09-16"#, Some(25)),
            ("command not found", None),
        ] {
            assert_eq!(parse_java_major(printed), major, "{printed}");
        }
    }
}
