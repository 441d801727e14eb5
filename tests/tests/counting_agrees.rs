//! Differential property test: the receiver's counts and the normalizer's outcome agree on
//! arbitrary bodies of both providers (event names of every JSON kind, blank and padded names,
//! every Segment type, numbers out of range, ids past the bounds).

#[path = "shared/counting.rs"]
mod counting;

use gf_schemas::Provider;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A value for a name field: strings (blank, padded, plain), numbers, null, objects, or absent.
fn name_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!(""))),
        Just(Some(json!("   "))),
        Just(Some(json!(" Signed Up "))),
        "[a-zA-Z ]{0,12}".prop_map(|s| Some(json!(s))),
        any::<i64>().prop_map(|n| Some(json!(n))),
        Just(Some(Value::Null)),
        Just(Some(json!({"nested": "x"}))),
    ]
}

/// Extra content: a property that may be a number out of range or an id past the bounds.
fn extra() -> impl Strategy<Value = u8> {
    0u8..6
}

fn amplitude_event(name: Option<Value>, extra: u8, i: usize) -> String {
    let mut event = json!({"user_id": format!("u{i}"), "insert_id": format!("i{i}"), "time": 1_779_105_600_000i64});
    if let Some(name) = name {
        event["event_type"] = name;
    }
    match extra {
        1 => event["user_id"] = json!("u".repeat(2000)),
        2 => event["event_properties"] = json!({"n": "__HUGE__"}),
        _ => {}
    }
    event.to_string().replace("\"__HUGE__\"", "1e400")
}

fn segment_message(kind: u8, name: Option<Value>, extra: u8, i: usize) -> String {
    let kinds = [
        "track", "page", "screen", "identify", "group", "alias", "Track",
    ];
    let mut message = json!({"userId": format!("u{i}"), "messageId": format!("m{i}")});
    if let Some(kind) = kinds.get(kind as usize) {
        message["type"] = json!(kind);
    } else {
        message["type"] = json!(7);
    }
    if let Some(name) = name {
        message["event"] = name;
    }
    match extra {
        1 => message["userId"] = json!("u".repeat(2000)),
        2 => message["properties"] = json!({"n": "__HUGE__"}),
        _ => {}
    }
    message.to_string().replace("\"__HUGE__\"", "1e400")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn amplitude_counts_agree(events in prop::collection::vec((name_value(), extra()), 0..8)) {
        let items: Vec<String> = events
            .into_iter()
            .enumerate()
            .map(|(i, (name, extra))| amplitude_event(name, extra, i))
            .collect();
        let body = format!("{{\"events\":[{}]}}", items.join(","));
        counting::check_counting_agrees(Provider::Amplitude, body.as_bytes(), 100);
    }

    #[test]
    fn segment_counts_agree(
        messages in prop::collection::vec((0u8..8, name_value(), extra()), 0..8),
        single in any::<bool>(),
    ) {
        let items: Vec<String> = messages
            .into_iter()
            .enumerate()
            .map(|(i, (kind, name, extra))| segment_message(kind, name, extra, i))
            .collect();
        let body = match (single, items.first()) {
            (true, Some(first)) => first.clone(),
            _ => format!("{{\"batch\":[{}]}}", items.join(",")),
        };
        counting::check_counting_agrees(Provider::Segment, body.as_bytes(), 100);
    }
}

/// Found by the fuzz target (`fuzz/regressions/counting_agrees/duplicate-type-key`): a message
/// with `type` given twice was accepted by the receiver and refused whole by the normalizer.
#[test]
fn a_key_given_twice_counts_the_same_on_both_sides() {
    for body in [
        r#"{"type":"track","type":"track","event":"Order Completed","messageId":"m1"}"#,
        r#"{"type":"identify","type":"track","event":"Order Completed","messageId":"m1"}"#,
        r#"{"batch":[{"type":"page","type":"track","event":"x"}]}"#,
    ] {
        counting::check_counting_agrees(Provider::Segment, body.as_bytes(), 100);
    }
    let fuzzed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/counting_agrees/duplicate-type-key"
    ))
    .unwrap();
    for provider in Provider::ALL {
        counting::check_counting_agrees(provider, &fuzzed, 100);
    }
}
