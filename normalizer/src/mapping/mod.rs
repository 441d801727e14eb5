//! Raw records to canonical events: pure, no I/O.
//!
//! [`map_record`] takes a raw body and its headers and returns the canonical events of the batch.
//! The provider modules ([`amplitude`], [`segment`], [`posthog`], [`api`]) read their fields into
//! a [`Draft`]; the rules every provider shares (insert ids, times, value, influence, overrides)
//! are applied here, once.

pub mod amplitude;
pub mod api;
pub mod fields;
pub mod posthog;
pub mod segment;

use chrono::{DateTime, TimeZone, Utc};
use gf_schemas::Provider;
use gf_schemas::canonical::{
    CanonicalEvent, EventValue, Influence, InfluenceRule, OrganizationHints, RawOrigin, UserHints,
    ValueType, Warning,
};
use gf_schemas::deadletter::ReasonClass;
use gf_schemas::raw::RawRecordMeta;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{bounds, influence, overrides};

/// Bumped whenever a change to the mapping changes its output: replayed events with a newer
/// version replace what an older one wrote.
pub const MAPPER_VERSION: u32 = 2;

/// One raw record as read from the topic.
pub struct RawInput<'a> {
    pub body: &'a [u8],
    pub meta: &'a RawRecordMeta,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug)]
pub struct MapOptions {
    pub mapper_version: u32,
    /// Largest encoded canonical event (`GF_MAX_EVENT_BYTES`); a larger one is dead-lettered.
    pub max_event_bytes: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            mapper_version: MAPPER_VERSION,
            max_event_bytes: gf_runtime::config::DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// The canonical events of one raw record.
#[derive(Debug, Default, PartialEq)]
pub struct Mapped {
    pub events: Vec<CanonicalEvent>,
    /// Messages received but not turned into events (no event type, identify, ...).
    pub dropped: usize,
    /// Events that cannot be mapped on their own; each is dead-lettered, its siblings go on.
    pub refused: Vec<RefusedEvent>,
}

/// One event of a batch that cannot be mapped, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// Its index in the batch.
    pub index: usize,
    pub class: ReasonClass,
    pub reason: String,
    /// The event as received.
    pub event: Vec<u8>,
}

/// A record that cannot be mapped at all; it goes to the dead-letter topic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body is not {0}")]
    WrongShape(&'static str),
}

/// Maps a record event by event: the envelope is read first without reading the events, so one
/// event that cannot be read (a number out of range) or that is past the [`bounds`] costs only
/// itself. A record whose envelope cannot be read at all is a [`MapError`].
pub fn map_record(input: &RawInput<'_>, options: &MapOptions) -> Result<Mapped, MapError> {
    let text = std::str::from_utf8(input.body)
        .map_err(|e| MapError::InvalidJson(format!("the body is not UTF-8 ({e})")))?;
    let provider = input.meta.provider;
    // The envelope is read in one pass that also checks the whole body is JSON.
    let events = match provider {
        Provider::Amplitude => amplitude::events(text)?,
        Provider::Segment => segment::events(text)?,
        Provider::Posthog => posthog::events(text)?,
        Provider::Api => api::events(text)?,
    };
    let mut mapped = Mapped::default();
    let mut influences = influence::Memo::default();
    for (index, raw) in events.into_iter().enumerate() {
        let refuse = |class, reason: String| RefusedEvent {
            index,
            class,
            reason,
            event: raw.get().as_bytes().to_vec(),
        };
        let mut value: Value = match serde_json::from_str(raw.get()) {
            Ok(value) => value,
            Err(e) => {
                let class = if e.to_string().contains("out of range") {
                    ReasonClass::OutOfBounds
                } else {
                    ReasonClass::Invalid
                };
                mapped
                    .refused
                    .push(refuse(class, format!("event {index} cannot be read: {e}")));
                continue;
            }
        };
        let draft = match provider {
            Provider::Amplitude => amplitude::draft(&mut value),
            Provider::Segment => segment::draft(&mut value),
            Provider::Posthog => posthog::draft(&mut value),
            Provider::Api => api::draft(&mut value),
        };
        let Some(draft) = draft else {
            mapped.dropped += 1;
            continue;
        };
        let mut event = finish(draft, input, index, options, &mut influences);
        match bounds::enforce(&mut event) {
            Ok(()) => mapped.events.push(event),
            Err(e) => mapped.refused.push(refuse(
                ReasonClass::OutOfBounds,
                format!("event {index}: {e}"),
            )),
        }
    }
    Ok(mapped)
}

/// What a provider's mapping read from one event. Its properties are moved out of the parsed
/// event, not copied: they are most of it.
pub struct Draft {
    pub event_type: String,
    pub external_user_id: Option<String>,
    /// The event's time field, if present (`None`: absent; `Some(None)`: unreadable).
    pub event_at: Option<Option<DateTime<Utc>>>,
    pub insert_id: InsertId,
    /// Revenue, or price × quantity; already validated.
    pub revenue: Option<f64>,
    pub properties: Map<String, Value>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub external_organization_id: Option<String>,
    pub organization_name: Option<String>,
    pub warnings: Vec<Warning>,
    /// Fields the sender set explicitly (the public API's `influence`, `value`, ...); they win
    /// over the `gf_*` properties.
    pub explicit: overrides::Overrides,
}

/// A properties field as an object; absent or null is empty, anything else is reported and
/// ignored.
pub fn properties(
    value: Option<Value>,
    field: &str,
    warnings: &mut Vec<Warning>,
) -> Map<String, Value> {
    match value {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            warnings.push(warning(
                "invalid_properties",
                format!(
                    "{field} is {}, not an object; ignored",
                    fields::kind(&other)
                ),
            ));
            Map::new()
        }
    }
}

