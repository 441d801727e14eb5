//! Bounds every canonical event keeps, checked per event before anything is stored: an event
//! past them is refused on its own (dead-lettered with the field and its size), or loses only a
//! hint, with a warning. Pure.
//!
//! | field | bound | past it |
//! |---|---|---|
//! | `eventType`, `insertId`, `externalUserId`, `externalOrganizationId`, `externalConversationId` | [`MAX_ID_BYTES`] bytes, no NUL | the event is dead-lettered |
//! | `userHints.email` | [`MAX_EMAIL_BYTES`] bytes, no NUL | the hint is dropped, warning `hint_dropped` |
//! | `userHints.name`, `organizationHints.name` | [`MAX_NAME_BYTES`] bytes, no NUL | the hint is dropped, warning `hint_dropped` |
//! | NUL (`\u0000`) in a property key or string | PostgreSQL's `jsonb` cannot hold it | replaced by U+FFFD, warning `nul_replaced` |
//! | numbers | what JSON doubles hold (`1e400` is not one) | the event is dead-lettered |
//! | the encoded event | `GF_MAX_EVENT_BYTES` | the event is dead-lettered |
//!
//! Ids are indexed in PostgreSQL, whose btree rows hold about 2.7 KB: a bound well below that
//! keeps one event from refusing a whole batch.

use gf_schemas::canonical::{CanonicalEvent, Warning};
use serde_json::{Map, Value};

use crate::mapping::warning;

/// Longest id or event type, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Longest e-mail hint (RFC 5321 allows 254 characters in a path; we allow some slack).
pub const MAX_EMAIL_BYTES: usize = 320;
/// Longest user or organization name hint.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct OutOfBounds {
    pub field: &'static str,
    pub problem: String,
}

fn check_id(field: &'static str, value: Option<&str>) -> Result<(), OutOfBounds> {
    let Some(value) = value else { return Ok(()) };
    if value.len() > MAX_ID_BYTES {
        return Err(OutOfBounds {
            field,
            problem: format!("is {} bytes long; at most {MAX_ID_BYTES}", value.len()),
        });
    }
    if value.contains('\0') {
        return Err(OutOfBounds {
            field,
            problem: "contains a NUL character".into(),
        });
    }
    Ok(())
}

fn bound_hint(field: &str, hint: &mut Option<String>, max: usize, warnings: &mut Vec<Warning>) {
    let Some(value) = hint else { return };
    let problem = if value.len() > max {
        format!("is {} bytes long; at most {max}", value.len())
    } else if value.contains('\0') {
        "contains a NUL character".to_owned()
    } else {
        return;
    };
    warnings.push(warning(
        "hint_dropped",
        format!("{field} {problem}; dropped"),
    ));
    *hint = None;
}

/// Checks `event` against the bounds: refuses it, or fixes what can be fixed losing nothing
/// that matters (hints, NUL characters), with a warning each.
pub fn enforce(event: &mut CanonicalEvent) -> Result<(), OutOfBounds> {
    check_id("eventType", Some(&event.event_type))?;
    check_id("insertId", Some(&event.insert_id))?;
    check_id("externalUserId", event.external_user_id.as_deref())?;
    check_id(
        "externalOrganizationId",
        event.external_organization_id.as_deref(),
    )?;
    check_id(
        "externalConversationId",
        event.external_conversation_id.as_deref(),
    )?;
    let warnings = &mut event.warnings;
    bound_hint(
        "userHints.email",
        &mut event.user_hints.email,
        MAX_EMAIL_BYTES,
        warnings,
    );
    bound_hint(
        "userHints.name",
        &mut event.user_hints.name,
        MAX_NAME_BYTES,
        warnings,
    );
    bound_hint(
        "organizationHints.name",
        &mut event.organization_hints.name,
        MAX_NAME_BYTES,
        warnings,
    );
    if replace_nul_in_map(&mut event.properties) {
        event.warnings.push(warning(
            "nul_replaced",
            "NUL characters in properties were replaced by U+FFFD (PostgreSQL cannot store them)",
        ));
    }
    Ok(())
}

