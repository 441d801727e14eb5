//! Body checks, pure: decoding (gzip, bounded) and counting what a batch holds.
//!
//! Counting walks the JSON once with serde visitors and keeps nothing per event: a body of a
//! thousand events costs one pass and no allocation per event.

use std::fmt;
use std::io::Read;

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
}

/// Decodes a gzip body, refusing to produce more than `limit` bytes (gzip bombs stop there).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, PayloadError> {
    gunzip_reserving(body, limit, |_| true)
}

/// [`gunzip`], asking `reserve` for every byte of buffer it grows by (the receiver's memory
/// budget); stops with [`PayloadError::BudgetSpent`] when refused.
pub fn gunzip_reserving(
    body: &[u8],
    limit: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, PayloadError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| PayloadError::BadGzip(e.to_string()))?;
        if n == 0 {
            break;
        }
        if out.len() + n > limit {
            return Err(PayloadError::TooLarge { limit });
        }
        if out.len() + n > out.capacity() {
            let wanted = (out.capacity() * 2).max(out.len() + n).min(limit);
            if !reserve(wanted - out.capacity()) {
                return Err(PayloadError::BudgetSpent);
            }
            out.reserve_exact(wanted - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Counts received / accepted / dropped events and checks the provider's shape.
///
/// - Amplitude: `{"events": [...]}`; Segment: one message, or `{"batch": [...]}`.
/// - Which events are accepted and which dropped is [`gf_schemas::accept`]'s rule, the one the
///   normalizer maps by.
pub fn inspect(
    provider: Provider,
    body: &[u8],
    max_events: usize,
) -> Result<BatchSummary, PayloadError> {
    let mut summary = BatchSummary::default();
    let mut state = ListState::default();
    let seed = BodySeed {
        provider,
        max_events,
        summary: &mut summary,
        state: &mut state,
    };
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
    let mut de = serde_json::Deserializer::from_str(text);
    let result = seed.deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(summary),
        Err(_) if state.too_many => Err(PayloadError::TooManyEvents { limit: max_events }),
        Err(e) if e.is_data() => {
            let detail = match state.at {
                Some(i) => format!("{}[{i}]: {}", Key::list(provider).1, strip_position(&e)),
                None => strip_position(&e),
            };
            Err(PayloadError::WrongShape {
                expected: expected_shape(provider),
                detail,
            })
        }
        Err(e) => Err(PayloadError::InvalidJson(e.to_string())),
    }
}

/// Where the list walk stopped, to name the element in errors.
#[derive(Default)]
struct ListState {
    /// Index of the element being read; `None` outside the list.
    at: Option<usize>,
    too_many: bool,
}

fn expected_shape(provider: Provider) -> &'static str {
    match provider {
        Provider::Amplitude => "an Amplitude HTTP V2 batch ({\"events\": [...]})",
        Provider::Segment => "a Segment message or {\"batch\": [...]}",
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

struct BodySeed<'a> {
    provider: Provider,
    max_events: usize,
    summary: &'a mut BatchSummary,
    state: &'a mut ListState,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (list, list_key) = Key::list(self.provider);
        let segment = self.provider == Provider::Segment;
        let mut saw_list = false;
        let mut single = SegmentProbe::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                k if k == list => {
                    if saw_list {
                        return Err(de::Error::custom(format_args!("duplicate `{list_key}`")));
                    }
                    saw_list = true;
                    map.next_value_seed(ListSeed {
                        provider: self.provider,
                        name: list_key,
                        max_events: self.max_events,
                        summary: &mut *self.summary,
                        state: &mut *self.state,
                    })?;
                }
                Key::Type if segment => {
                    single.kind = Some(map.next_value::<TypeProbe>()?);
                }
                Key::Event if segment => {
                    single.event = map.next_value::<StringProbe>()?.0;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (self.provider, saw_list) {
            (_, true) => Ok(()),
            (Provider::Amplitude, false) => Err(de::Error::custom("no `events` array")),
            (Provider::Segment, false) => match single.kind {
                Some(kind) => {
                    self.summary.received = 1;
                    if single.accepted_as(kind) {
                        self.summary.accepted = 1;
                    } else {
                        self.summary.dropped = 1;
                    }
                    Ok(())
                }
                None => Err(de::Error::custom("neither a `type` nor a `batch` array")),
            },
        }
    }
}

struct ListSeed<'a> {
    provider: Provider,
    name: &'static str,
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
        write!(f, "`{}` to be an array", self.name)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            self.state.at = Some(index);
            let accepted = match self.provider {
                Provider::Amplitude => seq.next_element::<AmplitudeProbe>()?.map(|p| p.accepted()),
                Provider::Segment => seq.next_element::<SegmentProbe>()?.map(|p| p.accepted()),
            };
            let Some(accepted) = accepted else {
                self.state.at = None;
                return Ok(());
            };
            index += 1;
            if index > self.max_events {
                self.state.too_many = true;
                return Err(de::Error::custom("too many events"));
            }
            self.summary.received += 1;
            if accepted {
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
    Other,
}

impl Key {
    fn list(provider: Provider) -> (Key, &'static str) {
        match provider {
            Provider::Amplitude => (Key::Events, "events"),
            Provider::Segment => (Key::Batch, "batch"),
        }
    }
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
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Whether a value is an event name ([`accept::event_name`]); reads any JSON value without
/// keeping it.
struct StringProbe(bool);

impl<'de> serde::Deserialize<'de> for StringProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueProbe(|s: &str| accept::event_name(s).is_some()))
            .map(StringProbe)
    }
}

