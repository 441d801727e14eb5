//! Body checks, pure: decoding ([`gzip`], bounded) and counting what a batch holds.
//!
//! Counting walks the JSON once with serde visitors and keeps nothing per event: a body of a
//! thousand events costs one pass and no allocation per event.

mod fast;
mod gzip;

pub use gzip::{gunzip, gunzip_reserving};

use std::fmt;

use gf_schemas::Provider;
use gf_schemas::accept::{self, SegmentKind};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub received: usize,
    pub accepted: usize,
    pub dropped: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body is not {expected}: {detail}")]
    WrongShape {
        expected: &'static str,
        detail: String,
    },
    #[error("the batch holds more than {limit} events; the whole batch was dropped")]
    TooManyEvents { limit: usize },
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("content-encoding {0:?} is not supported (use gzip or none)")]
    UnsupportedEncoding(String),
    #[error("the gzip body could not be decoded: {0}")]
    BadGzip(String),
    #[error("the receiver holds as many request bodies as its memory budget allows; retry shortly")]
    BudgetSpent,
    #[error("{} event problem(s), nothing was stored: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidEvents(Vec<gf_schemas::public_event::Problem>),
}

/// Counts received / accepted / dropped events and checks the provider's shape.
///
/// | provider | bodies |
/// |---|---|
/// | Amplitude | `{"events": [...]}` (HTTP V2); one Export-format event (`event_type`); one user object (`user_id` / `device_id`, no `event_type`: received and dropped); a top-level array of events |
/// | Segment | one message (`type`); `{"batch": [...]}`; a top-level array of messages |
/// | PostHog | `{"batch": [...]}` (capture API); a top-level array; one capture event (`event` a string); one CDP webhook body (`event` an object, with `person`) |
/// | public API | `{"events": [...]}` of canonical-shaped events, each valid against the published schema |
///
/// Which events are accepted and which dropped is [`gf_schemas::accept`]'s rule, the one the
/// normalizer maps by.
///
/// Usual bodies are counted by a byte scanner ([`fast`]) that answers only when it is sure;
/// every other body, and every refusal, is decided by the serde path ([`inspect_serde`]). Both
/// give the same result on every input.
pub fn inspect(
    provider: Provider,
    body: &[u8],
    max_events: usize,
) -> Result<BatchSummary, PayloadError> {
    if std::str::from_utf8(body).is_ok()
        && let Some(summary) = fast::inspect(provider, body, max_events)
    {
        return Ok(summary);
    }
    inspect_serde(provider, body, max_events)
}

/// [`inspect`] by serde visitors alone: the reference the fast path is checked against, and
/// the path that words every refusal.
pub fn inspect_serde(
    provider: Provider,
    body: &[u8],
    max_events: usize,
) -> Result<BatchSummary, PayloadError> {
    // Skipped strings are not checked by serde_json, so check the encoding of the whole body once.
    let text = std::str::from_utf8(body)
        .map_err(|e| PayloadError::InvalidJson(format!("the body is not UTF-8 ({e})")))?;
    // Skipped values are not depth-checked by serde_json; the normalizer's parser is.
    if !accept::nesting_within(body, accept::MAX_NESTING) {
        return Err(PayloadError::InvalidJson(format!(
            "the body nests arrays and objects deeper than {} levels (recursion limit)",
            accept::MAX_NESTING
        )));
    }
    if provider == Provider::Api {
        return inspect_public(text, max_events);
    }
    let mut summary = BatchSummary::default();
    let mut state = ListState::default();
    let seed = BodySeed {
        provider,
        max_events,
        summary: &mut summary,
        state: &mut state,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let result = seed.deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(summary),
        Err(_) if state.too_many => Err(PayloadError::TooManyEvents { limit: max_events }),
        Err(e) if e.is_data() => {
            let detail = match (state.at, state.list) {
                (Some(i), Some(list)) => format!("{list}[{i}]: {}", strip_position(&e)),
                (Some(i), None) => format!("[{i}]: {}", strip_position(&e)),
                _ => strip_position(&e),
            };
            Err(PayloadError::WrongShape {
                expected: expected_shape(provider),
                detail,
            })
        }
        Err(e) => Err(PayloadError::InvalidJson(e.to_string())),
    }
}

