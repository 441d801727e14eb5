//! Configuration from the environment. Every variable is read here and nowhere else.

use std::net::SocketAddr;

use crate::kafka::Compression;

/// Body limit of an ingest request, compressed or decoded.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Largest canonical event, encoded (`GF_MAX_EVENT_BYTES`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: Option<String>,
    pub kafka_brokers: Option<String>,
    /// Base of printed ingest URLs, without a trailing slash.
    pub public_url: String,
    pub receiver_addr: SocketAddr,
    pub topic_prefix: String,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// Replicas that must have a record before it is acknowledged (`min.insync.replicas`).
    pub topic_min_insync: i32,
    /// How long the raw topic keeps what it received: the window a replay can reach.
    pub raw_retention_hours: u32,
    pub kafka_compression: Compression,
    pub max_body_bytes: usize,
    /// Largest canonical event the normalizer produces; a larger one is dead-lettered alone.
    pub max_event_bytes: usize,
    /// Request body bytes a receiver holds at once, compressed and decoded; one connection at
    /// most a quarter of it. Past it: 503 with `Retry-After`.
    pub max_body_bytes_in_flight: usize,
    /// scrypt cost (log2 N) for new token and secret hashes; existing hashes keep theirs.
    pub scrypt_log_n: u8,
    /// Most events (Amplitude) or messages (Segment) in one request.
    pub max_batch_events: usize,
    /// How long the receiver waits for the broker's acknowledgement before answering 503.
    pub produce_timeout_ms: u64,
    /// Last-resort expiry of cached connection credentials (NOTIFY evicts at once).
    pub auth_cache_ttl_secs: u64,
    /// Consumer-group session timeout; a dead member's partitions move after this long.
    pub kafka_session_timeout_ms: u64,
    /// CIDRs webhooks may reach despite the SSRF block (comma-separated, parsed by the notifier).
    pub webhook_allowed_nets: String,
    /// Webhook attempts in flight at once, over all endpoints.
    pub webhook_concurrency: usize,
    /// Webhook attempts in flight at once to one endpoint.
    pub webhook_endpoint_concurrency: usize,
    /// How long delivery attempt logs are kept.
    pub webhook_log_retention_days: u32,
    /// Waits before the 2nd, 3rd, ... attempt (`GF_WEBHOOK_RETRY_DELAYS`, seconds, comma-separated);
    /// `None` keeps the notifier's default schedule (about a day).
    pub webhook_retry_delays: Option<Vec<std::time::Duration>>,
    /// How long a claimed delivery is reserved for its attempt; after a crash it is retried this
    /// long after the claim. More than the 5-second attempt limit.
    pub webhook_lease_secs: u64,
    /// Days without any event from a conversation's user, after it went quiet, before an outcome
    /// with no positive or negative event counts as churned silently (`GF_SILENT_CHURN_DAYS`).
    pub silent_churn_days: u32,
    /// Where a stage without the receiver serves `/metrics` (`GF_METRICS_ADDR`); the receiver
    /// serves it on its own address.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the receiver serves `/healthz`, `/readyz` and `/metrics` instead of its public port
    /// (`GF_ADMIN_ADDR`), so the internet never reaches them.
    pub admin_addr: Option<SocketAddr>,
    /// Where `gf run console` serves the settings console and the control-plane API
    /// (`GF_CONSOLE_ADDR`).
    pub console_addr: SocketAddr,
}

/// Every variable [`Config`] reads (a test holds this list to what `from_lookup` asks for), so
/// deployment files can be checked against it.
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "KAFKA_BROKERS",
    "GF_PUBLIC_URL",
    "GF_RECEIVER_ADDR",
    "GF_METRICS_ADDR",
    "GF_ADMIN_ADDR",
    "GF_CONSOLE_ADDR",
    "GF_TOPIC_PREFIX",
    "GF_MAX_EVENT_BYTES",
    "GF_MAX_BODY_BYTES_IN_FLIGHT",
    "GF_TOPIC_PARTITIONS",
    "GF_TOPIC_REPLICATION",
    "GF_TOPIC_MIN_INSYNC",
    "GF_RAW_RETENTION_HOURS",
    "GF_KAFKA_COMPRESSION",
    "GF_MAX_BODY_BYTES",
    "GF_SCRYPT_LOG_N",
    "GF_MAX_BATCH_EVENTS",
    "GF_PRODUCE_TIMEOUT_MS",
    "GF_AUTH_CACHE_TTL_SECS",
    "GF_KAFKA_SESSION_TIMEOUT_MS",
    "GF_WEBHOOK_ALLOWED_NETS",
    "GF_WEBHOOK_CONCURRENCY",
    "GF_WEBHOOK_ENDPOINT_CONCURRENCY",
    "GF_WEBHOOK_RETRY_DELAYS",
    "GF_WEBHOOK_LEASE_SECS",
    "GF_WEBHOOK_LOG_RETENTION_DAYS",
    "GF_SILENT_CHURN_DAYS",
];