/// Replaces NUL in every key and string of `map`; whether anything changed.
fn replace_nul_in_map(map: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    if map.keys().any(|k| k.contains('\0')) {
        let entries = std::mem::take(map);
        for (k, v) in entries {
            map.insert(k.replace('\0', "\u{fffd}"), v);
        }
        changed = true;
    }
    for value in map.values_mut() {
        changed |= replace_nul(value);
    }
    changed
}

fn replace_nul(value: &mut Value) -> bool {
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = s.replace('\0', "\u{fffd}");
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| replace_nul(v) | c),
        Value::Object(map) => replace_nul_in_map(map),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_schemas::Provider;
    use serde_json::json;

    fn event() -> CanonicalEvent {
        let product = uuid::Uuid::nil();
        let insert_id = "amplitude:1".to_owned();
        serde_json::from_value(json!({
            "id": CanonicalEvent::derive_id(product, &insert_id),
            "productId": product,
            "connectionId": product,
            "source": Provider::Amplitude,
            "eventType": "Signed Up",
            "externalUserId": "alice",
            "eventAt": "2026-01-01T00:00:00.000Z",
            "insertId": insert_id,
            "value": null,
            "valueType": null,
            "properties": {},
            "userHints": {"email": "a@x.io", "name": "Alice"},
            "externalOrganizationId": null,
            "organizationHints": {"name": null},
            "influence": "neutral",
            "influenceRule": "default",
            "qualityImpactScore": null,
            "externalConversationId": null,
            "receivedAt": "2026-01-01T00:00:00.000Z",
            "mapperVersion": 1,
            "origin": {"topic": "gf.raw.v1", "partition": 0, "offset": 0, "index": 0},
            "warnings": []
        }))
        .expect("a canonical event")
    }

    #[test]
    fn ids_past_the_bound_refuse_the_event() {
        type Set = fn(&mut CanonicalEvent, String);
        let table: [(&str, Set); 5] = [
            ("eventType", |e, v| e.event_type = v),
            ("insertId", |e, v| e.insert_id = v),
            ("externalUserId", |e, v| e.external_user_id = Some(v)),
            ("externalOrganizationId", |e, v| {
                e.external_organization_id = Some(v)
            }),
            ("externalConversationId", |e, v| {
                e.external_conversation_id = Some(v)
            }),
        ];
        for (field, set) in table {
            let mut at_bound = event();
            set(&mut at_bound, "x".repeat(MAX_ID_BYTES));
            assert_eq!(enforce(&mut at_bound), Ok(()), "{field} at the bound");

            let mut long = event();
            set(&mut long, "x".repeat(6 * 1024));
            let refused = enforce(&mut long).expect_err(field);
            assert_eq!(refused.field, field);
            assert!(refused.problem.contains("6144 bytes"), "{refused}");

            let mut nul = event();
            set(&mut nul, "a\0b".into());
            assert_eq!(enforce(&mut nul).expect_err(field).field, field);
        }
    }

    #[test]
    fn hints_past_the_bound_are_dropped_with_a_warning() {
        let mut e = event();
        e.user_hints.email = Some(format!("{}@x.io", "a".repeat(400)));
        e.organization_hints.name = Some("Acme\0".into());
        enforce(&mut e).unwrap();
        assert_eq!(e.user_hints.email, None);
        assert_eq!(e.organization_hints.name, None);
        assert_eq!(e.user_hints.name.as_deref(), Some("Alice"));
        let codes: Vec<&str> = e.warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(codes, ["hint_dropped", "hint_dropped"]);
    }

    #[test]
    fn nul_in_properties_is_replaced_everywhere() {
        let mut e = event();
        e.properties = json!({"a\0": "x\0y", "list": ["\0", 1], "deep": {"k": "\0"}, "ok": "fine"})
            .as_object()
            .cloned()
            .unwrap();
        enforce(&mut e).unwrap();
        let text = serde_json::to_string(&e.properties).unwrap();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(e.properties["a\u{fffd}"], json!("x\u{fffd}y"));
        assert_eq!(e.properties["ok"], json!("fine"));
        assert_eq!(e.warnings.len(), 1);
        assert_eq!(e.warnings[0].code, "nul_replaced");
    }

    #[test]
    fn an_event_within_bounds_is_untouched() {
        let mut e = event();
        let before = e.clone();
        enforce(&mut e).unwrap();
        assert_eq!(e, before);
    }
}
