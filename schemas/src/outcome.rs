//! `gf.outcomes.v1`: a conversation's whole current outcome, keyed by conversation id. The topic
//! is compacted: the last record of a key is the conversation's outcome now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a conversation led to, decided by event time (never by the wall clock), so a replay or
/// another arrival order gives the same verdict.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Verdict {
    /// Its latest positive or negative event (by event time) is positive.
    Converted,
    /// Its latest one is negative with a negative currency value.
    Refunded,
    /// Its latest one is negative without a negative currency value (a cancel, a churn event).
    Negative,
    /// No positive or negative event, and no event at all from its user for the silent-churn
    /// period after the conversation went quiet, judged against the product's event-time
    /// watermark.
    ChurnedSilently,
    /// None of the above yet.
    Open,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Attributed events by influence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InfluenceCounts {
    pub total: i64,
    pub positive: i64,
    pub negative: i64,
    pub neutral: i64,
}

/// Sums of numeric values (currency or numeric) by influence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InfluenceValues {
    pub total: f64,
    pub positive: f64,
    pub negative: f64,
    pub neutral: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationOutcome {
    /// The conversation id, as `conversation_id` (what lists of the API key items by).
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub product_id: Uuid,
    pub external_conversation_id: String,
    pub user_id: Option<Uuid>,
    pub verdict: Verdict,
    /// The event whose influence decided a `converted`, `refunded` or `negative` verdict.
    pub decided_by_event_id: Option<Uuid>,
    /// Attributed events by influence.
    pub counts: InfluenceCounts,
    pub value: InfluenceValues,
    /// The sum of positive currency values.
    pub revenue: f64,
    /// The sum of negative currency values, as a positive amount.
    pub refunds: f64,
    /// The sum of the events' `qualityImpactScore`.
    pub quality_impact: f64,
    #[serde(with = "crate::time::option")]
    pub first_event_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// The conversation's last message (null when only analytics events named it).
    #[serde(with = "crate::time::option")]
    pub last_activity_at: Option<DateTime<Utc>>,
    /// From the last message to the first positive / negative event; 0 when that event came
    /// during the conversation.
    pub seconds_to_first_positive: Option<f64>,
    pub seconds_to_first_negative: Option<f64>,
    /// When an `open` conversation will count as churned silently if its user sends nothing
    /// before then (the later of its last message and its last event, plus the silent-churn
    /// period); null once it cannot churn.
    #[serde(with = "crate::time::option")]
    pub silent_churn_at: Option<DateTime<Utc>>,
}