/// A Segment message type, read by the shared rule ([`gf_schemas::accept`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct TypeProbe(SegmentKind);

impl<'de> serde::Deserialize<'de> for TypeProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut kind = SegmentKind::Other;
        d.deserialize_any(ValueProbe(|s: &str| {
            kind = SegmentKind::of(s);
            true
        }))?;
        Ok(TypeProbe(kind))
    }
}

/// Visits any JSON value; strings go to the closure, everything else yields `false`.
struct ValueProbe<F>(F);

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for ValueProbe<F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<bool, E> {
        Ok((self.0)(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// One Amplitude event, reduced to whether it has a usable `event_type`.
#[derive(Default)]
struct AmplitudeProbe {
    event_type: bool,
}

impl AmplitudeProbe {
    fn accepted(&self) -> bool {
        self.event_type
    }
}

/// One Segment message, reduced to its type and whether `event` is set.
#[derive(Default)]
struct SegmentProbe {
    kind: Option<TypeProbe>,
    event: bool,
}

impl SegmentProbe {
    fn accepted_as(&self, kind: TypeProbe) -> bool {
        kind.0.accepts(self.event)
    }

    fn accepted(&self) -> bool {
        self.kind.is_some_and(|k| self.accepted_as(k))
    }
}

/// Both probes read an object and look at a couple of keys, ignoring the rest.
macro_rules! object_probe {
    ($ty:ident, $what:literal, |$probe:ident, $key:ident, $map:ident| $body:block) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut $map: A) -> Result<$ty, A::Error> {
                        let mut $probe = $ty::default();
                        while let Some($key) = $map.next_key::<Key>()? {
                            $body
                        }
                        Ok($probe)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

object_probe!(AmplitudeProbe, "an event object", |probe, key, map| {
    if key == Key::EventType {
        probe.event_type = map.next_value::<StringProbe>()?.0;
    } else {
        map.next_value::<IgnoredAny>()?;
    }
});

object_probe!(SegmentProbe, "a message object", |probe, key, map| {
    match key {
        Key::Type => probe.kind = Some(map.next_value::<TypeProbe>()?),
        Key::Event => probe.event = map.next_value::<StringProbe>()?.0,
        _ => {
            map.next_value::<IgnoredAny>()?;
        }
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
            (r#"{"event_type":"purchase"}"#, "no `events` array"),
            (
                r#"{"events":{"event_type":"x"}}"#,
                "`events` to be an array",
            ),
            (r#"{"events":[{"event_type":"x"},42]}"#, "events[1]"),
            (r#"[{"event_type":"x"}]"#, "a JSON object"),
            (r#""events""#, "a JSON object"),
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
        ];
        for (body, expected) in cases {
            assert_eq!(&seg(body), expected, "{body}");
        }
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
            (r#"[]"#, "a JSON object"),
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_is_decoded_within_the_limit() {
        let body = br#"{"events":[{"event_type":"x"}]}"#;
        assert_eq!(gunzip(&gzip(body), 1024).unwrap(), body);
        // A bomb: 64 MiB of zeros in a few KiB, refused at the limit.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(
            gunzip(&bomb, 1024 * 1024),
            Err(PayloadError::TooLarge { limit: 1024 * 1024 })
        );
        assert!(matches!(
            gunzip(b"not gzip", 1024),
            Err(PayloadError::BadGzip(_))
        ));
    }
}
