//! One test per row of the documents' mapping and identity-hint tables, for each provider.

use gf_normalizer::mapping::{MapError, MapOptions, Mapped, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::canonical::{CanonicalEvent, EventValue, Influence, InfluenceRule, ValueType};
use gf_schemas::raw::RawRecordMeta;
use serde_json::{Value, json};
use uuid::Uuid;

const RECEIVED_AT: i64 = 1_779_105_600_000;

fn meta(provider: Provider) -> RawRecordMeta {
    RawRecordMeta {
        connection_id: Uuid::from_u128(0xC0),
        product_id: Uuid::from_u128(0x90),
        provider,
        received_at_ms: RECEIVED_AT,
        request_id: "req".into(),
        content_type: None,
        traceparent: None,
    }
}

fn map(provider: Provider, body: &Value) -> Result<Mapped, MapError> {
    let body = serde_json::to_vec(body).unwrap();
    let meta = meta(provider);
    let input = RawInput {
        body: &body,
        meta: &meta,
        topic: "gf.raw.v1",
        partition: 0,
        offset: 1,
    };
    map_record(&input, &MapOptions::default())
}

fn amp(event: Value) -> CanonicalEvent {
    let mut mapped = map(Provider::Amplitude, &json!({ "events": [event] })).unwrap();
    assert_eq!(mapped.events.len(), 1, "the event was dropped");
    mapped.events.remove(0)
}

fn seg(message: Value) -> CanonicalEvent {
    let mut mapped = map(Provider::Segment, &message).unwrap();
    assert_eq!(mapped.events.len(), 1, "the message was dropped");
    mapped.events.remove(0)
}

fn codes(e: &CanonicalEvent) -> Vec<&str> {
    e.warnings.iter().map(|w| w.code.as_str()).collect()
}

// ---- Amplitude: mapping table ----

#[test]
fn amplitude_event_type_is_the_event_type() {
    assert_eq!(
        amp(json!({"event_type": "purchase"})).event_type,
        "purchase"
    );
    let mapped = map(
        Provider::Amplitude,
        &json!({"events": [{"user_id": "u"}, {"event_type": 3}, "x"]}),
    )
    .unwrap();
    assert_eq!((mapped.events.len(), mapped.dropped), (0, 3));
}

#[test]
fn amplitude_user_id_falls_back_to_device_id() {
    assert_eq!(
        amp(json!({"event_type": "e", "user_id": "u1", "device_id": "d1"}))
            .external_user_id
            .as_deref(),
        Some("u1")
    );
    assert_eq!(
        amp(json!({"event_type": "e", "device_id": "d1"}))
            .external_user_id
            .as_deref(),
        Some("d1")
    );
    assert_eq!(
        amp(json!({"event_type": "e", "user_id": "", "device_id": "d1"}))
            .external_user_id
            .as_deref(),
        Some("d1")
    );
    assert_eq!(amp(json!({"event_type": "e"})).external_user_id, None);
}

#[test]
fn amplitude_time_in_ms_is_the_event_time() {
    let e = amp(json!({"event_type": "e", "time": 1747569600123i64, "insert_id": "i"}));
    assert_eq!(e.event_at.timestamp_millis(), 1747569600123);
    assert!(codes(&e).is_empty());
    let missing = amp(json!({"event_type": "e"}));
    assert_eq!(missing.event_at.timestamp_millis(), RECEIVED_AT);
    assert_eq!(codes(&missing), ["missing_insert_id", "missing_time"]);
    let bad = amp(json!({"event_type": "e", "time": "noon", "insert_id": "i"}));
    assert_eq!(
        (bad.event_at.timestamp_millis(), codes(&bad)),
        (RECEIVED_AT, vec!["invalid_time"])
    );
}

#[test]
fn amplitude_insert_id_is_prefixed() {
    let e = amp(json!({"event_type": "e", "insert_id": "amp_test_001"}));
    assert_eq!(e.insert_id, "amplitude:amp_test_001");
    assert_eq!(
        e.id,
        CanonicalEvent::derive_id(Uuid::from_u128(0x90), "amplitude:amp_test_001")
    );
}

#[test]
fn amplitude_without_insert_id_gets_a_content_id() {
    let a = amp(json!({"event_type": "e", "time": 1, "user_id": "u"}));
    let same_content_other_key_order = amp(json!({"user_id": "u", "time": 1, "event_type": "e"}));
    let other = amp(json!({"event_type": "e", "time": 2, "user_id": "u"}));
    assert!(a.insert_id.starts_with("amplitude:gf-"), "{}", a.insert_id);
    assert_eq!(a.insert_id, same_content_other_key_order.insert_id);
    assert_ne!(a.insert_id, other.insert_id);
    assert!(codes(&a).contains(&"missing_insert_id"));
}

#[test]
fn amplitude_revenue_is_a_currency_value() {
    let e = amp(json!({"event_type": "purchase", "revenue": 49.0}));
    assert_eq!(
        (e.value, e.value_type),
        (Some(EventValue::Number(49.0)), Some(ValueType::Currency))
    );
    let pq = amp(json!({"event_type": "x", "price": 10.5, "quantity": 3}));
    assert_eq!(pq.value, Some(EventValue::Number(31.5)));
    let p = amp(json!({"event_type": "x", "price": "10"}));
    assert_eq!(p.value, Some(EventValue::Number(10.0)));
    let both = amp(json!({"event_type": "x", "revenue": 5, "price": 10, "quantity": 3}));
    assert_eq!(both.value, Some(EventValue::Number(5.0)));
    let none = amp(json!({"event_type": "x"}));
    assert_eq!((none.value, none.value_type), (None, None));
    let bad = amp(json!({"event_type": "x", "revenue": "lots", "insert_id": "i", "time": 1}));
    assert_eq!((&bad.value, codes(&bad)), (&None, vec!["invalid_revenue"]));
}

#[test]
fn amplitude_properties_are_event_properties_plus_revenue_fields() {
    let e = amp(json!({
        "event_type": "refund", "event_properties": {"plan": "pro", "nested": {"a": [1, 2]}},
        "revenue": -49, "price": -49, "quantity": 1, "revenueType": "Refund", "user_properties": {"x": 1}
    }));
    assert_eq!(
        Value::Object(e.properties),
        json!({"plan": "pro", "nested": {"a": [1, 2]}, "revenue": -49, "price": -49, "quantity": 1, "revenueType": "Refund"})
    );
}

// ---- Amplitude: identity hints ----

#[test]
fn amplitude_email_hint() {
    let e = amp(json!({"event_type": "e", "user_properties": {"email": "ada@example.com"}}));
    assert_eq!(e.user_hints.email.as_deref(), Some("ada@example.com"));
}

#[test]
fn amplitude_name_hint_from_first_and_last_or_name() {
    let name = |p: Value| {
        amp(json!({"event_type": "e", "user_properties": p}))
            .user_hints
            .name
    };
    assert_eq!(
        name(json!({"first_name": "Ada", "last_name": "Lovelace", "name": "X"})).as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(name(json!({"first_name": "Ada"})).as_deref(), Some("Ada"));
    assert_eq!(name(json!({"name": "Ada L."})).as_deref(), Some("Ada L."));
    assert_eq!(name(json!({})), None);
}

#[test]
fn amplitude_organization_id_from_groups_or_user_properties() {
    let org = |e: Value| amp(e).external_organization_id;
    assert_eq!(
        org(json!({"event_type": "e", "groups": {"organization": "org_1", "company": "c"}}))
            .as_deref(),
        Some("org_1")
    );
    assert_eq!(
        org(json!({"event_type": "e", "groups": {"company": "co_2"}})).as_deref(),
        Some("co_2")
    );
    assert_eq!(
        org(json!({"event_type": "e", "groups": {"company": ["co_3", "co_4"]}})).as_deref(),
        Some("co_3")
    );
    assert_eq!(
        org(json!({"event_type": "e", "user_properties": {"organization_id": 77}})).as_deref(),
        Some("77")
    );
    assert_eq!(
        org(json!({"event_type": "e", "user_properties": {"organization_name": "Acme"}})),
        None,
        "never by name"
    );
}

#[test]
fn amplitude_organization_name_hint() {
    let name = |p: Value| {
        amp(json!({"event_type": "e", "user_properties": p}))
            .organization_hints
            .name
    };
    assert_eq!(
        name(json!({"organization_name": "Acme", "company": "Other"})).as_deref(),
        Some("Acme")
    );
    assert_eq!(
        name(json!({"company": "Acme Inc"})).as_deref(),
        Some("Acme Inc")
    );
}

// ---- Segment: mapping table ----

#[test]
fn segment_event_is_the_event_type_and_pages_use_their_name() {
    assert_eq!(
        seg(json!({"type": "track", "event": "Order Completed"})).event_type,
        "Order Completed"
    );
    assert_eq!(
        seg(json!({"type": "page", "name": "Pricing"})).event_type,
        "Pricing"
    );
    assert_eq!(seg(json!({"type": "page"})).event_type, "page");
    assert_eq!(
        seg(json!({"type": "screen", "name": "Home"})).event_type,
        "Home"
    );
    assert_eq!(seg(json!({"type": "screen"})).event_type, "screen");
}

#[test]
fn segment_other_types_are_dropped() {
    let batch = json!({"batch": [
        {"type": "identify"}, {"type": "group"}, {"type": "alias"}, {"type": "future"}, {"type": "track"}, {"type": "track", "event": "x"}
    ]});
    let mapped = map(Provider::Segment, &batch).unwrap();
    assert_eq!((mapped.events.len(), mapped.dropped), (1, 5));
    assert_eq!(
        mapped.events[0].origin.index, 5,
        "the index is the position in the batch"
    );
}

#[test]
fn segment_user_id_falls_back_to_anonymous_id() {
    let user = |m: Value| seg(m).external_user_id;
    assert_eq!(
        user(json!({"type": "track", "event": "e", "userId": "u", "anonymousId": "a"})).as_deref(),
        Some("u")
    );
    assert_eq!(
        user(json!({"type": "track", "event": "e", "anonymousId": "a"})).as_deref(),
        Some("a")
    );
    assert_eq!(user(json!({"type": "track", "event": "e"})), None);
}

#[test]
fn segment_timestamp_with_any_offset_is_exact_to_the_ms() {
    let at = |ts: &str| {
        seg(json!({"type": "track", "event": "e", "timestamp": ts}))
            .event_at
            .timestamp_millis()
    };
    assert_eq!(at("2026-05-18T12:00:00Z"), 1779105600000);
    assert_eq!(at("2026-05-18T12:00:00.123Z"), 1779105600123);
    assert_eq!(at("2026-05-18T14:00:00.456+02:00"), 1779105600456);
    assert_eq!(at("2026-05-18T06:30:00.789-05:30"), 1779105600789);
    let missing = seg(json!({"type": "track", "event": "e", "messageId": "m"}));
    assert_eq!(
        (missing.event_at.timestamp_millis(), codes(&missing)),
        (RECEIVED_AT, vec!["missing_time"])
    );
}

#[test]
fn segment_message_id_is_the_prefixed_insert_id() {
    assert_eq!(
        seg(json!({"type": "track", "event": "e", "messageId": "msg_test_001"})).insert_id,
        "segment:msg_test_001"
    );
    assert!(
        seg(json!({"type": "track", "event": "e"}))
            .insert_id
            .starts_with("segment:gf-")
    );
}

#[test]
fn segment_revenue_or_price_times_quantity() {
    let value = |p: Value| seg(json!({"type": "track", "event": "e", "properties": p})).value;
    assert_eq!(
        value(json!({"revenue": 49.0})),
        Some(EventValue::Number(49.0))
    );
    assert_eq!(
        value(json!({"price": 20, "quantity": 2})),
        Some(EventValue::Number(40.0))
    );
    assert_eq!(
        value(json!({"revenue": -10})),
        Some(EventValue::Number(-10.0))
    );
    assert_eq!(value(json!({"plan": "pro"})), None);
}

#[test]
fn segment_properties_are_kept_verbatim() {
    let props = json!({"revenue": 49.0, "plan": "pro", "items": [{"sku": "a", "price": null}], "émoji": "🎉"});
    assert_eq!(
        Value::Object(
            seg(json!({"type": "track", "event": "e", "properties": props.clone()})).properties
        ),
        props
    );
}

// ---- Segment: identity hints ----

#[test]
fn segment_email_hint_order() {
    let email = |m: Value| seg(m).user_hints.email;
    let all = json!({"type": "track", "event": "e", "context": {"traits": {"email": "c@x"}}, "traits": {"email": "t@x"}, "properties": {"email": "p@x"}});
    assert_eq!(email(all).as_deref(), Some("c@x"));
    assert_eq!(email(json!({"type": "track", "event": "e", "traits": {"email": "t@x"}, "properties": {"email": "p@x"}})).as_deref(), Some("t@x"));
    assert_eq!(
        email(json!({"type": "track", "event": "e", "properties": {"email": "p@x"}})).as_deref(),
        Some("p@x")
    );
}

#[test]
fn segment_name_hint_order() {
    let name = |m: Value| seg(m).user_hints.name;
    assert_eq!(name(json!({"type": "track", "event": "e", "context": {"traits": {"name": "C"}}, "traits": {"name": "T"}})).as_deref(), Some("C"));
    assert_eq!(name(json!({"type": "track", "event": "e", "traits": {"name": "T"}, "properties": {"name": "P"}})).as_deref(), Some("T"));
    assert_eq!(
        name(json!({"type": "track", "event": "e", "properties": {"name": "P"}})).as_deref(),
        Some("P")
    );
}

#[test]
fn segment_organization_id_order() {
    let org = |m: Value| seg(m).external_organization_id;
    let all = json!({"type": "track", "event": "e", "context": {"groupId": "g"}, "traits": {"organization_id": "t"}, "properties": {"organization_id": "p"}});
    assert_eq!(org(all).as_deref(), Some("g"));
    assert_eq!(org(json!({"type": "track", "event": "e", "traits": {"organization_id": "t"}, "properties": {"organization_id": "p"}})).as_deref(), Some("t"));
    assert_eq!(
        org(json!({"type": "track", "event": "e", "properties": {"organization_id": "p"}}))
            .as_deref(),
        Some("p")
    );
    assert_eq!(
        org(json!({"type": "track", "event": "e", "traits": {"organization_name": "Acme"}})),
        None,
        "never by name"
    );
}

#[test]
fn segment_organization_name_hint() {
    let name = |m: Value| seg(m).organization_hints.name;
    assert_eq!(name(json!({"type": "track", "event": "e", "traits": {"organization_name": "Acme", "company": "X"}})).as_deref(), Some("Acme"));
    assert_eq!(
        name(json!({"type": "track", "event": "e", "traits": {"company": "Acme Inc"}})).as_deref(),
        Some("Acme Inc")
    );
    assert_eq!(
        name(json!({"type": "track", "event": "e", "properties": {"company": "P Co"}})).as_deref(),
        Some("P Co")
    );
}

// ---- Influence and overrides, through the whole mapping ----

#[test]
fn revenue_sign_decides_before_the_name() {
    let refund = amp(json!({"event_type": "purchase", "revenue": -49, "revenueType": "Refund"}));
    assert_eq!(
        (refund.influence, refund.influence_rule),
        (Influence::Negative, InfluenceRule::Revenue)
    );
    let paid = seg(
        json!({"type": "track", "event": "Subscription Cancelled", "properties": {"price": 5, "quantity": 2}}),
    );
    assert_eq!(
        (paid.influence, paid.influence_rule),
        (Influence::Positive, InfluenceRule::Revenue)
    );
    let zero = amp(json!({"event_type": "order_completed", "revenue": 0}));
    assert_eq!(
        (zero.influence, zero.influence_rule),
        (Influence::Positive, InfluenceRule::Name)
    );
    let plain = amp(json!({"event_type": "page_view"}));
    assert_eq!(
        (plain.influence, plain.influence_rule),
        (Influence::Neutral, InfluenceRule::Default)
    );
}

#[test]
fn the_documents_override_examples() {
    let amplitude = amp(json!({"event_type": "weekly_active_milestone",
        "event_properties": {"weeks": 4, "gf_influence": "positive", "gf_quality_impact_score": 0.8}}));
    assert_eq!(
        (amplitude.influence, amplitude.influence_rule),
        (Influence::Positive, InfluenceRule::Override)
    );
    assert_eq!(amplitude.quality_impact_score, Some(0.8));
    let segment = seg(json!({"type": "track", "event": "Workspace Activated",
        "properties": {"workspace_id": "ws_42", "gf_influence": "positive", "gf_quality_impact_score": 0.7}}));
    assert_eq!(
        (segment.influence, segment.quality_impact_score),
        (Influence::Positive, Some(0.7))
    );
    assert_eq!(
        segment.properties["gf_influence"], "positive",
        "magic properties stay in properties"
    );
}

#[test]
fn overrides_of_name_value_and_conversation() {
    let e = amp(json!({"event_type": "custom_thing", "revenue": 5,
        "event_properties": {"gf_event_type": "Plan Upgraded", "gf_value": "gold", "gf_value_type": "text", "gf_conversation_id": "conv_1"}}));
    assert_eq!(e.event_type, "Plan Upgraded");
    assert_eq!(e.properties["gf_original_event_type"], "custom_thing");
    assert_eq!(
        (e.value, e.value_type),
        (Some(EventValue::Text("gold".into())), Some(ValueType::Text))
    );
    assert_eq!(e.external_conversation_id.as_deref(), Some("conv_1"));
    // The revenue still decides influence; gf_value does not.
    assert_eq!(e.influence_rule, InfluenceRule::Revenue);
    let by_new_name = seg(
        json!({"type": "track", "event": "thing", "properties": {"gf_event_type": "Order Refunded"}}),
    );
    assert_eq!(
        (by_new_name.influence, by_new_name.influence_rule),
        (Influence::Negative, InfluenceRule::Name)
    );
}

#[test]
fn an_invalid_override_never_drops_the_event() {
    let e = seg(
        json!({"type": "track", "event": "Signed Up", "messageId": "m", "timestamp": "2026-05-18T12:00:00Z",
        "properties": {"gf_influence": "very", "gf_quality_impact_score": 3}}),
    );
    assert_eq!(
        (e.influence, e.influence_rule, e.quality_impact_score),
        (Influence::Positive, InfluenceRule::Name, None)
    );
    assert_eq!(codes(&e), ["invalid_override", "invalid_override"]);
}

#[test]
fn bodies_that_cannot_be_mapped_are_errors() {
    assert!(matches!(
        map(Provider::Amplitude, &json!({"nope": 1})),
        Err(MapError::WrongShape(_))
    ));
    assert!(matches!(
        map(Provider::Segment, &json!(42)),
        Err(MapError::WrongShape(_))
    ));
    assert!(matches!(
        map(Provider::Posthog, &json!({"api_key": "k"})),
        Err(MapError::WrongShape(_))
    ));
    assert!(matches!(
        map(Provider::Api, &json!([{"eventType": "x"}])),
        Err(MapError::WrongShape(_))
    ));
    let meta = meta(Provider::Segment);
    let input = RawInput {
        body: b"{not json",
        meta: &meta,
        topic: "t",
        partition: 0,
        offset: 0,
    };
    assert!(matches!(
        map_record(&input, &MapOptions::default()),
        Err(MapError::InvalidJson(_))
    ));
}

#[test]
fn origin_and_version_are_recorded() {
    let e = seg(json!({"type": "track", "event": "e"}));
    assert_eq!(
        (
            e.origin.topic.as_str(),
            e.origin.partition,
            e.origin.offset,
            e.origin.index
        ),
        ("gf.raw.v1", 0, 1, 0)
    );
    assert_eq!(e.mapper_version, gf_normalizer::mapping::MAPPER_VERSION);
    assert_eq!(
        (e.product_id, e.connection_id, e.source),
        (
            Uuid::from_u128(0x90),
            Uuid::from_u128(0xC0),
            Provider::Segment
        )
    );
    assert_eq!(e.received_at.timestamp_millis(), RECEIVED_AT);
}

// ---- Amplitude: Export-format rows ----

#[test]
fn amplitude_export_insert_id_is_dollar_insert_id_else_uuid() {
    let e = amp(json!({"event_type": "e", "$insert_id": "ins", "uuid": "uu"}));
    assert_eq!(e.insert_id, "amplitude:ins");
    let e = amp(json!({"event_type": "e", "uuid": "uu"}));
    assert_eq!(e.insert_id, "amplitude:uu");
    let e = amp(json!({"event_type": "e", "insert_id": "http", "$insert_id": "ins"}));
    assert_eq!(e.insert_id, "amplitude:http");
}

#[test]
fn amplitude_export_event_time_is_utc_to_the_millisecond() {
    let e = amp(json!({"event_type": "e", "event_time": "2026-05-18 12:00:00.123999"}));
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT + 123);
    // `time` (HTTP V2) wins when both are sent.
    let e = amp(
        json!({"event_type": "e", "time": RECEIVED_AT + 5, "event_time": "2020-01-01 00:00:00"}),
    );
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT + 5);
    let e = amp(json!({"event_type": "e", "event_time": "last tuesday"}));
    assert_eq!(codes(&e), vec!["missing_insert_id", "invalid_time"]);
}

