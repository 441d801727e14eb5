//! Reading loosely typed JSON fields: strings that may be numbers, numbers that may be strings.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::MapError;

/// The items of a body that is an array of them, an object holding them under `list`, or one
/// item (an object without `list` that has one of the `single` keys), each as its own unparsed
/// JSON text: the shapes the receiver accepts. The object is read as a map: a key given twice
/// counts once, the last one, as the receiver reads it. One pass over the body: it is the
/// largest thing the normalizer reads.
pub fn list_or_single<'a>(
    body: &'a str,
    list: &str,
    single: &[&str],
    shape: &'static str,
) -> Result<Vec<&'a RawValue>, MapError> {
    let refused = |e: serde_json::Error| refusal(body, e, shape);
    match json_trim(body).as_bytes().first() {
        Some(b'[') => serde_json::from_str(body).map_err(refused),
        Some(b'{') => {
            let seed = EnvelopeSeed { list, single };
            let mut de = serde_json::Deserializer::from_str(body);
            let envelope = seed
                .deserialize(&mut de)
                .and_then(|e| de.end().map(|()| e))
                .map_err(refused)?;
            match envelope {
                Envelope {
                    list: Some(ListValue::Items(items)),
                    ..
                } => Ok(items),
                Envelope {
                    list: None,
                    single: true,
                } => serde_json::from_str::<&RawValue>(body)
                    .map(|one| vec![one])
                    .map_err(refused),
                _ => Err(MapError::WrongShape(shape)),
            }
        }
        _ => Err(match serde_json::from_str::<IgnoredAny>(body) {
            Ok(_) => MapError::WrongShape(shape),
            Err(e) => MapError::InvalidJson(e.to_string()),
        }),
    }
}

/// JSON text without its leading whitespace.
pub fn json_trim(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
}

/// A body that is not JSON at all is [`MapError::InvalidJson`]; JSON of another shape is
/// [`MapError::WrongShape`], whichever the envelope's reader met first.
fn refusal(body: &str, error: serde_json::Error, shape: &'static str) -> MapError {
    if error.is_syntax() || error.is_eof() {
        return MapError::InvalidJson(error.to_string());
    }
    match serde_json::from_str::<IgnoredAny>(body) {
        Ok(_) => MapError::WrongShape(shape),
        Err(e) => MapError::InvalidJson(e.to_string()),
    }
}

/// What an object body holds: its list (the last one given), and whether it has a key of one
/// item.
struct Envelope<'a> {
    list: Option<ListValue<'a>>,
    single: bool,
}

/// The value under the list key: the items, or something that is not a list.
enum ListValue<'a> {
    Items(Vec<&'a RawValue>),
    Other,
}

struct EnvelopeSeed<'k> {
    list: &'k str,
    single: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut envelope = Envelope {
            list: None,
            single: false,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == self.list {
                envelope.list = Some(map.next_value::<ListValue<'de>>()?);
            } else {
                envelope.single |= self.single.contains(&key.as_str());
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(envelope)
    }
}

impl<'de> Deserialize<'de> for ListValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListValue<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(ListValue::Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListValue<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ListValue::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
            fn visit_unit<E>(self) -> Result<ListValue<'de>, E> {
                Ok(ListValue::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// What kind of JSON value `value` is, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-empty string, or a number written as one (ids are sometimes sent as numbers).
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A finite number, or a string holding one.
pub fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Looks up `a.b.c` in an object.
pub fn path<'a>(root: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut current = root.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current).filter(|v| !v.is_null())
}

/// The first of several paths that holds non-empty text.
pub fn first_text(root: &Map<String, Value>, paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| text(path(root, p)))
}

/// Milliseconds since the epoch (number or numeric string) as a UTC time.
pub fn epoch_millis(value: &Value) -> Option<DateTime<Utc>> {
    let ms = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }?;
    Utc.timestamp_millis_opt(ms).single()
}

/// Amplitude's Export-format time, `2022-02-28 20:07:01.795000` (UTC, up to six fractional
/// digits; templates may write a `T`), exact to the millisecond; an RFC 3339 time is read too.
pub fn utc_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .and_then(|naive| {
            Utc.timestamp_millis_opt(naive.and_utc().timestamp_millis())
                .single()
        })
        .or_else(|| iso_time(value))
}

