//! What counts as an event, decided once for the receiver (which answers `accepted` and
//! `dropped`) and the normalizer (which maps the accepted ones): the two can never disagree, so
//! every event acknowledged as accepted becomes a canonical event or a dead letter of its own.
//!
//! | provider | accepted | dropped |
//! |---|---|---|
//! | Amplitude | an object whose `event_type` is an [`event_name`] | anything else (a user object of the Webhook destination's "Send Users") |
//! | Segment | `track` with an [`event_name`] in `event`; `page`; `screen` | `identify`, `group`, `alias`, other types, a `track` without a name |
//! | PostHog | an `event` that is an [`event_name`] and not a [`POSTHOG_TRAIT_ONLY`] event (in a CDP webhook body: `event.event`) | `$identify`, `$set`, `$groupidentify`, `$create_alias`, `$merge_dangerously`, events without a name, an engage body (one object with [`POSTHOG_PERSON_KEYS`] and no `event`) |
//! | public API | an `eventType` that is an [`event_name`] (the receiver refuses the request otherwise) | — |
//!
//! An event name is a JSON string that is not blank; it is used trimmed. Numbers, `null`,
//! objects and blank strings are not names.

/// Deepest nesting of arrays and objects a body may have. Below what the normalizer's parser
/// accepts (128) with room for the envelope, so every body the receiver accepts is readable.
pub const MAX_NESTING: usize = 100;

/// Whether `body` nests arrays and objects at most `max` deep (strings are skipped, escapes
/// included). One pass over the bytes, no allocation; inside strings, where most bytes of a
/// body are, memchr jumps to the next quote or backslash with SIMD instead of looking at every
/// byte (the receiver runs this on every body).
pub fn nesting_within(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // The string's end: the next quote not escaped by a backslash.
                at += 1;
                loop {
                    // An escape as the last byte leaves nothing to search: an open string.
                    let rest = body.get(at..).unwrap_or_default();
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => return true,
                        Some(i) if body[at + i] == b'\\' => at += i + 2,
                        Some(i) => {
                            at += i;
                            break;
                        }
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    true
}

/// The event name `value` stands for, trimmed; `None` when it is blank.
pub fn event_name(value: &str) -> Option<&str> {
    let name = value.trim();
    (!name.is_empty()).then_some(name)
}

/// PostHog events that only carry traits (person or group properties, aliases): dropped, like
/// Segment's `identify`.
pub const POSTHOG_TRAIT_ONLY: [&str; 5] = [
    "$identify",
    "$set",
    "$groupidentify",
    "$create_alias",
    "$merge_dangerously",
];

/// The keys of a PostHog engage body (`{"distinct_id", "$set": {...}}`, no `event`): one
/// message of person properties, received and dropped like `$identify`.
pub const POSTHOG_PERSON_KEYS: [&str; 3] = ["$set", "$set_once", "$unset"];

/// Whether a PostHog event named `name` is an event (not blank, not trait-only).
pub fn posthog_accepts(name: &str) -> bool {
    event_name(name).is_some_and(|n| !POSTHOG_TRAIT_ONLY.contains(&n))
}

/// Why a sender's events were dropped, in words, for the people reading a request log.
pub fn dropped_because(provider: crate::Provider) -> Option<&'static str> {
    use crate::Provider;
    match provider {
        Provider::Amplitude => Some(
            "objects without an event_type name (user objects of the Webhook destination) are not events",
        ),
        Provider::Segment => Some(
            "identify, group and alias messages (traits), unknown types and a track without an event name are not events",
        ),
        Provider::Posthog => Some(
            "$identify, $set, $groupidentify, $create_alias and $merge_dangerously (traits), engage bodies and events without a name are not events",
        ),
        // The receiver refuses a request with an event it would drop.
        Provider::Api => None,
    }
}

/// A Segment message type, as far as counting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    Track,
    PageOrScreen,
    /// `identify`, `group`, `alias` and unknown types: traits, not events.
    Other,
}

impl SegmentKind {
    pub fn of(kind: &str) -> Self {
        match kind {
            "track" => SegmentKind::Track,
            "page" | "screen" => SegmentKind::PageOrScreen,
            _ => SegmentKind::Other,
        }
    }

    /// Whether a message of this kind is an event; `has_name`: its `event` is an
    /// [`event_name`].
    pub fn accepts(self, has_name: bool) -> bool {
        match self {
            SegmentKind::Track => has_name,
            SegmentKind::PageOrScreen => true,
            SegmentKind::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte-at-a-time definition `nesting_within` must agree with.
    fn nesting_within_bytewise(body: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in body {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return false;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Bodies made of the bytes that matter (quotes, backslashes, brackets) and filler,
        /// at every depth limit around their own.
        #[test]
        fn the_fast_nesting_check_agrees_with_the_bytewise_one(
            body in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'['), Just(b']'), Just(b'{'),
                            Just(b'}'), Just(b'a'), Just(b','), any::<u8>()],
                0..200,
            ),
            max in 0usize..8,
        ) {
            prop_assert_eq!(nesting_within(&body, max), nesting_within_bytewise(&body, max));
        }
    }

    #[test]
    fn event_names() {
        assert_eq!(event_name("Signed Up"), Some("Signed Up"));
        assert_eq!(event_name("  Signed Up\t"), Some("Signed Up"));
        assert_eq!(event_name(""), None);
        assert_eq!(event_name(" \t\n"), None);
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(nesting_within(br#"{"events":[{"a":[1,[2]]}]}"#, 5));
        assert!(!nesting_within(br#"{"events":[{"a":[1,[2]]}]}"#, 4));
        // Brackets in strings, escaped quotes included, do not count.
        assert!(nesting_within(br#"{"a":"[[[[\"[[[[","b":"]]"}"#, 1));
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(!nesting_within(deep.as_bytes(), MAX_NESTING));
        assert!(nesting_within(b"", 0));
    }

    #[test]
    fn posthog_names() {
        for (name, accepted) in [
            ("Order Completed", true),
            ("$pageview", true),
            ("$screen", true),
            ("$autocapture", true),
            (" $identify ", false),
            ("$identify", false),
            ("$set", false),
            ("$groupidentify", false),
            ("$create_alias", false),
            ("$merge_dangerously", false),
            ("", false),
            ("  ", false),
        ] {
            assert_eq!(posthog_accepts(name), accepted, "{name:?}");
        }
    }

    #[test]
    fn segment_kinds() {
        let table = [
            ("track", true, true),
            ("track", false, false),
            ("page", false, true),
            ("screen", false, true),
            ("identify", true, false),
            ("group", true, false),
            ("alias", true, false),
            ("Track", true, false),
        ];
        for (kind, has_name, accepted) in table {
            assert_eq!(SegmentKind::of(kind).accepts(has_name), accepted, "{kind}");
        }
    }
}
