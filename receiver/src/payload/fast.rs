//! The body check's fast path: one pass over the bytes, no visitors, that counts a batch only
//! when it is sure of the answer and otherwise says nothing (`None`), so the serde path runs and
//! gives the verdict. It is sure of bodies that are plain JSON of the usual shape: an object
//! with the provider's list (or a top-level array) of event objects whose keys carry no escapes
//! and whose counted fields are plain strings, `null` or booleans. Anything else (an escaped
//! key, a number or object where a name is counted, a duplicate list, a single event, any
//! syntax error, nesting past the limit, too many events) goes to the serde path, so every
//! refusal and every unusual body is still decided there. `payload::tests` and the
//! `receiver_body` fuzz target check that the two paths give the same result on every input.
//!
//! The check is the receiver's main cost on large batches. Most of a body's bytes are inside
//! strings, which are skipped eight bytes at a time (SWAR: a word is tested for a quote, a
//! backslash or a control byte at once).

use gf_schemas::Provider;
use gf_schemas::accept::{self, SegmentKind};

use super::{BatchSummary, EventField, ItemProbe, Key, list_key};

/// The batch's counts when the fast path is sure of them; `None` sends the body to the serde
/// path. `body` must already be known to be UTF-8.
pub(super) fn inspect(provider: Provider, body: &[u8], max_events: usize) -> Option<BatchSummary> {
    if provider == Provider::Api {
        return None;
    }
    let mut scan = Scan {
        bytes: body,
        at: 0,
        depth: 0,
    };
    let mut summary = BatchSummary::default();
    let mut list = Counter {
        provider,
        max_events,
        summary: &mut summary,
    };
    scan.ws();
    match scan.peek()? {
        b'[' => scan.list(&mut list)?,
        b'{' => {
            let (key, _) = list_key(provider);
            let mut saw_list = false;
            let mut single = ItemProbe::default();
            scan.object(|scan, name| {
                let field = key_of(name?)?;
                if field == key {
                    // A repeated list is refused by the serde path, with its own message.
                    if saw_list || scan.peek()? != b'[' {
                        return None;
                    }
                    saw_list = true;
                    scan.list(&mut list)
                } else {
                    scan.item_field(field, &mut single)
                }
            })?;
            if !saw_list {
                // One event (the webhook destinations send these); a body that is not one is
                // refused by the serde path, which says what it lacks.
                let accepted = single.single(provider).ok()?;
                summary.received = 1;
                summary.accepted = usize::from(accepted);
                summary.dropped = usize::from(!accepted);
            }
        }
        _ => return None,
    }
    scan.ws();
    (scan.at == body.len()).then_some(summary)
}

/// Counts a list's elements by the shared rule, giving up past the event limit.
struct Counter<'a> {
    provider: Provider,
    max_events: usize,
    summary: &'a mut BatchSummary,
}

impl Counter<'_> {
    fn count(&mut self, item: &ItemProbe) -> Option<()> {
        if self.summary.received == self.max_events {
            return None;
        }
        self.summary.received += 1;
        if item.accepted(self.provider) {
            self.summary.accepted += 1;
        } else {
            self.summary.dropped += 1;
        }
        Some(())
    }
}

/// The key a probe looks at, when the key has no escapes (an escaped key could spell one).
fn key_of(name: &[u8]) -> Option<Key> {
    Some(match name {
        b"events" => Key::Events,
        b"batch" => Key::Batch,
        b"type" => Key::Type,
        b"event" => Key::Event,
        b"event_type" => Key::EventType,
        b"user_id" => Key::UserId,
        b"device_id" => Key::DeviceId,
        b"$set" | b"$set_once" | b"$unset" => Key::PersonProperties,
        _ => Key::Other,
    })
}

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

