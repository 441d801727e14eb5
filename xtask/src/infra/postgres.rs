//! A private PostgreSQL cluster from the system's `initdb` and `pg_ctl`.
//!
//! Debian keeps those in `/usr/lib/postgresql/<version>/bin`, often not on PATH. They refuse to run
//! as root, so as root they run as the `postgres` system user (`runuser`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Service, Started, infra_dir};
use crate::process::{free_port, is_root, pid_alive, run, terminate};

const DATABASE: &str = "gf";

pub fn healthy(service: &Service) -> bool {
    service.started.as_ref().is_none_or(|s| pid_alive(s.pid)) && answers(&service.address)
}

fn answers(url: &str) -> bool {
    let Ok(mut config) = url.parse::<postgres::Config>() else {
        return false;
    };
    config.connect_timeout(Duration::from_secs(3));
    config
        .connect(postgres::NoTls)
        .and_then(|mut c| c.simple_query("SELECT 1").map(|_| ()))
        .is_ok()
}

/// `DATABASE_URL` when it answers, else a private cluster.
pub fn provide(root: &Path, external: Option<&str>) -> anyhow::Result<Service> {
    if let Some(url) = external {
        if answers(url) {
            return Ok(Service {
                address: url.to_owned(),
                started: None,
                env: vec![],
            });
        }
        eprintln!(
            "DATABASE_URL is set but does not answer; starting a private PostgreSQL instead."
        );
    }
    start_private(root)
}

fn start_private(root: &Path) -> anyhow::Result<Service> {
    let bin = server_binaries()?;
    let base = cluster_dir(root)?;
    let data = base.join("data");
    let log = base.join("postgres.log");
    if !data.join("PG_VERSION").exists() {
        eprintln!("Creating a PostgreSQL cluster in {}", data.display());
        run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]))
        .context("initdb failed")?;
    }
    let port = free_port()?;
    let options = format!(
        "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
    );
    run(as_postgres(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o", &options, "start"]))
    .with_context(|| format!("pg_ctl start failed; see {}", log.display()))?;
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        .context("PostgreSQL started but wrote no postmaster.pid")?;

    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut client = admin
        .parse::<postgres::Config>()?
        .connect(postgres::NoTls)?;
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])?;
    if exists.is_none() {
        client.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
    }
    Ok(Service {
        address: format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}"),
        started: Some(Started {
            pid,
            port,
            controller_port: None,
            data_dir: Some(data),
            log,
        }),
        env: vec![],
    })
}

pub fn stop(service: &Service) -> anyhow::Result<()> {
    let Some(started) = &service.started else {
        return Ok(());
    };
    if !pid_alive(started.pid) {
        return Ok(());
    }
    let stopped = match (server_binaries(), &started.data_dir) {
        (Ok(bin), Some(data)) => run(as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"]))
        .is_ok(),
        _ => false,
    };
    if !stopped || pid_alive(started.pid) {
        terminate(started.pid, Duration::from_secs(10))?;
    }
    Ok(())
}

/// Directory holding `initdb` and `pg_ctl`; installs the server package as root when missing.
fn server_binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = find_server_binaries() {
        return Ok(dir);
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("PostgreSQL server binaries not found; installing Debian's postgresql package.");
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if let Some(dir) = find_server_binaries() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in \
         /usr/lib/postgresql/*/bin. Install them with: sudo apt-get install postgresql \
         (or set DATABASE_URL to a PostgreSQL you run yourself)"
    )
}

fn find_server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(initdb) = crate::process::find_executable("initdb", &[]) {
        // Follow Debian's /usr/local/bin symlinks to the versioned directory.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| has_both(d)) {
            return Some(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn as_postgres(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // initdb and pg_ctl change to their own directories; start from one everybody may enter.
    cmd.current_dir("/");
    cmd
}

/// `target/infra/postgres`, owned by the `postgres` user when we are root. If that user cannot
/// reach it (a checkout under /root, say), a directory under /tmp named after the checkout.
fn cluster_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let preferred = infra_dir(root).join("postgres");
    if !is_root() {
        std::fs::create_dir_all(&preferred)?;
        return Ok(preferred);
    }
    let mut hasher = DefaultHasher::new();
    root.hash(&mut hasher);
    let fallback = std::env::temp_dir().join(format!("gf-infra-{:016x}/postgres", hasher.finish()));
    for dir in [preferred, fallback] {
        std::fs::create_dir_all(&dir)?;
        run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&dir))
        .context("chown the cluster directory to the postgres user (does that user exist?)")?;
        let reachable = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if reachable {
            return Ok(dir);
        }
    }
    bail!("no directory the postgres user can write to for the private cluster")
}
