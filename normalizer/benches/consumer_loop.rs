//! Throughput of the consumer loop against the local broker: raw records in, canonical events out.
//! Needs the local infrastructure (`cargo xtask bench normalizer` starts it). Prints one
//! `RESULT {json}` line.
//!
//! The raw records are produced first; then the loop runs alone while its committed offsets are
//! read every 100 ms (reading the events back would cost the broker and the cores as much as
//! writing them). Long enough to be a rate, not a burst: 4 million events.

mod common;

use std::time::{Duration, Instant};

use gf_normalizer::consumer;
use gf_normalizer::mapping::MapOptions;
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::{Topics, consumer_group};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The binaries' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

const EVENTS_PER_RECORD: usize = 250;
const PARTITIONS: i32 = 3;
/// Distinct bodies, sent again and again.
const BODIES: usize = 200;

fn records() -> usize {
    std::env::var("GF_BENCH_CONSUMER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes harness flags; this benchmark has none.
    let config = gf_tests::test_config(&[]);
    let settings = KafkaSettings::from_config(&config).unwrap();
    let topics = Topics::new(&config.topic_prefix);
    ensure_topics(
        &settings,
        &topics.specs(&gf_runtime::topics::TopicLayout::local(
            PARTITIONS,
            settings.max_record_bytes,
        )),
    )
    .await
    .unwrap();
    let producer: FutureProducer = settings.producer_config("bench-raw").create().unwrap();
    let connection = Uuid::new_v4();
    let bodies: Vec<String> = (0..BODIES)
        .map(|b| common::amplitude_batch(b, EVENTS_PER_RECORD))
        .collect();
    let records = records();
    let mut bytes = 0usize;
    let loading = Instant::now();
    for chunk in (0..records).collect::<Vec<_>>().chunks(500) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for &r in chunk {
            let body = &bodies[r % BODIES];
            bytes += body.len();
            let meta = RawRecordMeta {
                connection_id: connection,
                product_id: Uuid::from_u128(2),
                provider: Provider::Amplitude,
                received_at_ms: 1_779_105_600_000,
                request_id: format!("bench-{r}"),
                content_type: Some("application/json".into()),
                traceparent: None,
            };
            let headers = meta.to_headers();
            let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
            let key = format!("{connection}-{r}");
            let record = FutureRecord::to(&topics.raw)
                .key(&key)
                .payload(body)
                .headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for d in deliveries {
            d.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    eprintln!(
        "{records} raw records ({} MB) loaded in {:.1} s",
        bytes / 1_000_000,
        loading.elapsed().as_secs_f64()
    );
    let expected = records * EVENTS_PER_RECORD;

    let stop = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn({
        let (config, stop) = (config.clone(), stop.clone());
        async move {
            consumer::run(&config, MapOptions::default(), stop)
                .await
                .unwrap()
        }
    });
    // Progress is what the loop committed: a record's offset is committed only once all its
    // events are acknowledged, so the last commit says when the last event was out.
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.kafka_brokers().unwrap())
        .set(
            "group.id",
            consumer_group(&config.topic_prefix, consumer::STAGE),
        )
        .create()
        .unwrap();
    let raw = topics.raw.clone();
    let (done, first, last) = tokio::task::spawn_blocking(move || {
        let mut partitions = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            partitions.add_partition(&raw, p);
        }
        let mut done = 0usize;
        let mut first = None;
        let mut last = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(900);
        while done < records && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let Ok(committed) =
                watcher.committed_offsets(partitions.clone(), Duration::from_secs(5))
            else {
                continue;
            };
            let now: usize = committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => usize::try_from(o).ok(),
                    _ => None,
                })
                .sum();
            if now > done {
                first.get_or_insert(Instant::now());
                done = now;
                last = Instant::now();
            }
        }
        (done, first, last)
    })
    .await
    .unwrap();
    let count = done * EVENTS_PER_RECORD;
    stop.cancel();
    run.await.unwrap();
    let seconds = last.duration_since(started).as_secs_f64();
    let from_first = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "RESULT {}",
        serde_json::json!({
            "records": records, "events": count, "expected_events": expected, "raw_bytes": bytes,
            "partitions": PARTITIONS, "seconds": seconds,
            "seconds_to_first_event": first.map(|f| f.duration_since(started).as_secs_f64()),
            "events_per_second": count as f64 / seconds,
            "events_per_second_after_first": count as f64 / from_first.max(1e-9),
        })
    );
    assert_eq!(count, expected, "not every event came out");
}
