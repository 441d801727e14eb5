//! Attacks and secrets through the real processes: every stage as its own `gf run`, logging at
//! debug level to files.
//!
//! - Tokens, shared secrets and signing secrets appear in no log line, no metric and no error
//!   answer, across successes, every kind of refusal, a rotation and a failing webhook.
//! - Oversized, deeply nested and gzip-bomb bodies are refused, and the receiver's peak memory
//!   stays bounded while many arrive at once.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gf_tests::infra;
use support::Pipeline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook sink that answers 500 to its first request and 200 after; returns its URL and the
/// request count.
async fn failing_once_sink() -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(0usize));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                // Read the headers and the body Content-Length announces.
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let n = {
                    let mut seen = count.lock().unwrap();
                    *seen += 1;
                    *seen
                };
                let status = if n == 1 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

/// Everything a reader of logs, metrics or answers could see, gathered in one string.
#[derive(Default)]
struct Seen(String);

impl Seen {
    async fn answer(&mut self, what: &str, response: reqwest::Response) -> u16 {
        let status = response.status().as_u16();
        self.0 += &format!("\n== {what}: {status}\n{:?}\n", response.headers());
        self.0 += &response.text().await.unwrap_or_default();
        status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_answers() {
    let _alone = support::one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("secrets", None, &brokers).await;
    pipeline.env.extend(
        [
            // Every level, dependencies included, for the stages and for the CLI commands.
            ("RUST_LOG", "trace"),
            ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
            ("GF_WEBHOOK_RETRY_DELAYS", "1,1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let product = pipeline.product();
    let shared_secret = "s3cret-shared-Value";
    let with_secret = pipeline.gf(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
        "--secret",
        shared_secret,
    ]);
    let rotated = pipeline.gf(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "segment",
    ]);
    let rotated_id = rotated["id"].as_str().unwrap().to_owned();
    let new_url = pipeline.gf(&["connection", "rotate", &rotated_id])["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (sink, hits) = failing_once_sink().await;
    let endpoint = pipeline.gf(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        &sink,
        "--events",
        "conversation.*",
    ]);
    let signing_secret = endpoint["secret"].as_str().unwrap().to_owned();
    // The CLI at RUST_LOG=trace, its stderr kept: creating secrets must not log them (nor the
    // queries that store their hashes).
    let mut cli_logs = String::new();
    let mut cli = |args: &[&str]| -> serde_json::Value {
        let out = pipeline
            .command(&[&["--json"], args].concat())
            .env("DATABASE_URL", &pipeline.db.url)
            .output()
            .unwrap();
        cli_logs += &String::from_utf8_lossy(&out.stderr);
        serde_json::from_slice(&out.stdout).expect("a JSON answer")
    };
    let cli_connection = cli(&[
        "connection",
        "create",
        "--product",
        &product,
        "--provider",
        "amplitude",
        "--secret",
        "cli-shared-secret-1",
    ]);
    let cli_endpoint = cli(&[
        "endpoint",
        "create",
        "--product",
        &product,
        "--url",
        &sink,
        "--events",
        "product.*",
    ]);
    let cli_token = cli_connection["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let cli_signing_secret = cli_endpoint["secret"].as_str().unwrap().to_owned();
    assert!(
        cli_logs.contains("TRACE") || cli_logs.contains("DEBUG"),
        "the CLI logged nothing at trace"
    );

    let token_of = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let token = token_of(with_secret["url"].as_str().unwrap());
    let old_token = token_of(rotated["url"].as_str().unwrap());
    let new_token = token_of(&new_url);
    let guessed_secret = "guessed-shared-secret";
    // The same lookup with another secret part: what a guesser who saw the public half sends.
    let forged = format!("{}{}", &token[..token.len() - 4], "AAAA");

    pipeline.start_all();
    let metrics_addr = gf_tests::net::free_local_addr();
    pipeline
        .env
        .push(("GF_METRICS_ADDR".into(), metrics_addr.clone()));
    pipeline.start("notifier");
    pipeline.wait_ready().await;

    let base = format!("http://{}", pipeline.addr);
    let http = reqwest::Client::new();
    let body = r#"{"events":[{"event_type":"purchase","user_id":"u-s","insert_id":"sec-1","time":1779105600000}]}"#;
    let segment_body =
        r#"{"type":"track","event":"Order Completed","userId":"u-s","messageId":"sec-2"}"#;
    let post = |path: String, secret: Option<&str>| {
        let body = if path.starts_with("/ingest/segment/") {
            segment_body
        } else {
            body
        };
        let mut request = http.post(format!("{base}{path}")).body(body);
        if let Some(s) = secret {
            request = request.header("x-greenflash-secret", s);
        }
        request.send()
    };
    let mut seen = Seen::default();
    let cases = [
        (
            "accepted",
            format!("/ingest/amplitude/{token}"),
            Some(shared_secret),
            200,
        ),
        (
            "wrong shared secret",
            format!("/ingest/amplitude/{token}"),
            Some(guessed_secret),
            401,
        ),
        (
            "missing shared secret",
            format!("/ingest/amplitude/{token}"),
            None,
            401,
        ),
        (
            "forged secret part",
            format!("/ingest/amplitude/{forged}"),
            Some(shared_secret),
            401,
        ),
        (
            "rotated token",
            format!("/ingest/segment/{old_token}"),
            None,
            401,
        ),
        (
            "wrong provider",
            format!("/ingest/segment/{token}"),
            Some(shared_secret),
            404,
        ),
        (
            "truncated token",
            format!("/ingest/amplitude/{}", &token[..20]),
            None,
            401,
        ),
        (
            "new token",
            format!("/ingest/segment/{new_token}"),
            None,
            200,
        ),
    ];
    for (what, path, secret, expected) in cases {
        let status = seen.answer(what, post(path, secret).await.unwrap()).await;
        assert_eq!(status, expected, "{what}");
    }
    pipeline.gf(&[
        "emit",
        "conversation",
        "--product",
        &product,
        "--conversation",
        "c-sec",
        "--kind",
        "started",
        "--user",
        "u-s",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while *hits.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline, "the webhook was not retried");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the stages log what followed, and the statistics reach /metrics.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for addr in [&pipeline.addr, &metrics_addr] {
        let metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        seen.answer("metrics", metrics).await;
    }
    let deliveries = pipeline.gf(&["deliveries", "list"]);
    seen.0 += &deliveries.to_string();
    let failed_cli = pipeline
        .command(&["connection", "set-secret", &rotated_id, "--secret", "short"])
        .output()
        .unwrap();
    seen.0 += &String::from_utf8_lossy(&failed_cli.stderr);
    let mut logs = String::new();
    for stage in ["receiver", "normalizer", "attributor", "notifier"] {
        logs += &std::fs::read_to_string(pipeline.logs.join(format!("{stage}.log"))).unwrap();
    }
    seen.0 += &logs;
    seen.0 += &cli_logs;

    // The logs talk about the connection and the refusals: the check below has material.
    let connection_id = with_secret["id"].as_str().unwrap();
    assert!(
        logs.contains(connection_id),
        "no log line names the connection"
    );
    assert!(seen.0.contains("gf_receiver_requests_total"));
    assert!(seen.0.contains("x-greenflash-secret header does not match"));
    assert!(logs.lines().count() > 50, "debug logging is off?");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging is off?"
    );
    // Log files are for keeping: no terminal colour codes in them.
    assert!(
        !logs.contains('\u{1b}') && !cli_logs.contains('\u{1b}'),
        "ANSI escape codes in log files"
    );

    let key = signing_secret
        .strip_prefix("whsec_")
        .expect("a Standard Webhooks secret");
    // What is stored instead of the secrets: the scrypt hashes (PHC strings) must not leak
    // either, whole or as their hash part.
    let client = pipeline.db.client().await;
    let mut hashes: Vec<String> = Vec::new();
    for row in client
        .query(
            "SELECT token_hash FROM connections UNION ALL
             SELECT secret_hash FROM connections WHERE secret_hash IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
    {
        let phc: String = row.get(0);
        hashes.push(phc.rsplit('$').next().unwrap().to_owned());
        hashes.push(phc);
    }
    assert!(hashes.len() >= 8, "{hashes:?}");
    // The secret part is base64url, which has `_` in its alphabet: take it by the token's shape,
    // not by the last `_` (which once made this a short, common string and the test flaky).
    let parsed = gf_runtime::token::IngestToken::parse(&token).unwrap();
    let secret_part = parsed.secret();
    let (first_half, second_half) = secret_part.split_at(secret_part.len() / 2);
    let secrets = [
        ("the URL token", token.as_str()),
        ("the URL token's secret part", secret_part),
        ("the forged token", forged.as_str()),
        ("the rotated token", old_token.as_str()),
        ("the new token", new_token.as_str()),
        ("the shared secret", shared_secret),
        ("the guessed shared secret", guessed_secret),
        ("the signing secret", signing_secret.as_str()),
        ("the signing key", key),
        ("half of the URL token's secret part", first_half),
        ("the other half of the URL token's secret part", second_half),
        ("half of the signing key", &key[..key.len() / 2]),
        ("the token the CLI made", cli_token.as_str()),
        ("the shared secret given to the CLI", "cli-shared-secret-1"),
        (
            "the signing secret the CLI made",
            cli_signing_secret.as_str(),
        ),
        (
            "the signing key the CLI made",
            cli_signing_secret.trim_start_matches("whsec_"),
        ),
    ];
    let hashes = hashes.iter().map(|h| ("a stored scrypt hash", h.as_str()));
    for (what, secret) in secrets.into_iter().chain(hashes) {
        assert!(
            !seen.0.contains(secret),
            "{what} appears in logs, metrics or answers (see target/faults/secrets/)"
        );
    }
}

/// Posts `total` bytes of spaces with chunked encoding (no Content-Length); the answer's status,
/// read while still sending (the receiver answers as soon as the body passes its limit).
async fn post_chunked(addr: &str, path: &str, total: usize) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    if write.write_all(head.as_bytes()).await.is_ok() {
        while sent < total {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if write.write_all(&frame).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        let _ = write.write_all(b"0\r\n\r\n").await;
    }
    let text = answer.await.unwrap();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer after {sent} bytes: {text:?}"))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_within_bounded_memory() {
    let _alone = support::one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("hostile_bodies", None, &brokers).await;
    let product = pipeline.product();
    let path = pipeline.connection(&product);
    pipeline.start("receiver");
    pipeline.wait_ready().await;
    let url = format!("http://{}{path}", pipeline.addr);
    let http = reqwest::Client::new();
    let ok = r#"{"events":[{"event_type":"purchase","user_id":"u","insert_id":"h-1"}]}"#;
    assert_eq!(http.post(&url).body(ok).send().await.unwrap().status(), 200);
    let pid = pipeline.pid("receiver");
    let before = peak_rss_kb(pid);

    // 1 GiB of zeros in about a megabyte, sent 16 times at once.
    let bomb = gzip(&vec![0u8; 1 << 30]);
    assert!(bomb.len() < 2 << 20, "bomb of {} bytes", bomb.len());
    // Far deeper than any JSON parser should recurse, inside a valid event (so the body check
    // walks into it instead of refusing the shape at the first bracket).
    let nested = format!(
        r#"{{"events":[{{"event_type":"x","deep":{}{}}}]}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    // Larger than the default 10 MiB body limit.
    let oversized = vec![b' '; 11 << 20];

    let mut sends = Vec::new();
    for i in 0..48 {
        let http = http.clone();
        let url = url.clone();
        let (body, gzip) = match i % 3 {
            0 => (bomb.clone(), true),
            1 => (nested.clone().into_bytes(), false),
            _ => (oversized.clone(), false),
        };
        sends.push(tokio::spawn(async move {
            let mut request = http.post(&url).body(body);
            if gzip {
                request = request.header("content-encoding", "gzip");
            }
            let response = request.send().await.unwrap();
            (
                i % 3,
                response.status().as_u16(),
                response.text().await.unwrap(),
            )
        }));
    }
    // Oversized bodies streamed without Content-Length (chunked): refused once they pass it.
    let streamed: Vec<_> = (0..4)
        .map(|_| {
            let (addr, path) = (pipeline.addr.clone(), path.clone());
            tokio::spawn(async move { post_chunked(&addr, &path, 11 << 20).await })
        })
        .collect();
    for send in sends {
        let (kind, status, answer) = send.await.unwrap();
        match kind {
            0 | 2 => assert!(status == 413 || status == 503, "{status} {answer}"),
            _ => {
                assert_eq!(status, 400, "{answer}");
                assert!(
                    answer.contains("recursion limit"),
                    "not the deep path: {answer}"
                );
            }
        }
    }
    for s in streamed {
        let status = s.await.unwrap();
        assert!(
            status == 413 || status == 503,
            "streamed oversize body: {status}"
        );
    }
    let after = peak_rss_kb(pid);
    println!("receiver peak RSS: {before} kB before, {after} kB after the hostile bodies");
    assert!(
        after - before < 256 * 1024,
        "peak memory grew by {} MiB",
        (after - before) / 1024
    );
    // Still serving, and nothing of the refused bodies was stored.
    assert_eq!(http.post(&url).body(ok).send().await.unwrap().status(), 200);
}

/// 150 concurrent gzip bodies of about 10 KB that each decode to almost 10 MiB used to pin
/// ~20 MiB each for seconds. The receiver holds at most its body budget (256 MiB, a quarter of
/// it per connection): the rest are answered 503 with `Retry-After`, and another connection's
/// requests are answered 200 meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_gzip_bodies_stays_within_the_body_budget() {
    let _alone = support::one_at_a_time().await;
    let brokers = infra().kafka_brokers;
    let mut pipeline = Pipeline::new("gzip_burst", None, &brokers).await;
    let product = pipeline.product();
    let hostile = pipeline.connection(&product);
    let honest = pipeline.connection(&product);
    pipeline.start("receiver");
    pipeline.wait_ready().await;
    let base = format!("http://{}", pipeline.addr);
    let http = reqwest::Client::new();
    let ok = r#"{"events":[{"event_type":"purchase","user_id":"u","insert_id":"g-0"}]}"#;
    assert_eq!(
        http.post(format!("{base}{honest}"))
            .body(ok)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let pid = pipeline.pid("receiver");
    let before = peak_rss_kb(pid);

    // Decodes to 10 MiB minus a little; refused after decoding (not a batch), so nothing of it
    // is stored: only the memory it needs while it is read matters here.
    let pad = "a".repeat((10 << 20) - 64);
    let body = gzip(format!(r#"{{"pad":"{pad}","events":5}}"#).as_bytes());
    assert!(body.len() < 64 * 1024, "{} bytes compressed", body.len());
    let mut burst = Vec::new();
    for _ in 0..150 {
        let (http, url, body) = (http.clone(), format!("{base}{hostile}"), body.clone());
        burst.push(tokio::spawn(async move {
            let answer = http
                .post(&url)
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .unwrap();
            let retry_after = answer.headers().contains_key("retry-after");
            (answer.status().as_u16(), retry_after)
        }));
    }
    let mut honest_answers = Vec::new();
    for i in 0..20 {
        let body = ok.replace("g-0", &format!("g-{}", i + 1));
        honest_answers.push(
            http.post(format!("{base}{honest}"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    let mut statuses = std::collections::BTreeMap::new();
    for b in burst {
        let (status, retry_after) = b.await.unwrap();
        if status == 503 {
            assert!(retry_after, "503 without Retry-After");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    let after = peak_rss_kb(pid);
    println!(
        "gzip burst: {statuses:?}; honest {honest_answers:?}; receiver peak RSS {} MiB -> {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        statuses.keys().all(|s| *s == 400 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains_key(&503),
        "the budget never ran out? {statuses:?}"
    );
    assert!(
        honest_answers.iter().all(|s| *s == 200),
        "{honest_answers:?}"
    );
    assert!(
        after - before < 400 * 1024,
        "peak memory grew by {} MiB",
        (after - before) / 1024
    );
}
