//! `gf.events.v1`: canonical business events, the normalizer's output.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::Provider;

/// Namespace for canonical event ids (UUIDv5 over product id and insert id).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6766_2d65_7665_6e74_2d69_642d_7631_0001);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanonicalEvent {
    /// Derived from (productId, insertId): the same event always gets the same id.
    pub id: Uuid,
    pub product_id: Uuid,
    pub connection_id: Uuid,
    pub source: Provider,
    pub event_type: String,
    pub external_user_id: Option<String>,
    #[serde(with = "crate::time")]
    pub event_at: DateTime<Utc>,
    /// Prefixed with the provider (`amplitude:…`, `segment:…`).
    pub insert_id: String,
    pub value: Option<EventValue>,
    pub value_type: Option<ValueType>,
    pub properties: Map<String, Value>,
    pub user_hints: UserHints,
    pub external_organization_id: Option<String>,
    pub organization_hints: OrganizationHints,
    pub influence: Influence,
    /// Which rule decided `influence`.
    pub influence_rule: InfluenceRule,
    pub quality_impact_score: Option<f64>,
    pub external_conversation_id: Option<String>,
    #[serde(with = "crate::time")]
    pub received_at: DateTime<Utc>,
    /// A newer version replaces what an older one wrote (replay after a mapper fix).
    pub mapper_version: u32,
    pub origin: RawOrigin,
    pub warnings: Vec<Warning>,
}

impl CanonicalEvent {
    pub fn derive_id(product_id: Uuid, insert_id: &str) -> Uuid {
        let mut name = Vec::with_capacity(16 + insert_id.len());
        name.extend_from_slice(product_id.as_bytes());
        name.extend_from_slice(insert_id.as_bytes());
        Uuid::new_v5(&EVENT_ID_NAMESPACE, &name)
    }

    /// The Kafka key: product id + external user id, or the insert id when anonymous.
    pub fn kafka_key(&self) -> String {
        match &self.external_user_id {
            Some(user) => format!("{}:{user}", self.product_id),
            None => format!("{}:{}", self.product_id, self.insert_id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventValue {
    Number(f64),
    Boolean(bool),
    Text(String),
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ValueType {
    Currency,
    Numeric,
    Text,
    Boolean,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Influence {
    Positive,
    Negative,
    Neutral,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum InfluenceRule {
    Revenue,
    Name,
    Override,
    Default,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserHints {
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationHints {
    pub name: Option<String>,
}

/// Where in the raw topic an event came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Position of the event in its batch.
    pub index: u32,
}

/// Something the mapper noticed but did not drop the event for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_product_and_insert_id_only() {
        let p = Uuid::from_u128(7);
        let a = CanonicalEvent::derive_id(p, "amplitude:x");
        assert_eq!(a, CanonicalEvent::derive_id(p, "amplitude:x"));
        assert_ne!(a, CanonicalEvent::derive_id(p, "segment:x"));
        assert_ne!(
            a,
            CanonicalEvent::derive_id(Uuid::from_u128(8), "amplitude:x")
        );
    }

    #[test]
    fn values_keep_their_json_type() {
        for (value, json) in [
            (EventValue::Number(49.5), "49.5"),
            (EventValue::Boolean(true), "true"),
            (EventValue::Text("gold".into()), "\"gold\""),
        ] {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<EventValue>(json).unwrap(), value);
        }
    }
}