/// The public events API: the whole body is read and checked against the published schema; one
/// invalid event refuses the request, naming every problem (a developer's API fails loudly).
fn inspect_public(text: &str, max_events: usize) -> Result<BatchSummary, PayloadError> {
    let body: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
    let events = body
        .get("events")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| PayloadError::WrongShape {
            expected: expected_shape(Provider::Api),
            detail: "no `events` array".into(),
        })?;
    if events.len() > max_events {
        return Err(PayloadError::TooManyEvents { limit: max_events });
    }
    let problems = gf_schemas::public_event::check(&body);
    if !problems.is_empty() {
        return Err(PayloadError::InvalidEvents(problems));
    }
    // Valid events all have an `eventType` name; the rule is still the normalizer's.
    let accepted = events
        .iter()
        .filter(|e| {
            e.get("eventType")
                .and_then(serde_json::Value::as_str)
                .and_then(accept::event_name)
                .is_some()
        })
        .count();
    Ok(BatchSummary {
        received: events.len(),
        accepted,
        dropped: events.len() - accepted,
    })
}

/// Where the list walk stopped, to name the element in errors.
#[derive(Default)]
struct ListState {
    /// Index of the element being read; `None` outside the list.
    at: Option<usize>,
    /// The key of the list being read; `None` for a top-level array.
    list: Option<&'static str>,
    too_many: bool,
}

fn expected_shape(provider: Provider) -> &'static str {
    match provider {
        Provider::Amplitude => {
            "an Amplitude HTTP V2 batch ({\"events\": [...]}), an Export-format event, a user object or an array of events"
        }
        Provider::Segment => "a Segment message, {\"batch\": [...]} or an array of messages",
        Provider::Posthog => {
            "a PostHog capture batch ({\"batch\": [...]}), an array of events, one event or a CDP webhook body ({\"event\": {...}, \"person\": {...}})"
        }
        Provider::Api => "a public events API body ({\"events\": [...]})",
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The key that holds a provider's list in an object body.
fn list_key(provider: Provider) -> (Key, &'static str) {
    match provider {
        Provider::Amplitude | Provider::Api => (Key::Events, "events"),
        Provider::Segment | Provider::Posthog => (Key::Batch, "batch"),
    }
}

struct BodySeed<'a> {
    provider: Provider,
    max_events: usize,
    summary: &'a mut BatchSummary,
    state: &'a mut ListState,
}

impl BodySeed<'_> {
    fn list(&mut self, name: Option<&'static str>) -> ListSeed<'_> {
        self.state.list = name;
        ListSeed {
            provider: self.provider,
            max_events: self.max_events,
            summary: &mut *self.summary,
            state: &mut *self.state,
        }
    }
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    /// A top-level array: a batch without an envelope.
    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<(), A::Error> {
        self.list(None).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let (list, list_name) = list_key(self.provider);
        let mut saw_list = false;
        // The body itself, read as one event in case it holds no list.
        let mut single = ItemProbe::default();
        while let Some(key) = map.next_key::<Key>()? {
            if key == list {
                if saw_list {
                    return Err(de::Error::custom(format_args!("duplicate `{list_name}`")));
                }
                saw_list = true;
                map.next_value_seed(self.list(Some(list_name)))?;
            } else {
                single.read(key, &mut map)?;
            }
        }
        if saw_list {
            return Ok(());
        }
        let accepted = single.single(self.provider).map_err(de::Error::custom)?;
        self.summary.received = 1;
        if accepted {
            self.summary.accepted = 1;
        } else {
            self.summary.dropped = 1;
        }
        Ok(())
    }
}

