//! Which quality signals become webhooks: pure, so every threshold is tested here.
//!
//! | event type | fires when |
//! |---|---|
//! | `conversation.started` | a conversation's start message arrives (once per conversation) |
//! | `conversation.quality_index` | CQI drops below 60 |
//! | `conversation.sentiment` | the average sentiment becomes negative (below 0) |
//! | `conversation.frustration` | frustration above 0.5 |
//! | `conversation.struggle` | struggle above 0.5 |
//! | `conversation.commercial_intent` | commercial intent above 0.4 with label medium or high |
//! | `conversation.rating` | every rating |
//! | `product.quality_index` | PQI drops below 60 |
//! | `product.sentiment` | product sentiment drops below 60 % |
//! | `custom_analysis.guardrail_triggered` / `.expectation_failed` / `.evidence_found` | the analysis fired |
//!
//! Threshold rules fire on the crossing only: the caller keeps, per product, entity and event
//! type, whether the threshold is breached, and passes it in; a signal that stays on the same side
//! fires nothing, and one that goes back re-arms the rule.

use gf_schemas::signal::{Signal, SignalType};
use gf_webhooks::EventType;
use serde_json::{Value, json};

/// The entity of product-level signals.
pub const PRODUCT_ENTITY: &str = "product";

/// What a signal's rule decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub event_type: EventType,
    /// The external conversation id, or [`PRODUCT_ENTITY`].
    pub entity: String,
    /// Whether a webhook fires.
    pub fire: bool,
    /// For threshold rules, the state to keep: whether the threshold is now breached.
    pub breached: Option<bool>,
    /// The webhook's `data`.
    pub data: Value,
}

/// How a rule decides.
enum Condition {
    /// Fires when `breached` turns true.
    Threshold { breached: bool, threshold: f64 },
    /// Fires on every signal that reports it.
    Every,
}

/// The event type and entity whose state [`evaluate`] needs for `signal`; `None` when no rule
/// applies (a conversation signal without a conversation, say).
pub fn subject(signal: &Signal) -> Option<(EventType, String)> {
    let event_type = match signal.signal_type()? {
        SignalType::ConversationQualityIndex => EventType::ConversationQualityIndex,
        SignalType::ConversationSentiment => EventType::ConversationSentiment,
        SignalType::ConversationFrustration => EventType::ConversationFrustration,
        SignalType::ConversationStruggle => EventType::ConversationStruggle,
        SignalType::ConversationCommercialIntent => EventType::ConversationCommercialIntent,
        SignalType::ConversationRating => EventType::ConversationRating,
        SignalType::ProductQualityIndex => EventType::ProductQualityIndex,
        SignalType::ProductSentiment => EventType::ProductSentiment,
        SignalType::Guardrail => EventType::GuardrailTriggered,
        SignalType::Expectation => EventType::ExpectationFailed,
        SignalType::Evidence => EventType::EvidenceFound,
    };
    let entity = match event_type {
        EventType::ProductQualityIndex | EventType::ProductSentiment => PRODUCT_ENTITY.to_owned(),
        _ => signal
            .external_conversation_id
            .as_ref()
            .filter(|c| !c.trim().is_empty())?
            .clone(),
    };
    Some((event_type, entity))
}

