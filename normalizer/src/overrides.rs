//! The magic properties (`gf_*`) that override the defaults of one event.
//!
//! An invalid override is ignored with a warning on the event; the event itself is never dropped
//! for it.

use gf_schemas::canonical::{EventValue, Influence, ValueType, Warning};
use serde_json::{Map, Value};

use crate::mapping::fields;

pub const EVENT_TYPE: &str = "gf_event_type";
pub const INFLUENCE: &str = "gf_influence";
pub const QUALITY_IMPACT_SCORE: &str = "gf_quality_impact_score";
pub const VALUE: &str = "gf_value";
pub const VALUE_TYPE: &str = "gf_value_type";
pub const CONVERSATION_ID: &str = "gf_conversation_id";
/// Where the provider's own event name is kept when `gf_event_type` replaces it.
pub const ORIGINAL_EVENT_TYPE: &str = "gf_original_event_type";

/// The overrides found in one event's properties, each already validated.
#[derive(Debug, Default, PartialEq)]
pub struct Overrides {
    pub event_type: Option<String>,
    pub influence: Option<Influence>,
    pub quality_impact_score: Option<f64>,
    pub value: Option<Value>,
    pub value_type: Option<ValueType>,
    pub conversation_id: Option<String>,
}

impl Overrides {
    /// Each field from `self`, else from `other`.
    pub fn or(self, other: Overrides) -> Overrides {
        Overrides {
            event_type: self.event_type.or(other.event_type),
            influence: self.influence.or(other.influence),
            quality_impact_score: self.quality_impact_score.or(other.quality_impact_score),
            value: self.value.or(other.value),
            value_type: self.value_type.or(other.value_type),
            conversation_id: self.conversation_id.or(other.conversation_id),
        }
    }
}

fn invalid(warnings: &mut Vec<Warning>, property: &str, value: &Value, expected: &str) {
    warnings.push(Warning {
        code: "invalid_override".into(),
        message: format!(
            "{property} = {} ignored: expected {expected}",
            excerpt(value)
        ),
    });
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Reads and validates the `gf_*` properties.
pub fn read(properties: &Map<String, Value>, warnings: &mut Vec<Warning>) -> Overrides {
    let mut out = Overrides::default();
    let present = |k: &str| properties.get(k).filter(|v| !v.is_null());

    if let Some(v) = present(EVENT_TYPE) {
        match fields::text(Some(v)) {
            Some(name) => out.event_type = Some(name),
            None => invalid(warnings, EVENT_TYPE, v, "a non-empty string"),
        }
    }
    if let Some(v) = present(INFLUENCE) {
        match v.as_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("positive") => out.influence = Some(Influence::Positive),
            Some("negative") => out.influence = Some(Influence::Negative),
            Some("neutral") => out.influence = Some(Influence::Neutral),
            _ => invalid(warnings, INFLUENCE, v, "positive, negative or neutral"),
        }
    }
    if let Some(v) = present(QUALITY_IMPACT_SCORE) {
        match fields::number(Some(v)).filter(|s| (-1.0..=1.0).contains(s)) {
            Some(score) => out.quality_impact_score = Some(score),
            None => invalid(
                warnings,
                QUALITY_IMPACT_SCORE,
                v,
                "a number from -1.0 to 1.0",
            ),
        }
    }
    if let Some(v) = present(VALUE_TYPE) {
        match v.as_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("currency") => out.value_type = Some(ValueType::Currency),
            Some("numeric") => out.value_type = Some(ValueType::Numeric),
            Some("text") => out.value_type = Some(ValueType::Text),
            Some("boolean") => out.value_type = Some(ValueType::Boolean),
            _ => invalid(
                warnings,
                VALUE_TYPE,
                v,
                "currency, numeric, text or boolean",
            ),
        }
    }
    if let Some(v) = present(VALUE) {
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => out.value = Some(v.clone()),
            _ => invalid(warnings, VALUE, v, "a string or a number"),
        }
    }
    if let Some(v) = present(CONVERSATION_ID) {
        match fields::text(Some(v)) {
            Some(id) => out.conversation_id = Some(id),
            None => invalid(warnings, CONVERSATION_ID, v, "a non-empty string"),
        }
    }
    out
}

