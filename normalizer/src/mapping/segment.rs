//! Segment messages: one message, `{"batch": [...]}`, or a top-level array of messages (the
//! Webhooks (Actions) destination with batching).
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

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Draft, InsertId, MapError, fields, properties, revenue};

const SHAPE: &str = "a Segment message, {\"batch\": [...]} or an array of messages";

/// The messages of a body (one message, a batch, or an array), each as its own unparsed JSON
/// text. One message must have a `type`; the receiver refuses it otherwise.
pub fn events(body: &str) -> Result<Vec<&RawValue>, MapError> {
    fields::list_or_single(body, "batch", &["type"], SHAPE)
}

/// One message's draft; `None` when it is dropped (identify, group, alias, a track without
/// `event`, unknown types).
pub fn draft(source: &mut Value) -> Option<Draft> {
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
    let insert_id = InsertId::of(fields::text(message.get("messageId")), source);
    let mut warnings = Vec::new();
    let properties = properties(
        source.as_object_mut()?.remove("properties"),
        "properties",
        &mut warnings,
    );
    let message = source.as_object()?;
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
        event_type,
        external_user_id: fields::first_text(message, &["userId", "anonymousId"]),
        event_at: message
            .get("timestamp")
            .filter(|v| !v.is_null())
            .map(fields::iso_time),
        insert_id,
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
        explicit: Default::default(),
    })
}