struct ListSeed<'a> {
    provider: Provider,
    max_events: usize,
    summary: &'a mut BatchSummary,
    state: &'a mut ListState,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.state.list {
            Some(name) => write!(f, "`{name}` to be an array"),
            None => f.write_str("an array"),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            self.state.at = Some(index);
            let Some(item) = seq.next_element::<ItemProbe>()? else {
                self.state.at = None;
                return Ok(());
            };
            index += 1;
            if index > self.max_events {
                self.state.too_many = true;
                return Err(de::Error::custom("too many events"));
            }
            self.summary.received += 1;
            if item.accepted(self.provider) {
                self.summary.accepted += 1;
            } else {
                self.summary.dropped += 1;
            }
        }
    }
}

/// The object keys the probes look at; every other key is skipped unread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Events,
    Batch,
    Type,
    Event,
    EventType,
    UserId,
    DeviceId,
    /// PostHog's person properties (`$set`, `$set_once`, `$unset`).
    PersonProperties,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "events" => Key::Events,
                    "batch" => Key::Batch,
                    "type" => Key::Type,
                    "event" => Key::Event,
                    "event_type" => Key::EventType,
                    "user_id" => Key::UserId,
                    "device_id" => Key::DeviceId,
                    v if accept::POSTHOG_PERSON_KEYS.contains(&v) => Key::PersonProperties,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// One event (or the body read as one), reduced to what the counting rule looks at. A key
/// given twice counts by its last value, as the normalizer's parser reads it.
#[derive(Default)]
struct ItemProbe {
    /// Amplitude: `event_type` present, and whether it is an event name.
    event_type: Option<bool>,
    /// Segment: the message type.
    kind: Option<SegmentKind>,
    /// Segment and PostHog: `event`.
    event: Option<EventField>,
    /// Amplitude user objects: `user_id` or `device_id` present.
    identity: bool,
    /// PostHog engage bodies: person properties present.
    person: bool,
}

/// What an `event` field holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EventField {
    /// A string: whether it is an event name, and whether PostHog keeps it.
    Name { name: bool, posthog: bool },
    /// An object (PostHog's CDP webhook): whether PostHog keeps its `event`.
    Object { posthog: bool },
    /// Anything else.
    Other,
}

