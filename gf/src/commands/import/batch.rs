//! Request-sized batch bodies in the shape the receiver takes for each provider, and the
//! receiver's own verdict on every line before it joins one.

use gf_receiver::payload::{self, BatchSummary, PayloadError};
use gf_schemas::Provider;

/// What a provider's batch wraps its events in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub open: &'static str,
    pub close: &'static str,
}

/// The batch shape each provider's senders use, among those the receiver accepts.
pub fn envelope(provider: Provider) -> Envelope {
    match provider {
        // Export-format events, as Amplitude's Webhook destination sends them: an array.
        Provider::Amplitude => Envelope {
            open: "[",
            close: "]",
        },
        // Segment's HTTP API batch and PostHog's capture batch.
        Provider::Segment | Provider::Posthog => Envelope {
            open: "{\"batch\":[",
            close: "]}",
        },
        Provider::Api => Envelope {
            open: "{\"events\":[",
            close: "]}",
        },
    }
}

/// The receiver's verdict on one line sent alone in its provider's envelope: the same checks a
/// live request gets (UTF-8, JSON, nesting, the provider's shape; the schema for `api`), so a
/// batch of lines that passed is never refused.
pub struct LineCheck {
    provider: Provider,
    envelope: Envelope,
    scratch: Vec<u8>,
}

impl LineCheck {
    pub fn new(provider: Provider) -> Self {
        LineCheck {
            provider,
            envelope: envelope(provider),
            scratch: Vec::new(),
        }
    }

    /// The line's counts, or why the receiver would refuse it, said of a line.
    pub fn check(&mut self, line: &[u8]) -> Result<BatchSummary, String> {
        if line.trim_ascii_start().first() != Some(&b'{') {
            return Err("not a JSON object".into());
        }
        self.scratch.clear();
        self.scratch
            .extend_from_slice(self.envelope.open.as_bytes());
        self.scratch.extend_from_slice(line);
        self.scratch
            .extend_from_slice(self.envelope.close.as_bytes());
        payload::inspect(self.provider, &self.scratch, 1).map_err(|e| reason(&e))
    }
}

/// A refusal worded for one line: the receiver words it for a body, with positions and indexes
/// of the envelope.
fn reason(error: &PayloadError) -> String {
    let without_position = |text: &str| match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    };
    // "[0]: ...", "batch[0]: ...", "events[0].field: ...": the index is always 0.
    let without_index = |text: &str| match text.split_once("[0]") {
        Some((_, rest)) => rest.trim_start_matches(['.', ':', ' ']).to_owned(),
        None => text.to_owned(),
    };
    let text = match error {
        PayloadError::InvalidJson(detail) => {
            format!("not valid JSON: {}", without_position(detail))
        }
        PayloadError::WrongShape { detail, .. } => {
            format!("not an event the receiver takes: {}", without_index(detail))
        }
        PayloadError::InvalidEvents(problems) => format!(
            "not a valid public API event: {}",
            problems
                .iter()
                .map(|p| without_index(&p.to_string()))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    };
    text.replace("the body", "the line")
}

/// Lines gathered into one body of at most `max_bytes` and `max_events`.
pub struct BatchBuilder {
    envelope: Envelope,
    max_bytes: usize,
    max_events: usize,
    body: Vec<u8>,
    events: usize,
}

impl BatchBuilder {
    /// `max_events` is at least 1.
    pub fn new(provider: Provider, max_bytes: usize, max_events: usize) -> Self {
        BatchBuilder {
            envelope: envelope(provider),
            max_bytes,
            max_events: max_events.max(1),
            body: Vec::new(),
            events: 0,
        }
    }

    /// The longest line a batch can hold on its own; longer ones cannot be sent at all.
    pub fn max_line(&self) -> usize {
        self.max_bytes
            .saturating_sub(self.envelope.open.len() + self.envelope.close.len())
    }

    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_full(&self) -> bool {
        self.events >= self.max_events
    }

