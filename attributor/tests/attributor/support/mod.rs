//! Building canonical events and conversation messages for the attributor's tests and bench.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use gf_schemas::Provider;
use gf_schemas::canonical::{
    CanonicalEvent, EventValue, Influence, InfluenceRule, OrganizationHints, RawOrigin, UserHints,
    ValueType,
};
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use serde_json::{Map, json};
use uuid::Uuid;

/// 2026-05-18 12:00:00 UTC plus `minutes` and `seconds`.
pub fn at(minutes: i64, seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap()
        + chrono::Duration::minutes(minutes)
        + chrono::Duration::seconds(seconds)
}

/// A migrated database of the test's own with one product, a client and a pool.
pub struct Db {
    pub _db: gf_tests::TestDb,
    pub client: tokio_postgres::Client,
    pub pool: deadpool_postgres::Pool,
    pub product: Uuid,
}

pub async fn db() -> Db {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = gf_tests::TestDb::migrated().await;
    let client = db.client().await;
    let product = product(&client).await;
    let pool = gf_runtime::db::pool(&db.url, 4).unwrap();
    Db {
        _db: db,
        client,
        pool,
        product,
    }
}

/// Creates a product row; returns its id.
pub async fn product(client: &tokio_postgres::Client) -> Uuid {
    let id = Uuid::new_v4();
    client
        .execute(
            "INSERT INTO products (id, name) VALUES ($1, $2)",
            &[&id, &format!("product {id}")],
        )
        .await
        .expect("insert product");
    id
}

/// A purchase event of `user` (no email, no org) at `at`.
pub fn event(
    product: Uuid,
    insert_id: &str,
    user: Option<&str>,
    at: DateTime<Utc>,
) -> CanonicalEvent {
    let insert_id = format!("amplitude:{insert_id}");
    CanonicalEvent {
        id: CanonicalEvent::derive_id(product, &insert_id),
        product_id: product,
        connection_id: Uuid::from_u128(99),
        source: Provider::Amplitude,
        event_type: "purchase".into(),
        external_user_id: user.map(str::to_owned),
        event_at: at,
        insert_id,
        value: Some(EventValue::Number(49.0)),
        value_type: Some(ValueType::Currency),
        properties: Map::from_iter([("plan".to_owned(), json!("pro"))]),
        user_hints: UserHints::default(),
        external_organization_id: None,
        organization_hints: OrganizationHints::default(),
        influence: Influence::Positive,
        influence_rule: InfluenceRule::Revenue,
        quality_impact_score: None,
        external_conversation_id: None,
        received_at: at,
        mapper_version: 1,
        origin: RawOrigin {
            topic: "gf.raw.v1".into(),
            partition: 0,
            offset: 0,
            index: 0,
        },
        warnings: Vec::new(),
    }
}

pub fn with_email(mut e: CanonicalEvent, email: &str, name: Option<&str>) -> CanonicalEvent {
    e.user_hints = UserHints {
        email: Some(email.into()),
        name: name.map(str::to_owned),
    };
    e
}

pub fn with_org(mut e: CanonicalEvent, external: &str, name: Option<&str>) -> CanonicalEvent {
    e.external_organization_id = Some(external.into());
    e.organization_hints = OrganizationHints {
        name: name.map(str::to_owned),
    };
    e
}

/// A conversation message from the SDK for `user`.
pub fn message(
    product: Uuid,
    conversation: &str,
    kind: ConversationKind,
    user: Option<&str>,
    at: DateTime<Utc>,
) -> ConversationMessage {
    ConversationMessage {
        id: Uuid::new_v4(),
        kind,
        product_id: product,
        external_conversation_id: conversation.into(),
        external_user_id: user.map(str::to_owned),
        email: None,
        name: None,
        occurred_at: at,
        role: Some("user".into()),
        metadata: Map::new(),
    }
}

/// The event as a refund: a negative currency value, negative by revenue.
pub fn refund(mut e: CanonicalEvent, amount: f64) -> CanonicalEvent {
    e.event_type = "refund".into();
    e.value = Some(EventValue::Number(-amount));
    e.influence = Influence::Negative;
    e.influence_rule = InfluenceRule::Revenue;
    e
}

/// The event as a cancellation: negative by name, without a value.
pub fn cancel(mut e: CanonicalEvent) -> CanonicalEvent {
    e.event_type = "subscription_cancelled".into();
    e.value = None;
    e.value_type = None;
    e.influence = Influence::Negative;
    e.influence_rule = InfluenceRule::Name;
    e
}

/// The event as a neutral one without a value (a page view).
pub fn neutral(mut e: CanonicalEvent) -> CanonicalEvent {
    e.event_type = "page_viewed".into();
    e.value = None;
    e.value_type = None;
    e.influence = Influence::Neutral;
    e.influence_rule = InfluenceRule::Default;
    e
}
