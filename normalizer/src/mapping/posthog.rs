//! PostHog: capture-API bodies of its SDKs (`{"api_key", "batch": [...]}`, a top-level array,
//! or one event) and its CDP "HTTP Webhook" destination (`{"event": {...}, "person": {...}}`,
//! one per request).
//!
//! | PostHog | canonical |
//! |---|---|
//! | `event`; `$pageview`: the path of `properties.$current_url`; `$screen`: `properties.$screen_name` (else the event) | `eventType` |
//! | `distinct_id` | `externalUserId` |
//! | `timestamp` (ISO 8601, any offset) | `eventAt` |
//! | `uuid` | `insertId`, prefixed `posthog:` |
//! | `properties.revenue`, else `properties.price` × `properties.quantity`, else `properties.$revenue` | `value`, `valueType: currency` |
//! | `properties` (verbatim) | `properties` |
//! | `person.properties.email`, else `properties.$set.email`, else `properties.email` | `userHints.email` |
//! | `person.properties.name` (else `person.name`), else `properties.$set.name`, else `properties.name` | `userHints.name` |
//! | `properties.$groups.organization`, else `properties.$groups.company` | `externalOrganizationId` |
//! | `organization_name` / `company` in `person.properties`, `properties.$set`, then `properties` | `organizationHints.name` |
//!
//! In a CDP webhook body the event's fields are read from `event`, the person's from `person`.
//! `$identify`, `$set`, `$groupidentify`, `$create_alias`, `$merge_dangerously` (traits, not
//! events) are dropped, as is an event without a name and an engage body (`distinct_id` with
//! `$set`, `$set_once` or `$unset`, no `event`).

use gf_schemas::accept;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Draft, InsertId, MapError, fields, properties, revenue};

const SHAPE: &str = "a PostHog capture batch ({\"batch\": [...]}), an array of events, one event or a CDP webhook body";

/// The keys that make an object without `batch` one message: an event, or an engage body's
/// person properties (dropped).
const SINGLE: [&str; 4] = [
    "event",
    accept::POSTHOG_PERSON_KEYS[0],
    accept::POSTHOG_PERSON_KEYS[1],
    accept::POSTHOG_PERSON_KEYS[2],
];

/// The events of a body (a batch, an array, one event or one CDP webhook body), each as its own
/// unparsed JSON text.
pub fn events(body: &str) -> Result<Vec<&RawValue>, MapError> {
    fields::list_or_single(body, "batch", &SINGLE, SHAPE)
}

/// One event's draft; `None` when it is dropped (trait-only, no name).
pub fn draft(source: &mut Value) -> Option<Draft> {
    // A CDP webhook body nests the event; a capture event is the event.
    let nested = matches!(source.get("event"), Some(Value::Object(_)));
    let (name, insert_id) = {
        let event = if nested {
            source.get("event")?
        } else {
            &*source
        };
        let name = event.get("event").and_then(Value::as_str)?;
        if !accept::posthog_accepts(name) {
            return None;
        }
        (name.trim().to_owned(), fields::text(event.get("uuid")))
    };
    let insert_id = InsertId::of(insert_id, source);
    let mut warnings = Vec::new();
    let event = if nested {
        source.get_mut("event")?
    } else {
        &mut *source
    };
    let properties = properties(
        event.as_object_mut()?.remove("properties"),
        "properties",
        &mut warnings,
    );
    let outer = source.as_object()?;
    let (event, person) = match outer.get("event") {
        Some(Value::Object(inner)) => (inner, outer.get("person").and_then(Value::as_object)),
        _ => (outer, None),
    };
    let empty = Map::new();
    let person_properties = person
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let set = properties
        .get("$set")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let hint = |field: &str| {
        fields::text(person_properties.get(field))
            .or_else(|| fields::text(set.get(field)))
            .or_else(|| fields::text(properties.get(field)))
    };
    let user_name = fields::text(person_properties.get("name"))
        .or_else(|| person.and_then(|p| fields::text(p.get("name"))))
        .or_else(|| hint("name"));
    let event_type = match name.as_str() {
        "$pageview" => fields::text(properties.get("$current_url"))
            .and_then(|url| url_path(&url))
            .unwrap_or_else(|| name.clone()),
        "$screen" => fields::text(properties.get("$screen_name")).unwrap_or_else(|| name.clone()),
        other => other.to_owned(),
    };
    let revenue = if ["revenue", "price"]
        .iter()
        .any(|f| properties.get(*f).is_some_and(|v| !v.is_null()))
    {
        revenue(
            properties.get("revenue"),
            properties.get("price"),
            properties.get("quantity"),
            &mut warnings,
        )
    } else {
        revenue(properties.get("$revenue"), None, None, &mut warnings)
    };
    Some(Draft {
        event_type,
        external_user_id: fields::text(event.get("distinct_id")),
        event_at: event
            .get("timestamp")
            .filter(|v| !v.is_null())
            .map(fields::iso_time),
        insert_id,
        revenue,
        email: hint("email"),
        name: user_name,
        external_organization_id: fields::first_text(
            &properties,
            &["$groups.organization", "$groups.company"],
        ),
        organization_name: hint("organization_name").or_else(|| hint("company")),
        properties,
        warnings,
        explicit: Default::default(),
    })
}

/// The path of a page URL (`https://app.example.com/pricing?x=1` → `/pricing`).
fn url_path(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    Some(url.path().to_owned()).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_are_paths() {
        assert_eq!(
            url_path("https://app.example.com/pricing?plan=pro#top").as_deref(),
            Some("/pricing")
        );
        assert_eq!(url_path("https://app.example.com").as_deref(), Some("/"));
        assert_eq!(url_path("not a url"), None);
    }
}