    /// Whether a line of `len` bytes joins this batch without passing a limit.
    pub fn has_room(&self, len: usize) -> bool {
        let with_line = if self.events == 0 {
            self.envelope.open.len() + len
        } else {
            self.body.len() + 1 + len
        };
        !self.is_full() && with_line + self.envelope.close.len() <= self.max_bytes
    }

    /// Adds a line; the caller asked [`Self::has_room`] first (or the batch is empty).
    pub fn push(&mut self, line: &[u8]) {
        if self.events == 0 {
            self.body.extend_from_slice(self.envelope.open.as_bytes());
        } else {
            self.body.push(b',');
        }
        self.body.extend_from_slice(line);
        self.events += 1;
    }

    /// The finished body, if any line was added; the builder starts over.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.events == 0 {
            return None;
        }
        self.body.extend_from_slice(self.envelope.close.as_bytes());
        self.events = 0;
        let capacity = self.body.len();
        Some(std::mem::replace(
            &mut self.body,
            Vec::with_capacity(capacity),
        ))
    }
}

#[cfg(test)]
mod tests {
    use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
    use gf_schemas::raw::RawRecordMeta;
    use uuid::Uuid;

    use super::*;

    /// An Amplitude Export API line as its files hold them.
    const EXPORT_LINE: &str = r#"{"$insert_id":"a1b2","$schema":12,"amplitude_id":123,"app":4567,"client_event_time":"2024-01-01 11:59:59.900000","data":{},"device_id":"d-1","event_id":7,"event_properties":{"$revenue":49.5,"plan":"pro"},"event_time":"2024-01-01 12:00:00.123000","event_type":"purchase","groups":{"organization":"org-1"},"server_upload_time":"2024-01-01 12:00:01.000000","session_id":1704110399000,"user_id":"user-1","user_properties":{"email":"ada@example.com"},"uuid":"9f8e7d6c-0000-4000-8000-000000000001"}"#;

    fn amplitude(lines: &[&str], max_bytes: usize, max_events: usize) -> Vec<Vec<u8>> {
        let mut builder = BatchBuilder::new(Provider::Amplitude, max_bytes, max_events);
        let mut bodies = Vec::new();
        for line in lines {
            if !builder.has_room(line.len()) {
                bodies.extend(builder.take());
            }
            builder.push(line.as_bytes());
        }
        bodies.extend(builder.take());
        bodies
    }

    #[test]
    fn batches_close_at_the_event_limit_and_the_byte_limit() {
        let lines = ["{\"event_type\":\"a\"}"; 5];
        let by_events = amplitude(&lines, 1000, 2);
        assert_eq!(by_events.len(), 3);
        assert_eq!(
            by_events[0],
            b"[{\"event_type\":\"a\"},{\"event_type\":\"a\"}]".to_vec()
        );
        // 18-byte lines: "[" + 18 + "]" is 20, each further line 19 more: three fill 58.
        let by_bytes = amplitude(&lines, 58, 100);
        assert_eq!(by_bytes.iter().map(Vec::len).collect::<Vec<_>>(), [58, 39]);
        let by_bytes = amplitude(&lines, 57, 100);
        assert_eq!(
            by_bytes.iter().map(Vec::len).collect::<Vec<_>>(),
            [39, 39, 20]
        );
        for body in by_events.iter().chain(&by_bytes) {
            let summary = payload::inspect(Provider::Amplitude, body, 100).unwrap();
            assert_eq!(summary.received, summary.accepted);
        }
        assert!(amplitude(&[], 100, 10).is_empty());
    }

    #[test]
    fn the_longest_line_fills_a_batch_alone() {
        let builder = BatchBuilder::new(Provider::Segment, 100, 10);
        assert_eq!(builder.max_line(), 100 - "{\"batch\":[]}".len());
        assert!(builder.has_room(builder.max_line()));
        assert!(!builder.has_room(builder.max_line() + 1));
    }

