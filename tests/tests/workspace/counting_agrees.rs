//! Differential property test: the receiver's counts and the normalizer's outcome agree on
//! arbitrary bodies of every provider, in every envelope (list, top-level array, one event) (event names of every JSON kind, blank and padded names,
//! every Segment type, numbers out of range, ids past the bounds).

#[path = "../shared/counting.rs"]
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

/// A PostHog event: a capture event, or a CDP webhook body around one.
fn posthog_event(name: Option<Value>, cdp: bool, extra: u8, i: usize) -> String {
    let names = [
        "$identify",
        "$set",
        "$pageview",
        "$screen",
        "$groupidentify",
    ];
    let mut event = json!({"distinct_id": format!("u{i}"), "uuid": format!("id{i}")});
    match (extra, name) {
        (3, _) => event["event"] = json!(names[i % names.len()]),
        (_, Some(name)) => event["event"] = name,
        (_, None) => {}
    }
    match extra {
        1 => event["distinct_id"] = json!("u".repeat(2000)),
        2 => event["properties"] = json!({"n": "__HUGE__"}),
        // Person properties: alone (no name), an engage body.
        4 => event["$set"] = json!({"email": "a@b.co"}),
        _ => {}
    }
    let event = if cdp {
        json!({"event": event, "person": {"id": "p", "properties": {"email": "a@b.co"}}})
    } else {
        event
    };
    event.to_string().replace("\"__HUGE__\"", "1e400")
}

/// Three envelopes: the provider's list key, a top-level array, or the first item alone.
fn envelope(items: &[String], list: &str, how: u8) -> String {
    match (how, items.first()) {
        (1, _) => format!("[{}]", items.join(",")),
        (2, Some(first)) => first.clone(),
        _ => format!("{{\"{list}\":[{}]}}", items.join(",")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn amplitude_envelopes_agree(
        events in prop::collection::vec((name_value(), extra()), 0..6),
        how in 0u8..3,
    ) {
        let items: Vec<String> = events
            .into_iter()
            .enumerate()
            .map(|(i, (name, extra))| amplitude_event(name, extra, i))
            .collect();
        let body = envelope(&items, "events", how);
        counting::check_counting_agrees(Provider::Amplitude, body.as_bytes(), 100);
    }

    #[test]
    fn posthog_counts_agree(
        events in prop::collection::vec((name_value(), any::<bool>(), extra()), 0..6),
        how in 0u8..3,
    ) {
        let items: Vec<String> = events
            .into_iter()
            .enumerate()
            .map(|(i, (name, cdp, extra))| posthog_event(name, cdp, extra, i))
            .collect();
        let body = envelope(&items, "batch", how);
        counting::check_counting_agrees(Provider::Posthog, body.as_bytes(), 100);
    }

    #[test]
    fn public_api_counts_agree(events in prop::collection::vec((name_value(), extra()), 0..6)) {
        let items: Vec<String> = events
            .into_iter()
            .enumerate()
            .map(|(i, (name, extra))| {
                let mut event = json!({"externalUserId": format!("u{i}"), "insertId": format!("i{i}")});
                if let Some(name) = name {
                    event["eventType"] = name;
                }
                match extra {
                    1 => event["externalUserId"] = json!("u".repeat(2000)),
                    2 => event["properties"] = json!({"n": "__HUGE__"}),
                    3 => event["value"] = json!(1),
                    _ => {}
                }
                event.to_string().replace("\"__HUGE__\"", "1e400")
            })
            .collect();
        let body = format!("{{\"events\":[{}]}}", items.join(","));
        counting::check_counting_agrees(Provider::Api, body.as_bytes(), 100);
    }

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
        array in any::<bool>(),
    ) {
        let items: Vec<String> = messages
            .into_iter()
            .enumerate()
            .map(|(i, (kind, name, extra))| segment_message(kind, name, extra, i))
            .collect();
        let body = envelope(&items, "batch", match (single, array) { (true, _) => 2, (_, true) => 1, _ => 0 });
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
    for provider in Provider::all() {
        counting::check_counting_agrees(provider, &fuzzed, 100);
    }
}