#[test]
fn amplitude_export_revenue_from_event_properties() {
    let e = amp(
        json!({"event_type": "e", "event_properties": {"$revenue": 10, "$price": 3, "$quantity": 2}}),
    );
    assert_eq!(e.value, Some(EventValue::Number(10.0)));
    let e = amp(json!({"event_type": "e", "event_properties": {"$price": 3, "$quantity": 2}}));
    assert_eq!(e.value, Some(EventValue::Number(6.0)));
    assert_eq!(e.influence, Influence::Positive);
    // A top-level revenue wins over the properties'.
    let e = amp(json!({"event_type": "e", "revenue": -4, "event_properties": {"$revenue": 10}}));
    assert_eq!(e.value, Some(EventValue::Number(-4.0)));
    assert_eq!(e.influence, Influence::Negative);
}

#[test]
fn amplitude_export_single_event_and_user_objects() {
    let one = map(
        Provider::Amplitude,
        &json!({"event_type": "purchase", "user_id": "u"}),
    )
    .unwrap();
    assert_eq!((one.events.len(), one.dropped), (1, 0));
    let user = map(
        Provider::Amplitude,
        &json!({"user_id": "u", "user_properties": {"plan": "pro"}}),
    )
    .unwrap();
    assert_eq!((user.events.len(), user.dropped), (0, 1));
    let array = map(
        Provider::Amplitude,
        &json!([{"event_type": "a"}, {"device_id": "d"}]),
    )
    .unwrap();
    assert_eq!((array.events.len(), array.dropped), (1, 1));
    assert!(map(Provider::Amplitude, &json!({"api_key": "k"})).is_err());
}

