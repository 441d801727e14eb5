//! Amplitude: HTTP V2 batches (`{"events": [...]}`), and the Export-format events of the Webhook
//! destination (one event per request, or an array of them). A user object (the "Send Users"
//! toggle: `user_id`, `user_properties`, no `event_type`) is dropped like any event without a type.
//!
//! | Amplitude | canonical |
//! |---|---|
//! | `event_type` | `eventType` (events without one are dropped) |
//! | `user_id`, else `device_id` | `externalUserId` |
//! | `time` (ms since epoch), else `event_time` (`2022-02-28 20:07:01.795000`, UTC) | `eventAt` (to the millisecond) |
//! | `insert_id`, else `$insert_id`, else `uuid` | `insertId`, prefixed `amplitude:` |
//! | `revenue`, else `price` × `quantity`; else `event_properties.$revenue`, else `$price` × `$quantity` | `value`, `valueType: currency` |
//! | `event_properties` + `revenue`, `price`, `quantity`, `revenueType` | `properties` |
//! | `user_properties.email` | `userHints.email` |
//! | `user_properties.first_name` + `last_name`, else `user_properties.name` | `userHints.name` |
//! | `groups.organization`, else `groups.company`, else `user_properties.organization_id` | `externalOrganizationId` |
//! | `user_properties.organization_name`, else `user_properties.company` | `organizationHints.name` |

use gf_schemas::accept;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Draft, InsertId, MapError, fields, properties, revenue};

const SHAPE: &str =
    "an Amplitude batch ({\"events\": [...]}), an Export-format event or an array of events";
const REVENUE_FIELDS: [&str; 4] = ["revenue", "price", "quantity", "revenueType"];

/// The events of a body (a batch, an array, or one event), each as its own unparsed JSON text.
pub fn events(body: &str) -> Result<Vec<&RawValue>, MapError> {
    fields::list_or_single(
        body,
        "events",
        &["event_type", "user_id", "device_id"],
        SHAPE,
    )
}

/// One event's draft; `None` when it is dropped (no event type).
pub fn draft(source: &mut Value) -> Option<Draft> {
    let event_type = source
        .get("event_type")
        .and_then(Value::as_str)
        .and_then(accept::event_name)?
        .to_owned();
    let insert_id = InsertId::of(
        fields::first_text(source.as_object()?, &["insert_id", "$insert_id", "uuid"]),
        source,
    );
    let event = source.as_object_mut()?;
    let mut warnings = Vec::new();
    let mut properties = properties(
        event.remove("event_properties"),
        "event_properties",
        &mut warnings,
    );
    let event = &*event;
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
        event_type,
        external_user_id: fields::first_text(event, &["user_id", "device_id"]),
        event_at: match event.get("time").filter(|v| !v.is_null()) {
            Some(time) => Some(fields::epoch_millis(time)),
            None => event
                .get("event_time")
                .filter(|v| !v.is_null())
                .map(fields::utc_time),
        },
        insert_id,
        revenue: event_revenue(event, &properties, &mut warnings),
        properties,
        email: fields::text(user.get("email")),
        name,
        external_organization_id: group(event, "organization")
            .or_else(|| group(event, "company"))
            .or_else(|| fields::text(user.get("organization_id"))),
        organization_name: fields::first_text(user, &["organization_name", "company"]),
        warnings,
        explicit: Default::default(),
    })
}

/// Top-level revenue fields (HTTP V2), else the Export format's `$revenue`, `$price`,
/// `$quantity` in `event_properties`.
fn event_revenue(
    event: &Map<String, Value>,
    properties: &Map<String, Value>,
    warnings: &mut Vec<gf_schemas::canonical::Warning>,
) -> Option<f64> {
    let top_level = ["revenue", "price"]
        .iter()
        .any(|f| event.get(*f).is_some_and(|v| !v.is_null()));
    if top_level {
        revenue(
            event.get("revenue"),
            event.get("price"),
            event.get("quantity"),
            warnings,
        )
    } else {
        revenue(
            properties.get("$revenue"),
            properties.get("$price"),
            properties.get("$quantity"),
            warnings,
        )
    }
}

/// `groups.<name>`: a string, or the first of a list (Amplitude allows several groups per type).
fn group(event: &Map<String, Value>, name: &str) -> Option<String> {
    match fields::path(event, &format!("groups.{name}"))? {
        Value::Array(values) => values.iter().find_map(|v| fields::text(Some(v))),
        other => fields::text(Some(other)),
    }
}
