//! Small process and network helpers for starting local services.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Asks a Kafka broker for its API versions (the first request every client sends); true when it
/// answers with a well-formed response.
pub fn kafka_answers(addr: &str) -> bool {
    let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let attempt = |addr: SocketAddr| -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let client_id = b"gf-xtask";
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
        body.extend_from_slice(&0i16.to_be_bytes()); // version 0
        body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        body.extend_from_slice(client_id);
        stream.write_all(&(body.len() as i32).to_be_bytes())?;
        stream.write_all(&body)?;
        let mut header = [0u8; 8];
        stream.read_exact(&mut header)?;
        let correlation = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        Ok(correlation == 7)
    };
    attempt(addr).unwrap_or(false)
}

pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let bar = spinner(&format!("waiting for {what}"));
    while Instant::now() < deadline {
        if ready() {
            bar.finish_and_clear();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    bail!("{what} did not become ready within {}s", timeout.as_secs())
}

/// A spinner with elapsed time on stderr; indicatif draws nothing when stderr is not a terminal,
/// so logs and CI output stay clean.
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The process's command line, to check a pid still belongs to what we started.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// SIGTERM, then SIGKILL after `grace`. Returns once the process is gone.
pub fn terminate(pid: u32, grace: Duration) -> anyhow::Result<()> {
    let signal = |sig| {
        // SAFETY: kill with a pid we started and a valid signal number.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        signal(libc::SIGKILL);
        wait_until(
            &format!("process {pid} to exit"),
            Duration::from_secs(5),
            || !pid_alive(pid),
        )?;
    }
    Ok(())
}

/// Finds an executable on PATH or in the extra directories given.
pub fn find_executable(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(extra_dirs.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command to completion; a failure names the command and shows its output.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
