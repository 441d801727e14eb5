//! The settings console in a real browser: headless Chromium driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them), against the console, a
//! receiver, PostgreSQL and the broker. The flow of the product documents: log in, create a
//! product and an Amplitude source, copy its URL, post an event and see the row turn Active,
//! rotate, pause, create an endpoint to a local sink, press Test Delivery, read the attempt in the
//! webhook logs. A product named like an XSS attack is shown as text. The Outcomes page shows
//! the demo's conversation converted, with its revenue, its chart and its timeline.

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

/// PostgreSQL, the topics, a receiver and the console, on ports of their own; stopped on drop.
struct Stack {
    db: TestDb,
    /// The console's base URL.
    console: String,
    /// The receiver's base URL (`GF_PUBLIC_URL`: ingest URLs point here).
    receiver: String,
    settings: gf_control::settings::Settings,
    keys: AdminKeys,
    actor: Actor,
    _stop: tokio_util::sync::DropGuard,
}

async fn stack() -> Stack {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = TestDb::migrated().await;
    let receiver_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = format!("http://{}", receiver_listener.local_addr().unwrap());
    let config = test_config(&[
        ("DATABASE_URL", &db.url),
        ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
        ("GF_PUBLIC_URL", &receiver),
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
    let serving = Receiver::new(
        &config,
        ReceiverOptions::from_config(&config),
        prometheus::Registry::new(),
        stop.clone(),
    )
    .unwrap();
    tokio::spawn(serving.serve(receiver_listener).unwrap());
    let console_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let console = format!("http://{}", console_listener.local_addr().unwrap());
    let state = gf_console::state(&config).unwrap();
    let settings = state.settings.clone();
    tokio::spawn(gf_console::serve(console_listener, state, stop.clone()));
    let keys = AdminKeys::new(gf_runtime::db::pool(&db.url, 1).unwrap());
    Stack {
        db,
        console,
        receiver,
        settings,
        keys,
        actor: Actor::Cli {
            user: "test".into(),
        },
        _stop: stop.drop_guard(),
    }
}

impl Stack {
    /// A new admin key for every product, revealed.
    async fn admin_key(&self) -> String {
        let (_, key) = self.keys.create("browser", &self.actor).await.unwrap();
        key.reveal()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_team_does_everything_in_the_console() {
    let s = stack().await;
    let (console, receiver_base, key) =
        (s.console.clone(), s.receiver.clone(), s.admin_key().await);

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
    field.send_keys(&key).await.unwrap();
    click(&client, "form[action='/login'] button").await;
    // The login answers with a redirect: wait for it rather than read the URL mid-navigation
    // (a CI run read it too early).
    on_page(&client, "/products").await;

    // A product whose name is an attack is shown as text.
    let attack = "<img src=x onerror=\"window.__xss=1\">";
    type_into(&client, "input[name=name]", attack).await;
    click(&client, "form[action='/products'][method=post] button").await;
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
    let cards = client
        .find_all(Locator::Css(".cards .card[data-provider]"))
        .await
        .unwrap();
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
    click(&client, "main p a[href$='/webhooks']").await;
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
    assert!(!client.source().await.unwrap().contains(&key));
    client.close().await.unwrap();
}

/// The demo's conversation (user_test_123 starts it; a purchase, its refund, then an upgrade),
/// written through the attributor's store, as the Outcomes page shows it. Screenshots of the
/// page and the conversation go to `target/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcomes_page_shows_what_the_demo_conversation_led_to() {
    let s = stack().await;
    let (console, db, actor) = (&s.console, &s.db, &s.actor);
    let product = s
        .settings
        .create_product(actor, "Demo product")
        .await
        .unwrap()
        .id;
    let key = s.admin_key().await;

    let message: gf_schemas::conversation::ConversationMessage = serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "kind": "started", "productId": product,
        "externalConversationId": "demo-conversation", "externalUserId": "user_test_123",
        "email": "ada@example.com", "name": null, "occurredAt": "2025-05-18T11:58:00.000Z",
        "role": "user", "metadata": {}
    }))
    .unwrap();
    let event = |insert_id: &str, kind: &str, minute: u32, revenue: f64, influence: &str| {
        serde_json::from_value::<gf_schemas::canonical::CanonicalEvent>(json!({
            "id": gf_schemas::canonical::CanonicalEvent::derive_id(product, insert_id),
            "productId": product, "connectionId": uuid::Uuid::nil(), "source": "amplitude",
            "eventType": kind, "externalUserId": "user_test_123",
            "eventAt": format!("2025-05-18T12:{minute:02}:00.000Z"), "insertId": insert_id,
            "value": revenue, "valueType": "currency", "properties": {}, "userHints": {},
            "externalOrganizationId": null, "organizationHints": {}, "influence": influence,
            "influenceRule": "revenue", "qualityImpactScore": null,
            "externalConversationId": null, "receivedAt": "2025-05-18T12:10:00.000Z",
            "mapperVersion": 1,
            "origin": {"topic": "gf.raw.v1", "partition": 0, "offset": 0, "index": 0},
            "warnings": []
        }))
        .unwrap()
    };
    let batch = gf_attributor::store::Batch {
        conversations: vec![message],
        events: vec![
            event(
                "amplitude:demo_purchase_001",
                "purchase",
                0,
                49.0,
                "positive",
            ),
            event(
                "amplitude:demo_refund_001",
                "Order Refunded",
                1,
                -49.0,
                "negative",
            ),
            event(
                "posthog:demo_upgrade",
                "subscription upgraded",
                5,
                20.0,
                "positive",
            ),
        ],
    };
    let pool = gf_runtime::db::pool(&db.url, 2).unwrap();
    gf_attributor::store::write(&pool, &batch, &gf_attributor::store::NoPublish)
        .await
        .unwrap();

    let (_driver, client) = browser().await;
    client.goto(console).await.unwrap();
    type_into(&client, "input[name=key]", &key).await;
    click(&client, "form[action='/login'] button").await;
    on_page(&client, "/products").await;
    click(&client, "main table a").await;
    click(&client, "main p a[href$='/outcomes']").await;
    on_page(&client, "/outcomes").await;

    let row = "#conversations tr[data-verdict]";
    assert_eq!(
        text(&client, &format!("{row} td:first-child")).await,
        "demo-conversation"
    );
    assert_eq!(text(&client, &format!("{row} .verdict")).await, "converted");
    assert_eq!(text(&client, &format!("{row} td.revenue")).await, "69.00");
    assert_eq!(text(&client, "div[data-total=converted] .big").await, "1");
    // The chart: one day, revenue 69 and refunds 49 drawn to scale (69 is the top).
    let bars = client
        .find_all(Locator::Css("#chart rect.revenue"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 1);
    assert_eq!(
        bars[0].attr("data-value").await.unwrap().as_deref(),
        Some("69")
    );
    assert_eq!(
        bars[0].attr("height").await.unwrap().as_deref(),
        Some("164.0")
    );
    let refunds = client
        .find(Locator::Css("#chart rect.refunds"))
        .await
        .unwrap();
    assert_eq!(
        refunds.attr("data-value").await.unwrap().as_deref(),
        Some("49")
    );
    save_screenshot(&client, "outcomes").await;

    // Filtered by verdict: nothing refunded (the upgrade came after the refund).
    click(&client, "p.filters a[href$='verdict=refunded']").await;
    on(&client, "main", |e| async move {
        match e.text().await?.contains("No conversations yet.") {
            true => Ok(()),
            false => Err(fantoccini::error::CmdError::InvalidArgument(
                "wait".into(),
                "not yet".into(),
            )),
        }
    })
    .await;
    click(&client, "p.filters a[href$='verdict=converted']").await;
    click(&client, "#conversations td a").await;
    on_page(&client, "").await;
    let timeline = text(&client, "#timeline").await;
    for what in [
        "conversation started",
        "purchase",
        "Order Refunded",
        "subscription upgraded",
    ] {
        assert!(timeline.contains(what), "{what} missing from {timeline}");
    }
    assert_eq!(text(&client, "#outcome .verdict").await, "converted");
    save_screenshot(&client, "conversation").await;
    client.close().await.unwrap();
}

/// Saves the browser's view as `target/screenshots/{name}.png` for a person to look at.
async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// A sender's first requests appear in the connection's live log without a reload (a refusal
/// with its code and message), and the product's overview counts them; screenshots of both go
/// to `target/screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_log_and_the_overview_show_what_a_sender_was_answered() {
    let s = stack().await;
    let (console, actor) = (&s.console, &s.actor);
    let product = s
        .settings
        .create_product(actor, "Live product")
        .await
        .unwrap()
        .id;
    let created = s
        .settings
        .create_connection(actor, product, gf_schemas::Provider::Segment, None)
        .await
        .unwrap();
    let (connection, url) = (created.connection.id, created.url);
    let key = s.admin_key().await;

    let (_driver, client) = browser().await;
    client.goto(console).await.unwrap();
    type_into(&client, "input[name=key]", &key).await;
    click(&client, "form[action='/login'] button").await;
    on_page(&client, "/products").await;
    client
        .goto(&format!("{console}/connections/{connection}/requests"))
        .await
        .unwrap();
    assert!(
        text(&client, "#waiting")
            .await
            .contains("Waiting for the first request")
    );

    // The sender's first requests, while the page is open.
    let http = reqwest::Client::new();
    let accepted = http
        .post(&url)
        .body(r#"[{"type":"track","event":"Order Completed","userId":"u1"},{"type":"identify","userId":"u1"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let refused = http
        .post(&url)
        .body(r#"{"no":"type"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let deadline = Instant::now() + Duration::from_secs(15);
    while client
        .find_all(Locator::Css("#requests tr[data-request]"))
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the live log did not show the requests"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refusal = text(&client, "#requests tr[data-status='400'] .refusal").await;
    assert!(refusal.contains("invalid_shape"), "{refusal}");
    assert!(refusal.contains("type"), "{refusal}");
    let stored = text(&client, "#requests tr[data-status='200']").await;
    assert!(stored.contains("Dropped: identify"), "{stored}");
    assert!(
        !client
            .source()
            .await
            .unwrap()
            .contains(url.rsplit('_').next().unwrap())
    );
    save_screenshot(&client, "live-log").await;

    // The overview counts them.
    client
        .goto(&format!("{console}/products/{product}"))
        .await
        .unwrap();
    assert_eq!(text(&client, "div[data-total=requests] .big").await, "2");
    assert_eq!(text(&client, "div[data-total=received] .big").await, "2");
    assert_eq!(text(&client, "div[data-total=accepted] .big").await, "1");
    assert_eq!(text(&client, "div[data-total=dropped] .big").await, "1");
    let answers = text(&client, "#traffic td.answers").await;
    assert!(
        answers.contains("200 × 1") && answers.contains("400 × 1"),
        "{answers}"
    );
    let accepted_bar = client
        .find(Locator::Css("#events-chart rect.accepted"))
        .await
        .unwrap();
    assert_eq!(
        accepted_bar.attr("data-value").await.unwrap().as_deref(),
        Some("1")
    );
    save_screenshot(&client, "overview").await;
    client.close().await.unwrap();
}

/// A read-only key limited to one product sees only it, and its page without a form that changes
/// it; posting the Rotate URL form anyway (from the page, with the session's CSRF token, and over
/// plain HTTP with the session's cookie) is refused 403 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_sees_no_rotate_button_and_cannot_rotate() {
    let s = stack().await;
    let (console, db, actor) = (&s.console, &s.db, &s.actor);
    let product = s
        .settings
        .create_product(actor, "Read only")
        .await
        .unwrap()
        .id;
    let connection = s
        .settings
        .create_connection(actor, product, gf_schemas::Provider::Amplitude, None)
        .await
        .unwrap()
        .connection
        .id;
    let hidden = s.settings.create_product(actor, "Hidden").await.unwrap().id;
    let (reader, key) = s
        .keys
        .create_scoped(
            "dashboard",
            &gf_control::Scope::new(gf_control::Role::Read, Some(vec![product])),
            actor,
        )
        .await
        .unwrap();
    let database = db.client().await;
    let stored = "SELECT token_lookup, rotated_at IS NULL FROM connections WHERE id = $1";
    let row = database.query_one(stored, &[&connection]).await.unwrap();
    let before: (String, bool) = (row.get(0), row.get(1));

    let (_driver, client) = browser().await;
    client.goto(console).await.unwrap();
    type_into(&client, "input[name=key]", &key.reveal()).await;
    click(&client, "form[action='/login'] button").await;
    on_page(&client, "/products").await;
    // Limited to one product: only it is listed, and no form makes another.
    assert_eq!(text(&client, "main table a").await, "Read only");
    assert!(!client.source().await.unwrap().contains("Hidden"));
    assert!(
        client
            .find_all(Locator::Css("main form[method=post]"))
            .await
            .unwrap()
            .is_empty()
    );
    client
        .goto(&format!("{console}/products/{hidden}"))
        .await
        .unwrap();
    text_becomes(&client, "h1", "That did not work").await;
    assert_eq!(
        text(&client, ".error").await,
        format!("no product with id {hidden}")
    );
    client
        .goto(&format!("{console}/products/{product}"))
        .await
        .unwrap();
    text_becomes(&client, "h1", "Read only").await;
    // The connection is listed, with no button that changes anything.
    assert_eq!(
        text(&client, "#connections tr[data-connection] .status").await,
        "pending"
    );
    let page = client.source().await.unwrap();
    for change in ["Rotate URL", "Pause", "Disconnect", "Create source"] {
        assert!(!page.contains(change), "a read key is shown {change:?}");
    }
    let forms = client
        .find_all(Locator::Css("main form[method=post]"))
        .await
        .unwrap();
    assert!(forms.is_empty(), "a read key is shown a form");

    // The form posted anyway, from the page, with the session's CSRF token (the logout form
    // carries it).
    client
        .execute(
            r#"const form = document.createElement("form");
               form.method = "post";
               form.action = "/connections/" + arguments[0] + "/rotate";
               const csrf = document.createElement("input");
               csrf.type = "hidden";
               csrf.name = "csrf";
               csrf.value = document.querySelector("input[name=csrf]").value;
               form.appendChild(csrf);
               document.body.appendChild(form);
               form.submit();"#,
            vec![json!(connection)],
        )
        .await
        .unwrap();
    on_page(&client, "/rotate").await;
    text_becomes(&client, "h1", "That did not work").await;
    assert!(text(&client, ".error").await.contains("read-only"));

    // And over plain HTTP with the session's cookie: 403.
    client
        .goto(&format!("{console}/products/{product}"))
        .await
        .unwrap();
    let csrf = on(&client, "input[name=csrf]", |e| async move {
        e.attr("value").await
    })
    .await
    .expect("the session's CSRF token");
    let cookie = client
        .get_named_cookie(gf_console::ui::session::COOKIE)
        .await
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{console}/connections/{connection}/rotate"))
        .header(
            "cookie",
            format!("{}={}", gf_console::ui::session::COOKIE, cookie.value()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    assert!(!answer.text().await.unwrap().contains("gft_"));

    // Nothing changed, and nothing is audited for the key.
    let row = database.query_one(stored, &[&connection]).await.unwrap();
    let after: (String, bool) = (row.get(0), row.get(1));
    assert_eq!(after, before, "the connection was rotated");
    let named: i64 = database
        .query_one(
            "SELECT count(*) FROM audit_log WHERE actor LIKE $1",
            &[&format!("admin_key:{}%", reader.id)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 0, "a refused change is audited");
    client.close().await.unwrap();
}