/// A plain string's content, or nothing when it holds an escape.
type Plain<'a> = Option<&'a [u8]>;

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips JSON whitespace (the four bytes JSON allows, as serde_json does).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn open(&mut self) -> Option<()> {
        self.depth += 1;
        self.at += 1;
        (self.depth <= accept::MAX_NESTING).then_some(())
    }

    /// Past a container's closing bracket.
    fn close(&mut self) -> Option<()> {
        self.at += 1;
        self.depth -= 1;
        Some(())
    }

    /// An object at `{`; `field` reads each value, given its key (`None` when escaped), with
    /// the scan at the value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, Plain<'a>) -> Option<()>) -> Option<()> {
        self.members(b'}', |scan| {
            if scan.peek()? != b'"' {
                return None;
            }
            let key = scan.string()?;
            scan.ws();
            if scan.peek()? != b':' {
                return None;
            }
            scan.at += 1;
            scan.ws();
            field(scan, key)
        })
    }

    /// An array at `[`; `element` reads each element, with the scan at it.
    fn array(&mut self, element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.members(b']', element)
    }

    /// A container's members, separated by commas, up to `close`; `member` reads one, with the
    /// scan at it.
    fn members(
        &mut self,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.open()?;
        self.ws();
        if self.peek()? == close {
            return self.close();
        }
        loop {
            self.ws();
            member(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => return self.close(),
                _ => return None,
            }
        }
    }

    /// A list of event objects, each counted.
    fn list(&mut self, counter: &mut Counter) -> Option<()> {
        self.array(|scan| {
            if scan.peek()? != b'{' {
                return None;
            }
            let mut item = ItemProbe::default();
            scan.object(|scan, name| scan.item_field(key_of(name?)?, &mut item))?;
            counter.count(&item)
        })
    }

    /// One field of an event object, read the way [`ItemProbe::read`] reads it.
    fn item_field(&mut self, key: Key, item: &mut ItemProbe) -> Option<()> {
        match key {
            Key::EventType => {
                let name = self.name()?;
                item.event_type = Some(name.is_some_and(|n| accept::event_name(n).is_some()));
            }
            Key::Type => {
                item.kind = Some(self.name()?.map_or(SegmentKind::Other, SegmentKind::of));
            }
            Key::Event => item.event = Some(self.event_field()?),
            Key::UserId | Key::DeviceId => {
                self.value()?;
                item.identity = true;
            }
            Key::PersonProperties => {
                self.value()?;
                item.person = true;
            }
            Key::Events | Key::Batch | Key::Other => self.value()?,
        }
        Some(())
    }

    /// A counted field's value: `Some(Some(text))` for a plain string, `Some(None)` for any other
    /// value the serde path reads without fail; `None` for an escaped string and for numbers
    /// that could be out of range (the serde path reads those as numbers and may refuse them).
    fn name(&mut self) -> Option<Option<&'a str>> {
        match self.peek()? {
            b'"' => {
                let text = self.string()??;
                // The body is UTF-8 and a string's quotes are ASCII: this cannot fail.
                std::str::from_utf8(text).ok().map(Some)
            }
            b'-' | b'0'..=b'9' => self.small_integer().map(|()| None),
            // serde_json decodes the keys of a map it visits (not those of one it skips), and
            // refuses a lone surrogate there: escaped keys are its to judge.
            b'{' => self
                .object(|scan, name| {
                    name?;
                    scan.value()
                })
                .map(|()| None),
            _ => self.value().map(|()| None),
        }
    }

    /// An integer of at most 18 digits (it fits an `i64` and a `u64`), and nothing else.
    fn small_integer(&mut self) -> Option<()> {
        let start = self.at;
        self.number()?;
        let text = self.bytes.get(start..self.at)?;
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        (digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit)).then_some(())
    }

    /// `event` in a PostHog event: a name, or (in a CDP webhook body) an object whose own
    /// `event` is the name.
    fn event_field(&mut self) -> Option<EventField> {
        if self.peek()? == b'{' {
            let mut posthog = false;
            self.object(|scan, name| {
                if key_of(name?)? == Key::Event {
                    posthog = scan.name()?.is_some_and(accept::posthog_accepts);
                    Some(())
                } else {
                    scan.value()
                }
            })?;
            return Some(EventField::Object { posthog });
        }
        Some(match self.name()? {
            Some(n) => EventField::Name {
                name: accept::event_name(n).is_some(),
                posthog: accept::posthog_accepts(n),
            },
            None => EventField::Other,
        })
    }

    /// Any value, checked and skipped.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(|scan, _| scan.value()),
            b'[' => self.array(Self::value),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        // A digit after a leading zero ("01") is not a delimiter: the container refuses it.
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// A string at its opening quote, checked (escapes as JSON defines them, no control bytes);
    /// its content when it has no escapes.
    fn string(&mut self) -> Option<Plain<'a>> {
        let bytes = self.bytes;
        let start = self.at + 1;
        let mut at = start;
        let mut plain = true;
        loop {
            while let Some(chunk) = bytes.get(at..at + 8) {
                let found = special(word(chunk));
                if found != 0 {
                    at += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                at += 8;
            }
            match *bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(plain.then(|| &bytes[start..at]));
                }
                b'\\' => {
                    plain = false;
                    at = escape(bytes, at + 1)?;
                }
                0..0x20 => return None,
                _ => at += 1,
            }
        }
    }
}