/// Decides whether `signal` fires, given whether its threshold was breached before.
pub fn evaluate(signal: &Signal, previously_breached: bool) -> Option<Evaluation> {
    let (event_type, entity) = subject(signal)?;
    let score = signal.score.filter(|s| s.is_finite());
    let below = |threshold: f64| -> Option<Condition> {
        Some(Condition::Threshold {
            breached: score? < threshold,
            threshold,
        })
    };
    let above = |threshold: f64| -> Option<Condition> {
        Some(Condition::Threshold {
            breached: score? > threshold,
            threshold,
        })
    };
    let condition = match event_type {
        EventType::ConversationQualityIndex | EventType::ProductQualityIndex => below(60.0)?,
        EventType::ProductSentiment => below(60.0)?,
        EventType::ConversationSentiment => below(0.0)?,
        EventType::ConversationFrustration | EventType::ConversationStruggle => above(0.5)?,
        EventType::ConversationCommercialIntent => {
            let label = signal.label.as_deref().map(str::to_ascii_lowercase);
            let strong = matches!(label.as_deref(), Some("medium" | "high"));
            Condition::Threshold {
                breached: score? > 0.4 && strong,
                threshold: 0.4,
            }
        }
        EventType::ConversationRating => {
            score?;
            Condition::Every
        }
        EventType::GuardrailTriggered | EventType::ExpectationFailed | EventType::EvidenceFound => {
            if !signal.custom_analysis.as_ref()?.triggered {
                return None;
            }
            Condition::Every
        }
        EventType::ConversationStarted => return None,
    };
    let mut data = json!({
        "signalId": signal.id,
        "occurredAt": signal.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "score": score,
    });
    if entity != PRODUCT_ENTITY {
        data["externalConversationId"] = json!(entity);
    }
    if let Some(label) = &signal.label {
        data["label"] = json!(label);
    }
    if let Some(analysis) = &signal.custom_analysis {
        data["customAnalysis"] = json!({
            "analysisId": analysis.analysis_id, "name": analysis.name,
            "explanation": analysis.explanation,
        });
    }
    let (fire, breached) = match condition {
        Condition::Threshold {
            breached,
            threshold,
        } => {
            data["threshold"] = json!(threshold);
            (breached && !previously_breached, Some(breached))
        }
        Condition::Every => (true, None),
    };
    Some(Evaluation {
        event_type,
        entity,
        fire,
        breached,
        data,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use gf_schemas::signal::{CustomAnalysisResult, CustomAnalysisType, SignalKind};
    use uuid::Uuid;

    use super::*;

    fn signal(kind: SignalKind, score: Option<f64>) -> Signal {
        Signal {
            id: Uuid::from_u128(1),
            product_id: Uuid::from_u128(2),
            kind,
            external_conversation_id: Some("conv-1".into()),
            score,
            label: None,
            custom_analysis: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 5, 18, 12, 0, 0).unwrap(),
            details: Default::default(),
        }
    }

    /// (kind, score, label, fires from a non-breached state)
    #[test]
    fn each_threshold_is_the_documents() {
        use SignalKind::*;
        let cases: &[(SignalKind, f64, Option<&str>, bool)] = &[
            (ConversationQualityIndex, 59.9, None, true),
            (ConversationQualityIndex, 60.0, None, false),
            (ConversationSentiment, -0.01, None, true),
            (ConversationSentiment, 0.0, None, false),
            (ConversationFrustration, 0.51, None, true),
            (ConversationFrustration, 0.5, None, false),
            (ConversationStruggle, 0.51, None, true),
            (ConversationStruggle, 0.5, None, false),
            (ConversationCommercialIntent, 0.41, Some("medium"), true),
            (ConversationCommercialIntent, 0.9, Some("HIGH"), true),
            (ConversationCommercialIntent, 0.9, Some("low"), false),
            (ConversationCommercialIntent, 0.4, Some("high"), false),
            (ConversationCommercialIntent, 0.9, None, false),
            (ProductQualityIndex, 59.0, None, true),
            (ProductQualityIndex, 60.0, None, false),
            (ProductSentiment, 59.5, None, true),
            (ProductSentiment, 60.0, None, false),
            (ConversationRating, 1.0, None, true),
            (ConversationRating, 5.0, None, true),
        ];
        for &(kind, score, label, fires) in cases {
            let mut s = signal(kind, Some(score));
            s.label = label.map(str::to_owned);
            let e = evaluate(&s, false).unwrap();
            assert_eq!(e.fire, fires, "{kind:?} {score} {label:?}");
        }
    }

    #[test]
    fn thresholds_fire_on_the_crossing_once_and_re_arm() {
        let mut breached = false;
        let mut fired = Vec::new();
        for score in [80.0, 55.0, 50.0, 40.0, 70.0, 59.0] {
            let e = evaluate(
                &signal(SignalKind::ConversationQualityIndex, Some(score)),
                breached,
            )
            .unwrap();
            breached = e.breached.unwrap();
            fired.push(e.fire);
        }
        assert_eq!(fired, [false, true, false, false, false, true]);
    }

    #[test]
    fn product_signals_are_about_the_product() {
        let mut s = signal(SignalKind::ProductQualityIndex, Some(10.0));
        s.external_conversation_id = None;
        let e = evaluate(&s, false).unwrap();
        assert_eq!(e.entity, PRODUCT_ENTITY);
        assert_eq!(e.event_type.as_str(), "product.quality_index");
        assert!(e.data.get("externalConversationId").is_none());
    }

    #[test]
    fn custom_analyses_fire_when_triggered() {
        for (kind, name) in [
            (
                CustomAnalysisType::Guardrail,
                "custom_analysis.guardrail_triggered",
            ),
            (
                CustomAnalysisType::Expectation,
                "custom_analysis.expectation_failed",
            ),
            (
                CustomAnalysisType::Evidence,
                "custom_analysis.evidence_found",
            ),
        ] {
            for triggered in [true, false] {
                let mut s = signal(SignalKind::CustomAnalysis, None);
                s.custom_analysis = Some(CustomAnalysisResult {
                    analysis_id: "a1".into(),
                    name: "No refunds promised".into(),
                    analysis_type: kind,
                    triggered,
                    explanation: None,
                });
                let e = evaluate(&s, false);
                assert_eq!(
                    e.as_ref().map(|e| e.fire),
                    triggered.then_some(true),
                    "{name}"
                );
                if let Some(e) = e {
                    assert_eq!(e.event_type.as_str(), name);
                    assert_eq!(e.data["customAnalysis"]["name"], "No refunds promised");
                }
            }
        }
    }

    #[test]
    fn signals_without_what_the_rule_needs_fire_nothing() {
        assert_eq!(
            evaluate(&signal(SignalKind::ConversationFrustration, None), false),
            None
        );
        assert_eq!(
            evaluate(
                &signal(SignalKind::ConversationFrustration, Some(f64::NAN)),
                false
            ),
            None
        );
        let mut s = signal(SignalKind::ConversationStruggle, Some(0.9));
        s.external_conversation_id = None;
        assert_eq!(evaluate(&s, false), None);
        assert_eq!(
            evaluate(&signal(SignalKind::CustomAnalysis, None), false),
            None
        );
    }

    /// The threshold, direction and label each threshold rule uses, as the documents give them.
    fn breaches(kind: SignalKind, score: f64, label: Option<&str>) -> bool {
        use SignalKind::*;
        match kind {
            ConversationQualityIndex | ProductQualityIndex | ProductSentiment => score < 60.0,
            ConversationSentiment => score < 0.0,
            ConversationFrustration | ConversationStruggle => score > 0.5,
            ConversationCommercialIntent => {
                score > 0.4 && matches!(label, Some("medium" | "high" | "MEDIUM" | "High"))
            }
            other => panic!("{other:?} has no threshold"),
        }
    }

    fn threshold_kind() -> impl proptest::strategy::Strategy<Value = SignalKind> {
        use SignalKind::*;
        proptest::sample::select(vec![
            ConversationQualityIndex,
            ConversationSentiment,
            ConversationFrustration,
            ConversationStruggle,
            ConversationCommercialIntent,
            ProductQualityIndex,
            ProductSentiment,
        ])
    }

    fn score() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            -1.0..1.0f64,
            0.0..100.0f64,
            Just(60.0),
            Just(0.5),
            Just(0.4),
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        /// Over any sequence of scores, a threshold rule fires exactly on each crossing into the
        /// breached side; scores that are not numbers fire nothing and leave the state alone.
        #[test]
        fn threshold_rules_fire_once_per_crossing(
            kind in threshold_kind(),
            scores in proptest::collection::vec(score(), 1..40),
            label in proptest::sample::select(vec![None, Some("low"), Some("medium"), Some("High")]),
        ) {
            let mut state = false;
            let mut expected_state = false;
            for score in scores {
                let mut s = signal(kind, Some(score));
                s.label = label.map(str::to_owned);
                let evaluation = evaluate(&s, state);
                if !score.is_finite() {
                    proptest::prop_assert!(evaluation.is_none());
                    continue;
                }
                let e = evaluation.unwrap();
                let breached = breaches(kind, score, label);
                proptest::prop_assert_eq!(e.fire, breached && !expected_state, "{:?} {}", kind, score);
                proptest::prop_assert_eq!(e.breached, Some(breached));
                expected_state = breached;
                state = e.breached.unwrap();
            }
        }

        /// Ratings fire on every finite score, whatever came before.
        #[test]
        fn ratings_fire_every_time(score in score(), before in proptest::bool::ANY) {
            let e = evaluate(&signal(SignalKind::ConversationRating, Some(score)), before);
            proptest::prop_assert_eq!(e.is_some_and(|e| e.fire), score.is_finite());
        }
    }
}
