//! What a run costs the machine, from each process's own accounting (`/proc`): CPU seconds
//! (user + system) and bytes written, for `gf run all`, the broker and PostgreSQL (its postmaster
//! with every backend, those that ended included).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (ppid, user + system seconds, children's user + system seconds) of `pid`.
fn stat(pid: u32) -> Option<(u32, f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the first.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let ppid = fields.get(1)?.parse().ok()?;
    Some((
        ppid,
        (n(11)? + n(12)?) / ticks(),
        (n(13)? + n(14)?) / ticks(),
    ))
}

/// Bytes the process passed to write calls (files and pipes; socket sends are not counted) and
/// bytes it caused to be sent to storage.
fn written(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| stat(*p).is_some_and(|(ppid, _, _)| ppid == pid))
        .collect()
}

/// One process (and its children) at one moment.
#[derive(Clone, Copy, Default)]
struct Reading {
    cpu_seconds: f64,
    wchar: u64,
    write_bytes: u64,
}

fn read(pid: u32, with_children: bool) -> Reading {
    let Some((_, own, waited)) = stat(pid) else {
        return Reading::default();
    };
    let (wchar, write_bytes) = written(pid);
    let mut reading = Reading {
        cpu_seconds: own,
        wchar,
        write_bytes,
    };
    if with_children {
        // Children that ended are in `waited`; live ones are read one by one.
        reading.cpu_seconds += waited;
        for child in children(pid) {
            if let Some((_, cpu, _)) = stat(child) {
                let (w, b) = written(child);
                reading.cpu_seconds += cpu;
                reading.wchar += w;
                reading.write_bytes += b;
            }
        }
    }
    reading
}

/// The processes a run is measured on: (name, pid, with its children).
pub struct Processes(Vec<(String, u32, bool)>);

impl Processes {
    /// The pipeline's processes (name, pid) and, when the infrastructure was started by xtask,
    /// the broker and PostgreSQL, found in `target/infra/state.json`.
    pub fn new(pipeline: Vec<(String, u32)>) -> Processes {
        let mut all: Vec<(String, u32, bool)> = pipeline
            .into_iter()
            .map(|(name, pid)| (name, pid, false))
            .collect();
        let state: Value =
            std::fs::read_to_string(crate::workspace_root().join("target/infra/state.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
        for (name, key, tree) in [
            ("broker", "broker", false),
            ("postgresql", "postgres", true),
        ] {
            if let Some(pid) = state[key]["started"]["pid"].as_u64() {
                all.push((name.to_owned(), pid as u32, tree));
            }
        }
        Processes(all)
    }

    /// The same without the broker (for runs that never touch it).
    pub fn without_broker(mut self) -> Processes {
        self.0.retain(|(name, _, _)| name != "broker");
        self
    }

    pub fn start(&self) -> Start {
        Start(
            self.0
                .iter()
                .map(|(n, p, tree)| (n.clone(), *p, *tree, read(*p, *tree)))
                .collect(),
        )
    }
}

pub struct Start(Vec<(String, u32, bool, Reading)>);

impl Start {
    /// CPU microseconds and bytes written per event since the start, per process.
    pub fn per_event(&self, events: u64, seconds: f64) -> Value {
        let events = events.max(1) as f64;
        let mut out = BTreeMap::new();
        for (name, pid, tree, before) in &self.0 {
            let after = read(*pid, *tree);
            let cpu = after.cpu_seconds - before.cpu_seconds;
            out.insert(
                name.clone(),
                json!({
                    "cpu_us_per_event": cpu * 1e6 / events,
                    "cores_busy": cpu / seconds,
                    "written_bytes_per_event": after.wchar.saturating_sub(before.wchar) as f64 / events,
                    "storage_bytes_per_event": after.write_bytes.saturating_sub(before.write_bytes) as f64 / events,
                }),
            );
        }
        json!(out)
    }
}
