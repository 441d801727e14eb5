//! `cargo xtask demo`: the whole pipeline on this machine. Brings up the infrastructure, sets up
//! a product with an Amplitude and a Segment connection and a webhook endpoint pointing at a
//! signature-checking sink, starts `gf run all`, sends the providers' example payloads, a
//! conversation and quality signals, prints what became of them, and leaves everything running
//! for the user's own requests until Ctrl-C.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::{free_port, run as run_command, spinner, terminate, wait_until};
use crate::{examples, infra};

/// The documents' example time (2025-05-18T12:00:00Z); the conversation starts two minutes
/// before, so the 15-minute window ties the events to it.
const EVENT_TIME_MS: i64 = 1_747_569_600_000;
const CONVERSATION_AT: &str = "2025-05-18T11:58:00Z";

pub struct Options {
    /// Keep the stack running until Ctrl-C after the scripted part.
    pub wait: bool,
    /// The `gf` binary; built with cargo when not given.
    pub gf: Option<PathBuf>,
    /// Topic prefix (default `GF_TOPIC_PREFIX`, else `gf`).
    pub topic_prefix: Option<String>,
    /// Run the downstream examples against the pipeline too.
    pub examples: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct Stack {
    children: Vec<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = terminate(child.id(), Duration::from_secs(20));
            let _ = child.wait();
        }
    }
}

pub fn run(root: &Path, options: Options) -> anyhow::Result<()> {
    let env = infra::up(root, &infra::External::from_env())
        .context("starting the local infrastructure")?;
    println!("{}\n", env.describe());
    let result = scripted(root, &env, &options);
    if env.started_now
        && let Err(e) = infra::down(root)
    {
        eprintln!("warning: stopping the local infrastructure failed: {e:#}");
    }
    result
}

