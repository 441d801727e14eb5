//! Golden tests: every raw payload under `tests/golden/<provider>/` is mapped and compared with
//! its checked-in `*.expected.json`; every canonical event is validated against the JSON Schema
//! downstream teams use. `UPDATE_GOLDEN=1 cargo test -p gf-normalizer --test golden` rewrites the
//! expectations (review the diff before committing it).

use std::path::{Path, PathBuf};

use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use serde_json::{Value, json};
use uuid::Uuid;

fn output(provider: Provider, body: &[u8]) -> Value {
    let meta = RawRecordMeta {
        connection_id: Uuid::from_u128(0xC0FFEE),
        product_id: Uuid::from_u128(0x9A),
        provider,
        received_at_ms: 1_779_105_600_000,
        request_id: "golden".into(),
        content_type: Some("application/json".into()),
        traceparent: None,
    };
    let input = RawInput {
        body,
        meta: &meta,
        topic: "gf.raw.v1",
        partition: 0,
        offset: 7,
    };
    match map_record(&input, &MapOptions::default()) {
        Ok(mapped) => json!({ "dropped": mapped.dropped, "events": mapped.events }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn inputs(provider: Provider) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(provider.as_str());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".expected.json")
        })
        .collect();
    files.sort();
    files
}

fn check(provider: Provider) {
    let validator = gf_tests::schema_validator("canonical-event.v1.schema.json");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = inputs(provider);
    assert!(files.len() >= 6, "too few golden files for {provider}");
    let mut failures = Vec::new();
    for input in files {
        let body = std::fs::read(&input).unwrap();
        let actual = output(provider, &body);
        for event in actual["events"].as_array().into_iter().flatten() {
            let errors: Vec<String> = validator
                .iter_errors(event)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{}: event violates the schema: {errors:?}",
                input.display()
            );
        }
        let expected_path = input.with_extension("expected.json");
        let pretty = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if update {
            std::fs::write(&expected_path, &pretty).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        let expected: Value = serde_json::from_str(&expected).unwrap();
        if expected != actual {
            failures.push(format!("{}:\n{pretty}", input.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden output changed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn amplitude_golden_files() {
    check(Provider::Amplitude);
}

#[test]
fn segment_golden_files() {
    check(Provider::Segment);
}

#[test]
fn mapping_twice_gives_the_same_output() {
    for provider in Provider::ALL {
        for input in inputs(provider) {
            let body = std::fs::read(&input).unwrap();
            assert_eq!(
                output(provider, &body),
                output(provider, &body),
                "{}",
                input.display()
            );
        }
    }
}
