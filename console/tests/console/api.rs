//! The control-plane API over real HTTP against a real PostgreSQL (and broker, for dead letters):
//! authorization on every route, the error format, pagination, each flow, and the OpenAPI
//! document checked by an external validator.

use std::net::TcpListener;

use chrono::DurationRound;
use gf_control::{Actor, AdminKeys};
use gf_tests::{TestDb, test_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
    keys: AdminKeys,
    stop: CancellationToken,
    _db: TestDb,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Api {
    async fn start() -> Api {
        let _ = gf_runtime::telemetry::init("test", "warn");
        let db = TestDb::migrated().await;
        let config = test_config(&[
            ("DATABASE_URL", &db.url),
            ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
            ("GF_PUBLIC_URL", "https://in.example.com"),
        ]);
        let keys = AdminKeys::new(gf_runtime::db::pool(&db.url, 1).unwrap());
        let (_, secret) = keys
            .create(
                "api test",
                &Actor::Cli {
                    user: "test".into(),
                },
            )
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
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
        let state = gf_console::state(&config).unwrap();
        tokio::spawn(gf_console::serve(listener, state, stop.clone()));
        Api {
            base,
            key: secret.reveal(),
            http: reqwest::Client::new(),
            keys,
            stop,
            _db: db,
        }
    }

    async fn call_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let response = loop {
            match request.try_clone().unwrap().send().await {
                Ok(r) => break r,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("the API is unreachable: {e}"),
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.key), method, path, body).await
    }

    /// Expects the error answer `expected` / `code`; returns the error object.
    async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
        code: &str,
    ) -> Value {
        let (status, value) = self.call(method, path, body).await;
        error(status, &value, expected, code)
    }

    /// Expects 400 `invalid_request`; returns the field it names.
    async fn invalid_field(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.refused(
            method,
            path,
            body,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await["field"]
            .clone()
    }

    /// A new product (its id) and a connection of `provider` in it (the API's answer).
    async fn product_with_connection(&self, name: &str, provider: &str) -> (String, Value) {
        let product = self
            .ok(
                Method::POST,
                "/api/v1/products",
                Some(json!({"name": name})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let connection = self
            .ok(
                Method::POST,
                "/api/v1/connections",
                Some(json!({"productId": product, "provider": provider})),
            )
            .await;
        (product, connection)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }
}

/// Asserts the error format and returns the error object.
fn error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) -> Value {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    error.clone()
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/products"),
    ("GET", "/api/v1/products"),
    ("POST", "/api/v1/connections"),
    ("GET", "/api/v1/connections"),
    ("GET", "/api/v1/connections/{id}"),
    ("POST", "/api/v1/connections/{id}/rotate"),
    ("POST", "/api/v1/connections/{id}/pause"),
    ("POST", "/api/v1/connections/{id}/resume"),
    ("POST", "/api/v1/connections/{id}/disconnect"),
    ("PUT", "/api/v1/connections/{id}/secret"),
    ("PUT", "/api/v1/connections/{id}/body-excerpts"),
    ("DELETE", "/api/v1/connections/{id}/secret"),
    ("POST", "/api/v1/endpoints"),
    ("GET", "/api/v1/endpoints"),
    ("POST", "/api/v1/endpoints/{id}/test"),
    ("POST", "/api/v1/endpoints/{id}/enable"),
    ("POST", "/api/v1/endpoints/{id}/disable"),
    ("POST", "/api/v1/endpoints/{id}/rotate-secret"),
    ("GET", "/api/v1/deliveries"),
    ("POST", "/api/v1/deliveries/retry"),
    ("GET", "/api/v1/deliveries/{id}/attempts"),
    ("GET", "/api/v1/deadletters"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/conversations"),
    ("GET", "/api/v1/conversations/{id}"),
    ("GET", "/api/v1/products/{id}/outcomes"),
    ("GET", "/api/v1/products/{id}/stats"),
    ("GET", "/api/v1/connections/{id}/requests"),
];

#[tokio::test]
async fn every_route_needs_a_live_admin_key_and_says_nothing_more() {
    let api = Api::start().await;
    let (revoked_key, revoked) = {
        let (key, secret) = api
            .keys
            .create("soon revoked", &Actor::Cli { user: "t".into() })
            .await
            .unwrap();
        (key, secret.reveal())
    };
    api.keys
        .revoke(revoked_key.id, &Actor::Cli { user: "t".into() })
        .await
        .unwrap();
    let wrong = gf_tests::nearly(&api.key);
    let id = uuid::Uuid::now_v7().to_string();
    let mut bodies = Vec::new();
    for (method, path) in ROUTES {
        let path = path.replace("{id}", &id);
        for key in [
            None,
            Some(revoked.as_str()),
            Some(wrong.as_str()),
            Some("gfa_x"),
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, body) = api
                .call_as(key, method.clone(), &path, Some(json!({})))
                .await;
            error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            bodies.push(body.to_string());
        }
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "refusals differ: {bodies:?}");
    assert!(!bodies[0].contains(&api.key) && !bodies[0].contains(&revoked));
}

#[tokio::test]
async fn products_and_connections_over_the_api() {
    let api = Api::start().await;
    // Errors: a blank name, an unknown field, a bad limit, an unknown route.
    assert_eq!(
        api.invalid_field(Method::POST, "/api/v1/products", Some(json!({"name": " "})))
            .await,
        "name"
    );
    api.refused(
        Method::POST,
        "/api/v1/products",
        Some(json!({"nam": "x"})),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        api.invalid_field(Method::GET, "/api/v1/products?limit=0", None)
            .await,
        "limit"
    );
    api.refused(
        Method::GET,
        "/api/v1/nothing",
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Pagination.
    let mut ids = Vec::new();
    for name in ["A", "<img src=x onerror=alert(1)>", "C"] {
        let p = api
            .ok(
                Method::POST,
                "/api/v1/products",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(p["name"], name);
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let first = api.ok(Method::GET, "/api/v1/products?limit=2", None).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["nextOffset"], 2);
    let rest = api
        .ok(Method::GET, "/api/v1/products?limit=2&offset=2", None)
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["nextOffset"], Value::Null);
    assert_eq!(rest["nextCursor"], Value::Null);
    // Keyset paging: the cursor of a page leads to the rest, in the same order.
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a cursor while more follow");
    let after = api
        .ok(
            Method::GET,
            &format!("/api/v1/products?limit=2&after={cursor}"),
            None,
        )
        .await;
    assert_eq!(after["items"], rest["items"]);
    assert_eq!(after["nextCursor"], Value::Null);
    let order: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(after["items"].as_array().unwrap())
        .map(|p| &p["id"])
        .collect();
    assert_eq!(
        order
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect::<Vec<_>>(),
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "creation order across pages"
    );
    assert_eq!(
        api.invalid_field(Method::GET, "/api/v1/products?after=not-a-cursor", None)
            .await,
        "after"
    );

    // A connection: the URL only at create and rotate.
    let product = &ids[0];
    let (s, c) = api
        .call(
            Method::POST,
            "/api/v1/connections",
            Some(json!({"productId": product, "provider": "posthog"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let url = c["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("https://in.example.com/ingest/posthog/gft_"),
        "{url}"
    );
    assert_eq!(c["status"], "pending");
    let id = c["id"].as_str().unwrap().to_owned();
    let shown = api
        .ok(Method::GET, &format!("/api/v1/connections/{id}"), None)
        .await;
    assert!(shown.get("url").is_none(), "{shown}");
    let listed = api
        .ok(
            Method::GET,
            &format!("/api/v1/connections?productId={product}"),
            None,
        )
        .await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains("gft_"));
    let paused = api
        .ok(
            Method::POST,
            &format!("/api/v1/connections/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(paused["status"], "paused");
    api.ok(
        Method::POST,
        &format!("/api/v1/connections/{id}/resume"),
        None,
    )
    .await;
    let rotated = api
        .ok(
            Method::POST,
            &format!("/api/v1/connections/{id}/rotate"),
            None,
        )
        .await;
    assert_ne!(rotated["url"], url.as_str());
    assert_eq!(
        api.invalid_field(
            Method::PUT,
            &format!("/api/v1/connections/{id}/secret"),
            Some(json!({"secret": "short"}))
        )
        .await,
        "secret"
    );
    let set = api
        .ok(
            Method::PUT,
            &format!("/api/v1/connections/{id}/secret"),
            Some(json!({"secret": "long enough secret"})),
        )
        .await;
    assert_eq!(set["hasSharedSecret"], true);
    let cleared = api
        .ok(
            Method::DELETE,
            &format!("/api/v1/connections/{id}/secret"),
            None,
        )
        .await;
    assert_eq!(cleared["hasSharedSecret"], false);
    let gone = api
        .ok(
            Method::POST,
            &format!("/api/v1/connections/{id}/disconnect"),
            None,
        )
        .await;
    assert_eq!(gone["status"], "disconnected");
    api.refused(
        Method::POST,
        &format!("/api/v1/connections/{id}/resume"),
        None,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    api.refused(
        Method::POST,
        &format!("/api/v1/connections/{id}/resume"),
        None,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // Unknown and malformed ids, an unknown product, an unknown provider.
    let unknown = uuid::Uuid::now_v7();
    api.refused(
        Method::GET,
        &format!("/api/v1/connections/{unknown}"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::GET,
        "/api/v1/connections/not-a-uuid",
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::POST,
        "/api/v1/connections",
        Some(json!({"productId": unknown, "provider": "segment"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::POST,
        "/api/v1/connections",
        Some(json!({"productId": product, "provider": "mixpanel"})),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    // Every change is audited with the key that made it, and never with a secret.
    let audit = api.ok(Method::GET, "/api/v1/audit", None).await;
    let entries = audit["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "product.create",
        "connection.create",
        "connection.pause",
        "connection.resume",
        "connection.rotate",
        "connection.secret.set",
        "connection.secret.clear",
        "connection.disconnect",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    assert!(
        entries
            .iter()
            .filter(|e| e["action"] != "admin_key.create")
            .all(|e| e["actor"].as_str().unwrap().contains("(api test)"))
    );
    let text = audit.to_string();
    assert!(
        !text.contains("long enough secret") && !text.contains("gft_") && !text.contains(&api.key)
    );
}

/// A local webhook receiver answering 200 with a header and a body.
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nx-sink: yes\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreceived")
                    .await;
            });
        }
    });
    format!("http://{addr}/hooks")
}

#[tokio::test]
async fn endpoints_test_delivery_logs_and_retries_over_the_api() {
    let api = Api::start().await;
    let product = api
        .ok(
            Method::POST,
            "/api/v1/products",
            Some(json!({"name": "Hooks"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.invalid_field(
            Method::POST,
            "/api/v1/endpoints",
            Some(json!({"productId": product, "url": "ftp://x", "events": ["*"]}))
        )
        .await,
        "url"
    );
    assert_eq!(
        api.refused(
            Method::POST,
            "/api/v1/endpoints",
            Some(json!({"productId": product, "url": "http://10.1.2.3/x", "events": ["*"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable"
        )
        .await["field"],
        "url"
    );
    assert_eq!(
        api.invalid_field(
            Method::POST,
            "/api/v1/endpoints",
            Some(json!({"productId": product, "url": sink().await, "events": ["nope.*"]}))
        )
        .await,
        "events"
    );

    let url = sink().await;
    let (s, e) = api
        .call(
            Method::POST,
            "/api/v1/endpoints",
            Some(json!({"productId": product, "url": url, "events": ["conversation.*"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert!(e["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = e["id"].as_str().unwrap().to_owned();
    let listed = api
        .ok(
            Method::GET,
            &format!("/api/v1/endpoints?productId={product}"),
            None,
        )
        .await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains("whsec_"));

    // Test Delivery: status, headers, body and latency of the endpoint's answer.
    let tested = api
        .ok(Method::POST, &format!("/api/v1/endpoints/{id}/test"), None)
        .await;
    assert_eq!(tested["status"], 200, "{tested}");
    assert_eq!(tested["headers"]["x-sink"], "yes");
    assert_eq!(tested["body"], "received");
    assert!(tested["latencyMs"].is_u64());
    let delivery = tested["deliveryId"].as_str().unwrap().to_owned();
    assert_eq!(
        api.invalid_field(
            Method::POST,
            &format!("/api/v1/endpoints/{id}/test"),
            Some(json!({"event": "nope"}))
        )
        .await,
        "event"
    );

    // Webhook logs.
    let deliveries = api
        .ok(
            Method::GET,
            &format!("/api/v1/deliveries?endpointId={id}"),
            None,
        )
        .await;
    assert_eq!(deliveries["items"][0]["id"], delivery.as_str());
    assert_eq!(deliveries["items"][0]["status"], "delivered");
    api.refused(
        Method::GET,
        "/api/v1/deliveries?status=weird",
        None,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let attempts = api
        .ok(
            Method::GET,
            &format!("/api/v1/deliveries/{delivery}/attempts"),
            None,
        )
        .await;
    assert_eq!(attempts["items"][0]["statusCode"], 200);
    api.refused(
        Method::GET,
        &format!("/api/v1/deliveries/{}/attempts", uuid::Uuid::now_v7()),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let retried = api
        .ok(
            Method::POST,
            "/api/v1/deliveries/retry",
            Some(json!({"deliveryId": delivery})),
        )
        .await;
    assert_eq!(retried["retried"][0], delivery.as_str());
    api.refused(
        Method::POST,
        "/api/v1/deliveries/retry",
        Some(json!({"deliveryId": delivery, "failedSince": "2026-01-01T00:00:00Z"})),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    let disabled = api
        .ok(
            Method::POST,
            &format!("/api/v1/endpoints/{id}/disable"),
            None,
        )
        .await;
    assert_eq!(disabled["enabled"], false);
    api.refused(
        Method::POST,
        &format!("/api/v1/endpoints/{id}/test"),
        None,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    api.ok(
        Method::POST,
        &format!("/api/v1/endpoints/{id}/enable"),
        None,
    )
    .await;
    let rotated = api
        .ok(
            Method::POST,
            &format!("/api/v1/endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["secret"], e["secret"]);

    let letters = api
        .ok(Method::GET, "/api/v1/deadletters?stage=normalizer", None)
        .await;
    assert!(letters["items"].is_array(), "{letters}");
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes_and_validates() {
    let api = Api::start().await;
    // Served without a key: it describes the API, it holds nothing.
    let (status, doc) = api
        .call_as(None, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    assert!(doc["components"]["securitySchemes"]["adminKey"].is_object());

    let file = std::env::temp_dir().join(format!("gf-openapi-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
            file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 (with `pip install openapi-spec-validator`; .ci/run installs it)");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "the OpenAPI document does not validate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Schemathesis (an external property-based API tester) generates requests from the OpenAPI
/// document: no answer is a 5xx, and every status, content type and body is the documented one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let api = Api::start().await;
    // Wait for the server before handing it to the tool.
    api.ok(Method::GET, "/api/v1/products", None).await;
    let output = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            &format!("{}/api/v1/openapi.json", api.base),
            "-H",
            &format!("Authorization: Bearer {}", api.key),
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis (`pip install schemathesis`; .ci/run installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    // Its report filters the Authorization header; the key must not appear either way.
    assert!(
        !report.contains(&api.key[21..]),
        "the report shows the admin key"
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{}",
        report
            .lines()
            .filter(|l| !l.contains("Bearer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A canonical event as the normalizer would publish it.
fn business_event(
    product: &str,
    insert_id: &str,
    user: &str,
    at: &str,
    value: Option<f64>,
    influence: &str,
) -> gf_schemas::canonical::CanonicalEvent {
    let product: uuid::Uuid = product.parse().unwrap();
    serde_json::from_value(json!({
        "id": gf_schemas::canonical::CanonicalEvent::derive_id(product, insert_id),
        "productId": product, "connectionId": uuid::Uuid::nil(), "source": "amplitude",
        "eventType": if influence == "negative" { "refund" } else { "purchase" },
        "externalUserId": user, "eventAt": at, "insertId": insert_id, "value": value,
        "valueType": value.map(|_| "currency"), "properties": {}, "userHints": {},
        "externalOrganizationId": null, "organizationHints": {}, "influence": influence,
        "influenceRule": "revenue", "qualityImpactScore": null, "externalConversationId": null,
        "receivedAt": at, "mapperVersion": 1,
        "origin": {"topic": "gf.raw.v1", "partition": 0, "offset": 0, "index": 0},
        "warnings": []
    }))
    .unwrap()
}

fn said(
    product: &str,
    conversation: &str,
    user: &str,
    at: &str,
) -> gf_schemas::conversation::ConversationMessage {
    serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "kind": "message", "productId": product,
        "externalConversationId": conversation, "externalUserId": user, "email": null,
        "name": null, "occurredAt": at, "role": "user", "metadata": {}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_listed_by_verdict_shown_with_their_timeline_and_totalled_by_day() {
    let api = Api::start().await;
    let product = api
        .ok(
            Method::POST,
            "/api/v1/products",
            Some(json!({"name": "Outcomes"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = product.as_str();
    let pool = gf_runtime::db::pool(&api._db.url, 2).unwrap();
    let batch = gf_attributor::store::Batch {
        conversations: vec![
            said(p, "won", "u1", "2026-05-18T12:00:00.000Z"),
            said(p, "lost", "u2", "2026-05-19T09:00:00.000Z"),
            said(p, "quiet", "u3", "2026-05-19T10:00:00.000Z"),
        ],
        events: vec![
            business_event(
                p,
                "a:1",
                "u1",
                "2026-05-18T12:05:00.000Z",
                Some(49.0),
                "positive",
            ),
            business_event(
                p,
                "a:2",
                "u2",
                "2026-05-19T09:01:00.000Z",
                Some(30.0),
                "positive",
            ),
            business_event(
                p,
                "a:3",
                "u2",
                "2026-05-19T09:10:00.000Z",
                Some(-30.0),
                "negative",
            ),
        ],
    };
    gf_attributor::store::write(&pool, &batch, &gf_attributor::store::NoPublish)
        .await
        .unwrap();

    let all = api
        .ok(
            Method::GET,
            &format!("/api/v1/conversations?productId={p}"),
            None,
        )
        .await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["externalConversationId"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quiet", "lost", "won"], "newest first");
    let refunded = api
        .ok(
            Method::GET,
            &format!("/api/v1/conversations?productId={p}&verdict=refunded"),
            None,
        )
        .await;
    let items = refunded["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["externalConversationId"], "lost");
    assert_eq!(
        (items[0]["revenue"].as_f64(), items[0]["refunds"].as_f64()),
        (Some(30.0), Some(30.0))
    );
    // Keyset paging: one per page, then the next.
    let first = api
        .ok(
            Method::GET,
            &format!("/api/v1/conversations?productId={p}&limit=1"),
            None,
        )
        .await;
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = api
        .ok(
            Method::GET,
            &format!("/api/v1/conversations?productId={p}&limit=1&after={cursor}"),
            None,
        )
        .await;
    assert_eq!(second["items"][0]["externalConversationId"], "lost");
    // A time range on the quiet-since time.
    let range = api
        .ok(
            Method::GET,
            &format!("/api/v1/conversations?productId={p}&since=2026-05-19T00:00:00Z&until=2026-05-19T09:30:00Z"),
            None,
        )
        .await;
    assert_eq!(range["items"].as_array().unwrap().len(), 1);

    let id = items[0]["conversationId"].as_str().unwrap();
    let shown = api
        .ok(Method::GET, &format!("/api/v1/conversations/{id}"), None)
        .await;
    assert_eq!(shown["verdict"], "refunded");
    // Its counts by influence and its events are two keys, each once.
    assert_eq!(shown["counts"]["total"], 2);
    assert_eq!(shown["id"], json!(id));
    let events: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["influence"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["positive", "negative"], "in event-time order");
    assert_eq!(shown["activity"][0]["kind"], "message");

    let totals = api
        .ok(Method::GET, &format!("/api/v1/products/{p}/outcomes"), None)
        .await;
    assert_eq!(totals["conversations"], 3);
    assert_eq!(
        (totals["revenue"].as_f64(), totals["refunds"].as_f64()),
        (Some(79.0), Some(30.0))
    );
    let count = |v: &str| {
        totals["byVerdict"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["verdict"] == v)
            .unwrap()["conversations"]
            .clone()
    };
    assert_eq!(
        (count("converted"), count("refunded"), count("open")),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(count("churned_silently"), json!(0));
    let days = totals["byDay"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(
        (days[0]["day"].as_str(), days[0]["revenue"].as_f64()),
        (Some("2026-05-18"), Some(49.0))
    );
    assert_eq!(
        (days[1]["revenue"].as_f64(), days[1]["refunds"].as_f64()),
        (Some(30.0), Some(30.0))
    );

    let unknown = uuid::Uuid::new_v4();
    api.refused(
        Method::GET,
        &format!("/api/v1/conversations/{unknown}"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::GET,
        &format!("/api/v1/products/{unknown}/outcomes"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::GET,
        &format!("/api/v1/conversations?productId={p}&verdict=maybe"),
        None,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_products_stats_and_a_connections_requests_show_what_flowed() {
    use gf_control::traffic::{HourlyCount, RequestRecord, Traffic};
    let api = Api::start().await;
    let (product, connection) = api.product_with_connection("Flows", "segment").await;
    let connection = connection["id"].as_str().unwrap().to_owned();
    let (p, c): (uuid::Uuid, uuid::Uuid) = (product.parse().unwrap(), connection.parse().unwrap());
    let now = chrono::Utc::now();
    let request = |status: u16, accepted: u32, raw: Option<(i32, i64)>| RequestRecord {
        id: uuid::Uuid::now_v7(),
        connection_id: c,
        product_id: p,
        at: now,
        method: "POST".into(),
        status,
        received: 2,
        accepted,
        dropped: 2 - accepted,
        error_code: (status != 200).then(|| "invalid_shape".to_owned()),
        error_message: (status != 200)
            .then(|| "the body is not <b>a Segment message</b>".to_owned()),
        bytes: 120,
        raw,
        excerpt: None,
    };
    let stored = request(200, 1, Some((0, 5)));
    let refused = request(400, 0, None);
    let hour = now.duration_trunc(chrono::Duration::hours(1)).unwrap();
    let count = |r: &RequestRecord| {
        let mut n = HourlyCount::default();
        n.add(r);
        n
    };
    let pool = gf_runtime::db::pool(&api._db.url, 2).unwrap();
    Traffic::new(pool.clone())
        .record(
            &[stored.clone(), refused.clone()],
            &[
                ((c, p, hour, 200), count(&stored)),
                ((c, p, hour, 400), count(&refused)),
            ],
        )
        .await
        .unwrap();
    // The event the stored request became (its origin is the request's raw position).
    let mut event = business_event(
        &product,
        "segment:m1",
        "u1",
        "2026-05-18T12:00:00.000Z",
        None,
        "neutral",
    );
    event.connection_id = c;
    event.origin.partition = 0;
    event.origin.offset = 5;
    gf_attributor::store::write(
        &pool,
        &gf_attributor::store::Batch {
            conversations: Vec::new(),
            events: vec![event.clone()],
        },
        &gf_attributor::store::NoPublish,
    )
    .await
    .unwrap();

    let log = api
        .ok(
            Method::GET,
            &format!("/api/v1/connections/{connection}/requests"),
            None,
        )
        .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let by_status = |s: u64| items.iter().find(|r| r["status"] == s).unwrap();
    assert_eq!(by_status(200)["events"][0]["id"], json!(event.id));
    assert_eq!(by_status(200)["eventIds"], json!([event.id]));
    assert!(
        by_status(200)["droppedBecause"]
            .as_str()
            .unwrap()
            .contains("identify")
    );
    assert_eq!(by_status(400)["error"]["code"], "invalid_shape");
    assert_eq!(by_status(400)["events"], json!([]));

    let stats = api
        .ok(
            Method::GET,
            &format!("/api/v1/products/{product}/stats"),
            None,
        )
        .await;
    let conn = &stats["connections"][0];
    assert_eq!(conn["connectionId"], json!(connection));
    assert_eq!(
        (conn["requests"].as_i64(), conn["received"].as_i64()),
        (Some(2), Some(4))
    );
    assert_eq!(
        (conn["accepted"].as_i64(), conn["dropped"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        conn["statuses"],
        json!([{"status": 200, "requests": 1}, {"status": 400, "requests": 1}])
    );
    assert_eq!(conn["hours"].as_array().unwrap().len(), 1);
    assert!(stats["deadLetters"].is_array());

    let unknown = uuid::Uuid::new_v4();
    api.refused(
        Method::GET,
        &format!("/api/v1/connections/{unknown}/requests"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.refused(
        Method::GET,
        &format!("/api/v1/products/{unknown}/stats"),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// A key made with `role` over `products` (every product when `None`), and its text.
async fn scoped_key(
    api: &Api,
    name: &str,
    role: gf_control::Role,
    products: Option<&[&str]>,
) -> (gf_control::AdminKey, String) {
    let products = products.map(|ids| ids.iter().map(|id| id.parse().unwrap()).collect());
    let (key, secret) = api
        .keys
        .create_scoped(
            name,
            &gf_control::Scope::new(role, products),
            &Actor::Cli {
                user: "test".into(),
            },
        )
        .await
        .unwrap();
    (key, secret.reveal())
}

/// One product with something of everything, made with the test's admin key: a connection, an
/// endpoint (to a local sink), the delivery of a Test Delivery and a conversation.
struct Objects {
    product: String,
    connection: String,
    endpoint: String,
    delivery: String,
    conversation: String,
    sink: String,
}

impl Objects {
    async fn make(api: &Api, name: &str, sink: &str) -> Objects {
        let id = |v: &Value, field: &str| v[field].as_str().unwrap().to_owned();
        let product = id(
            &api.ok(
                Method::POST,
                "/api/v1/products",
                Some(json!({"name": name})),
            )
            .await,
            "id",
        );
        let connection = id(
            &api.ok(
                Method::POST,
                "/api/v1/connections",
                Some(json!({"productId": product, "provider": "amplitude"})),
            )
            .await,
            "id",
        );
        let endpoint = id(
            &api.ok(
                Method::POST,
                "/api/v1/endpoints",
                Some(json!({"productId": product, "url": sink, "events": ["*"]})),
            )
            .await,
            "id",
        );
        let delivery = id(
            &api.ok(
                Method::POST,
                &format!("/api/v1/endpoints/{endpoint}/test"),
                None,
            )
            .await,
            "deliveryId",
        );
        let pool = gf_runtime::db::pool(&api._db.url, 1).unwrap();
        let batch = gf_attributor::store::Batch {
            conversations: vec![said(&product, name, "u1", "2026-05-18T12:00:00.000Z")],
            events: vec![],
        };
        gf_attributor::store::write(&pool, &batch, &gf_attributor::store::NoPublish)
            .await
            .unwrap();
        let conversation = ids(
            &api.ok(
                Method::GET,
                &format!("/api/v1/conversations?productId={product}"),
                None,
            )
            .await,
            "conversationId",
        )[0]
        .clone();
        Objects {
            product,
            connection,
            endpoint,
            delivery,
            conversation,
            sink: sink.to_owned(),
        }
    }

    /// A route of [`ROUTES`] with its `{id}` the object of this product it is about.
    fn path(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/connections/") {
            &self.connection
        } else if path.starts_with("/api/v1/endpoints/") {
            &self.endpoint
        } else if path.starts_with("/api/v1/deliveries/") {
            &self.delivery
        } else if path.starts_with("/api/v1/conversations/") {
            &self.conversation
        } else {
            &self.product
        };
        path.replace("{id}", id)
    }

    /// A body the route takes from a key allowed to use it.
    fn body(&self, method: &str, path: &str) -> Option<Value> {
        match (method, path) {
            ("POST", "/api/v1/products") => Some(json!({"name": "Not made"})),
            ("POST", "/api/v1/connections") => {
                Some(json!({"productId": self.product, "provider": "segment"}))
            }
            ("PUT", _) => Some(json!({"secret": "long enough secret"})),
            ("POST", "/api/v1/endpoints") => {
                Some(json!({"productId": self.product, "url": self.sink, "events": ["*"]}))
            }
            ("POST", "/api/v1/deliveries/retry") => Some(json!({"deliveryId": self.delivery})),
            _ => None,
        }
    }
}

/// Every list, read with the test's admin key: what a change would have changed.
async fn everything(api: &Api) -> Value {
    let mut all = json!({});
    for path in [
        "/api/v1/products",
        "/api/v1/connections",
        "/api/v1/endpoints",
        "/api/v1/deliveries",
        "/api/v1/audit?limit=500",
    ] {
        all[path] = api.ok(Method::GET, path, None).await["items"].clone();
    }
    all
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_reads_everything_and_changes_nothing() {
    let api = Api::start().await;
    let made = Objects::make(&api, "Dashboard", &sink().await).await;
    let (reader, read) = scoped_key(&api, "dashboard", gf_control::Role::Read, None).await;
    let before = everything(&api).await;

    let mut gets = vec![
        format!("/api/v1/conversations?productId={}", made.product),
        format!("/api/v1/conversations/{}", made.conversation),
        format!("/api/v1/products/{}/outcomes", made.product),
    ];
    for (method, route) in ROUTES {
        let path = made.path(route);
        if *method == "GET" {
            gets.push(path);
            continue;
        }
        let (status, body) = api
            .call_as(
                Some(&read),
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
                made.body(method, route),
            )
            .await;
        let refused = error(status, &body, StatusCode::FORBIDDEN, "forbidden");
        assert!(
            refused["message"].as_str().unwrap().contains("read-only"),
            "{method} {path}: {body}"
        );
    }
    for path in gets {
        let (status, body) = api.call_as(Some(&read), Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    }
    assert_eq!(
        everything(&api).await,
        before,
        "a refused change changed something (or was audited)"
    );

    // The audit log names the admin key for each change; the read key made none.
    let admin = api
        .keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "api test")
        .unwrap();
    let audit = api.ok(Method::GET, "/api/v1/audit?limit=500", None).await;
    let changes: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .filter(|(_, action)| !action.starts_with("admin_key."))
        .collect();
    assert_eq!(changes.len(), 4, "{changes:?}");
    let label = format!("admin_key:{} (api test)", admin.id);
    assert!(
        changes.iter().all(|(actor, _)| *actor == label),
        "{changes:?}"
    );
    let reader = format!("admin_key:{}", reader.id);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["actor"].as_str().unwrap().starts_with(&reader)),
        "the read key is named as having changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_products_sees_only_theirs() {
    let api = Api::start().await;
    let sink = sink().await;
    let a = Objects::make(&api, "A", &sink).await;
    let b = Objects::make(&api, "B", &sink).await;
    let other = Objects::make(&api, "Other", &sink).await;
    let (team, two) = scoped_key(
        &api,
        "team",
        gf_control::Role::Admin,
        Some(&[a.product.as_str(), b.product.as_str()]),
    )
    .await;
    let as_team = |method: Method, path: String, body: Option<Value>| {
        let (api, two) = (&api, &two);
        async move { api.call_as(Some(two), method, &path, body).await }
    };
    let list = |path: &'static str, field: &'static str| {
        let as_team = &as_team;
        async move {
            let (status, body) = as_team(Method::GET, path.to_owned(), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            ids(&body, field)
        }
    };

    // Lists hold only its products' objects (filtered in SQL, so pages hold them too).
    assert_eq!(
        list("/api/v1/products", "id").await,
        [a.product.as_str(), b.product.as_str()]
    );
    assert_eq!(
        list("/api/v1/products?limit=1", "id").await,
        [a.product.as_str()]
    );
    assert_eq!(
        list("/api/v1/connections", "id").await,
        [a.connection.as_str(), b.connection.as_str()]
    );
    assert_eq!(
        list("/api/v1/endpoints", "id").await,
        [a.endpoint.as_str(), b.endpoint.as_str()]
    );
    let mut deliveries = list("/api/v1/deliveries", "id").await;
    deliveries.sort();
    let mut expected = vec![a.delivery.clone(), b.delivery.clone()];
    expected.sort();
    assert_eq!(deliveries, expected);
    let mut conversations = list("/api/v1/conversations", "externalConversationId").await;
    conversations.sort();
    assert_eq!(conversations, ["A", "B"]);
    let (_, page) = as_team(
        Method::GET,
        format!("/api/v1/connections?productId={}", b.product),
        None,
    )
    .await;
    assert_eq!(ids(&page, "id"), [b.connection.as_str()]);

    // Another product's objects answer 404, in the words a missing one gets.
    let missing = uuid::Uuid::now_v7();
    for (method, path, body) in [
        (
            Method::GET,
            format!("/api/v1/connections/{}", other.connection),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{}/rotate", other.connection),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{}/pause", other.connection),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/connections/{}/secret", other.connection),
            Some(json!({"secret": "long enough secret"})),
        ),
        (
            Method::POST,
            format!("/api/v1/endpoints/{}/disable", other.endpoint),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/endpoints/{}/test", other.endpoint),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/deliveries/{}/attempts", other.delivery),
            None,
        ),
        (
            Method::POST,
            "/api/v1/deliveries/retry".to_owned(),
            Some(json!({"deliveryId": other.delivery})),
        ),
        (
            Method::POST,
            "/api/v1/deliveries/retry".to_owned(),
            Some(json!({"endpointId": other.endpoint, "failedSince": "2020-01-01T00:00:00Z"})),
        ),
        (
            Method::GET,
            format!("/api/v1/connections?productId={}", other.product),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/endpoints?productId={}", other.product),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/deliveries?endpointId={}", other.endpoint),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/conversations?productId={}", other.product),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{}", other.conversation),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/products/{}/outcomes", other.product),
            None,
        ),
        (
            Method::POST,
            "/api/v1/connections".to_owned(),
            Some(json!({"productId": other.product, "provider": "segment"})),
        ),
        (
            Method::POST,
            "/api/v1/endpoints".to_owned(),
            Some(json!({"productId": other.product, "url": sink, "events": ["*"]})),
        ),
        (Method::GET, format!("/api/v1/connections/{missing}"), None),
    ] {
        let (status, answer) = as_team(method.clone(), path.clone(), body).await;
        let refused = error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.starts_with("no ") && message.contains(" with id "),
            "{method} {path}: {message}"
        );
    }

    // What spans products needs a key over every product.
    for (method, path, body) in [
        (Method::GET, "/api/v1/audit", None),
        (Method::GET, "/api/v1/deadletters", None),
        (
            Method::POST,
            "/api/v1/products",
            Some(json!({"name": "Unseen"})),
        ),
    ] {
        let (status, answer) = as_team(method, path.to_owned(), body).await;
        error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    }

    // Its own products it changes, named in the audit log; the other product is as it was.
    let before = api
        .ok(
            Method::GET,
            &format!("/api/v1/connections/{}", other.connection),
            None,
        )
        .await;
    let (status, paused) = as_team(
        Method::POST,
        format!("/api/v1/connections/{}/pause", a.connection),
        None,
    )
    .await;
    assert_eq!(
        (status, &paused["status"]),
        (StatusCode::OK, &json!("paused"))
    );
    let (status, retried) = as_team(
        Method::POST,
        "/api/v1/deliveries/retry".to_owned(),
        Some(json!({"failedSince": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    let after = api
        .ok(
            Method::GET,
            &format!("/api/v1/connections/{}", other.connection),
            None,
        )
        .await;
    assert_eq!(after, before);
    let audit = api.ok(Method::GET, "/api/v1/audit?limit=500", None).await;
    let pause = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "connection.pause")
        .expect("the pause is audited");
    assert_eq!(pause["actor"], format!("admin_key:{} (team)", team.id));
    assert_eq!(pause["subjectId"], json!(a.connection));

    // A read key limited to one product: only it, and no change.
    let (_, one) = scoped_key(
        &api,
        "b dashboard",
        gf_control::Role::Read,
        Some(&[b.product.as_str()]),
    )
    .await;
    let (_, products) = api
        .call_as(Some(&one), Method::GET, "/api/v1/products", None)
        .await;
    assert_eq!(ids(&products, "id"), [b.product.as_str()]);
    let (status, answer) = api
        .call_as(
            Some(&one),
            Method::POST,
            &format!("/api/v1/connections/{}/pause", b.connection),
            None,
        )
        .await;
    error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    let (status, answer) = api
        .call_as(
            Some(&one),
            Method::GET,
            &format!("/api/v1/connections/{}", a.connection),
            None,
        )
        .await;
    error(status, &answer, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_searched_by_name_in_the_database() {
    let api = Api::start().await;
    for name in ["Support bot", "Sales BOT", "Billing", "100% off_sale"] {
        api.ok(
            Method::POST,
            "/api/v1/products",
            Some(json!({"name": name})),
        )
        .await;
    }
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let bots = api.ok(Method::GET, "/api/v1/products?q=bot", None).await;
    assert_eq!(names(bots), ["Support bot", "Sales BOT"]);
    // Wildcards are text: "%" matches only a "%".
    let percent = api
        .ok(Method::GET, "/api/v1/products?q=0%25%20off_", None)
        .await;
    assert_eq!(names(percent), ["100% off_sale"]);
    let first = api
        .ok(Method::GET, "/api/v1/products?q=b&limit=1", None)
        .await;
    let after = first["nextCursor"].as_str().unwrap().to_owned();
    let next = api
        .ok(
            Method::GET,
            &format!("/api/v1/products?q=b&limit=1&after={after}"),
            None,
        )
        .await;
    assert_eq!(names(first), ["Support bot"]);
    assert_eq!(names(next), ["Sales BOT"]);
    assert_eq!(
        names(api.ok(Method::GET, "/api/v1/products?q=zzz", None).await),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_excerpts_are_off_until_the_owner_turns_them_on() {
    let api = Api::start().await;
    let (_, connection) = api.product_with_connection("Excerpts", "posthog").await;
    assert_eq!(connection["logBodies"], false);
    let id = connection["id"].as_str().unwrap();
    let path = format!("/api/v1/connections/{id}/body-excerpts");
    let on = api
        .ok(Method::PUT, &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(on["logBodies"], true);
    let shown = api
        .ok(Method::GET, &format!("/api/v1/connections/{id}"), None)
        .await;
    assert_eq!(shown["logBodies"], true);
    let off = api
        .ok(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(off["logBodies"], false);
    assert_eq!(
        api.invalid_field(Method::PUT, &path, Some(json!({"enabled": "yes"})))
            .await,
        json!("body")
    );
    let audit = api.ok(Method::GET, "/api/v1/audit", None).await.to_string();
    assert!(audit.contains("connection.log_bodies"), "{audit}");
}
