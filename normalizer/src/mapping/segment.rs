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

use serde_json::{Map, Value};

use super::{Draft, MapError, fields, revenue, warning};

const SHAPE: &str = "a Segment message or {\"batch\": [...]}";

pub fn drafts(body: &Value) -> Result<Vec<(usize, Option<Draft<'_>>)>, MapError> {
    let object = body.as_object().ok_or(MapError::WrongShape(SHAPE))?;
    if let Some(batch) = object.get("batch") {
        let batch = batch.as_array().ok_or(MapError::WrongShape(SHAPE))?;
        return Ok(batch
            .iter()
            .enumerate()
            .map(|(i, m)| (i, draft(m)))
            .collect());
    }
    if !object.contains_key("type") {
        return Err(MapError::WrongShape(SHAPE));
    }
    Ok(vec![(0, draft(body))])
}

fn draft(source: &Value) -> Option<Draft<'_>> {
    let message = source.as_object()?;
    let kind = message.get("type").and_then(Value::as_str)?;
    let event_type = match kind {
        "track" => fields::text(message.get("event"))?,
        "page" | "screen" => fields::text(message.get("name")).unwrap_or_else(|| kind.to_owned()),
        _ => return None,
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