#[test]
fn segment_top_level_array_is_a_batch() {
    let mapped = map(
        Provider::Segment,
        &json!([{"type": "track", "event": "a"}, {"type": "identify"}, {"type": "page"}]),
    )
    .unwrap();
    assert_eq!((mapped.events.len(), mapped.dropped), (2, 1));
}

// ---- PostHog: mapping table ----

fn ph(event: Value) -> CanonicalEvent {
    let mut mapped = map(Provider::Posthog, &event).unwrap();
    assert_eq!(mapped.events.len(), 1, "the event was dropped");
    mapped.events.remove(0)
}

#[test]
fn posthog_event_is_the_event_type() {
    assert_eq!(ph(json!({"event": "purchase"})).event_type, "purchase");
    assert_eq!(ph(json!({"event": " padded "})).event_type, "padded");
}

#[test]
fn posthog_pageview_is_named_by_the_url_path_and_screen_by_its_name() {
    let page = ph(
        json!({"event": "$pageview", "properties": {"$current_url": "https://a.example/docs/start?x=1"}}),
    );
    assert_eq!(page.event_type, "/docs/start");
    assert_eq!(ph(json!({"event": "$pageview"})).event_type, "$pageview");
    let screen = ph(json!({"event": "$screen", "properties": {"$screen_name": "Checkout"}}));
    assert_eq!(screen.event_type, "Checkout");
    assert_eq!(ph(json!({"event": "$screen"})).event_type, "$screen");
}

