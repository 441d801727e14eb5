//! Listing dead letters reads what it shows, not the whole topic: `since` starts at the broker's
//! time index, `newest` at the last records of each partition.

use std::time::Duration;

use chrono::Utc;
use gf_runtime::deadletters::{Filter, list};
use gf_runtime::kafka::{KafkaSettings, ensure_topics};
use gf_runtime::topics::{TopicLayout, Topics};
use gf_schemas::deadletter::{DeadLetter, ReasonClass, SourceRecord};
use gf_tests::test_config;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn letter(n: usize) -> DeadLetter {
    DeadLetter {
        stage: if n.is_multiple_of(2) {
            "normalizer"
        } else {
            "attributor"
        }
        .into(),
        reason: format!("letter {n}"),
        reason_class: ReasonClass::Invalid,
        source: SourceRecord {
            topic: "gf.raw.v1".into(),
            partition: 0,
            offset: n as i64,
            key: None,
            headers: Default::default(),
        },
        event_index: None,
        excerpt: "{}".into(),
        truncated: false,
        failed_at: Utc::now(),
    }
}

async fn send(producer: &FutureProducer, topic: &str, letters: std::ops::Range<usize>) {
    for n in letters {
        let letter = letter(n);
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&letter.kafka_key())
                    .payload(&letter.encode()),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }
}

fn reasons(filter: &Filter, settings: &KafkaSettings, topics: &Topics) -> (Vec<String>, bool) {
    let listing = list(settings, topics, filter).expect("listed");
    let mut reasons: Vec<String> = listing.letters.into_iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| r[7..].parse::<usize>().unwrap());
    (reasons, listing.older_not_read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_only_the_window_it_shows() {
    let config = test_config(&[]);
    let settings = KafkaSettings::from_config(&config).unwrap();
    let topics = Topics::new(&config.topic_prefix);
    let specs = topics.specs(&TopicLayout::local(1, settings.max_record_bytes));
    ensure_topics(&settings, &specs).await.unwrap();
    let producer: FutureProducer = settings.producer_config("test").create().unwrap();
    send(&producer, &topics.deadletter, 0..20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&producer, &topics.deadletter, 20..30).await;

    let expect = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("letter {n}")).collect()
    };
    let all = reasons(&Filter::default(), &settings, &topics);
    assert_eq!(all, (expect(0..30), false));
    let newest = Filter {
        newest: Some(5),
        ..Filter::default()
    };
    assert_eq!(reasons(&newest, &settings, &topics), (expect(25..30), true));
    let since = Filter {
        since: Some(boundary),
        ..Filter::default()
    };
    assert_eq!(reasons(&since, &settings, &topics), (expect(20..30), false));
    // A time before 1970 (Kafka's special negative offsets) reads from the start.
    let long_ago = Filter {
        since: Some("0176-01-20T23:57:01+08:43".parse().unwrap()),
        ..Filter::default()
    };
    assert_eq!(
        reasons(&long_ago, &settings, &topics),
        (expect(0..30), false)
    );
    let stage_since = Filter {
        stage: Some("normalizer".into()),
        since: Some(boundary),
        newest: Some(15),
    };
    let (got, older) = reasons(&stage_since, &settings, &topics);
    assert_eq!(
        got,
        [
            "letter 20",
            "letter 22",
            "letter 24",
            "letter 26",
            "letter 28"
        ]
    );
    // The time index started the read at letter 20: the 15 newest reach further back, so
    // nothing was cut (reading from the start, the window would have cut letters 0 to 14).
    assert!(!older);
}