    #[test]
    fn every_provider_gets_a_body_its_receiver_counts() {
        let cases = [
            (
                Provider::Amplitude,
                vec![EXPORT_LINE, r#"{"user_id":"u","user_properties":{}}"#],
                (2, 1, 1),
            ),
            (
                Provider::Segment,
                vec![
                    r#"{"type":"track","event":"Order Completed","userId":"u","messageId":"m1"}"#,
                    r#"{"type":"identify","userId":"u","traits":{"email":"a@b.c"}}"#,
                    r#"{"type":"page","name":"Pricing","anonymousId":"x"}"#,
                ],
                (3, 2, 1),
            ),
            (
                Provider::Posthog,
                vec![
                    r#"{"event":"signed up","distinct_id":"u","properties":{},"timestamp":"2024-01-01T12:00:00Z","uuid":"0190"}"#,
                    r#"{"event":"$identify","distinct_id":"u"}"#,
                ],
                (2, 1, 1),
            ),
            (
                Provider::Api,
                vec![r#"{"eventType":"purchase","externalUserId":"u","insertId":"i1"}"#],
                (1, 1, 0),
            ),
        ];
        for (provider, lines, (received, accepted, dropped)) in cases {
            let mut check = LineCheck::new(provider);
            let mut builder = BatchBuilder::new(provider, 10_000, 100);
            for line in &lines {
                check.check(line.as_bytes()).unwrap();
                builder.push(line.as_bytes());
            }
            let body = builder.take().unwrap();
            assert_eq!(
                payload::inspect(provider, &body, 100),
                Ok(BatchSummary {
                    received,
                    accepted,
                    dropped
                }),
                "{provider}"
            );
        }
    }

    #[test]
    fn malformed_lines_are_told_in_terms_of_a_line() {
        let mut amplitude = LineCheck::new(Provider::Amplitude);
        for (line, needle) in [
            (&b"not json"[..], "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (b"42", "not a JSON object"),
            (b"{\"event_type\":\"x\"", "not valid JSON"),
            (b"{\"a\":\"\xff\"}", "not valid JSON"),
        ] {
            let reason = amplitude.check(line).unwrap_err();
            assert!(reason.contains(needle), "{line:?}: {reason}");
            assert!(!reason.contains("column"), "{reason}");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(100), "}".repeat(100));
        assert!(amplitude.check(deep.as_bytes()).is_err());

        let mut api = LineCheck::new(Provider::Api);
        let reason = api
            .check(br#"{"eventType":"x","eventAt":"soon"}"#)
            .unwrap_err();
        assert!(
            reason.starts_with("not a valid public API event: eventAt"),
            "{reason}"
        );
    }

    /// The normalizer reads Export-format fields itself (`event_time`, `$insert_id`,
    /// `event_properties.$revenue`), so an export line goes as it is: nothing is translated.
    #[test]
    fn export_lines_map_as_exported() {
        let mut builder = BatchBuilder::new(Provider::Amplitude, 10_000, 10);
        builder.push(EXPORT_LINE.as_bytes());
        let body = builder.take().unwrap();
        let meta = RawRecordMeta {
            connection_id: Uuid::from_u128(1),
            product_id: Uuid::from_u128(2),
            provider: Provider::Amplitude,
            received_at_ms: 1_800_000_000_000,
            request_id: "r".into(),
            content_type: Some("application/json".into()),
            traceparent: None,
        };
        let input = RawInput {
            body: &body,
            meta: &meta,
            topic: "gf.raw.v1",
            partition: 0,
            offset: 0,
        };
        let mapped = map_record(&input, &MapOptions::default()).unwrap();
        let [event] = mapped.events.as_slice() else {
            panic!("{mapped:?}");
        };
        assert_eq!(event.event_type, "purchase");
        assert_eq!(event.insert_id, "amplitude:a1b2");
        assert_eq!(event.external_user_id.as_deref(), Some("user-1"));
        assert_eq!(
            gf_schemas::time::format(&event.event_at),
            "2024-01-01T12:00:00.123Z"
        );
        assert_eq!(
            serde_json::to_value(&event.value).unwrap(),
            serde_json::json!(49.5)
        );
        assert_eq!(event.user_hints.email.as_deref(), Some("ada@example.com"));
        assert_eq!(event.external_organization_id.as_deref(), Some("org-1"));
        assert!(event.warnings.is_empty(), "{:?}", event.warnings);
    }
}