#[test]
fn posthog_distinct_id_is_the_external_user_id() {
    let e = ph(json!({"event": "e", "distinct_id": "u-1"}));
    assert_eq!(e.external_user_id.as_deref(), Some("u-1"));
    assert_eq!(ph(json!({"event": "e"})).external_user_id, None);
}

#[test]
fn posthog_uuid_is_the_insert_id_else_derived() {
    let e = ph(json!({"event": "e", "uuid": "0190-a"}));
    assert_eq!(e.insert_id, "posthog:0190-a");
    let a = ph(json!({"event": "e", "distinct_id": "u"}));
    let b = ph(json!({"distinct_id": "u", "event": "e"}));
    assert!(a.insert_id.starts_with("posthog:gf-"));
    assert_eq!(a.insert_id, b.insert_id);
    assert!(codes(&a).contains(&"missing_insert_id"));
}

#[test]
fn posthog_timestamp_is_the_event_time() {
    let e = ph(json!({"event": "e", "timestamp": "2026-05-18T14:00:00.250+02:00"}));
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT + 250);
    let e = ph(json!({"event": "e"}));
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT);
    assert!(codes(&e).contains(&"missing_time"));
}

#[test]
fn posthog_properties_are_kept_verbatim() {
    let props = json!({"plan": "pro", "$lib": "posthog-python", "nested": {"a": [1]}});
    let e = ph(json!({"event": "e", "properties": props}));
    assert_eq!(Value::Object(e.properties), props);
}

