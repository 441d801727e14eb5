//! The downstream examples under `examples/python/`, run against the demo's pipeline
//! (`cargo xtask demo --examples`, and the demo's test): the webhook receiver must accept every
//! delivery and refuse a tampered one; the consumer must see every event, schema-valid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::wait_until;

fn python_example(root: &Path, name: &str) -> PathBuf {
    root.join("examples/python").join(name)
}

/// The example webhook receiver on `addr`, reading its secret from `secret_file` at each
/// request (the endpoint, and so the secret, is created after it starts).
pub struct WebhookReceiver {
    pub addr: String,
    pub secret_file: PathBuf,
    log: PathBuf,
}

impl WebhookReceiver {
    pub fn start(root: &Path, dir: &Path, addr: &str) -> anyhow::Result<(WebhookReceiver, Child)> {
        let receiver = WebhookReceiver {
            addr: addr.to_owned(),
            secret_file: dir.join("example-webhook-secret"),
            log: dir.join("example-webhooks.jsonl"),
        };
        let _ = std::fs::remove_file(&receiver.log);
        let mut child = Command::new("python3")
            .arg(python_example(root, "webhook_receiver.py"))
            .args(["--listen", addr, "--secret-file"])
            .arg(&receiver.secret_file)
            .arg("--log")
            .arg(&receiver.log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                dir.join("example-webhook-receiver.log"),
            )?)
            .spawn()
            .context("python3 with `pip install -r examples/python/requirements.txt`")?;
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("example-webhook-receiver.log"))
                    .unwrap_or_default();
                bail!("the example webhook receiver did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((receiver, child))
    }

    fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for `expected` verified deliveries, then sends one of them again with its body
    /// changed by one byte and its signature kept: the receiver must answer 401.
    pub fn check(&self, expected: usize) -> anyhow::Result<Vec<String>> {
        wait_until(
            "the example webhook receiver",
            Duration::from_secs(60),
            || {
                self.entries()
                    .iter()
                    .filter(|e| e["verified"] == true)
                    .count()
                    >= expected
            },
        )?;
        let entries = self.entries();
        if let Some(refused) = entries.iter().find(|e| e["verified"] != true) {
            bail!(
                "the example webhook receiver refused a delivery: {}",
                refused["error"]
            );
        }
        let original = &entries[0];
        let body = original["body"].as_str().context("logged body")?;
        let tampered = body.replacen("\"type\"", "\"tYpe\"", 1);
        let headers: Vec<String> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| {
                format!(
                    "{h}: {}",
                    original["headers"][h].as_str().unwrap_or_default()
                )
            })
            .collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let (code, _) =
            crate::demo::http_with("POST", &self.addr, "/webhooks", &headers, &tampered)?;
        if code != 401 {
            bail!("the example webhook receiver answered {code} to a tampered delivery");
        }
        let (code, _) = crate::demo::http_with("POST", &self.addr, "/webhooks", &headers, body)?;
        if code != 204 {
            bail!("the example webhook receiver answered {code} to a genuine delivery sent again");
        }
        Ok(entries
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("-").to_owned())
            .collect())
    }
}

/// Runs the example consumer of the attributed topic in a group of its own until it has seen
/// `expected` distinct events of `product`; returns what it printed, one JSON line per event.
pub fn consume_attributed(
    root: &Path,
    brokers: &str,
    topic: &str,
    product: &str,
    expected: usize,
) -> anyhow::Result<Vec<Value>> {
    let output = Command::new("python3")
        .arg(python_example(root, "consumer.py"))
        .args(["--brokers", brokers, "--topic", topic, "--product", product])
        .args(["--group", &format!("example-{}", std::process::id())])
        .arg("--schemas")
        .arg(root.join("schemas/json"))
        .args([
            "--max-events",
            &expected.to_string(),
            "--idle-timeout",
            "30",
        ])
        .output()
        .context("python3 with `pip install -r examples/python/requirements.txt`")?;
    if !output.status.success() {
        bail!(
            "the example consumer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("the example consumer printed a line that is not JSON")?;
    if events.len() < expected {
        bail!(
            "the example consumer saw {} of {expected} events: {}",
            events.len(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(events)
}
