//! Golden tests: every raw payload under `tests/golden/<provider>/` is mapped and compared with
//! its checked-in `*.expected.json`; every canonical event is validated against the JSON Schema
//! downstream teams use. `UPDATE_GOLDEN=1 cargo test -p gf-normalizer --test golden` rewrites the
//! expectations (review the diff before committing it).
//!
//! The payloads that stand for a sender's own bytes say where their shape comes from in
//! [`SOURCES`]; the others exercise our rules (odd types, overrides, bounds).

use std::path::{Path, PathBuf};

use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use serde_json::{Value, json};
use uuid::Uuid;

/// Where the senders' payloads come from.
const SOURCES: &[(&str, &str)] = &[
    (
        "amplitude/doc_purchase.json",
        "the HTTP V2 API's example request, https://amplitude.com/docs/apis/analytics/http-v2",
    ),
    (
        "amplitude/export_event.json",
        "the Export API's event schema (`$insert_id`, `uuid`, `event_time` with six fractional digits, `$revenue` in event_properties), https://amplitude.com/docs/apis/analytics/export, the default payload of the Webhook destination, https://amplitude.com/docs/data/destination-catalog/webhook",
    ),
    (
        "amplitude/export_price_quantity.json",
        "the Export API's event schema; `$price` × `$quantity` as the Revenue fields of https://amplitude.com/docs/apis/analytics/http-v2",
    ),
    (
        "amplitude/export_user.json",
        "the Webhook destination's \"Send Users\" payload, the Identify API's user fields, https://amplitude.com/docs/apis/analytics/identify",
    ),
    (
        "amplitude/export_array.json",
        "Export-format events as an array; the `2022-10-24T20:07:32.123` time of the Webhook destination's template example",
    ),
    (
        "segment/doc_order_completed.json",
        "the Track spec's example, https://segment.com/docs/connections/spec/track/",
    ),
    (
        "segment/actions_array.json",
        "the Webhooks (Actions) destination with batching: a JSON array of messages, https://segment.com/docs/connections/destinations/catalog/actions-webhook/",
    ),
    (
        "posthog/capture_batch.json",
        "posthog-python's request.batch_post (POST {host}/batch/ with {api_key, batch, sent_at}) and Client.capture's message fields, https://github.com/PostHog/posthog-python",
    ),
    (
        "posthog/cdp_webhook.json",
        "the CDP HTTP Webhook destination's default body {\"event\": {event}, \"person\": {person}}, https://posthog.com/docs/cdp/destinations/webhook",
    ),
    (
        "posthog/single_event.json",
        "the capture API's single event, https://posthog.com/docs/api/capture",
    ),
    (
        "posthog/bare_array.json",
        "the capture API's batch sent as a bare array, https://posthog.com/docs/api/capture",
    ),
    (
        "posthog/pageview_screen.json",
        "posthog-js `$pageview` (`$current_url`) and the mobile SDKs' `$screen` (`$screen_name`)",
    ),
    (
        "posthog/trait_only.json",
        "posthog-python's identify / set / group_identify / alias calls",
    ),
];

#[test]
fn every_senders_payload_cites_its_source() {
    for (file, source) in SOURCES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(file);
        assert!(path.exists(), "{file} is cited but missing");
        assert!(!source.trim().is_empty(), "{file}");
    }
    for provider in [Provider::Posthog] {
        for input in inputs(provider) {
            let name = format!(
                "{provider}/{}",
                input.file_name().unwrap().to_string_lossy()
            );
            let ours = ["magic_overrides", "wrong_shape"]
                .iter()
                .any(|n| name.contains(n));
            assert!(
                ours || SOURCES.iter().any(|(f, _)| *f == name),
                "{name} stands for a sender's payload but cites no source"
            );
        }
    }
}

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
fn posthog_golden_files() {
    check(Provider::Posthog);
}

#[test]
fn public_api_golden_files() {
    check(Provider::Api);
}

#[test]
fn mapping_twice_gives_the_same_output() {
    for provider in Provider::all() {
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