#[test]
fn posthog_revenue_from_revenue_price_quantity_or_dollar_revenue() {
    let value = |props: Value| ph(json!({"event": "e", "properties": props})).value;
    assert_eq!(
        value(json!({"revenue": 49})),
        Some(EventValue::Number(49.0))
    );
    assert_eq!(
        value(json!({"price": 5, "quantity": 3})),
        Some(EventValue::Number(15.0))
    );
    assert_eq!(
        value(json!({"$revenue": -7})),
        Some(EventValue::Number(-7.0))
    );
    assert_eq!(
        value(json!({"revenue": 1, "$revenue": 99})),
        Some(EventValue::Number(1.0))
    );
    assert_eq!(value(json!({})), None);
    let e = ph(json!({"event": "e", "properties": {"$revenue": 5}}));
    assert_eq!(
        (e.value_type, e.influence, e.influence_rule),
        (
            Some(ValueType::Currency),
            Influence::Positive,
            InfluenceRule::Revenue
        )
    );
}

#[test]
fn posthog_email_and_name_from_the_person_then_set_then_properties() {
    let cdp = |person: Value, props: Value| {
        ph(json!({"event": {"event": "e", "properties": props}, "person": person})).user_hints
    };
    let hints = cdp(
        json!({"properties": {"email": "p@x.co", "name": "Person"}}),
        json!({"$set": {"email": "s@x.co", "name": "Set"}}),
    );
    assert_eq!(
        (hints.email.as_deref(), hints.name.as_deref()),
        (Some("p@x.co"), Some("Person"))
    );
    let hints = cdp(
        json!({"properties": {}, "name": "p@x.co"}),
        json!({"$set": {"email": "s@x.co"}}),
    );
    assert_eq!(
        (hints.email.as_deref(), hints.name.as_deref()),
        (Some("s@x.co"), Some("p@x.co"))
    );
    let hints = ph(json!({"event": "e", "properties": {"email": "plain@x.co", "name": "Plain"}}))
        .user_hints;
    assert_eq!(
        (hints.email.as_deref(), hints.name.as_deref()),
        (Some("plain@x.co"), Some("Plain"))
    );
}

