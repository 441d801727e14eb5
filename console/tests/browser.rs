//! The settings console in a real browser: headless Chromium driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them), against the console, a
//! receiver, PostgreSQL and the broker. The flow of the product documents: log in, create a
//! product and an Amplitude source, copy its URL, post an event and see the row turn Active,
//! rotate, pause, create an endpoint to a local sink, press Test Delivery, read the attempt in the
//! webhook logs. A product named like an XSS attack is shown as text.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use gf_control::{Actor, AdminKeys};
use gf_receiver::{Receiver, ReceiverOptions};
use gf_tests::{TestDb, test_config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser() -> (Driver, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver package; .ci/run installs it)");
    let driver = Driver(driver);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage", "--window-size=1280,2000"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("chromedriver did not start a browser: {e}"),
        }
    }
}

/// A webhook receiver answering 200 `received`.
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreceived")
                    .await;
            });
        }
    });
    format!("http://{addr}/hooks")
}

/// Retries `op` on the element `css` until it works or 10 s pass: a click that navigates
/// returns before the next page is there, and an element of the old page goes stale.
async fn on<T, F, Fut>(client: &Client, css: &str, op: F) -> T
where
    F: Fn(fantoccini::elements::Element) -> Fut,
    Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = match client.find(Locator::Css(css)).await {
            Ok(element) => op(element).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(value) => return value,
            Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn text(client: &Client, css: &str) -> String {
    on(client, css, |e| async move { e.text().await }).await
}

async fn click(client: &Client, css: &str) {
    on(client, css, |e| async move { e.click().await }).await
}

async fn type_into(client: &Client, css: &str, value: &str) {
    on(client, css, |e| async move { e.send_keys(value).await }).await
}

/// Waits until the element `css` reads `expected`.
async fn text_becomes(client: &Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = text(client, css).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} reads {now:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the browser is on a page whose path ends with `suffix`.
async fn on_page(client: &Client, suffix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let at = client.current_url().await.unwrap();
        if at.path().ends_with(suffix) {
            return;
        }
        assert!(Instant::now() < deadline, "still at {at}, not …{suffix}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads until the first connection row's status reads `status`.
async fn row_status_becomes(client: &Client, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = text(client, "#connections tr[data-connection] .status").await;
        if now == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "status stayed {now}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.refresh().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_team_does_everything_in_the_console() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = TestDb::migrated().await;
    let receiver_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_base = format!("http://{}", receiver_listener.local_addr().unwrap());
    let config = test_config(&[
        ("DATABASE_URL", &db.url),
        ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
        ("GF_PUBLIC_URL", &receiver_base),
        ("GF_TOPIC_PARTITIONS", "1"),
    ]);
    let kafka = gf_runtime::kafka::KafkaSettings::from_config(&config).unwrap();
    let topics = gf_runtime::topics::Topics::new(&config.topic_prefix);
    gf_runtime::kafka::ensure_topics(
        &kafka,
        &topics.specs(&gf_runtime::topics::TopicLayout::local(
            1,
            kafka.max_record_bytes,
        )),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let receiver = Receiver::new(
        &config,
        ReceiverOptions::from_config(&config),
        prometheus::Registry::new(),
        stop.clone(),
    )
    .unwrap();
    tokio::spawn(receiver.serve(receiver_listener).unwrap());
    let console_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let console = format!("http://{}", console_listener.local_addr().unwrap());
    tokio::spawn(gf_console::serve(
        console_listener,
        gf_console::state(&config).unwrap(),
        stop.clone(),
    ));
    let (_, key) = AdminKeys::new(gf_runtime::db::pool(&db.url, 1).unwrap())
        .create(
            "browser",
            &Actor::Cli {
                user: "test".into(),
            },
        )
        .await
        .unwrap();

    let (_driver, client) = browser().await;
    // Log in with the admin key.
    client.goto(&console).await.unwrap();
    let field = client.find(Locator::Css("input[name=key]")).await.unwrap();
    field.send_keys("gfa_wrong").await.unwrap();
    click(&client, "form[action='/login'] button").await;
    assert!(
        text(&client, ".error")
            .await
            .contains("not a live admin key")
    );
    let field = client.find(Locator::Css("input[name=key]")).await.unwrap();
    field.send_keys(&key.reveal()).await.unwrap();
    click(&client, "form[action='/login'] button").await;
    // The login answers with a redirect: wait for it rather than read the URL mid-navigation
    // (a CI run read it too early).
    on_page(&client, "/products").await;

    // A product whose name is an attack is shown as text.
    let attack = "<img src=x onerror=\"window.__xss=1\">";
    type_into(&client, "input[name=name]", attack).await;
    click(&client, "form[action='/products'] button").await;
    text_becomes(&client, "h1", attack).await;
    assert!(
        client
            .find_all(Locator::Css("main img"))
            .await
            .unwrap()
            .is_empty()
    );
    let xss = client
        .execute("return window.__xss === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(xss, json!(true));

    // Connect → Events: one card per provider; Create source shows the URL once.
    let cards = client.find_all(Locator::Css(".cards .card")).await.unwrap();
    assert_eq!(cards.len(), 4);
    click(&client, "div[data-provider=amplitude] button").await;
    let url = text(&client, "#secret").await;
    assert!(
        url.starts_with(&format!("{receiver_base}/ingest/amplitude/gft_")),
        "{url}"
    );
    click(&client, "button[data-copy=secret]").await;
    click(&client, "main a").await;
    row_status_becomes(&client, "pending").await;
    let page = client.source().await.unwrap();
    assert!(!page.contains(&url), "the URL is shown again");

    // An event turns the row Active.
    let answer = reqwest::Client::new()
        .post(&url)
        .body(r#"{"events":[{"event_type":"purchase","user_id":"u1","insert_id":"b-1"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    row_status_becomes(&client, "active").await;

    // Rotate (confirmed), then pause.
    click(&client, "form[action$='/rotate'] button").await;
    client.accept_alert().await.unwrap();
    let rotated = text(&client, "#secret").await;
    assert!(rotated.starts_with(&format!("{receiver_base}/ingest/amplitude/gft_")));
    assert_ne!(rotated, url);
    let old = reqwest::Client::new()
        .post(&url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old URL still works");
    click(&client, "main a").await;
    click(&client, "form[action$='/pause'] button").await;
    row_status_becomes(&client, "paused").await;

    // Webhooks: create an endpoint, press Test Delivery, read the attempt in the logs.
    click(&client, "main p a").await;
    on_page(&client, "/webhooks").await;
    type_into(&client, "input[name=url]", &sink().await).await;
    click(&client, "form[action$='/endpoints'] button").await;
    assert!(text(&client, "#secret").await.starts_with("whsec_"));
    click(&client, "main a").await;
    click(&client, "form[action$='/test'] button").await;
    assert_eq!(text(&client, "#test-status").await, "200");
    assert_eq!(text(&client, "#test-body").await, "received");
    click(&client, "main p a").await;
    click(&client, "#deliveries a").await;
    let attempt = text(&client, "#attempts tr:nth-child(2)").await;
    assert!(attempt.contains("200"), "{attempt}");

    // The audit log names the key for each change.
    client.goto(&format!("{console}/audit")).await.unwrap();
    let audit = text(&client, "main table").await;
    for action in [
        "product.create",
        "connection.create",
        "connection.rotate",
        "connection.pause",
        "endpoint.create",
        "endpoint.test",
    ] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit log"
        );
    }
    assert!(!client.source().await.unwrap().contains(&key.reveal()));
    client.close().await.unwrap();
}
