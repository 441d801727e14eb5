//! `gf import` against the broker and PostgreSQL: an Amplitude Export API zip with a malformed
//! line lands in the raw topic as the receiver would have stored it, and an interrupted import
//! continues after what was acknowledged, sending nothing twice.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gf_import::{FileStatus, Observer, Options, Quiet};
use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use gf_tests::{ReadRecord, Stack, read_topic};
use tokio_util::sync::CancellationToken;

/// Cancels the import after `after` acknowledged batches, as Ctrl-C does.
struct StopAfter {
    after: u64,
    seen: AtomicU64,
    stop: CancellationToken,
}

impl Observer for StopAfter {
    fn progress(&self, _bytes: u64, _events: u64) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.stop.cancel();
        }
    }
}

/// One line of an Amplitude Export API file.
fn export_line(i: u32) -> String {
    serde_json::json!({
        "$insert_id": format!("imp-{i}"),
        "uuid": format!("00000000-0000-4000-8000-{i:012}"),
        "event_type": "purchase",
        "user_id": format!("user-{i}"),
        "event_time": format!("2024-01-01 12:00:{i:02}.123000"),
        "server_upload_time": "2024-01-01 12:01:00.000000",
        "event_properties": {"$revenue": 10.0 + f64::from(i)},
        "user_properties": {"email": format!("u{i}@example.com")},
        "amplitude_id": 1000 + i,
    })
    .to_string()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// Two hourly entries as the Export API names them: ten events, one line that is not JSON
/// (entry 0, line 4) and one user object (received and dropped).
fn export_zip() -> Vec<u8> {
    let hour0 = [
        export_line(1),
        export_line(2),
        export_line(3),
        r#"{"event_type": "purchase", "user_id": "#.to_owned(),
        export_line(4),
        export_line(5),
    ];
    let hour1 = [
        export_line(6),
        export_line(7),
        r#"{"user_id":"user-7","user_properties":{"plan":"pro"}}"#.to_owned(),
        export_line(8),
        export_line(9),
        export_line(10),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, lines) in [
        ("187520/187520_2024-01-01_12#0.json.gz", &hour0),
        ("187520/187520_2024-01-01_13#0.json.gz", &hour1),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&gzip(&(lines.join("\n") + "\n"))).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

async fn raw_records(stack: &Stack) -> Vec<ReadRecord> {
    let (brokers, topic) = (
        stack.config.kafka_brokers().unwrap().to_owned(),
        stack.topics.raw.clone(),
    );
    tokio::task::spawn_blocking(move || read_topic(&brokers, &topic))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amplitude_export_is_imported_as_live_traffic_and_resumes_after_an_interruption() {
    let stack = Stack::new(&[], 1).await;
    let connection = stack
        .control
        .create_connection(stack.product, Provider::Amplitude, None)
        .await
        .unwrap()
        .connection
        .id;
    let dir = std::env::temp_dir().join(format!("gf-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("export.zip");
    std::fs::write(&file, export_zip()).unwrap();

    let target = gf_import::target(&stack.control, connection).await.unwrap();
    let sink = gf_import::kafka_sink(&stack.config).await.unwrap();
    let options = Options {
        state_dir: Some(dir.join("state")),
        batch_events: 2,
        in_flight: 2,
        ..Options::new(&stack.config, vec![file.clone()], None).unwrap()
    };
    let started_ms = chrono::Utc::now().timestamp_millis();

    // Interrupted after two acknowledged batches, as by Ctrl-C.
    let stop = CancellationToken::new();
    let observer = Arc::new(StopAfter {
        after: 2,
        seen: AtomicU64::new(0),
        stop: stop.clone(),
    });
    let first = gf_import::import(&target, &options, sink.clone(), observer, &stop)
        .await
        .unwrap();
    assert!(first.interrupted, "{first:?}");
    assert_eq!(first.file_reports[0].status, FileStatus::Interrupted);
    let after_first = raw_records(&stack).await;
    assert_eq!(after_first.len() as u64, first.batches);
    assert!(first.batches >= 2 && first.batches < 6, "{first:?}");

    let second = gf_import::import(
        &target,
        &options,
        sink.clone(),
        Arc::new(Quiet),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(!second.interrupted, "{second:?}");
    assert_eq!(second.file_reports[0].status, FileStatus::Imported);
    assert!(second.file_reports[0].resumed_from.is_some());

    // Batches of two events: [1,2] [3,4] [5,6] [7,user] [8,9] [10], the malformed line skipped.
    let records = raw_records(&stack).await;
    assert_eq!(
        records.len(),
        6,
        "every batch once: none sent again on resume"
    );
    assert_eq!(first.batches + second.batches, 6);
    assert_eq!(
        (
            first.events + second.events,
            first.accepted + second.accepted,
            first.dropped + second.dropped,
            first.malformed + second.malformed,
        ),
        (11, 10, 1, 1)
    );
    let problems: Vec<_> = first.problems.iter().chain(&second.problems).collect();
    assert!(
        problems.iter().any(|p| p.contains(
            "export.zip (187520/187520_2024-01-01_12#0.json.gz), line 4: not valid JSON"
        )),
        "{problems:?}"
    );

    // Each record as the receiver writes one: key, headers, body its counting accepts.
    let mut request_ids = HashSet::new();
    let mut insert_ids = Vec::new();
    let (mut received, mut accepted) = (0, 0);
    for record in &records {
        let meta = RawRecordMeta::from_headers(
            record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        )
        .unwrap();
        assert_eq!(
            (meta.connection_id, meta.product_id, meta.provider),
            (connection, stack.product, Provider::Amplitude)
        );
        assert_eq!(meta.content_type.as_deref(), Some("application/json"));
        assert!(meta.received_at_ms >= started_ms);
        assert!(
            meta.traceparent
                .as_deref()
                .is_some_and(|t| t.starts_with("00-"))
        );
        assert!(request_ids.insert(meta.request_id.clone()));
        assert_eq!(
            record.key, meta.request_id,
            "keyed by request, as the receiver keys it"
        );
        let counted =
            gf_receiver::payload::inspect(Provider::Amplitude, &record.value, 1000).unwrap();
        received += counted.received;
        accepted += counted.accepted;
        // The normalizer reads the export lines as they are.
        let input = RawInput {
            body: &record.value,
            meta: &meta,
            topic: &stack.topics.raw,
            partition: record.partition,
            offset: record.offset,
        };
        let mapped = map_record(&input, &MapOptions::default()).unwrap();
        for event in mapped.events {
            let n: u32 = event
                .insert_id
                .strip_prefix("amplitude:imp-")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                gf_schemas::time::format(&event.event_at),
                format!("2024-01-01T12:00:{n:02}.123Z")
            );
            assert_eq!(event.user_hints.email, Some(format!("u{n}@example.com")));
            insert_ids.push(n);
        }
    }
    assert_eq!((received, accepted), (11, 10));
    insert_ids.sort();
    assert_eq!(insert_ids, (1..=10).collect::<Vec<_>>());

    // Finished: a rerun skips the file and sends nothing.
    let third = gf_import::import(
        &target,
        &options,
        sink,
        Arc::new(Quiet),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((third.skipped_files, third.batches), (1, 0));
    assert_eq!(raw_records(&stack).await.len(), 6);

    // A paused connection takes nothing, imported or live.
    stack.control.pause(connection).await.unwrap();
    let refused = gf_import::target(&stack.control, connection)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}