#[test]
fn posthog_organization_from_groups() {
    let org =
        |props: Value| ph(json!({"event": "e", "properties": props})).external_organization_id;
    assert_eq!(
        org(json!({"$groups": {"organization": "o1", "company": "c1"}})).as_deref(),
        Some("o1")
    );
    assert_eq!(
        org(json!({"$groups": {"company": "c1"}})).as_deref(),
        Some("c1")
    );
    assert_eq!(org(json!({"$groups": {"project": "p"}})), None);
}

#[test]
fn posthog_trait_only_events_are_dropped() {
    for name in [
        "$identify",
        "$set",
        "$groupidentify",
        "$create_alias",
        "$merge_dangerously",
    ] {
        let mapped = map(
            Provider::Posthog,
            &json!({"event": name, "distinct_id": "u"}),
        )
        .unwrap();
        assert_eq!((mapped.events.len(), mapped.dropped), (0, 1), "{name}");
    }
    let mapped = map(
        Provider::Posthog,
        &json!({"batch": [{"event": "a"}, {"event": "$identify"}, {"event": ""}]}),
    )
    .unwrap();
    assert_eq!((mapped.events.len(), mapped.dropped), (1, 2));
}

#[test]
fn a_posthog_engage_body_is_one_dropped_message() {
    for body in [
        json!({"api_key": "phc", "distinct_id": "u", "$set": {"email": "a@b.co"}}),
        json!({"$distinct_id": "u", "$set_once": {"plan": "pro"}}),
        json!({"distinct_id": "u", "$unset": ["plan"]}),
    ] {
        let mapped = map(Provider::Posthog, &body).unwrap();
        assert_eq!((mapped.events.len(), mapped.dropped), (0, 1), "{body}");
    }
}

