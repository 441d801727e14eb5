//! Throughput of the consumer loop against the local broker: raw records in, canonical events out.
//! Needs the local infrastructure (`cargo xtask bench normalizer` starts it). Prints one
//! `RESULT {json}` line.

mod common;

use std::time::{Duration, Instant};

use gf_normalizer::consumer;
use gf_normalizer::mapping::MapOptions;
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::Topics;
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const RECORDS: usize = 200;
const EVENTS_PER_RECORD: usize = 250;
const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() {
    // `cargo bench` passes harness flags; this benchmark has none.
    let config = gf_tests::test_config(&[]);
    let settings = KafkaSettings::from_config(&config).unwrap();
    let topics = Topics::new(&config.topic_prefix);
    ensure_topics(
        &settings,
        &topics.specs(PARTITIONS, 1, settings.max_record_bytes),
    )
    .await
    .unwrap();
    let producer: FutureProducer = settings.producer_config("bench-raw").create().unwrap();
    let connection = Uuid::new_v4();
    let mut bytes = 0usize;
    for r in 0..RECORDS {
        let body = common::amplitude_batch(r, EVENTS_PER_RECORD);
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
        producer
            .send(
                FutureRecord::to(&topics.raw)
                    .key(&key)
                    .payload(&body)
                    .headers(headers),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .unwrap();
    }
    let expected = RECORDS * EVENTS_PER_RECORD;

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
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.kafka_brokers().unwrap())
        .set("group.id", format!("bench-reader-{}", Uuid::new_v4()))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topics.events, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    let events = topics.events.clone();
    let (count, last) = tokio::task::spawn_blocking(move || {
        let mut count = 0usize;
        let mut last = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(300);
        while count < expected && Instant::now() < deadline {
            if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
                count += 1;
                last = Instant::now();
            }
        }
        let _ = events;
        (count, last)
    })
    .await
    .unwrap();
    stop.cancel();
    run.await.unwrap();
    let seconds = last.duration_since(started).as_secs_f64();
    println!(
        "RESULT {}",
        serde_json::json!({
            "records": RECORDS, "events": count, "expected_events": expected, "raw_bytes": bytes,
            "partitions": PARTITIONS, "seconds": seconds,
            "events_per_second": count as f64 / seconds,
        })
    );
    assert_eq!(count, expected, "not every event came out");
}
