//! The public events API (`{"events": [...]}`): events already named the canonical way, posted
//! from a team's own backend. The receiver has checked them against
//! `public-event.v1.schema.json`; what is still unusable here (a replayed older record) is
//! ignored with a warning, as for the other providers.
//!
//! | public API | canonical |
//! |---|---|
//! | `eventType` | `eventType` |
//! | `externalUserId` | `externalUserId` |
//! | `eventAt` (RFC 3339, or ms since epoch) | `eventAt` |
//! | `insertId` | `insertId`, prefixed `api:` |
//! | `value`, `valueType` (inferred when absent) | `value`, `valueType`; a `currency` value decides the influence as revenue does |
//! | `properties` | `properties` |
//! | `userHints.email`, `userHints.name` | `userHints` |
//! | `externalOrganizationId`, `organizationHints.name` | the same |
//! | `influence` (inferred when absent) | `influence`, rule `override` |
//! | `qualityImpactScore`, `externalConversationId` | the same |
//!
//! The `gf_*` properties work here too; a field given explicitly wins over its property.

use gf_schemas::accept;
use gf_schemas::canonical::ValueType;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Draft, InsertId, MapError, fields, properties};
use crate::overrides::{self, Overrides};

const SHAPE: &str = "a public events API body ({\"events\": [...]})";

/// The events of a body, each as its own unparsed JSON text.
pub fn events(body: &str) -> Result<Vec<&RawValue>, MapError> {
    if !fields::json_trim(body).starts_with('{') {
        return Err(MapError::WrongShape(SHAPE));
    }
    fields::list_or_single(body, "events", &[], SHAPE)
}

/// One event's draft; `None` when it has no `eventType` name.
pub fn draft(source: &mut Value) -> Option<Draft> {
    let event_type = source
        .get("eventType")
        .and_then(Value::as_str)
        .and_then(accept::event_name)?
        .to_owned();
    let insert_id = InsertId::of(fields::text(source.get("insertId")), source);
    let mut warnings = Vec::new();
    let properties = properties(
        source.as_object_mut()?.remove("properties"),
        "properties",
        &mut warnings,
    );
    let event = source.as_object()?;
    // The explicit fields are read by the same rules as the `gf_*` properties.
    let mut as_overrides = Map::new();
    for (field, property) in [
        ("influence", overrides::INFLUENCE),
        ("qualityImpactScore", overrides::QUALITY_IMPACT_SCORE),
        ("value", overrides::VALUE),
        ("valueType", overrides::VALUE_TYPE),
        ("externalConversationId", overrides::CONVERSATION_ID),
    ] {
        if let Some(v) = event.get(field).filter(|v| !v.is_null()) {
            as_overrides.insert(property.to_owned(), v.clone());
        }
    }
    let explicit: Overrides = overrides::read(&as_overrides, &mut warnings);
    let revenue = match (explicit.value_type, &explicit.value) {
        (Some(ValueType::Currency), Some(v)) => fields::number(Some(v)),
        _ => None,
    };
    let event_at = event
        .get("eventAt")
        .filter(|v| !v.is_null())
        .map(|v| match v {
            Value::Number(_) => fields::epoch_millis(v),
            _ => fields::iso_time(v),
        });
    Some(Draft {
        event_type,
        external_user_id: fields::text(event.get("externalUserId")),
        event_at,
        insert_id,
        revenue,
        email: fields::first_text(event, &["userHints.email"]),
        name: fields::first_text(event, &["userHints.name"]),
        external_organization_id: fields::text(event.get("externalOrganizationId")),
        organization_name: fields::first_text(event, &["organizationHints.name"]),
        properties,
        warnings,
        explicit,
    })
}