#[test]
fn posthog_cdp_webhook_reads_the_nested_event_and_person() {
    let e = ph(json!({
        "event": {"uuid": "u-1", "event": "purchase", "distinct_id": "d", "properties": {"revenue": 3}, "timestamp": "2026-05-18T12:00:00Z", "elements_chain": "", "url": "https://ph.example/e/1"},
        "person": {"id": "p", "properties": {"email": "a@b.co"}, "name": "A", "url": "https://ph.example/p/1"}
    }));
    assert_eq!(e.insert_id, "posthog:u-1");
    assert_eq!(e.external_user_id.as_deref(), Some("d"));
    assert_eq!(e.user_hints.email.as_deref(), Some("a@b.co"));
    assert_eq!(e.value, Some(EventValue::Number(3.0)));
}

#[test]
fn posthog_magic_properties_override() {
    let e = ph(
        json!({"event": "e", "properties": {"gf_influence": "negative", "gf_event_type": "x.y"}}),
    );
    assert_eq!(
        (e.event_type.as_str(), e.influence, e.influence_rule),
        ("x.y", Influence::Negative, InfluenceRule::Override)
    );
}

// ---- the public events API ----

fn api(event: Value) -> CanonicalEvent {
    let mut mapped = map(Provider::Api, &json!({ "events": [event] })).unwrap();
    assert_eq!(mapped.events.len(), 1, "the event was dropped");
    mapped.events.remove(0)
}