/// An event's insert id: the sender's, or what one is derived from.
pub enum InsertId {
    Given(String),
    /// The whole event as parsed, encoded before anything was moved out of it.
    FromContent(Vec<u8>),
}

impl InsertId {
    /// The sender's id, else the event's content; call it before moving anything out of `source`.
    pub fn of(given: Option<String>, source: &Value) -> InsertId {
        match given {
            Some(id) => InsertId::Given(id),
            // serde_json's map is ordered by key, so equal content serializes to equal bytes;
            // a `Value` always encodes (string keys, finite numbers).
            None => InsertId::FromContent(source.to_string().into_bytes()),
        }
    }
}

pub fn warning(code: &str, message: impl Into<String>) -> Warning {
    Warning {
        code: code.into(),
        message: message.into(),
    }
}

/// Revenue from `revenue`, else `price * quantity` (quantity 1 when absent); an unreadable
/// revenue field is reported and ignored.
pub fn revenue(
    revenue: Option<&Value>,
    price: Option<&Value>,
    quantity: Option<&Value>,
    warnings: &mut Vec<Warning>,
) -> Option<f64> {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    if let Some(r) = present(revenue) {
        match fields::number(Some(r)) {
            Some(r) => return Some(r),
            None => warnings.push(warning(
                "invalid_revenue",
                format!("revenue {r} is not a number; ignored"),
            )),
        }
    }
    let price = present(price)?;
    let Some(p) = fields::number(Some(price)) else {
        warnings.push(warning(
            "invalid_revenue",
            format!("price {price} is not a number; ignored"),
        ));
        return None;
    };
    match present(quantity) {
        None => Some(p),
        Some(q) => match fields::number(Some(q)) {
            Some(q) => Some(p * q),
            None => {
                warnings.push(warning(
                    "invalid_revenue",
                    format!("quantity {q} is not a number; ignored"),
                ));
                None
            }
        },
    }
}

fn finish(
    draft: Draft,
    input: &RawInput<'_>,
    index: usize,
    options: &MapOptions,
    influences: &mut influence::Memo,
) -> CanonicalEvent {
    let meta = input.meta;
    let provider = meta.provider;
    let received_at = Utc
        .timestamp_millis_opt(meta.received_at_ms)
        .single()
        .unwrap_or_else(Utc::now);
    let mut warnings = draft.warnings;
    let mut properties = draft.properties;

    let insert_id = match draft.insert_id {
        InsertId::Given(id) => format!("{provider}:{id}"),
        InsertId::FromContent(content) => {
            warnings.push(warning(
                "missing_insert_id",
                "no insert id; derived one from the event's content, so resending the same event deduplicates",
            ));
            format!("{provider}:gf-{}", content_id(meta, &content))
        }
    };
    let event_at = match draft.event_at {
        Some(Some(at)) => at,
        Some(None) => {
            warnings.push(warning(
                "invalid_time",
                "the event time could not be read; used the time it was received",
            ));
            received_at
        }
        None => {
            warnings.push(warning(
                "missing_time",
                "the event has no time; used the time it was received",
            ));
            received_at
        }
    };

    let magic = draft
        .explicit
        .or(overrides::read(&properties, &mut warnings));
    let mut event_type = draft.event_type;
    if let Some(name) = &magic.event_type {
        properties
            .entry(overrides::ORIGINAL_EVENT_TYPE)
            .or_insert_with(|| Value::String(event_type.clone()));
        event_type = name.clone();
    }

    let (mut value, mut value_type) = match draft.revenue {
        Some(r) => (Some(EventValue::Number(r)), Some(ValueType::Currency)),
        None => (None, None),
    };
    overrides::apply_value(&magic, &mut value, &mut value_type, &mut warnings);

    let (influence, influence_rule) = match (magic.influence, draft.revenue) {
        (Some(forced), _) => (forced, InfluenceRule::Override),
        (None, Some(r)) if r > 0.0 => (Influence::Positive, InfluenceRule::Revenue),
        (None, Some(r)) if r < 0.0 => (Influence::Negative, InfluenceRule::Revenue),
        _ => match influences.of(&event_type) {
            Influence::Neutral => (Influence::Neutral, InfluenceRule::Default),
            by_name => (by_name, InfluenceRule::Name),
        },
    };

    CanonicalEvent {
        id: CanonicalEvent::derive_id(meta.product_id, &insert_id),
        product_id: meta.product_id,
        connection_id: meta.connection_id,
        source: provider,
        event_type,
        external_user_id: draft.external_user_id,
        event_at,
        insert_id,
        value,
        value_type,
        properties,
        user_hints: UserHints {
            email: draft.email,
            name: draft.name,
        },
        external_organization_id: draft.external_organization_id,
        organization_hints: OrganizationHints {
            name: draft.organization_name,
        },
        influence,
        influence_rule,
        quality_impact_score: magic.quality_impact_score,
        external_conversation_id: magic.conversation_id,
        received_at,
        mapper_version: options.mapper_version,
        origin: RawOrigin {
            topic: input.topic.to_owned(),
            partition: input.partition,
            offset: input.offset,
            index: index as u32,
        },
        warnings,
    }
}

/// A stable id from the connection and the event's content (keys sorted), for events sent without
/// an insert id: a replay, or a client's resend of the same event, gets the same id.
fn content_id(meta: &RawRecordMeta, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(meta.connection_id.as_bytes());
    hasher.update(content);
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
