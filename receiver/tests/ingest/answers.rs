//! Every answer of the ingest handler, in-process: the requests go to the handlers directly (no
//! socket) and the records to a [`MemorySink`], so each status and body is checked against what
//! the sink did, including the broker's failures, without a broker. PostgreSQL is real: the
//! tokens are checked as in production.

use std::sync::Arc;
use std::time::Duration;

use actix_web::App;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::test::{TestRequest, call_service, init_service};
use gf_control::ControlPlane;
use gf_receiver::sink::{Behaviour, MemorySink};
use gf_receiver::{Receiver, ReceiverOptions};
use gf_runtime::token::SecretHasher;
use gf_schemas::Provider;
use gf_tests::{TestDb, test_config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct InProcess {
    sink: Arc<MemorySink>,
    receiver: Receiver,
    control: ControlPlane,
    product: Uuid,
    stop: CancellationToken,
    _db: TestDb,
}

impl InProcess {
    async fn start() -> InProcess {
        let db = TestDb::migrated().await;
        // No broker is reached: the sink is memory.
        let config = test_config(&[
            ("DATABASE_URL", db.url.as_str()),
            ("KAFKA_BROKERS", "127.0.0.1:1"),
        ]);
        let pool = gf_runtime::db::pool(&db.url, 2).unwrap();
        let control = ControlPlane::new(pool, SecretHasher::new(10).unwrap());
        let product = control.create_product("answers").await.unwrap().id;
        let sink = Arc::new(MemorySink::default());
        let stop = CancellationToken::new();
        let receiver = Receiver::with_sink(
            &config,
            ReceiverOptions::from_config(&config),
            prometheus::Registry::new(),
            sink.clone(),
            stop.clone(),
        )
        .unwrap();
        InProcess {
            sink,
            receiver,
            control,
            product,
            stop,
            _db: db,
        }
    }

    async fn token(&self, provider: Provider) -> (Uuid, String) {
        let issued = self
            .control
            .create_connection(self.product, provider, None)
            .await
            .unwrap();
        (issued.connection.id, issued.token.reveal())
    }

    /// The status, the `Retry-After` and `X-Request-Id` headers, and the JSON body.
    async fn send(&self, request: TestRequest) -> (u16, [Option<String>; 2], Value) {
        let app = init_service(
            App::new()
                .app_data(self.receiver.data())
                .configure(gf_receiver::handler::routes),
        )
        .await;
        let response: ServiceResponse = call_service(&app, request.to_request()).await;
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &actix_web::http::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let headers = [header("retry-after"), header("x-request-id")];
        let body = response.into_body().try_into_bytes().unwrap();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, headers, json)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn post(path: &str, body: &str) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned())
}

const TWO_EVENTS: &str = r#"{"api_key":"k","events":[{"event_type":"a","user_id":"u"},{"event_type":"b","user_id":"u"}]}"#;

#[actix_web::test]
async fn each_answer_follows_what_the_sink_did() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let h = InProcess::start().await;
    let (connection, token) = h.token(Provider::Amplitude).await;
    let path = format!("/ingest/amplitude/{token}");

    // Stored: 200 with the counts and Amplitude's fields; the body is appended byte for byte.
    let (status, [_, request_id], body) = h.send(post(&path, TWO_EVENTS)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["received"], 2);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["dropped"], 0);
    assert_eq!(body["code"], 200);
    assert_eq!(body["events_ingested"], 2);
    let records = h.sink.records();
    assert_eq!(records.len(), 1);
    let (meta, stored) = &records[0];
    assert_eq!(stored.as_ref(), TWO_EVENTS.as_bytes());
    assert_eq!(meta.connection_id, connection);
    assert_eq!(meta.product_id, h.product);
    assert_eq!(meta.provider, Provider::Amplitude);
    assert_eq!(
        Some(&meta.request_id),
        request_id.as_ref(),
        "the answer names the record"
    );

    // The broker is away: 503, retry in 5 s, nothing stored, and the body says it was not.
    h.sink.behave(Behaviour::Unavailable);
    let (status, [retry_after, _], body) = h.send(post(&path, TWO_EVENTS)).await;
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(body["error"], "broker_unavailable");
    assert_eq!(body["code"], 503);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );

    // The broker refuses the size: 413, which Amplitude's senders answer by splitting.
    h.sink.behave(Behaviour::TooLarge);
    let (status, [retry_after, _], body) = h.send(post(&path, TWO_EVENTS)).await;
    assert_eq!(status, 413);
    assert_eq!(retry_after, None);
    assert_eq!(body["error"], "body_too_large");
    assert_eq!(
        h.sink.records().len(),
        1,
        "no failed append stored anything"
    );

    // Refusals before the sink: it is never asked.
    h.sink.behave(Behaviour::Store);
    let cases: [(TestRequest, u16, &str); 4] = [
        (post(&path, "{not json"), 400, "invalid_json"),
        (post(&path, r#"{"events":"nope"}"#), 400, "invalid_shape"),
        (
            post(&format!("/ingest/amplitude/{}x", token), TWO_EVENTS),
            401,
            "invalid_token",
        ),
        (
            post(&format!("/ingest/segment/{token}"), TWO_EVENTS),
            404,
            "wrong_provider",
        ),
    ];
    for (request, want_status, want_error) in cases {
        let (status, _, body) = h.send(request).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (want_status, Some(want_error)),
            "{body}"
        );
        assert!(
            !body.to_string().contains(&token),
            "an answer holds the token"
        );
    }
    assert_eq!(h.sink.records().len(), 1);

    // Nothing accepted, nothing appended: a batch whose events are all dropped is answered 200.
    let (status, _, body) = h.send(post(&path, r#"{"api_key":"k","events":[]}"#)).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, json!(0)),
        "{body}"
    );
    assert_eq!(h.sink.records().len(), 1);
}

#[actix_web::test]
async fn readiness_follows_the_sink() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let h = InProcess::start().await;
    let ready = |h: &InProcess| {
        let data = h.receiver.data();
        async move {
            let app = init_service(
                App::new()
                    .app_data(data)
                    .configure(gf_receiver::handler::routes),
            )
            .await;
            call_service(&app, TestRequest::get().uri("/readyz").to_request())
                .await
                .status()
                .as_u16()
        }
    };
    let settle = || tokio::time::sleep(Duration::from_millis(1_500));
    settle().await;
    assert_eq!(ready(&h).await, 200);
    h.sink.behave(Behaviour::Unavailable);
    settle().await;
    assert_eq!(ready(&h).await, 503);
    h.sink.behave(Behaviour::Store);
    settle().await;
    assert_eq!(ready(&h).await, 200);
}
