//! The control-plane API over real HTTP against a real PostgreSQL (and broker, for dead letters):
//! authorization on every route, the error format, pagination, each flow, and the OpenAPI
//! document checked by an external validator.

use std::net::TcpListener;

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