/// `value` as an event value of type `ty`, if it fits.
pub fn coerce(value: &Value, ty: ValueType) -> Option<EventValue> {
    match ty {
        ValueType::Currency | ValueType::Numeric => {
            fields::number(Some(value)).map(EventValue::Number)
        }
        ValueType::Text => match value {
            Value::String(s) => Some(EventValue::Text(s.clone())),
            Value::Number(n) => Some(EventValue::Text(n.to_string())),
            Value::Bool(b) => Some(EventValue::Text(b.to_string())),
            _ => None,
        },
        ValueType::Boolean => match value {
            Value::Bool(b) => Some(EventValue::Boolean(*b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Some(EventValue::Boolean(true)),
                "false" => Some(EventValue::Boolean(false)),
                _ => None,
            },
            _ => None,
        },
    }
}

/// The type of a `gf_value` sent without `gf_value_type`: numbers (also as strings, as Amplitude
/// forwards custom properties) keep a numeric current type or become `numeric`.
pub fn infer_type(value: &Value, current: Option<ValueType>) -> ValueType {
    let numeric_current = current.filter(|t| matches!(t, ValueType::Currency | ValueType::Numeric));
    match value {
        Value::Bool(_) => ValueType::Boolean,
        v if fields::number(Some(v)).is_some() => numeric_current.unwrap_or(ValueType::Numeric),
        _ => ValueType::Text,
    }
}

/// Applies `gf_value` / `gf_value_type` to the value from the default mapping.
pub fn apply_value(
    overrides: &Overrides,
    value: &mut Option<EventValue>,
    value_type: &mut Option<ValueType>,
    warnings: &mut Vec<Warning>,
) {
    match (&overrides.value, overrides.value_type) {
        (Some(v), ty) => {
            let ty = ty.unwrap_or_else(|| infer_type(v, *value_type));
            match coerce(v, ty) {
                Some(coerced) => {
                    *value = Some(coerced);
                    *value_type = Some(ty);
                }
                None => invalid(
                    warnings,
                    VALUE,
                    v,
                    &format!("a value of type {}", type_name(ty)),
                ),
            }
        }
        (None, Some(ty)) => {
            let current = value
                .as_ref()
                .map(|v| serde_json::to_value(v).unwrap_or(Value::Null));
            match current.as_ref().and_then(|v| coerce(v, ty)) {
                Some(coerced) => {
                    *value = Some(coerced);
                    *value_type = Some(ty);
                }
                None => warnings.push(Warning {
                    code: "invalid_override".into(),
                    message: format!(
                        "{VALUE_TYPE} = {} ignored: the event has no value of that type",
                        type_name(ty)
                    ),
                }),
            }
        }
        (None, None) => {}
    }
}

fn type_name(ty: ValueType) -> &'static str {
    ty.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_one(props: Value) -> (Overrides, Vec<Warning>) {
        let mut warnings = Vec::new();
        let o = read(props.as_object().unwrap(), &mut warnings);
        (o, warnings)
    }

    #[test]
    fn valid_overrides_are_read() {
        let (o, w) = read_one(json!({
            "gf_event_type": "Milestone", "gf_influence": "Positive", "gf_quality_impact_score": "0.8",
            "gf_value": 12, "gf_value_type": "numeric", "gf_conversation_id": "conv_9"
        }));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.event_type.as_deref(), Some("Milestone"));
        assert_eq!(o.influence, Some(Influence::Positive));
        assert_eq!(o.quality_impact_score, Some(0.8));
        assert_eq!(o.value, Some(json!(12)));
        assert_eq!(o.value_type, Some(ValueType::Numeric));
        assert_eq!(o.conversation_id.as_deref(), Some("conv_9"));
    }

    #[test]
    fn invalid_overrides_are_ignored_with_a_warning_each() {
        let (o, w) = read_one(json!({
            "gf_event_type": "", "gf_influence": "great", "gf_quality_impact_score": 1.5,
            "gf_value": {"a": 1}, "gf_value_type": "money", "gf_conversation_id": ["x"]
        }));
        assert_eq!(o, Overrides::default());
        assert_eq!(w.len(), 6, "{w:?}");
        assert!(w.iter().all(|w| w.code == "invalid_override"));
        assert!(
            w[2].message.contains("gf_quality_impact_score = 1.5"),
            "{w:?}"
        );
        // Nulls count as absent, not invalid.
        let (_, w) = read_one(json!({"gf_influence": null}));
        assert!(w.is_empty());
    }

    #[test]
    fn scores_at_the_bounds_are_valid() {
        for s in [-1.0, 0.0, 1.0] {
            assert_eq!(
                read_one(json!({ "gf_quality_impact_score": s }))
                    .0
                    .quality_impact_score,
                Some(s)
            );
        }
        assert!(
            read_one(json!({ "gf_quality_impact_score": -1.01 }))
                .0
                .quality_impact_score
                .is_none()
        );
    }

    #[test]
    fn value_overrides_fit_their_type() {
        let apply = |props: Value, start: Option<(EventValue, ValueType)>| {
            let mut warnings = Vec::new();
            let o = read(props.as_object().unwrap(), &mut warnings);
            let (mut value, mut ty) = match start {
                Some((v, t)) => (Some(v), Some(t)),
                None => (None, None),
            };
            apply_value(&o, &mut value, &mut ty, &mut warnings);
            (value, ty, warnings.len())
        };
        use EventValue as V;
        use ValueType as T;
        assert_eq!(
            apply(json!({"gf_value": "49.5"}), None),
            (Some(V::Number(49.5)), Some(T::Numeric), 0)
        );
        assert_eq!(
            apply(
                json!({"gf_value": 10}),
                Some((V::Number(49.0), T::Currency))
            ),
            (Some(V::Number(10.0)), Some(T::Currency), 0)
        );
        assert_eq!(
            apply(json!({"gf_value": "gold"}), None),
            (Some(V::Text("gold".into())), Some(T::Text), 0)
        );
        assert_eq!(
            apply(json!({"gf_value": true}), None),
            (Some(V::Boolean(true)), Some(T::Boolean), 0)
        );
        assert_eq!(
            apply(json!({"gf_value": "yes", "gf_value_type": "boolean"}), None),
            (None, None, 1)
        );
        assert_eq!(
            apply(
                json!({"gf_value": "false", "gf_value_type": "boolean"}),
                None
            ),
            (Some(V::Boolean(false)), Some(T::Boolean), 0)
        );
        assert_eq!(
            apply(json!({"gf_value": 7, "gf_value_type": "text"}), None),
            (Some(V::Text("7".into())), Some(T::Text), 0)
        );
        assert_eq!(
            apply(
                json!({"gf_value": "abc", "gf_value_type": "currency"}),
                None
            ),
            (None, None, 1)
        );
        assert_eq!(
            apply(
                json!({"gf_value_type": "numeric"}),
                Some((V::Number(49.0), T::Currency))
            ),
            (Some(V::Number(49.0)), Some(T::Numeric), 0)
        );
        assert_eq!(
            apply(
                json!({"gf_value_type": "text"}),
                Some((V::Number(49.0), T::Currency))
            ),
            (Some(V::Text("49.0".into())), Some(T::Text), 0)
        );
        assert_eq!(
            apply(
                json!({"gf_value_type": "boolean"}),
                Some((V::Number(49.0), T::Currency))
            ),
            (Some(V::Number(49.0)), Some(T::Currency), 1)
        );
        assert_eq!(
            apply(json!({"gf_value_type": "numeric"}), None),
            (None, None, 1)
        );
    }
}