impl ItemProbe {
    fn read<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        match key {
            Key::EventType => self.event_type = Some(map.next_value::<NameProbe>()?.name),
            Key::Type => self.kind = Some(map.next_value::<TypeProbe>()?.0),
            Key::Event => self.event = Some(map.next_value::<EventField>()?),
            Key::UserId | Key::DeviceId => {
                map.next_value::<IgnoredAny>()?;
                self.identity = true;
            }
            Key::PersonProperties => {
                map.next_value::<IgnoredAny>()?;
                self.person = true;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    /// Whether this element of a list is an accepted event.
    fn accepted(&self, provider: Provider) -> bool {
        match provider {
            Provider::Amplitude => self.event_type == Some(true),
            Provider::Segment => {
                let named = matches!(self.event, Some(EventField::Name { name: true, .. }));
                self.kind.is_some_and(|k| k.accepts(named))
            }
            Provider::Posthog => matches!(
                self.event,
                Some(EventField::Name { posthog: true, .. } | EventField::Object { posthog: true })
            ),
            // Counted by `inspect_public`.
            Provider::Api => false,
        }
    }

    /// A body without a list is one event when it has the fields of one; `Err` says what is
    /// missing.
    fn single(&self, provider: Provider) -> Result<bool, &'static str> {
        let is_one = match provider {
            Provider::Amplitude => self.event_type.is_some() || self.identity,
            Provider::Segment => self.kind.is_some(),
            Provider::Posthog => self.event.is_some() || self.person,
            Provider::Api => false,
        };
        if !is_one {
            return Err(match provider {
                Provider::Amplitude => {
                    "neither an `events` array, an event (`event_type`) nor a user (`user_id` or `device_id`)"
                }
                Provider::Segment => "neither a `type` nor a `batch` array",
                Provider::Posthog => {
                    "neither a `batch` array, an `event` nor person properties (`$set`)"
                }
                Provider::Api => "no `events` array",
            });
        }
        Ok(self.accepted(provider))
    }
}

impl<'de> serde::Deserialize<'de> for ItemProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemProbe, A::Error> {
                let mut probe = ItemProbe::default();
                while let Some(key) = map.next_key::<Key>()? {
                    probe.read(key, &mut map)?;
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether a value is an event name ([`accept::event_name`]) and one PostHog keeps; reads any
/// JSON value without keeping it.
#[derive(Default)]
struct NameProbe {
    name: bool,
    posthog: bool,
}

impl<'de> serde::Deserialize<'de> for NameProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut probe = NameProbe::default();
        d.deserialize_any(ValueProbe(|s: &str| {
            probe.name = accept::event_name(s).is_some();
            probe.posthog = accept::posthog_accepts(s);
        }))?;
        Ok(probe)
    }
}

impl<'de> serde::Deserialize<'de> for EventField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventField, E> {
                Ok(EventField::Name {
                    name: accept::event_name(v).is_some(),
                    posthog: accept::posthog_accepts(v),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventField, A::Error> {
                let mut posthog = false;
                while let Some(key) = map.next_key::<Key>()? {
                    if key == Key::Event {
                        posthog = map.next_value::<NameProbe>()?.posthog;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(EventField::Object { posthog })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventField, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventField::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<EventField, E> {
                Ok(EventField::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<EventField, E> {
                Ok(EventField::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<EventField, E> {
                Ok(EventField::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<EventField, E> {
                Ok(EventField::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<EventField, E> {
                Ok(EventField::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A Segment message type, read by the shared rule ([`gf_schemas::accept`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct TypeProbe(SegmentKind);

impl<'de> serde::Deserialize<'de> for TypeProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut kind = SegmentKind::Other;
        d.deserialize_any(ValueProbe(|s: &str| kind = SegmentKind::of(s)))?;
        Ok(TypeProbe(kind))
    }
}

/// Visits any JSON value without keeping it; strings go to the closure.
struct ValueProbe<F>(F);

impl<'de, F: FnMut(&str)> Visitor<'de> for ValueProbe<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        (self.0)(v);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strings a body may hold: names the rules look at, blanks, escapes (good and bad), control
    /// bytes, non-ASCII, quotes and brackets.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => Just("purchase".to_owned()),
            1 => Just(" ".to_owned()),
            1 => Just(String::new()),
            2 => Just("track".to_owned()),
            1 => Just("page".to_owned()),
            1 => Just("$identify".to_owned()),
            1 => Just("$pageview".to_owned()),
            1 => Just(r#"a\"b\\c\/\u00e9\ud800"#.to_owned()),
            1 => Just("é ✓ [{}]".to_owned()),
            30 => "[a-z $]{0,12}",
            1 => "[ !#-\\[\\]-~]{0,12}",
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("events".to_owned()),
            1 => Just("batch".to_owned()),
            2 => Just("type".to_owned()),
            2 => Just("event".to_owned()),
            2 => Just("event_type".to_owned()),
            1 => Just("user_id".to_owned()),
            1 => Just("device_id".to_owned()),
            1 => Just(r"event\u005ftype".to_owned()),
            1 => Just(r#"ev\"ent"#.to_owned()),
            30 => text(),
        ]
    }

    /// `{"key":value,...}` from its fields, with `pad` (whitespace) around colons and braces.
    fn object_of(fields: Vec<(String, String)>, pad: &str) -> String {
        let fields: Vec<_> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\"{pad}:{pad}{v}"))
            .collect();
        format!("{{{pad}{}{pad}}}", fields.join(","))
    }

    /// Valid JSON values, numbers serde_json refuses in counted fields (out of range) among them.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            40 => text().prop_map(|t| format!("\"{t}\"")),
            2 => Just("null".to_owned()),
            2 => Just("true".to_owned()),
            1 => Just("false".to_owned()),
            2 => Just("0".to_owned()),
            2 => Just("-12.5e+3".to_owned()),
            1 => Just("1e400".to_owned()),
            1 => Just("18446744073709551616".to_owned()),
            10 => any::<i64>().prop_map(|n| n.to_string()),
        ];
        leaf.prop_recursive(4, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|fields| object_of(fields, " ")),
            ]
        })
    }

    /// A body of the shapes providers send, some with one flaw.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let item = proptest::collection::vec((key(), json()), 0..5)
            .prop_map(|fields| object_of(fields, ""));
        let list = proptest::collection::vec(prop_oneof![16 => item, 1 => json()], 0..6)
            .prop_map(|items| format!("[{}]", items.join(",")));
        let shaped = (
            prop_oneof![3 => Just("events"), 3 => Just("batch"), 1 => Just("event_type"), 1 => Just("type")],
            list.clone(),
            proptest::collection::vec((key(), json()), 0..3),
            prop_oneof![8 => Just(""), 4 => Just(" \n"), 1 => Just(" x"), 1 => Just(",")],
        )
            .prop_map(|(name, list, mut fields, tail)| {
                fields.push((name.to_owned(), list));
                format!("{}{tail}", object_of(fields, ""))
            });
        let text = prop_oneof![3 => shaped, 1 => list, 1 => json()];
        // One flaw in some bodies, anywhere: what serde_json refuses in strings and numbers,
        // broken syntax, a stray byte, a cut.
        let flaw = prop_oneof![
            Just(&br"\x"[..]),
            Just(&br"\u12"[..]),
            Just(&b"\t"[..]),
            Just(&b"\x01"[..]),
            Just(&b"\x1f"[..]),
            Just(&b"01"[..]),
            Just(&b"1."[..]),
            Just(&b"-"[..]),
            Just(&b"nul"[..]),
            Just(&b"\""[..]),
            Just(&b","[..]),
            Just(&b"}"[..]),
            Just(&b"\xff"[..]),
            Just(&b""[..]),
        ];
        let flaw = proptest::option::weighted(0.3, (any::<usize>(), flaw, any::<bool>()));
        (text, flaw).prop_map(|(text, flaw)| {
            let mut bytes = text.into_bytes();
            if let Some((at, inserted, cut)) = flaw {
                let at = at % (bytes.len() + 1);
                if cut {
                    bytes.truncate(at);
                }
                bytes.splice(at..at, inserted.iter().copied());
            }
            bytes
        })
    }

    /// The differential below proves something only if the fast path answers for many of its
    /// bodies, and refuses many others.
    #[test]
    fn the_generated_bodies_reach_both_paths() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut fast_answers, mut refused) = (0, 0);
        for _ in 0..1000 {
            let body = body().new_tree(&mut runner).unwrap().current();
            for provider in [Provider::Amplitude, Provider::Segment, Provider::Posthog] {
                if std::str::from_utf8(&body).is_ok() && fast::inspect(provider, &body, 4).is_some()
                {
                    fast_answers += 1;
                }
                if inspect_serde(provider, &body, 4).is_err() {
                    refused += 1;
                }
            }
        }
        assert!(
            fast_answers > 600,
            "the fast path answered {fast_answers} of 3000"
        );
        assert!(refused > 600, "the serde path refused {refused} of 3000");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The fast path is only a shortcut: `inspect` gives exactly what the serde path gives
        /// (counts, verdict and error) on every body, for every provider and event limit.
        #[test]
        fn the_fast_check_agrees_with_the_serde_path(body in body(), max in 0usize..5) {
            for provider in Provider::all() {
                prop_assert_eq!(
                    inspect(provider, &body, max),
                    inspect_serde(provider, &body, max),
                    "{:?} {}", provider, String::from_utf8_lossy(&body)
                );
            }
        }
    }

    fn amp(body: &str) -> Result<BatchSummary, PayloadError> {
        inspect(Provider::Amplitude, body.as_bytes(), 1000)
    }

    fn seg(body: &str) -> Result<BatchSummary, PayloadError> {
        inspect(Provider::Segment, body.as_bytes(), 1000)
    }

    fn counts(r: usize, a: usize, d: usize) -> Result<BatchSummary, PayloadError> {
        Ok(BatchSummary {
            received: r,
            accepted: a,
            dropped: d,
        })
    }

    #[test]
    fn amplitude_bodies() {
        let cases: &[(&str, Result<BatchSummary, PayloadError>)] = &[
            (
                r#"{"events":[{"event_type":"purchase","user_id":"u"}]}"#,
                counts(1, 1, 0),
            ),
            (
                r#"{"api_key":"ignored","events":[{"event_type":"a"},{"event_type":"b"}]}"#,
                counts(2, 2, 0),
            ),
            (r#"{"events":[]}"#, counts(0, 0, 0)),
            // No event_type, a non-string one, an empty one: received but dropped.
            (
                r#"{"events":[{"user_id":"u"},{"event_type":7},{"event_type":""},{"event_type":null}]}"#,
                counts(4, 0, 4),
            ),
            (
                r#"{"events":[{"event_type":{"nested":[1,2]}},{"event_type":"ok"}]}"#,
                counts(2, 1, 1),
            ),
            (
                r#"{"events":[{"event_type":"caf\u00e9","event_properties":{"a":[{"b":null}]}}]}"#,
                counts(1, 1, 0),
            ),
            (
                r#"{"options":{"min_id_length":1},"events":[{"event_type":"x"}]}"#,
                counts(1, 1, 0),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(&amp(body), expected, "{body}");
        }
    }

    #[test]
    fn amplitude_shape_errors_say_what_is_wrong() {
        for (body, needle) in [
            (
                r#"{"api_key":"k","options":{}}"#,
                "neither an `events` array, an event (`event_type`) nor a user",
            ),
            (
                r#"{"events":{"event_type":"x"}}"#,
                "`events` to be an array",
            ),
            (r#"{"events":[{"event_type":"x"},42]}"#, "events[1]"),
            (r#"[{"event_type":"x"},"y"]"#, "[1]"),
            (r#""events""#, "a JSON object or array"),
            (r#"{"events":[],"events":[]}"#, "duplicate"),
        ] {
            match amp(body) {
                Err(PayloadError::WrongShape { detail, .. }) => {
                    assert!(detail.contains(needle), "{body}: {detail}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_json_is_told_apart_from_wrong_shape() {
        for body in [
            &br#"{"events":[{"event_type":"x"}"#[..],
            b"not json",
            b"",
            br#"{"events":[]} trailing"#,
            b"{\"a\":\"\xff\"}",
        ] {
            let result = inspect(Provider::Amplitude, body, 1000);
            assert!(
                matches!(result, Err(PayloadError::InvalidJson(_))),
                "{body:?}: {result:?}"
            );
        }
    }

    #[test]
    fn segment_bodies() {
        let cases: &[(&str, Result<BatchSummary, PayloadError>)] = &[
            (
                r#"{"type":"track","event":"Order Completed","userId":"u"}"#,
                counts(1, 1, 0),
            ),
            (
                r#"{"event":"Order Completed","type":"track"}"#,
                counts(1, 1, 0),
            ),
            (r#"{"type":"track"}"#, counts(1, 0, 1)),
            (r#"{"type":"page","name":"Pricing"}"#, counts(1, 1, 0)),
            (r#"{"type":"screen"}"#, counts(1, 1, 0)),
            (
                r#"{"type":"identify","traits":{"email":"a@b.c"}}"#,
                counts(1, 0, 1),
            ),
            (r#"{"type":"group"}"#, counts(1, 0, 1)),
            (r#"{"type":"alias"}"#, counts(1, 0, 1)),
            (r#"{"type":"Track","event":"x"}"#, counts(1, 0, 1)),
            (r#"{"type":42}"#, counts(1, 0, 1)),
            (
                r#"{"batch":[{"type":"track","event":"a"},{"type":"identify"},{"type":"page"},{"type":"track"}]}"#,
                counts(4, 2, 2),
            ),
            (r#"{"batch":[]}"#, counts(0, 0, 0)),
            // The Webhooks (Actions) destination's batches: a top-level array.
            (
                r#"[{"type":"track","event":"a"},{"type":"identify"},{"type":"screen"}]"#,
                counts(3, 2, 1),
            ),
            (r#"[]"#, counts(0, 0, 0)),
        ];
        for (body, expected) in cases {
            assert_eq!(&seg(body), expected, "{body}");
        }
    }

    #[test]
    fn amplitude_export_events_users_and_arrays() {
        let cases: &[(&str, Result<BatchSummary, PayloadError>)] = &[
            // The Webhook destination's default: one Export-format event per request.
            (
                r#"{"event_type":"purchase","user_id":"u","$insert_id":"i","event_time":"2022-02-28 20:07:01.795000"}"#,
                counts(1, 1, 0),
            ),
            // "Send Users": a user object, received and dropped.
            (
                r#"{"user_id":"u","user_properties":{"plan":"pro"}}"#,
                counts(1, 0, 1),
            ),
            (r#"{"device_id":"d"}"#, counts(1, 0, 1)),
            (r#"{"event_type":"","user_id":"u"}"#, counts(1, 0, 1)),
            (
                r#"[{"event_type":"a"},{"user_id":"u"},{"event_type":"b"}]"#,
                counts(3, 2, 1),
            ),
            // A list wins over the body's own fields.
            (r#"{"event_type":"x","events":[]}"#, counts(0, 0, 0)),
        ];
        for (body, expected) in cases {
            assert_eq!(&amp(body), expected, "{body}");
        }
    }

    #[test]
    fn posthog_bodies() {
        let ph = |body: &str| inspect(Provider::Posthog, body.as_bytes(), 1000);
        let cases: &[(&str, Result<BatchSummary, PayloadError>)] = &[
            (
                r#"{"api_key":"phc","batch":[{"event":"signed up","distinct_id":"u"},{"event":"$identify","distinct_id":"u"},{"event":"$pageview"}]}"#,
                counts(3, 2, 1),
            ),
            (
                r#"[{"event":"$set"},{"event":"$groupidentify"},{"event":"$create_alias"},{"event":"x"}]"#,
                counts(4, 1, 3),
            ),
            (r#"{"event":"purchase","distinct_id":"u"}"#, counts(1, 1, 0)),
            (
                r#"{"event":"$identify","distinct_id":"u"}"#,
                counts(1, 0, 1),
            ),
            (r#"{"event":7}"#, counts(1, 0, 1)),
            // The CDP webhook destination's body.
            (
                r#"{"event":{"uuid":"0190","event":"purchase","distinct_id":"u","properties":{"event":"not this"}},"person":{"id":"p"}}"#,
                counts(1, 1, 0),
            ),
            (
                r#"{"event":{"event":"$identify"},"person":{}}"#,
                counts(1, 0, 1),
            ),
            (r#"{"event":{"event":{"event":"deeper"}}}"#, counts(1, 0, 1)),
            // An engage body: person properties, no event; received and dropped.
            (
                r#"{"api_key":"phc","distinct_id":"u","$set":{"email":"a@b.c"}}"#,
                counts(1, 0, 1),
            ),
            (
                r#"{"$distinct_id":"u","$set_once":{"plan":"pro"}}"#,
                counts(1, 0, 1),
            ),
            (r#"{"distinct_id":"u","$unset":["plan"]}"#, counts(1, 0, 1)),
        ];
        for (body, expected) in cases {
            assert_eq!(&ph(body), expected, "{body}");
        }
        for (body, needle) in [
            (
                r#"{"api_key":"phc"}"#,
                "neither a `batch` array, an `event` nor person properties",
            ),
            (r#"{"batch":[1]}"#, "batch[0]"),
            (r#"true"#, "a JSON object or array"),
        ] {
            match ph(body) {
                Err(PayloadError::WrongShape { detail, .. }) => {
                    assert!(detail.contains(needle), "{body}: {detail}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn public_api_bodies_are_checked_against_the_schema() {
        let api = |body: &str| inspect(Provider::Api, body.as_bytes(), 3);
        assert_eq!(
            api(
                r#"{"events":[{"eventType":"purchase","value":49,"valueType":"currency"},{"eventType":"refund"}]}"#
            ),
            counts(2, 2, 0)
        );
        assert_eq!(api(r#"{"events":[]}"#), counts(0, 0, 0));
        match api(
            r#"{"events":[{"eventType":"ok"},{"eventType":"x","eventAt":"soon"},{"type":"track"}]}"#,
        ) {
            Err(PayloadError::InvalidEvents(problems)) => {
                let at: Vec<_> = problems
                    .iter()
                    .map(|p| (p.index, p.field.as_str()))
                    .collect();
                assert!(at.contains(&(Some(1), "eventAt")), "{at:?}");
                assert!(at.contains(&(Some(2), "eventType")), "{at:?}");
                assert!(at.contains(&(Some(2), "type")), "{at:?}");
            }
            other => panic!("{other:?}"),
        }
        // The size limit is told before the content.
        assert_eq!(
            api(r#"{"events":[{},{},{},{}]}"#),
            Err(PayloadError::TooManyEvents { limit: 3 })
        );
        assert!(matches!(
            api(r#"[{"eventType":"x"}]"#),
            Err(PayloadError::WrongShape { .. })
        ));
        assert!(matches!(api("{"), Err(PayloadError::InvalidJson(_))));
    }

    #[test]
    fn segment_shape_errors() {
        for (body, needle) in [
            (
                r#"{"events":[{"event_type":"x"}]}"#,
                "neither a `type` nor a `batch`",
            ),
            (r#"{"batch":{"type":"track"}}"#, "`batch` to be an array"),
            (
                r#"{"batch":[{"type":"track","event":"a"},"x"]}"#,
                "batch[1]",
            ),
            (r#"[{"type":"page"},7]"#, "[1]"),
            (r#"42"#, "a JSON object or array"),
        ] {
            match seg(body) {
                Err(PayloadError::WrongShape { detail, .. }) => {
                    assert!(detail.contains(needle), "{body}: {detail}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_event_limit_is_inclusive() {
        let batch = |n: usize| {
            format!(
                "{{\"events\":[{}]}}",
                vec![r#"{"event_type":"e"}"#; n].join(",")
            )
        };
        assert_eq!(
            inspect(Provider::Amplitude, batch(1000).as_bytes(), 1000),
            counts(1000, 1000, 0)
        );
        assert_eq!(
            inspect(Provider::Amplitude, batch(1001).as_bytes(), 1000),
            Err(PayloadError::TooManyEvents { limit: 1000 })
        );
        let seg_batch = format!(
            "{{\"batch\":[{}]}}",
            [r#"{"type":"identify"}"#; 11].join(",")
        );
        assert_eq!(
            inspect(Provider::Segment, seg_batch.as_bytes(), 10),
            Err(PayloadError::TooManyEvents { limit: 10 })
        );
    }
}
