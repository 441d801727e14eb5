//! The public events API's request body (`{"events": [...]}` with canonical field names),
//! checked against `public-event.v1.schema.json`, the schema we publish: a developer's client
//! and the receiver read the same rules.

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::Value;

const SCHEMA: &str = include_str!("../json/public-event.v1.schema.json");
/// At most this many problems are reported for one request.
pub const MAX_PROBLEMS: usize = 20;

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the shipped schema is JSON");
    jsonschema::validator_for(&schema).expect("the shipped schema compiles")
});

/// One reason a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Index of the event in `events`; `None` for the envelope.
    pub index: Option<usize>,
    /// The field, dotted (`userHints.email`); empty for the event or envelope itself.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.index, self.field.is_empty()) {
            (Some(i), false) => write!(f, "events[{i}].{}: {}", self.field, self.message),
            (Some(i), true) => write!(f, "events[{i}]: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.field, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// Every problem of `body` (at most [`MAX_PROBLEMS`]), in document order; empty when valid.
pub fn check(body: &Value) -> Vec<Problem> {
    let mut problems: Vec<Problem> = VALIDATOR
        .iter_errors(body)
        .flat_map(|error| {
            let mut segments = error
                .instance_path
                .as_str()
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"));
            let index = match segments.next().as_deref() {
                Some("events") => segments.next().and_then(|i| i.parse::<usize>().ok()),
                _ => None,
            };
            let at: Vec<String> = segments.collect();
            let (fields, message) = match &error.kind {
                jsonschema::error::ValidationErrorKind::Required { property } => (
                    vec![join(&at, property.as_str().unwrap_or_default())],
                    "is required".to_owned(),
                ),
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => (
                    unexpected.iter().map(|name| join(&at, name)).collect(),
                    "is not a field of this API (check its spelling)".to_owned(),
                ),
                _ => {
                    let field = at.join(".");
                    let message = friendly(&field).map_or_else(|| error.to_string(), str::to_owned);
                    (vec![field], message)
                }
            };
            fields.into_iter().map(move |field| Problem {
                index,
                field,
                message: clip(&message),
            })
        })
        .take(MAX_PROBLEMS)
        .collect();
    problems.sort_by_key(|p| p.index);
    problems
}

fn join(at: &[String], name: &str) -> String {
    at.iter()
        .map(String::as_str)
        .chain(std::iter::once(name))
        .collect::<Vec<_>>()
        .join(".")
}

/// What a field takes, for the fields whose schema error would name a `oneOf`.
fn friendly(field: &str) -> Option<&'static str> {
    match field {
        "eventAt" => Some(
            "must be an RFC 3339 time with an offset (2026-05-18T12:00:00Z) or milliseconds since the epoch",
        ),
        "externalUserId"
        | "externalOrganizationId"
        | "externalConversationId"
        | "userHints.email"
        | "userHints.name"
        | "organizationHints.name" => {
            Some("must be a non-blank string of at most 1024 characters, or null")
        }
        _ => None,
    }
}

/// Messages quote the offending value; a long one is cut.
fn clip(message: &str) -> String {
    const MAX: usize = 200;
    match message.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &message[..i]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_bodies_have_no_problems() {
        for body in [
            json!({"events": []}),
            json!({"events": [{"eventType": "purchase"}]}),
            json!({"events": [{
                "eventType": "purchase", "externalUserId": "u1", "eventAt": "2026-05-18T12:00:00.123+02:00",
                "insertId": "order-1", "value": 49.0, "valueType": "currency", "properties": {"plan": "pro"},
                "userHints": {"email": "a@b.co", "name": null}, "externalOrganizationId": "acme",
                "organizationHints": {"name": "Acme"}, "influence": "positive", "qualityImpactScore": 0.5,
                "externalConversationId": "conv-1"
            }, {"eventType": "refund", "eventAt": 1779105600000i64, "influence": null}]}),
        ] {
            assert_eq!(check(&body), vec![], "{body}");
        }
    }

    #[test]
    fn problems_name_the_event_and_the_field() {
        let body = json!({"events": [
            {"eventType": "ok"},
            {"eventTyp": "typo"},
            {"eventType": "  ", "eventAt": "yesterday", "userHints": {"email": 7}},
            {"eventType": "x", "influence": "very", "qualityImpactScore": 2}
        ]});
        let problems: Vec<(Option<usize>, String)> = check(&body)
            .into_iter()
            .map(|p| (p.index, p.field))
            .collect();
        for expected in [
            (Some(1), "eventType"),
            (Some(1), "eventTyp"),
            (Some(2), "eventType"),
            (Some(2), "eventAt"),
            (Some(2), "userHints.email"),
            (Some(3), "influence"),
            (Some(3), "qualityImpactScore"),
        ] {
            assert!(
                problems.contains(&(expected.0, expected.1.to_owned())),
                "{expected:?} not in {problems:?}"
            );
        }
        assert!(problems.iter().all(|(i, _)| *i != Some(0)), "{problems:?}");
    }

    #[test]
    fn the_envelope_is_checked_too() {
        let missing = check(&json!({"event": []}));
        assert!(
            missing
                .iter()
                .any(|p| p.index.is_none() && p.field == "events")
        );
        assert!(missing.iter().any(|p| p.field == "event"));
        assert!(!check(&json!({"events": {}})).is_empty());
        let many = json!({"events": vec![json!({}); 100]});
        assert_eq!(check(&many).len(), MAX_PROBLEMS);
    }
}
