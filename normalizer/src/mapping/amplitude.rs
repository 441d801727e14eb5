//! Amplitude HTTP V2 batches (`{"events": [...]}`).
//!
//! | Amplitude | canonical |
//! |---|---|
//! | `event_type` | `eventType` (events without one are dropped) |
//! | `user_id`, else `device_id` | `externalUserId` |
//! | `time` (ms since epoch) | `eventAt` |
//! | `insert_id` | `insertId`, prefixed `amplitude:` |
//! | `revenue`, else `price` × `quantity` | `value`, `valueType: currency` |
//! | `event_properties` + `revenue`, `price`, `quantity`, `revenueType` | `properties` |
//! | `user_properties.email` | `userHints.email` |
//! | `user_properties.first_name` + `last_name`, else `user_properties.name` | `userHints.name` |
//! | `groups.organization`, else `groups.company`, else `user_properties.organization_id` | `externalOrganizationId` |
//! | `user_properties.organization_name`, else `user_properties.company` | `organizationHints.name` |

use gf_schemas::accept;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Draft, MapError, fields, revenue, warning};

const SHAPE: &str = "an Amplitude batch ({\"events\": [...]})";
const REVENUE_FIELDS: [&str; 4] = ["revenue", "price", "quantity", "revenueType"];

/// The events of a batch, each as its own unparsed JSON text.
pub fn events(body: &RawValue) -> Result<Vec<&RawValue>, MapError> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }
    if !body.get().starts_with('{') {
        return Err(MapError::WrongShape(SHAPE));
    }
    serde_json::from_str::<Envelope<'_>>(body.get())
        .map(|e| e.events)
        .map_err(|_| MapError::WrongShape(SHAPE))
}

/// One event's draft; `None` when it is dropped (no event type).
pub fn draft(source: &Value) -> Option<Draft<'_>> {
    let event = source.as_object()?;
    let event_type = event
        .get("event_type")
        .and_then(Value::as_str)
        .and_then(accept::event_name)?;
    let mut warnings = Vec::new();
    let mut properties = match event.get("event_properties") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            warnings.push(warning(
                "invalid_properties",
                format!(
                    "event_properties is {}, not an object; ignored",
                    kind(other)
                ),
            ));
            Map::new()
        }
    };
    for field in REVENUE_FIELDS {
        if let Some(v) = event.get(field).filter(|v| !v.is_null()) {
            properties.insert(field.to_owned(), v.clone());
        }
    }
    let empty = Map::new();
    let user = event
        .get("user_properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let name = match (
        fields::text(user.get("first_name")),
        fields::text(user.get("last_name")),
    ) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => fields::text(user.get("name")),
    };
    Some(Draft {
        source,
        event_type: event_type.to_owned(),
        external_user_id: fields::first_text(event, &["user_id", "device_id"]),
        event_at: event
            .get("time")
            .filter(|v| !v.is_null())
            .map(fields::epoch_millis),
        insert_id: fields::text(event.get("insert_id")),
        revenue: revenue(
            event.get("revenue"),
            event.get("price"),
            event.get("quantity"),
            &mut warnings,
        ),
        properties,
        email: fields::text(user.get("email")),
        name,
        external_organization_id: group(event, "organization")
            .or_else(|| group(event, "company"))
            .or_else(|| fields::text(user.get("organization_id"))),
        organization_name: fields::first_text(user, &["organization_name", "company"]),
        warnings,
    })
}

/// `groups.<name>`: a string, or the first of a list (Amplitude allows several groups per type).
fn group(event: &Map<String, Value>, name: &str) -> Option<String> {
    match fields::path(event, &format!("groups.{name}"))? {
        Value::Array(values) => values.iter().find_map(|v| fields::text(Some(v))),
        other => fields::text(Some(other)),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
