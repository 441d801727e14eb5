//! `gf.signals.v1`: analysis results the notifier turns into quality webhooks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// Unique per analysis result; a redelivery carries the same id.
    pub id: Uuid,
    pub product_id: Uuid,
    pub kind: SignalKind,
    /// Set for conversation and custom-analysis signals.
    pub external_conversation_id: Option<String>,
    /// The measured value: CQI and PQI 0..100, sentiment -1..1, product sentiment 0..100 (%),
    /// frustration / struggle / commercial intent 0..1, rating as given.
    pub score: Option<f64>,
    /// Commercial intent label (`low`, `medium`, `high`).
    pub label: Option<String>,
    /// Set for `custom_analysis`.
    pub custom_analysis: Option<CustomAnalysisResult>,
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub details: Map<String, Value>,
}

impl Signal {
    /// The Kafka key: product id + the entity the signal is about.
    pub fn kafka_key(&self) -> String {
        match &self.external_conversation_id {
            Some(conversation) => format!("{}:{conversation}", self.product_id),
            None => self.product_id.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    ConversationQualityIndex,
    ConversationSentiment,
    ConversationFrustration,
    ConversationStruggle,
    ConversationCommercialIntent,
    ConversationRating,
    ProductQualityIndex,
    ProductSentiment,
    CustomAnalysis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAnalysisResult {
    pub analysis_id: String,
    pub name: String,
    pub analysis_type: CustomAnalysisType,
    /// Guardrail violated, expectation not met, or evidence found.
    pub triggered: bool,
    pub explanation: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomAnalysisType {
    Guardrail,
    Expectation,
    Evidence,
}