/// Variables read by the logging and tracing set-up ([`crate::telemetry`]).
pub const TELEMETRY_VARIABLES: &[&str] = &[
    "RUST_LOG",
    "GF_LOG_FORMAT",
    crate::telemetry::OTLP_ENDPOINT_VAR,
];

/// `"5, 300, 1800"` (seconds, fractions allowed) as durations.
fn parse_delays(list: &str) -> Result<Vec<std::time::Duration>, ConfigError> {
    let invalid = || ConfigError::Invalid {
        name: "GF_WEBHOOK_RETRY_DELAYS",
        value: list.to_owned(),
        expected: "seconds between attempts, comma-separated, e.g. 5,300,1800",
    };
    let delays = list
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
        })
        .map(|s| s.map(std::time::Duration::from_secs_f64))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    if delays.is_empty() || delays.len() > 50 {
        return Err(invalid());
    }
    Ok(delays)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{0} is not set. Run `cargo xtask infra up` and `set -a; . target/infra/env; set +a`, or point it at your own {1}"
    )]
    Missing(&'static str, &'static str),
    #[error("{name} has an invalid value {value:?}: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let receiver_addr = parse(
            "GF_RECEIVER_ADDR",
            get("GF_RECEIVER_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            "an address like 127.0.0.1:8080",
        )?;
        let public_url = get("GF_PUBLIC_URL")
            .unwrap_or_else(|| format!("http://{receiver_addr}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "GF_PUBLIC_URL",
                value: public_url,
                expected: "an http:// or https:// URL",
            });
        }
        let topic_prefix = get("GF_TOPIC_PREFIX").unwrap_or_else(|| "gf".into());
        if topic_prefix.len() > 200
            || !topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError::Invalid {
                name: "GF_TOPIC_PREFIX",
                value: topic_prefix,
                expected: "letters, digits, '.', '_' or '-' (a Kafka topic name part)",
            });
        }
        let number = |name: &'static str, default: i64, min: i64, max: i64, expected| {
            let value: i64 = parse(
                name,
                get(name).unwrap_or_else(|| default.to_string()),
                expected,
            )?;
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::Invalid {
                    name,
                    value: value.to_string(),
                    expected,
                })
            }
        };
        let topic_replication = number("GF_TOPIC_REPLICATION", 1, 1, 16, "1 to 16")? as i32;
        // One replica may be lost without refusing writes once there are three.
        let topic_min_insync = number(
            "GF_TOPIC_MIN_INSYNC",
            if topic_replication >= 3 { 2 } else { 1 },
            1,
            16,
            "1 to 16, at most GF_TOPIC_REPLICATION",
        )? as i32;
        if topic_min_insync > topic_replication {
            return Err(ConfigError::Invalid {
                name: "GF_TOPIC_MIN_INSYNC",
                value: topic_min_insync.to_string(),
                expected: "at most GF_TOPIC_REPLICATION: a topic could never acknowledge a write",
            });
        }
        Ok(Config {
            database_url: get("DATABASE_URL"),
            kafka_brokers: get("KAFKA_BROKERS"),
            public_url,
            receiver_addr,
            topic_prefix,
            topic_partitions: number("GF_TOPIC_PARTITIONS", 3, 1, 1024, "1 to 1024")? as i32,
            topic_replication,
            topic_min_insync,
            raw_retention_hours: number(
                "GF_RAW_RETENTION_HOURS",
                168,
                1,
                24 * 3650,
                "hours, 1 to 87600",
            )? as u32,
            kafka_compression: parse(
                "GF_KAFKA_COMPRESSION",
                get("GF_KAFKA_COMPRESSION").unwrap_or_else(|| "lz4".into()),
                "none, gzip, snappy, lz4 or zstd",
            )?,
            max_body_bytes: number(
                "GF_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES as i64,
                1024,
                512 * 1024 * 1024,
                "bytes, 1024 to 536870912",
            )? as usize,
            max_event_bytes: number(
                "GF_MAX_EVENT_BYTES",
                DEFAULT_MAX_EVENT_BYTES as i64,
                1024,
                64 * 1024 * 1024,
                "bytes, 1024 to 67108864",
            )? as usize,
            max_body_bytes_in_flight: number(
                "GF_MAX_BODY_BYTES_IN_FLIGHT",
                256 * 1024 * 1024,
                1024 * 1024,
                64 * 1024 * 1024 * 1024,
                "bytes, 1048576 to 68719476736",
            )? as usize,
            scrypt_log_n: number("GF_SCRYPT_LOG_N", 15, 10, 22, "10 to 22")? as u8,
            max_batch_events: number("GF_MAX_BATCH_EVENTS", 1000, 1, 100_000, "1 to 100000")?
                as usize,
            produce_timeout_ms: number(
                "GF_PRODUCE_TIMEOUT_MS",
                5000,
                100,
                300_000,
                "100 to 300000",
            )? as u64,
            auth_cache_ttl_secs: number("GF_AUTH_CACHE_TTL_SECS", 300, 1, 86_400, "1 to 86400")?
                as u64,
            kafka_session_timeout_ms: number(
                "GF_KAFKA_SESSION_TIMEOUT_MS",
                10_000,
                1_000,
                300_000,
                "1000 to 300000",
            )? as u64,
            webhook_allowed_nets: get("GF_WEBHOOK_ALLOWED_NETS").unwrap_or_default(),
            webhook_concurrency: number("GF_WEBHOOK_CONCURRENCY", 64, 1, 10_000, "1 to 10000")?
                as usize,
            webhook_endpoint_concurrency: number(
                "GF_WEBHOOK_ENDPOINT_CONCURRENCY",
                8,
                1,
                1_000,
                "1 to 1000",
            )? as usize,
            webhook_retry_delays: match get("GF_WEBHOOK_RETRY_DELAYS") {
                None => None,
                Some(list) => Some(parse_delays(&list)?),
            },
            webhook_lease_secs: number("GF_WEBHOOK_LEASE_SECS", 300, 10, 86_400, "10 to 86400")?
                as u64,
            silent_churn_days: number("GF_SILENT_CHURN_DAYS", 14, 1, 3_650, "1 to 3650")? as u32,
            webhook_log_retention_days: number(
                "GF_WEBHOOK_LOG_RETENTION_DAYS",
                30,
                1,
                3_650,
                "1 to 3650",
            )? as u32,
            console_addr: parse(
                "GF_CONSOLE_ADDR",
                get("GF_CONSOLE_ADDR").unwrap_or_else(|| "127.0.0.1:8090".into()),
                "an address like 127.0.0.1:8090",
            )?,
            admin_addr: get("GF_ADMIN_ADDR")
                .map(|a| parse("GF_ADMIN_ADDR", a, "an address like 127.0.0.1:9090"))
                .transpose()?,
            metrics_addr: get("GF_METRICS_ADDR")
                .map(|a| parse("GF_METRICS_ADDR", a, "an address like 0.0.0.0:9100"))
                .transpose()?,
        })
    }

    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.database_url
            .as_deref()
            .ok_or(ConfigError::Missing("DATABASE_URL", "PostgreSQL"))
    }

    pub fn kafka_brokers(&self) -> Result<&str, ConfigError> {
        self.kafka_brokers
            .as_deref()
            .ok_or(ConfigError::Missing("KAFKA_BROKERS", "Kafka brokers"))
    }
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: String,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        value,
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_variable_list_is_what_configuration_reads() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Config::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_owned());
            None
        })
        .unwrap();
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| v.to_string()).collect();
        assert_eq!(asked.into_inner().unwrap(), listed);
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = config(&[]).unwrap();
        assert_eq!(c.receiver_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.topic_prefix, "gf");
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.kafka_compression, Compression::Lz4);
        assert!(c.database_url().is_err());
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let c = config(&[("GF_PUBLIC_URL", "https://in.example.com/")]).unwrap();
        assert_eq!(c.public_url, "https://in.example.com");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("GF_RECEIVER_ADDR", "nowhere"),
            ("GF_PUBLIC_URL", "ftp://x"),
            ("GF_TOPIC_PREFIX", "a b"),
            ("GF_TOPIC_PARTITIONS", "0"),
            ("GF_KAFKA_COMPRESSION", "brotli"),
            ("GF_SCRYPT_LOG_N", "40"),
            ("GF_TOPIC_MIN_INSYNC", "2"),
            ("GF_RAW_RETENTION_HOURS", "0"),
        ] {
            let err = config(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn min_insync_follows_replication_unless_set() {
        let local = config(&[]).unwrap();
        assert_eq!((local.topic_replication, local.topic_min_insync), (1, 1));
        let replicated = config(&[("GF_TOPIC_REPLICATION", "3")]).unwrap();
        assert_eq!(replicated.topic_min_insync, 2);
        let strict = config(&[("GF_TOPIC_REPLICATION", "3"), ("GF_TOPIC_MIN_INSYNC", "3")]);
        assert_eq!(strict.unwrap().topic_min_insync, 3);
        let impossible = config(&[("GF_TOPIC_REPLICATION", "2"), ("GF_TOPIC_MIN_INSYNC", "3")]);
        assert!(
            impossible
                .unwrap_err()
                .to_string()
                .contains("GF_TOPIC_MIN_INSYNC")
        );
    }

    #[test]
    fn missing_database_says_what_to_do() {
        let err = config(&[]).unwrap().database_url().unwrap_err().to_string();
        assert!(
            err.contains("DATABASE_URL") && err.contains("cargo xtask infra up"),
            "{err}"
        );
    }
}