/// An ISO-8601 / RFC 3339 time with any offset, as UTC, exact to the millisecond.
pub fn iso_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    DateTime::parse_from_rfc3339(text)
        .ok()
        .or_else(|| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(|t| t.with_timezone(&Utc))
        .map(|t| {
            let ms = t.timestamp_millis();
            Utc.timestamp_millis_opt(ms).single().unwrap_or(t)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loose_text_and_numbers() {
        assert_eq!(text(Some(&json!("  u1 "))), Some("u1".into()));
        assert_eq!(text(Some(&json!(42))), Some("42".into()));
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!(null))), None);
        assert_eq!(text(Some(&json!({"a": 1}))), None);
        assert_eq!(number(Some(&json!("49.5"))), Some(49.5));
        assert_eq!(number(Some(&json!(-3))), Some(-3.0));
        assert_eq!(number(Some(&json!("abc"))), None);
        assert_eq!(number(Some(&json!("NaN"))), None);
        assert_eq!(number(Some(&json!(true))), None);
    }

    #[test]
    fn times_are_exact_to_the_millisecond() {
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(
            epoch_millis(&json!(1747569600123i64)).map(ms),
            Some(1747569600123)
        );
        assert_eq!(
            epoch_millis(&json!("1747569600123")).map(ms),
            Some(1747569600123)
        );
        assert_eq!(
            epoch_millis(&json!(1747569600123.0)).map(ms),
            Some(1747569600123)
        );
        assert_eq!(epoch_millis(&json!("soon")), None);
        assert_eq!(
            iso_time(&json!("2026-05-18T12:00:00Z")).map(ms),
            Some(1779105600000)
        );
        assert_eq!(
            iso_time(&json!("2026-05-18T14:00:00.123+02:00")).map(ms),
            Some(1779105600123)
        );
        assert_eq!(
            iso_time(&json!("2026-05-18T07:00:00.5-05:00")).map(ms),
            Some(1779105600500)
        );
        assert_eq!(
            iso_time(&json!("2026-05-18T12:00:00.123456789Z")).map(ms),
            Some(1779105600123)
        );
        assert_eq!(
            iso_time(&json!("2026-05-18T14:00:00+0200")).map(ms),
            Some(1779105600000)
        );
        assert_eq!(iso_time(&json!("yesterday")), None);
        assert_eq!(
            utc_time(&json!("2026-05-18 12:00:00.123456")).map(ms),
            Some(1779105600123)
        );
        assert_eq!(
            utc_time(&json!("2026-05-18 12:00:00")).map(ms),
            Some(1779105600000)
        );
        assert_eq!(
            utc_time(&json!("2026-05-18T14:00:00.5+02:00")).map(ms),
            Some(1779105600500)
        );
        assert_eq!(
            utc_time(&json!("2026-05-18T12:00:00.123")).map(ms),
            Some(1779105600123)
        );
        assert_eq!(utc_time(&json!("2026-05-18")), None);
    }

    #[test]
    fn envelopes_are_read_in_one_pass_with_the_receivers_rules() {
        let items = |body: &str| {
            list_or_single(body, "events", &["event_type"], "shape")
                .map(|items| items.iter().map(|i| i.get().to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            items(" [1, {\"a\": 2}]"),
            Ok(vec!["1".into(), "{\"a\": 2}".into()])
        );
        // The last of a key given twice counts, whatever the first held.
        assert_eq!(
            items("{\"events\": 5, \"events\": [3]}"),
            Ok(vec!["3".into()])
        );
        assert_eq!(
            items("{\"events\": [3], \"events\": 5}"),
            Err(MapError::WrongShape("shape"))
        );
        assert_eq!(items("{\"event_type\": \"x\"}").map(|i| i.len()), Ok(1));
        assert_eq!(items("{\"other\": 1}"), Err(MapError::WrongShape("shape")));
        assert_eq!(items("\"text\""), Err(MapError::WrongShape("shape")));
        // Not JSON at all is invalid JSON, even after a part of the wrong shape.
        assert!(matches!(
            items("{\"events\": 5, oops"),
            Err(MapError::InvalidJson(_))
        ));
        assert!(matches!(items("[1] 2"), Err(MapError::InvalidJson(_))));
        assert!(matches!(items("nope"), Err(MapError::InvalidJson(_))));
    }

    #[test]
    fn dotted_paths() {
        let root = json!({"a": {"b": {"c": "x"}, "n": null}})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(path(&root, "a.b.c"), Some(&json!("x")));
        assert_eq!(path(&root, "a.n"), None);
        assert_eq!(path(&root, "a.b.c.d"), None);
        assert_eq!(first_text(&root, &["a.z", "a.b.c"]), Some("x".into()));
    }
}