fn scripted(root: &Path, env: &infra::InfraEnv, options: &Options) -> anyhow::Result<()> {
    let gf = match &options.gf {
        Some(path) => path.clone(),
        None => build_gf(root)?,
    };
    let started = Instant::now();
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let receiver = format!("127.0.0.1:{}", free_port()?);
    let sink = format!("127.0.0.1:{}", free_port()?);
    let console = format!("127.0.0.1:{}", free_port()?);
    let mut vars = env.vars();
    vars.extend([
        ("GF_RECEIVER_ADDR".into(), receiver.clone()),
        ("GF_CONSOLE_ADDR".into(), console.clone()),
        ("GF_PUBLIC_URL".into(), format!("http://{receiver}")),
        ("GF_WEBHOOK_ALLOWED_NETS".into(), "127.0.0.0/8".into()),
        ("GF_KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
        (
            "GF_TOPIC_PREFIX".into(),
            options
                .topic_prefix
                .clone()
                .or_else(|| std::env::var("GF_TOPIC_PREFIX").ok())
                .unwrap_or_else(|| "gf".into()),
        ),
    ]);
    let gf_json = |args: &[&str]| -> anyhow::Result<Value> {
        let mut cmd = Command::new(&gf);
        cmd.arg("--json").args(args).envs(vars.iter().cloned());
        serde_json::from_str(&run_command(&mut cmd)?).context("gf printed no JSON")
    };

    step(
        "Setting up: migrations, topics, a product, a connection per provider, a webhook endpoint",
    );
    let bar = spinner("applying migrations");
    gf_json(&["migrate"])?;
    bar.set_message("creating topics");
    gf_json(&["topics", "ensure"])?;
    bar.set_message("creating the product, connections and endpoint");
    let product = text(&gf_json(&["product", "create", "--name", "Demo support bot"])?["id"]);
    let connection = |provider: &str| -> anyhow::Result<String> {
        let args = [
            "connection",
            "create",
            "--product",
            &product,
            "--provider",
            provider,
        ];
        Ok(text(&gf_json(&args)?["url"]))
    };
    let amplitude = connection("amplitude")?;
    let segment = connection("segment")?;
    let posthog = connection("posthog")?;
    let api = connection("api")?;
    // The public events API also takes its token as a Bearer token at `/v1/events`.
    let api_token = api.rsplit('/').next().unwrap_or_default().to_owned();
    let bearer = format!("authorization: Bearer {api_token}");
    let create_endpoint = |addr: &str| {
        let url = format!("http://{addr}/webhooks");
        let args = ["endpoint", "create", "--product", &product, "--url", &url];
        gf_json(&[&args[..], &["--events", "*"]].concat())
    };
    let endpoint = create_endpoint(&sink)?;
    bar.finish_and_clear();
    let log_path = dir.join("webhooks.jsonl");
    let _ = std::fs::remove_file(&log_path);

    let spawn = |args: &[&str], extra: &[(&str, &str)], log: &str| -> anyhow::Result<Child> {
        let log = std::fs::File::create(dir.join(log))?;
        Command::new(&gf)
            .args(args)
            .envs(vars.iter().cloned())
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start gf")
    };
    let mut stack = Stack {
        children: Vec::new(),
    };
    stack.children.push(spawn(
        &[
            "demo-sink",
            "--listen",
            &sink,
            "--log",
            &log_path.to_string_lossy(),
        ],
        &[("GF_DEMO_SINK_SECRET", &text(&endpoint["secret"]))],
        "sink.log",
    )?);
    // The example webhook receiver gets every webhook too, through an endpoint of its own.
    let example_receiver = if options.examples {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let (receiver, child) = examples::WebhookReceiver::start(root, &dir, &addr)?;
        stack.children.push(child);
        let endpoint = create_endpoint(&addr)?;
        std::fs::write(&receiver.secret_file, text(&endpoint["secret"]))?;
        Some(receiver)
    } else {
        None
    };
    stack
        .children
        .push(spawn(&["run", "all"], &[("RUST_LOG", "warn")], "gf.log")?);
    wait_until("the receiver", Duration::from_secs(60), || {
        http("GET", &receiver, "/healthz", "").is_ok_and(|(code, _)| code == 200)
    })?;

    step("A conversation starts (the SDK's stream) for user_test_123");
    gf_json(&[
        "emit",
        "conversation",
        "--product",
        &product,
        "--conversation",
        "demo-conversation",
        "--kind",
        "started",
        "--user",
        "user_test_123",
        "--email",
        "ada@example.com",
        "--at",
        CONVERSATION_AT,
    ])?;
    let database = env
        .vars()
        .into_iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v)
        .context("no DATABASE_URL")?;
    let mut db = postgres::Client::connect(&database, postgres::NoTls)?;
    wait_until("the conversation", Duration::from_secs(60), || {
        db.query_one(
            "SELECT count(*) FROM conversations WHERE product_id = $1::text::uuid",
            &[&product],
        )
        .is_ok_and(|r| r.get::<_, i64>(0) > 0)
    })?;

    step("Posting each sender's own payloads to the ingest URLs");
    let public = format!("http://{receiver}/v1/events");
    let posts = [
        (
            "Amplitude purchase, with the user's email and organization",
            &amplitude,
            amplitude_purchase(),
        ),
        (
            "Amplitude Webhook destination: one Export-format event",
            &amplitude,
            amplitude_export_event(),
        ),
        (
            "Amplitude Webhook destination: a user (answered, dropped)",
            &amplitude,
            json!({"user_id": "user_test_123", "user_properties": {"plan": "pro"}}),
        ),
        (
            "Amplitude refund (negative revenue)",
            &amplitude,
            amplitude_refund(),
        ),
        (
            "Amplitude milestone with magic-property overrides",
            &amplitude,
            amplitude_overrides(),
        ),
        (
            "Segment Order Completed",
            &segment,
            segment_order_completed(),
        ),
        (
            "Segment identify (answered, dropped)",
            &segment,
            json!({"type": "identify", "userId": "user_test_123"}),
        ),
        (
            "Segment Actions batch: a top-level array, by PUT",
            &segment,
            segment_actions_batch(),
        ),
        (
            "PostHog CDP webhook: an event and its person",
            &posthog,
            posthog_cdp_webhook(),
        ),
        (
            "PostHog SDK capture batch (the $identify is dropped)",
            &posthog,
            posthog_capture_batch(),
        ),
        (
            "Public events API at /v1/events, Bearer token",
            &public,
            public_api_events(),
        ),
    ];
    for (what, url, body) in &posts {
        let path = url
            .strip_prefix(&format!("http://{receiver}"))
            .unwrap_or(url);
        let method = if body.is_array() { "PUT" } else { "POST" };
        let headers: &[&str] = if path == "/v1/events" {
            &[&bearer]
        } else {
            &[]
        };
        let (code, answer) = http_with(method, &receiver, path, headers, &body.to_string())?;
        println!("  {what:<60} {code} {answer}");
    }

    step("Quality signals for the conversation and the product");
    for args in [
        vec![
            "--kind",
            "conversation-quality-index",
            "--conversation",
            "demo-conversation",
            "--score",
            "45",
        ],
        vec![
            "--kind",
            "conversation-frustration",
            "--conversation",
            "demo-conversation",
            "--score",
            "0.8",
        ],
        vec![
            "--kind",
            "conversation-rating",
            "--conversation",
            "demo-conversation",
            "--score",
            "2",
        ],
        vec!["--kind", "product-quality-index", "--score", "55"],
    ] {
        let mut all = vec!["emit", "signal", "--product", product.as_str()];
        all.extend(args.iter().copied());
        gf_json(&all)?;
        println!("  {}", args.join(" "));
    }

    // Nine events stored; five webhooks: the start and four crossings.
    let expected_webhooks = 5;
    wait_until("the pipeline", Duration::from_secs(60), || {
        let stored = db
            .query_one(
                "SELECT count(*) FROM business_events WHERE product_id = $1::text::uuid",
                &[&product],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        stored >= 9 && webhooks(&log_path).len() >= expected_webhooks
    })?;

    step("Canonical events and what they were tied to");
    let rows = db.query(
        "SELECT e.event_type, e.influence, e.influence_rule, e.value::text,
                COALESCE(u.email, u.external_user_id, '-') || ' (' || e.user_resolution || ')',
                COALESCE(o.name, o.external_organization_id, '-') || ' (' || e.organization_resolution || ')',
                COALESCE(c.external_conversation_id, '-') || ' (' || e.conversation_resolution || ')'
           FROM business_events e
           LEFT JOIN users u ON u.id = e.user_id
           LEFT JOIN organizations o ON o.id = e.organization_id
           LEFT JOIN conversations c ON c.id = e.conversation_id
          WHERE e.product_id = $1::text::uuid ORDER BY e.event_at, e.event_type",
        &[&product],
    )?;
    println!(
        "  {:<26} {:<22} {:>7}  {:<30} {:<22} conversation",
        "event", "influence", "value", "user", "organization"
    );
    for r in &rows {
        let influence = format!("{} ({})", r.get::<_, String>(1), r.get::<_, String>(2));
        println!(
            "  {:<26} {:<22} {:>7}  {:<30} {:<22} {}",
            r.get::<_, String>(0),
            influence,
            r.get::<_, Option<String>>(3).unwrap_or_else(|| "-".into()),
            r.get::<_, String>(4),
            r.get::<_, String>(5),
            r.get::<_, String>(6)
        );
    }

    step("What each conversation led to (gf outcomes list; gf.outcomes.v1)");
    let outcomes = db.query(
        "SELECT c.external_conversation_id, o.verdict, o.revenue, o.refunds, o.positive_events,
                o.negative_events, o.neutral_events
           FROM conversation_outcomes o JOIN conversations c ON c.id = o.conversation_id
          WHERE o.product_id = $1::text::uuid ORDER BY c.external_conversation_id",
        &[&product],
    )?;
    println!(
        "  {:<22} {:<17} {:>8} {:>8}  events +/-/=",
        "conversation", "verdict", "revenue", "refunds"
    );
    for r in &outcomes {
        println!(
            "  {:<22} {:<17} {:>8.2} {:>8.2}  {}/{}/{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, f64>(2),
            r.get::<_, f64>(3),
            r.get::<_, i32>(4),
            r.get::<_, i32>(5),
            r.get::<_, i32>(6)
        );
    }
    if !outcomes
        .iter()
        .any(|r| r.get::<_, String>(0) == "demo-conversation")
    {
        bail!("the demo conversation has no outcome");
    }

    step("Webhooks the demo sink received");
    for hook in webhooks(&log_path) {
        println!(
            "  {:<36} delivery {}  {}",
            text(&hook["event"]["type"]),
            text(&hook["delivery"]),
            if hook["verified"] == true {
                "signature verified"
            } else {
                "SIGNATURE DID NOT VERIFY"
            }
        );
    }
    if webhooks(&log_path).iter().any(|h| h["verified"] != true) {
        bail!("a webhook's signature did not verify");
    }

    if let Some(receiver) = &example_receiver {
        step("The downstream examples (examples/python/) against this pipeline");
        let types = receiver.check(expected_webhooks)?;
        println!(
            "  webhook_receiver.py verified {} webhooks ({}), refused a tampered copy (401)",
            types.len(),
            types.join(", ")
        );
        let brokers = vars
            .iter()
            .find(|(k, _)| k == "KAFKA_BROKERS")
            .map(|(_, v)| v.clone())
            .context("no KAFKA_BROKERS")?;
        let prefix = vars
            .iter()
            .find(|(k, _)| k == "GF_TOPIC_PREFIX")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "gf".into());
        let topic = format!("{prefix}.events.attributed.v1");
        let events = examples::consume_attributed(root, &brokers, &topic, &product, rows.len())?;
        println!(
            "  consumer.py read {} schema-valid events from {topic}: {}",
            events.len(),
            events
                .iter()
                .map(|e| text(&e["eventType"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "\nScripted part done in {:.1}s (after the build). Logs: {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );

    if !options.wait {
        return Ok(());
    }
    // A key for the control-plane API, shown once (never in the scripted run's output).
    let key = text(&gf_json(&["admin-key", "create", "--name", "demo"])?["key"]);
    println!(
        "\nThe settings console: open http://{console}/ and log in with this admin key (shown only now):\n\n  {key}\n\nThe same key works on the API: curl -H 'Authorization: Bearer {key}' http://{console}/api/v1/connections\n(OpenAPI: http://{console}/api/v1/openapi.json)"
    );
    println!(
        "\nThe pipeline keeps running. Post your own events:\n\n  curl -X POST '{amplitude}' \\\n    -H 'content-type: application/json' \\\n    -d '{{\"events\":[{{\"user_id\":\"me\",\"event_type\":\"Signed Up\",\"insert_id\":\"mine-1\"}}]}}'\n\n  Segment: {segment}\n  PostHog: {posthog}\n  Public events API: {api} (or POST http://{receiver}/v1/events with Authorization: Bearer <its token>)\n  Inspect: set -a; . target/infra/env; set +a; cargo run -p gf -- deliveries list\n\nPress Ctrl-C to stop everything the demo started."
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    while !INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nStopping...");
    drop(stack);
    Ok(())
}

fn build_gf(root: &Path) -> anyhow::Result<PathBuf> {
    step("Building gf");
    let bar = spinner("cargo build --package gf (the first build takes a few minutes)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["build", "--quiet", "--package", "gf"])
        .status();
    bar.finish_and_clear();
    let status = status?;
    if !status.success() {
        bail!("cargo build --package gf failed ({status})");
    }
    Ok(root.join("target/debug/gf"))
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// The webhooks the sink has logged so far.
fn webhooks(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// One HTTP/1.1 request; returns the status code and the body.
fn http(method: &str, addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http_with(method, addr, path, &[], body)
}

/// [`http`] with extra header lines (`name: value`).
pub fn http_with(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok((code, body))
}

fn amplitude_purchase() -> Value {
    json!({"events": [{
        "user_id": "user_test_123", "event_type": "purchase", "time": EVENT_TIME_MS,
        "insert_id": "demo_purchase_001", "event_properties": {"plan": "pro"}, "revenue": 49.0,
        "user_properties": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
        "groups": {"organization": "org_acme"}
    }]})
}

fn amplitude_refund() -> Value {
    json!({"events": [{
        "user_id": "user_test_123", "event_type": "Order Refunded", "time": EVENT_TIME_MS + 60_000,
        "insert_id": "demo_refund_001", "revenue": -49.0, "revenueType": "Refund"
    }]})
}

fn amplitude_overrides() -> Value {
    json!({"events": [{
        "user_id": "user_test_123", "event_type": "weekly_active_milestone",
        "time": EVENT_TIME_MS + 120_000, "insert_id": "demo_milestone_001",
        "event_properties": {"weeks": 4, "gf_influence": "positive", "gf_quality_impact_score": 0.8,
                             "gf_conversation_id": "demo-conversation"}
    }]})
}

fn segment_order_completed() -> Value {
    json!({
        "type": "track", "event": "Order Completed", "userId": "user_test_123",
        "messageId": "demo_segment_001", "timestamp": "2025-05-18T12:03:00.000Z",
        "properties": {"revenue": 99.0, "currency": "USD"}
    })
}

/// What Amplitude's Webhook destination posts by default: one Export-format event.
fn amplitude_export_event() -> Value {
    json!({
        "$insert_id": "demo_export_001", "uuid": "7f1f0a52-6b3f-11ec-90d6-0242ac120003",
        "event_type": "seats added", "user_id": "user_test_123", "device_id": "demo-device",
        "event_time": "2025-05-18 12:00:30.250000", "amplitude_id": 424242, "session_id": EVENT_TIME_MS,
        "event_properties": {"$price": 12.0, "$quantity": 3, "seats": 3},
        "groups": {"organization": "org_acme"}
    })
}

fn segment_actions_batch() -> Value {
    json!([
        {"type": "track", "event": "Trial Started", "userId": "user_test_123",
         "messageId": "demo_segment_array_001", "timestamp": "2025-05-18T12:04:00.000Z"},
        {"type": "identify", "userId": "user_test_123", "traits": {"email": "ada@example.com"}}
    ])
}

fn posthog_cdp_webhook() -> Value {
    json!({
        "event": {
            "uuid": "0196e0a4-4a3c-7c2e-9d55-2b5f0f4a1d01", "event": "subscription upgraded",
            "distinct_id": "user_test_123", "timestamp": "2025-05-18T12:05:00.000Z",
            "properties": {"revenue": 20.0, "$groups": {"organization": "org_acme"}},
            "elements_chain": "", "url": "https://posthog.example/events/demo"
        },
        "person": {"id": "demo-person", "properties": {"email": "ada@example.com"},
                   "name": "Ada Lovelace", "url": "https://posthog.example/person/demo"}
    })
}

fn posthog_capture_batch() -> Value {
    json!({"api_key": "phc_demo", "batch": [
        {"event": "$pageview", "distinct_id": "user_test_123", "uuid": "0196e0a4-4a3c-7c2e-9d55-2b5f0f4a1d02",
         "timestamp": "2025-05-18T12:06:00.000Z", "properties": {"$current_url": "https://app.example.com/pricing"}},
        {"event": "$identify", "distinct_id": "user_test_123", "$set": {"email": "ada@example.com"}}
    ]})
}

fn public_api_events() -> Value {
    json!({"events": [{
        "eventType": "support ticket escalated", "externalUserId": "user_test_123",
        "eventAt": "2025-05-18T12:07:00Z", "insertId": "demo_api_001",
        "externalConversationId": "demo-conversation", "qualityImpactScore": -0.6,
        "properties": {"channel": "email"}
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripted part against the running infrastructure (what `cargo xtask test` started),
    /// with the `gf` the workspace build made.
    #[test]
    fn the_scripted_demo_runs_end_to_end() {
        let root = crate::workspace_root();
        let gf = root.join("target/debug/gf");
        assert!(
            gf.exists(),
            "build the workspace first (cargo xtask test does)"
        );
        let options = Options {
            wait: false,
            gf: Some(gf),
            topic_prefix: Some(format!("demo{}", std::process::id())),
            examples: true,
        };
        run(&root, options).expect("the demo ran");
    }
}
