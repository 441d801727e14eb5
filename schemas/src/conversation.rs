//! `gf.conversations.v1`: conversation lifecycle from the SDK, with the SDK's user identity.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMessage {
    /// Unique per message; a redelivery carries the same id.
    pub id: Uuid,
    pub kind: ConversationKind,
    pub product_id: Uuid,
    pub external_conversation_id: String,
    pub external_user_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    /// Who spoke, for `message`.
    pub role: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl ConversationMessage {
    /// The Kafka key: product id + external conversation id.
    pub fn kafka_key(&self) -> String {
        format!("{}:{}", self.product_id, self.external_conversation_id)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ConversationKind {
    Started,
    Message,
    Ended,
}
