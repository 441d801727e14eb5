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

/// What a signal says, flat: its kind, and for a custom analysis its type. The one list of signal
/// types: the notifier's rules map each to a webhook event type, `gf emit signal --kind` names
/// them (`conversation-quality-index` ... `guardrail`, `expectation`, `evidence`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
)]
#[strum(serialize_all = "kebab-case")]
pub enum SignalType {
    ConversationQualityIndex,
    ConversationSentiment,
    ConversationFrustration,
    ConversationStruggle,
    ConversationCommercialIntent,
    ConversationRating,
    ProductQualityIndex,
    ProductSentiment,
    Guardrail,
    Expectation,
    Evidence,
}

impl SignalType {
    /// The signal's kind, and the analysis type a custom analysis carries.
    pub fn parts(self) -> (SignalKind, Option<CustomAnalysisType>) {
        use SignalType::*;
        match self {
            ConversationQualityIndex => (SignalKind::ConversationQualityIndex, None),
            ConversationSentiment => (SignalKind::ConversationSentiment, None),
            ConversationFrustration => (SignalKind::ConversationFrustration, None),
            ConversationStruggle => (SignalKind::ConversationStruggle, None),
            ConversationCommercialIntent => (SignalKind::ConversationCommercialIntent, None),
            ConversationRating => (SignalKind::ConversationRating, None),
            ProductQualityIndex => (SignalKind::ProductQualityIndex, None),
            ProductSentiment => (SignalKind::ProductSentiment, None),
            Guardrail => (
                SignalKind::CustomAnalysis,
                Some(CustomAnalysisType::Guardrail),
            ),
            Expectation => (
                SignalKind::CustomAnalysis,
                Some(CustomAnalysisType::Expectation),
            ),
            Evidence => (
                SignalKind::CustomAnalysis,
                Some(CustomAnalysisType::Evidence),
            ),
        }
    }
}

impl Signal {
    /// The signal's type; `None` for a custom analysis that carries no result.
    pub fn signal_type(&self) -> Option<SignalType> {
        let analysis = self.custom_analysis.as_ref().map(|a| a.analysis_type);
        <SignalType as strum::IntoEnumIterator>::iter().find(|t| {
            let (kind, analysis_type) = t.parts();
            kind == self.kind && (kind != SignalKind::CustomAnalysis || analysis_type == analysis)
        })
    }
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

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_signal_type_is_its_parts() {
        assert_eq!(SignalType::iter().count(), 11);
        for t in SignalType::iter() {
            let (kind, analysis_type) = t.parts();
            let signal = Signal {
                id: uuid::Uuid::nil(),
                product_id: uuid::Uuid::nil(),
                kind,
                external_conversation_id: None,
                score: None,
                label: None,
                custom_analysis: analysis_type.map(|analysis_type| CustomAnalysisResult {
                    analysis_id: "a".into(),
                    name: "a".into(),
                    analysis_type,
                    triggered: true,
                    explanation: None,
                }),
                occurred_at: chrono::Utc::now(),
                details: Default::default(),
            };
            assert_eq!(signal.signal_type(), Some(t));
            assert_eq!(t.to_string().parse::<SignalType>(), Ok(t));
        }
        assert_eq!(SignalType::Guardrail.to_string(), "guardrail");
        assert_eq!(
            SignalType::ConversationQualityIndex.to_string(),
            "conversation-quality-index"
        );
    }
}