#[test]
fn api_fields_are_taken_as_they_are_named() {
    let e = api(json!({
        "eventType": "purchase", "externalUserId": "u", "eventAt": RECEIVED_AT + 7, "insertId": "o-1",
        "value": "49.5", "valueType": "currency", "properties": {"a": 1},
        "userHints": {"email": "a@b.co", "name": "Ada"}, "externalOrganizationId": "acme",
        "organizationHints": {"name": "Acme"}, "qualityImpactScore": -0.5, "externalConversationId": "c-1"
    }));
    assert_eq!(e.event_type, "purchase");
    assert_eq!(e.external_user_id.as_deref(), Some("u"));
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT + 7);
    assert_eq!(e.insert_id, "api:o-1");
    assert_eq!(
        (e.value, e.value_type),
        (Some(EventValue::Number(49.5)), Some(ValueType::Currency))
    );
    assert_eq!(
        (e.influence, e.influence_rule),
        (Influence::Positive, InfluenceRule::Revenue)
    );
    assert_eq!(e.user_hints.email.as_deref(), Some("a@b.co"));
    assert_eq!(e.organization_hints.name.as_deref(), Some("Acme"));
    assert_eq!(e.external_organization_id.as_deref(), Some("acme"));
    assert_eq!(e.quality_impact_score, Some(-0.5));
    assert_eq!(e.external_conversation_id.as_deref(), Some("c-1"));
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
}

#[test]
fn api_influence_is_inferred_when_absent_and_explicit_wins() {
    assert_eq!(
        api(json!({"eventType": "subscription cancelled"})).influence,
        Influence::Negative
    );
    let e = api(
        json!({"eventType": "subscription cancelled", "influence": "positive", "properties": {"gf_influence": "neutral"}}),
    );
    assert_eq!(
        (e.influence, e.influence_rule),
        (Influence::Positive, InfluenceRule::Override)
    );
    let e = api(json!({"eventType": "x", "eventAt": "2026-05-18T12:00:00.001Z"}));
    assert_eq!(e.event_at.timestamp_millis(), RECEIVED_AT + 1);
}
