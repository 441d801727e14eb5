//! Delivery throughput: pending deliveries drained by the workers into a local HTTP sink, with
//! the local PostgreSQL. Needs the local infrastructure (`cargo xtask bench notifier` starts it).
//! Prints one `RESULT {json}` line per scenario.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::Utc;
use gf_tests::{TestDb, test_config};
use gf_webhooks::EventType;
use gf_webhooks::endpoints::Endpoints;
use gf_webhooks::events::{WebhookEvent, record};
use gf_webhooks::ssrf::AddressPolicy;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The binaries' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

const PER_ENDPOINT: usize = 2_000;
const ENDPOINTS: usize = 4;

fn sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| App::new().default_service(web::to(HttpResponse::Ok)))
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    base
}

/// Accepts connections and never answers: every attempt runs into the 5-second limit.
fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("http://{address}")
}

async fn scenario(name: &str, blackholed: bool) {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let product = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO products (id, name) VALUES ($1, 'bench')",
            &[&product],
        )
        .await
        .unwrap();
    let pool = gf_runtime::db::pool(&db.url, 24).unwrap();
    let policy = AddressPolicy::parse("127.0.0.0/8").unwrap();
    let endpoints = Endpoints::new(pool.clone());
    let base = sink();
    for i in 0..ENDPOINTS {
        let url = format!("{base}/hook/{i}");
        endpoints
            .create(&policy, product, &url, &["*".into()])
            .await
            .unwrap();
    }
    if blackholed {
        let url = format!("{}/hook", blackhole());
        endpoints
            .create(&policy, product, &url, &["*".into()])
            .await
            .unwrap();
    }
    // The outbox, filled before the clock starts: every event goes to every endpoint.
    for chunk in 0..PER_ENDPOINT / 250 {
        let mut db = pool.get().await.unwrap();
        let txn = db.transaction().await.unwrap();
        for i in 0..250 {
            let event = WebhookEvent {
                id: Uuid::new_v4(),
                product_id: product,
                event_type: EventType::ConversationRating,
                created_at: Utc::now(),
                data: json!({"externalConversationId": format!("c-{chunk}-{i}"), "score": 4.0,
                             "comment": "x".repeat(200)}),
                traceparent: None,
            };
            record(&txn, &event, None).await.unwrap();
        }
        txn.commit().await.unwrap();
    }
    let config = test_config(&[
        ("DATABASE_URL", &db.url),
        ("GF_WEBHOOK_ALLOWED_NETS", "127.0.0.0/8"),
    ]);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let workers = tokio::spawn({
        let (config, pool, stop) = (config.clone(), pool.clone(), stop.clone());
        async move {
            gf_notifier::delivery::run(&config, &pool, stop)
                .await
                .unwrap()
        }
    });
    let healthy = (PER_ENDPOINT * ENDPOINTS) as i64;
    loop {
        let delivered: i64 = client
            .query_one(
                "SELECT count(*) FROM deliveries WHERE status = 'delivered'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if delivered >= healthy || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = workers.await;
    println!(
        "RESULT {}",
        json!({"scenario": name, "deliveries": healthy, "endpoints": ENDPOINTS,
               "blackholed_endpoints": u8::from(blackholed), "seconds": seconds,
               "deliveries_per_second": healthy as f64 / seconds})
    );
}

#[tokio::main]
async fn main() {
    scenario("4 endpoints", false).await;
    scenario("4 endpoints + 1 blackholed", true).await;
}
