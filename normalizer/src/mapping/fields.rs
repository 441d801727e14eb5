//! Reading loosely typed JSON fields: strings that may be numbers, numbers that may be strings.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::MapError;

/// The items of a body that is an array of them, an object holding them under `list`, or one
/// item (an object without `list` that has one of the `single` keys), each as its own unparsed
/// JSON text: the shapes the receiver accepts. The object is read as a map: a key given twice
/// counts once, the last one, as the receiver reads it.
pub fn list_or_single<'a>(
    body: &'a RawValue,
    list: &str,
    single: &[&str],
    shape: &'static str,
) -> Result<Vec<&'a RawValue>, MapError> {
    let text = body.get();
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(|_| MapError::WrongShape(shape));
    }
    if !text.starts_with('{') {
        return Err(MapError::WrongShape(shape));
    }
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|_| MapError::WrongShape(shape))?;
    match fields.get(list) {
        Some(items) => serde_json::from_str(items.get()).map_err(|_| MapError::WrongShape(shape)),
        None if single.iter().any(|k| fields.contains_key(*k)) => Ok(vec![body]),
        None => Err(MapError::WrongShape(shape)),
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
