//! docker-compose.yml and the Dockerfile, checked without a Docker engine: every service's image or
//! build, every command against the binaries and subcommands that exist, every variable against
//! what the configuration reads (values included), and the start-up order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::{Mapping, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut value: Value = serde_yaml_ng::from_str(&text).expect("docker-compose.yml is YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(m) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        other => panic!("environment must be a mapping: {other:?}"),
    }
}

fn command(service: &Value) -> Vec<String> {
    service["command"]
        .as_sequence()
        .map(|s| s.iter().map(text).collect())
        .unwrap_or_default()
}

/// Every `gf ...` invocation in a service's command, as argument lists (shell scripts included:
/// `$$` is compose's escape for `$`).
fn gf_invocations(command: &[String]) -> Vec<Vec<String>> {
    match command.first().map(String::as_str) {
        Some("gf") => vec![command[1..].to_vec()],
        Some("sh") => {
            let script = command.last().unwrap().replace("$$", "$");
            script
                .split(['\n', ';', '|', '&', '(', ')'])
                .map(str::trim)
                .filter_map(|part| part.strip_prefix("gf "))
                .map(shell_words)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Splits on spaces, keeping double-quoted words whole (enough for our scripts).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The binaries the workspace builds (`cargo metadata`).
fn workspace_binaries() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success());
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The binaries the Dockerfile copies into the runtime image.
fn image_binaries(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect()
}

fn is_ours(service: &Value) -> bool {
    !service["build"].is_null()
}

#[test]
fn the_dockerfile_builds_a_small_image_with_every_binary() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(stages[0].contains("rust:"), "{stages:?}");
    assert!(
        stages.last().unwrap().contains("-slim"),
        "the runtime image is slim: {stages:?}"
    );
    assert!(dockerfile.contains("COPY --from=build"));
    // Health checks call curl; https webhooks need CA certificates.
    assert!(dockerfile.contains("curl") && dockerfile.contains("ca-certificates"));
    let built = workspace_binaries();
    let copied = image_binaries(&dockerfile);
    for stage in [
        "gf",
        "gf-receiver",
        "gf-normalizer",
        "gf-attributor",
        "gf-notifier",
    ] {
        assert!(copied.contains(stage), "{stage} is not in the image");
    }
    assert!(copied.is_subset(&built), "{copied:?} vs {built:?}");
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn every_service_has_an_image_and_a_command_that_exists() {
    let compose = compose();
    let services = services(&compose);
    let wanted = [
        "kafka",
        "postgres",
        "init",
        "receiver",
        "normalizer",
        "attributor",
        "notifier",
        "demo-sink",
        "otel-collector",
        "jaeger",
    ];
    for name in wanted {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let in_image = image_binaries(&dockerfile);
    for (name, service) in &services {
        if is_ours(service) {
            assert_eq!(text(&service["build"]), ".", "{name}");
            let command = command(service);
            let program = command.first().expect("our services name their command");
            assert!(
                in_image.contains(program) || program == "sh",
                "{name} runs {program}, which the image does not have"
            );
        } else {
            let image = text(&service["image"]);
            assert!(image.contains(':'), "{name}: pin the image tag ({image})");
        }
    }
    // Apache Kafka's official image in KRaft mode: no ZooKeeper anywhere.
    let kafka = &services["kafka"];
    // The same release the local broker and every test run on.
    assert_eq!(
        text(&kafka["image"]),
        format!("apache/kafka:{}", gf_localkafka::KAFKA_VERSION)
    );
    let kafka_env = environment(kafka);
    assert!(kafka_env["KAFKA_PROCESS_ROLES"].contains("controller"));
    assert!(!services.keys().any(|k| k.contains("zookeeper")));
    // The four stages run as separate services.
    for stage in [
        "receiver",
        "normalizer",
        "attributor",
        "notifier",
        "console",
    ] {
        assert_eq!(command(&services[stage]), ["gf", "run", stage]);
    }
    assert!(environment(&services["console"])["GF_CONSOLE_ADDR"].starts_with("0.0.0.0:"));
}

#[test]
fn every_gf_command_and_flag_exists() {
    let compose = compose();
    let mut checked = 0;
    for (name, service) in services(&compose) {
        for args in gf_invocations(&command(&service)) {
            // The subcommand path: the words before the first flag other than the global --json.
            let path: Vec<&String> = args
                .iter()
                .filter(|a| *a != "--json")
                .take_while(|a| !a.starts_with('-') && !a.contains('$'))
                .collect();
            let help = Command::new(env!("CARGO_BIN_EXE_gf"))
                .args(&path)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                help.status.success(),
                "{name}: `gf {path:?}` is not a command: {}",
                String::from_utf8_lossy(&help.stderr)
            );
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let mut words = help.split(|c: char| !(c.is_alphanumeric() || c == '-'));
                assert!(
                    words.any(|w| w == flag),
                    "{name}: `gf {path:?}` has no {flag}"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} gf invocations found; the parser missed some"
    );
}

#[test]
fn every_variable_is_one_we_read_with_a_value_we_accept() {
    let compose = compose();
    let services = services(&compose);
    let known: BTreeSet<&str> = gf_runtime::config::VARIABLES
        .iter()
        .chain(gf_runtime::config::TELEMETRY_VARIABLES)
        .copied()
        .collect();
    let postgres = environment(&services["postgres"]);
    let kafka = environment(&services["kafka"]);
    let subnet = text(&compose["networks"]["default"]["ipam"]["config"][0]["subnet"]);
    for (name, service) in services.iter().filter(|(_, s)| is_ours(s)) {
        let env = environment(service);
        for key in env.keys() {
            assert!(
                known.contains(key.as_str()),
                "{name} sets {key}, which nothing reads"
            );
        }
        let config = gf_runtime::Config::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Ok(url) = config.database_url() {
            let expected = format!(
                "postgres://{user}:{password}@postgres:5432/{db}",
                user = postgres["POSTGRES_USER"],
                password = postgres["POSTGRES_PASSWORD"],
                db = postgres["POSTGRES_DB"],
            );
            assert_eq!(url, expected, "{name}");
        }
        if let Ok(brokers) = config.kafka_brokers() {
            assert!(
                kafka["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("//{brokers}")),
                "{name}: {brokers} is not what the broker advertises"
            );
        }
        if let Some(endpoint) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let host = endpoint
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap();
            assert!(services.contains_key(host), "{name}: {endpoint}");
            assert!(endpoint.ends_with(":4318"), "OTLP over HTTP: {endpoint}");
        }
        if !config.webhook_allowed_nets.is_empty() {
            assert_eq!(config.webhook_allowed_nets, subnet, "{name}");
        }
    }
    // Stages that serve /metrics on their own address.
    for stage in ["normalizer", "attributor", "notifier"] {
        assert!(environment(&services[stage]).contains_key("GF_METRICS_ADDR"));
    }
    assert!(environment(&services["receiver"])["GF_RECEIVER_ADDR"].starts_with("0.0.0.0:"));
}

#[test]
fn services_start_in_order() {
    let compose = compose();
    let services = services(&compose);
    for (name, service) in &services {
        let Some(deps) = service["depends_on"].as_mapping() else {
            continue;
        };
        for (dep, condition) in deps {
            let dep = text(dep);
            let target = services
                .get(&dep)
                .unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
            match text(&condition["condition"]).as_str() {
                "service_healthy" => assert!(
                    !target["healthcheck"].is_null(),
                    "{name} waits for {dep} to be healthy, but it has no health check"
                ),
                "service_completed_successfully" => assert_eq!(
                    text(&target["restart"]),
                    "no",
                    "{name} waits for {dep} to finish; it must not restart"
                ),
                "service_started" => {}
                other => panic!("{name}: unknown condition {other}"),
            }
        }
    }
    let needs = |service: &str, dep: &str| -> bool {
        services[service]["depends_on"]
            .as_mapping()
            .is_some_and(|m: &Mapping| m.contains_key(dep))
    };
    assert!(needs("init", "kafka") && needs("init", "postgres"));
    for stage in ["receiver", "normalizer", "attributor", "notifier"] {
        assert!(needs(stage, "init"), "{stage} starts before the migrations");
    }
    assert!(
        command(&services["init"])
            .last()
            .unwrap()
            .contains("gf migrate")
    );
}

#[test]
fn mounted_files_exist_and_traces_reach_jaeger() {
    let compose = compose();
    for (name, service) in services(&compose) {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = text(volume).split(':').next().unwrap().to_owned();
            if source.starts_with("./") {
                assert!(root().join(&source).exists(), "{name} mounts {source}");
            }
        }
    }
    let collector: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/otel-collector.yaml")).unwrap(),
    )
    .unwrap();
    assert!(
        !collector["receivers"]["otlp"]["protocols"]["http"].is_null(),
        "the stages export OTLP over HTTP"
    );
    let exporters = collector["service"]["pipelines"]["traces"]["exporters"]
        .as_sequence()
        .unwrap();
    let exporter = text(&exporters[0]);
    assert!(text(&collector["exporters"][exporter.as_str()]["endpoint"]).starts_with("jaeger:"));
}

/// The stages' `gf run` services with the port their `/metrics` is on (the receiver's admin
/// address when it has one, else its public one; the other stages' GF_METRICS_ADDR).
fn metrics_ports(compose: &Value) -> BTreeMap<String, u16> {
    let port = |addr: &str| {
        assert!(
            addr.starts_with("0.0.0.0:"),
            "{addr}: bind all interfaces so Prometheus can reach it"
        );
        addr.rsplit(':').next().unwrap().parse::<u16>().unwrap()
    };
    services(compose)
        .into_iter()
        .filter(|(_, s)| is_ours(s) && command(s).starts_with(&["gf".into(), "run".into()]))
        .filter(|(_, s)| command(s)[2] != "console")
        .map(|(name, s)| {
            let env = environment(&s);
            let addr = ["GF_METRICS_ADDR", "GF_ADMIN_ADDR", "GF_RECEIVER_ADDR"]
                .iter()
                .find_map(|v| env.get(*v))
                .unwrap_or_else(|| panic!("{name} serves no /metrics"));
            (name, port(addr))
        })
        .collect()
}

fn yaml_file(path: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(root().join(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn prometheus_scrapes_every_stage_on_its_metrics_port_and_grafana_reads_prometheus() {
    let compose = compose();
    let expected: BTreeSet<String> = metrics_ports(&compose)
        .into_iter()
        .map(|(service, port)| format!("{service}:{port}"))
        .collect();
    assert_eq!(
        expected.len(),
        4,
        "receiver, normalizer, attributor, notifier"
    );
    let prometheus = yaml_file("deploy/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().unwrap().clone())
        .flat_map(|c| c["targets"].as_sequence().unwrap().clone())
        .map(|t| text(&t))
        .collect();
    assert_eq!(targets, expected, "scrape targets and metric ports differ");

    let services = services(&compose);
    let mounted = |service: &str, inside: &str| {
        services[service]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(text)
            .any(|v| v.split(':').nth(1) == Some(inside))
    };
    assert!(mounted("prometheus", "/etc/prometheus/prometheus.yml"));
    let datasources = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(
        text(&datasources["datasources"][0]["url"]),
        "http://prometheus:9090"
    );
    let dashboards = yaml_file("deploy/grafana/provisioning/dashboards/pipeline.yaml");
    let path = text(&dashboards["providers"][0]["options"]["path"]);
    assert!(mounted("grafana", &path), "grafana does not mount {path}");
    assert!(mounted("grafana", "/etc/grafana/provisioning"));
}

/// Metric names the workspace's code registers (the first argument of a metric constructor).
fn registered_metrics() -> BTreeSet<String> {
    let constructor =
        regex::Regex::new(r#"(?:Opts::new|IntCounter::new|int_gauges)\(\s*"(gf_[a-z0-9_]+)""#)
            .unwrap();
    let mut names = BTreeSet::new();
    let mut dirs = vec![root()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !["target", ".git", "node_modules", "fuzz", "tests", "benches"]
                    .contains(&name.as_str())
                {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                let code = std::fs::read_to_string(&path).unwrap();
                names.extend(constructor.captures_iter(&code).map(|c| c[1].to_owned()));
            }
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_exists_in_the_code() {
    let registered = registered_metrics();
    for known in ["gf_receiver_requests_total", "gf_kafka_consumer_lag"] {
        assert!(
            registered.contains(known),
            "the scan misses {known}: {registered:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dashboards/pipeline.json")).unwrap(),
    )
    .unwrap();
    let metric = regex::Regex::new(r"\bgf_[a-z0-9_]+").unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = metric.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(!names.is_empty(), "{expr} queries none of our metrics");
            for name in names {
                // A histogram's series are its name plus _bucket, _count and _sum.
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| registered.contains(*b))
                    .unwrap_or(name);
                assert!(
                    registered.contains(base),
                    "panel {:?} queries {name}, which no code registers",
                    panel["title"]
                );
                queried.insert(base.to_owned());
            }
        }
    }
    // What the operators asked to see at a glance.
    for wanted in [
        "gf_receiver_events_total",
        "gf_receiver_requests_total",
        "gf_receiver_produce_seconds",
        "gf_kafka_consumer_lag",
        "gf_dead_letters_total",
        "gf_notifier_delivery_attempts_total",
        "gf_receiver_scrypt_verifications_total",
    ] {
        assert!(
            queried.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}
