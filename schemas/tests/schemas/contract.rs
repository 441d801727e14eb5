//! Serializes a sample of every wire type and validates it against the checked-in JSON Schema
//! files, the way a downstream consumer would. Also checks that every field the Rust type writes
//! is declared in its schema, so a field added on one side only fails here.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use gf_schemas::attributed::*;
use gf_schemas::canonical::*;
use gf_schemas::conversation::*;
use gf_schemas::deadletter::*;
use gf_schemas::outcome::*;
use gf_schemas::raw::RawRecordMeta;
use gf_schemas::signal::*;
use gf_schemas::{Provider, SCHEMA_BASE_URI, SCHEMA_FILES};
use serde_json::{Value, json};
use uuid::Uuid;

fn schema(name: &str) -> Value {
    let (_, text) = SCHEMA_FILES
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("{name} is not in SCHEMA_FILES"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn validator(name: &str) -> jsonschema::Validator {
    gf_tests::schema_validator(name)
}

fn assert_valid(name: &str, instance: &Value) {
    let v = validator(name);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} rejects the sample: {errors:#?}\n{instance:#}"
    );
}

/// Every top-level key the Rust type writes is declared by the schema (or one it includes).
fn assert_declared(names: &[&str], instance: &Value) {
    let declared: BTreeSet<String> = names
        .iter()
        .flat_map(|n| {
            schema(n)["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    for key in instance.as_object().expect("an object").keys() {
        assert!(
            declared.contains(key),
            "{key} is written but not declared in {names:?}"
        );
    }
}

fn at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn canonical() -> CanonicalEvent {
    let product_id = Uuid::from_u128(0x11);
    CanonicalEvent {
        id: CanonicalEvent::derive_id(product_id, "amplitude:amp_test_001"),
        product_id,
        connection_id: Uuid::from_u128(0x22),
        source: Provider::Amplitude,
        event_type: "purchase".into(),
        external_user_id: Some("user_test_123".into()),
        event_at: at(1_747_569_600_000),
        insert_id: "amplitude:amp_test_001".into(),
        value: Some(EventValue::Number(49.0)),
        value_type: Some(ValueType::Currency),
        properties: json!({"plan": "pro", "revenue": 49.0})
            .as_object()
            .unwrap()
            .clone(),
        user_hints: UserHints {
            email: Some("ada@example.com".into()),
            name: None,
        },
        external_organization_id: None,
        organization_hints: OrganizationHints::default(),
        influence: Influence::Positive,
        influence_rule: InfluenceRule::Revenue,
        quality_impact_score: None,
        external_conversation_id: None,
        received_at: at(1_747_569_600_321),
        mapper_version: 1,
        origin: RawOrigin {
            topic: "gf.raw.v1".into(),
            partition: 0,
            offset: 42,
            index: 0,
        },
        warnings: vec![Warning {
            code: "w".into(),
            message: "m".into(),
        }],
    }
}

#[test]
fn every_schema_file_compiles() {
    for (file, _) in SCHEMA_FILES {
        validator(file);
        assert_eq!(
            schema(file)["$id"],
            format!("{SCHEMA_BASE_URI}{file}"),
            "{file} $id"
        );
    }
}

#[test]
fn raw_headers_match() {
    let meta = RawRecordMeta {
        connection_id: Uuid::from_u128(1),
        product_id: Uuid::from_u128(2),
        provider: Provider::Amplitude,
        received_at_ms: 1_747_569_600_000,
        request_id: "01J0-request".into(),
        content_type: Some("application/json".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    };
    let value = serde_json::to_value(meta.to_header_map()).unwrap();
    assert_valid("raw-headers.v1.schema.json", &value);
    assert_declared(&["raw-headers.v1.schema.json"], &value);
}

#[test]
fn canonical_event_matches() {
    let mut event = canonical();
    let value = serde_json::to_value(&event).unwrap();
    assert_valid("canonical-event.v1.schema.json", &value);
    assert_declared(&["canonical-event.v1.schema.json"], &value);

    // The all-null shape (anonymous, no value, no hints) is valid too.
    event.external_user_id = None;
    event.value = None;
    event.value_type = None;
    event.user_hints = UserHints::default();
    event.warnings.clear();
    assert_valid(
        "canonical-event.v1.schema.json",
        &serde_json::to_value(&event).unwrap(),
    );

    // And it round-trips.
    let back: CanonicalEvent = serde_json::from_value(value).unwrap();
    assert_eq!(back, canonical());
}

#[test]
fn the_validator_really_rejects() {
    let mut value = serde_json::to_value(canonical()).unwrap();
    value["eventAt"] = json!("2025-05-18T12:00:00Z");
    assert!(!validator("canonical-event.v1.schema.json").is_valid(&value));
    let mut value = serde_json::to_value(canonical()).unwrap();
    value.as_object_mut().unwrap().remove("externalUserId");
    assert!(!validator("canonical-event.v1.schema.json").is_valid(&value));
    let mut value = serde_json::to_value(canonical()).unwrap();
    value["influence"] = json!("great");
    assert!(!validator("canonical-event.v1.schema.json").is_valid(&value));
}

#[test]
fn attributed_event_matches() {
    let event = AttributedEvent {
        event: canonical(),
        user_id: Some(Uuid::from_u128(0x33)),
        organization_id: None,
        conversation_id: Some(Uuid::from_u128(0x44)),
        resolution: Resolution {
            user: UserResolution::Email,
            organization: OrganizationResolution::None,
            conversation: ConversationResolution::Window,
        },
    };
    let value = serde_json::to_value(&event).unwrap();
    assert_valid("attributed-event.v1.schema.json", &value);
    assert_declared(
        &[
            "attributed-event.v1.schema.json",
            "canonical-event.v1.schema.json",
        ],
        &value,
    );
    let mut broken = value.clone();
    broken["resolution"]["user"] = json!("guessed");
    assert!(!validator("attributed-event.v1.schema.json").is_valid(&broken));
    let mut broken = value;
    broken.as_object_mut().unwrap().remove("eventType");
    assert!(!validator("attributed-event.v1.schema.json").is_valid(&broken));
}

#[test]
fn conversation_message_matches() {
    for kind in [
        ConversationKind::Started,
        ConversationKind::Message,
        ConversationKind::Ended,
    ] {
        let message = ConversationMessage {
            id: Uuid::from_u128(5),
            kind,
            product_id: Uuid::from_u128(0x11),
            external_conversation_id: "conv-1".into(),
            external_user_id: Some("user_test_123".into()),
            email: Some("ada@example.com".into()),
            name: Some("Ada".into()),
            occurred_at: at(1_747_569_600_000),
            role: None,
            metadata: Default::default(),
        };
        let value = serde_json::to_value(&message).unwrap();
        assert_valid("conversation.v1.schema.json", &value);
        assert_declared(&["conversation.v1.schema.json"], &value);
    }
}

#[test]
fn signal_matches() {
    let plain = Signal {
        id: Uuid::from_u128(6),
        product_id: Uuid::from_u128(0x11),
        kind: SignalKind::ConversationCommercialIntent,
        external_conversation_id: Some("conv-1".into()),
        score: Some(0.7),
        label: Some("high".into()),
        custom_analysis: None,
        occurred_at: at(1_747_569_600_000),
        details: Default::default(),
    };
    let custom = Signal {
        kind: SignalKind::CustomAnalysis,
        score: None,
        label: None,
        custom_analysis: Some(CustomAnalysisResult {
            analysis_id: "ca_1".into(),
            name: "No refunds promised".into(),
            analysis_type: CustomAnalysisType::Guardrail,
            triggered: true,
            explanation: Some("promised a refund".into()),
        }),
        ..plain.clone()
    };
    for signal in [plain, custom] {
        let value = serde_json::to_value(&signal).unwrap();
        assert_valid("signal.v1.schema.json", &value);
        assert_declared(&["signal.v1.schema.json"], &value);
    }
}

#[test]
fn dead_letter_matches() {
    let letter = DeadLetter {
        stage: "normalizer".into(),
        reason: "body is not JSON".into(),
        reason_class: gf_schemas::deadletter::ReasonClass::Invalid,
        source: SourceRecord {
            topic: "gf.raw.v1".into(),
            partition: 2,
            offset: 17,
            key: Some(Uuid::from_u128(1).to_string()),
            headers: [("gf-provider".to_owned(), "segment".to_owned())].into(),
        },
        event_index: None,
        excerpt: DeadLetter::excerpt_of(b"{not json").0,
        truncated: false,
        failed_at: at(1_747_569_600_000),
    };
    let value = serde_json::to_value(&letter).unwrap();
    assert_valid("deadletter.v1.schema.json", &value);
    let per_event = DeadLetter {
        reason_class: gf_schemas::deadletter::ReasonClass::OutOfBounds,
        event_index: Some(3),
        truncated: true,
        ..letter
    };
    let value = serde_json::to_value(&per_event).unwrap();
    assert_valid("deadletter.v1.schema.json", &value);
    assert_declared(&["deadletter.v1.schema.json"], &value);
}

/// The names stored in text columns and logs (strum) are the wire names (serde), variant by
/// variant, so a renamed variant cannot write one name to the topic and another to PostgreSQL.
#[test]
fn stored_names_are_the_wire_names() {
    fn same<T>()
    where
        T: strum::IntoEnumIterator + serde::Serialize + Copy + Into<&'static str>,
    {
        for v in T::iter() {
            let stored: &'static str = v.into();
            assert_eq!(serde_json::to_value(v).unwrap(), json!(stored));
        }
    }
    same::<UserResolution>();
    same::<OrganizationResolution>();
    same::<ConversationResolution>();
    same::<ValueType>();
    same::<Influence>();
    same::<InfluenceRule>();
    same::<ConversationKind>();
    same::<Provider>();
    same::<Verdict>();
}

fn outcome() -> ConversationOutcome {
    ConversationOutcome {
        id: Uuid::from_u128(0x51),
        conversation_id: Uuid::from_u128(0x51),
        product_id: Uuid::from_u128(0x52),
        external_conversation_id: "conv-1".into(),
        user_id: Some(Uuid::from_u128(0x53)),
        verdict: Verdict::Refunded,
        decided_by_event_id: Some(Uuid::from_u128(0x54)),
        counts: InfluenceCounts {
            total: 3,
            positive: 1,
            negative: 1,
            neutral: 1,
        },
        value: InfluenceValues {
            total: 0.0,
            positive: 49.0,
            negative: -49.0,
            neutral: 0.0,
        },
        revenue: 49.0,
        refunds: 49.0,
        quality_impact: -0.5,
        first_event_at: Some(at(1_000)),
        last_event_at: Some(at(90_000)),
        last_activity_at: Some(at(500)),
        seconds_to_first_positive: Some(0.5),
        seconds_to_first_negative: Some(89.5),
        silent_churn_at: None,
    }
}

#[test]
fn outcome_matches() {
    let value = serde_json::to_value(outcome()).unwrap();
    assert_valid("outcome.v1.schema.json", &value);
    assert_declared(&["outcome.v1.schema.json"], &value);
    assert_eq!(value["lastEventAt"], json!("1970-01-01T00:01:30.000Z"));
    let back: ConversationOutcome = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back, outcome());
    // PostgreSQL's own timestamp text reads back too.
    let mut from_db = value.clone();
    from_db["lastEventAt"] = json!("1970-01-01T00:01:30.000+00:00");
    let back: ConversationOutcome = serde_json::from_value(from_db).unwrap();
    assert_eq!(back, outcome());
    let mut broken = value.clone();
    broken["verdict"] = json!("maybe");
    assert!(!validator("outcome.v1.schema.json").is_valid(&broken));
    let mut broken = value;
    broken["refunds"] = json!(-49.0);
    assert!(!validator("outcome.v1.schema.json").is_valid(&broken));
}
