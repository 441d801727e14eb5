//! Segment messages: one message, or `{"batch": [...]}`.
//!
//! | Segment | canonical |
//! |---|---|
//! | `event` (`track`); `name`, else the type (`page`, `screen`) | `eventType` |
//! | `userId`, else `anonymousId` | `externalUserId` |
//! | `timestamp` (ISO 8601, any offset) | `eventAt` |
//! | `messageId` | `insertId`, prefixed `segment:` |
//! | `properties.revenue`, else `properties.price` × `properties.quantity` | `value`, `valueType: currency` |
//! | `properties` (verbatim) | `properties` |
//! | `context.traits.email`, else `traits.email`, else `properties.email` | `userHints.email` |
//! | `context.traits.name`, else `traits.name`, else `properties.name` | `userHints.name` |
//! | `context.groupId`, else `traits.organization_id`, else `properties.organization_id` | `externalOrganizationId` |
//! | `organization_name` / `company` in `context.traits`, `traits`, then `properties` | `organizationHints.name` |
//!
//! `identify`, `group`, `alias` and unknown types are dropped, as is a `track` without `event`.

use gf_schemas::accept::{self, SegmentKind};
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Draft, MapError, fields, revenue, warning};

const SHAPE: &str = "a Segment message or {\"batch\": [...]}";

/// The messages of a body (one message, or a batch), each as its own unparsed JSON text.
pub fn events(body: &RawValue) -> Result<Vec<&RawValue>, MapError> {
    if !body.get().starts_with('{') {
        return Err(MapError::WrongShape(SHAPE));
    }
    // A map, not a struct: a key given twice counts once, the last one, as the receiver reads
    // it (a struct would refuse the duplicate and lose an acknowledged message).
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(body.get()).map_err(|_| MapError::WrongShape(SHAPE))?;
    match (fields.get("batch"), fields.contains_key("type")) {
        (Some(batch), _) => {
            serde_json::from_str(batch.get()).map_err(|_| MapError::WrongShape(SHAPE))
        }
        (None, true) => Ok(vec![body]),
        (None, false) => Err(MapError::WrongShape(SHAPE)),
    }
}

/// One message's draft; `None` when it is dropped (identify, group, alias, a track without
/// `event`, unknown types).
pub fn draft(source: &Value) -> Option<Draft<'_>> {
    let message = source.as_object()?;
    let kind = message.get("type").and_then(Value::as_str)?;
    // Which messages are events is the rule the receiver counts by.
    let event_type = match SegmentKind::of(kind) {
        SegmentKind::Track => message
            .get("event")
            .and_then(Value::as_str)
            .and_then(accept::event_name)?
            .to_owned(),
        SegmentKind::PageOrScreen => {
            fields::text(message.get("name")).unwrap_or_else(|| kind.to_owned())
        }
        SegmentKind::Other => return None,
    };
    let mut warnings = Vec::new();
    let properties = match message.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            warnings.push(warning(
                "invalid_properties",
                "properties is not an object; ignored",
            ));
            Map::new()
        }
    };
    let hint = |field: &str| {
        fields::first_text(
            message,
            &[
                &format!("context.traits.{field}"),
                &format!("traits.{field}"),
            ],
        )
        .or_else(|| fields::text(properties.get(field)))
    };
    let organization_name = hint("organization_name").or_else(|| hint("company"));
    let external_organization_id =
        fields::first_text(message, &["context.groupId", "traits.organization_id"])
            .or_else(|| fields::text(properties.get("organization_id")));
    Some(Draft {
        source,
        event_type,
        external_user_id: fields::first_text(message, &["userId", "anonymousId"]),
        event_at: message
            .get("timestamp")
            .filter(|v| !v.is_null())
            .map(fields::iso_time),
        insert_id: fields::text(message.get("messageId")),
        revenue: revenue(
            properties.get("revenue"),
            properties.get("price"),
            properties.get("quantity"),
            &mut warnings,
        ),
        email: hint("email"),
        name: hint("name"),
        external_organization_id,
        organization_name,
        properties,
        warnings,
    })
}