/// Past the escape whose letter is at `at`: `\" \\ \/ \b \f \n \r \t` or `\u` and four hex
/// digits (which code point they name is not checked when a value is skipped, by either path).
fn escape(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 1),
        b'u' => bytes
            .get(at + 1..at + 5)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(at + 5),
        _ => None,
    }
}

fn word(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is a quote, a backslash or below 0x20. Only the lowest
/// set bit is exact (a borrow can set bits above it), which is the one the scan uses.
fn special(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (zero(quote) | zero(backslash) | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found_at_their_place() {
        for at in 0..8 {
            for byte in [b'"', b'\\', 0x00, 0x1f] {
                let mut chunk = *b"abcdefgh";
                chunk[at] = byte;
                let found = special(word(&chunk));
                assert_eq!(found.trailing_zeros() / 8, at as u32, "{byte:#x} at {at}");
            }
        }
        // Bytes that are not special, UTF-8 continuation bytes included.
        assert_eq!(special(word("é~\u{7f}!#[]".as_bytes())), 0);
        assert_eq!(special(word(b"\x20\x21\x7f\x80\xff\xc3\xa9/")), 0);
    }

    #[test]
    fn the_usual_bodies_are_counted_here() {
        let amp = br#"{"api_key":"k","events":[{"event_type":"a","n":[1,-2.5e3,{"x":null}]},{"event_type":" "},{"user_id":"u"}]}"#;
        assert_eq!(
            inspect(Provider::Amplitude, amp, 10),
            Some(BatchSummary {
                received: 3,
                accepted: 1,
                dropped: 2
            })
        );
        let seg = br#" [ {"type":"track","event":"Signed Up"}, {"type":"identify"}, {"type":"page","event":null} ] "#;
        assert_eq!(
            inspect(Provider::Segment, seg, 10),
            Some(BatchSummary {
                received: 3,
                accepted: 2,
                dropped: 1
            })
        );
        let esc = br#"{"batch":[{"event":"$pageview","properties":{"q":"a \"b\" \u00e9\/"}}]}"#;
        assert!(inspect(Provider::Posthog, esc, 10).is_some());
    }

    #[test]
    fn anything_unusual_is_left_to_the_serde_path() {
        for body in [
            &br#"{"events":[{"event\u005ftype":"a"}]}"#[..],
            br#"{"events":[{"event_type":5e0}]}"#,
            br#"{"events":[{"event_type":1234567890123456789}]}"#,
            br#"{"events":[{"event":{"event\u0020":"a"}}]}"#,
            br#"{"events":[{"type":{"\ud800":"a"}}]}"#,
            br#"{"events":[{"event_type":"a\u0062"}]}"#,
            br#"{"events":[],"events":[]}"#,
            br#"{"device":"single"}"#,
            br#"{"events":[1]}"#,
            br#"{"events":[{"a":01}]}"#,
            br#"{"events":[{"a":1.}]}"#,
            br#"{"events":[{"a":"\x"}]}"#,
            br#"{"events":[{"a":"tab	in"}]}"#,
            br#"{"events":[{"a":1},]}"#,
            br#"{"events":[{"a":nul}]}"#,
            br#"{"events":[]} x"#,
            b"",
            b"\"events\"",
        ] {
            assert_eq!(
                inspect(Provider::Amplitude, body, 10),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many = format!("[{}]", [r#"{"event_type":"a"}"#; 11].join(","));
        assert_eq!(inspect(Provider::Amplitude, many.as_bytes(), 10), None);
        let deep = format!(
            r#"{{"events":[{{"a":{}{}}}]}}"#,
            "[".repeat(accept::MAX_NESTING),
            "]".repeat(accept::MAX_NESTING)
        );
        assert_eq!(inspect(Provider::Amplitude, deep.as_bytes(), 10), None);
    }
}
