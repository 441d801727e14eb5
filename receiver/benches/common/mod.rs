//! The request bodies the receiver benchmarks send: Amplitude HTTP V2 batches of realistic
//! ~400-byte events.

use bytes::Bytes;
use serde_json::json;

/// Where each request's sequence number is written into the body's insert ids.
const MARK: &str = "@@@@@@@@";

/// An Amplitude batch of `events` events of about 400 bytes each, with a placeholder in every
/// insert id so each request's ids are distinct.
pub struct Template {
    pub body: Vec<u8>,
    marks: Vec<usize>,
    pub events: usize,
}

impl Template {
    pub fn new(events: usize) -> Self {
        let list: Vec<_> = (0..events)
            .map(|i| {
                json!({
                    "user_id": format!("user-{:05}", i % 5000),
                    "device_id": "a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
                    "event_type": "purchase",
                    "time": 1_747_569_600_000u64 + i as u64,
                    "insert_id": format!("{MARK}-{i:05}"),
                    "platform": "Web",
                    "country": "Germany",
                    "revenue": 49.0,
                    "event_properties": {"plan": "pro", "seats": 5, "coupon": null,
                        "page": "/checkout/confirm", "experiment": "pricing-b"},
                    "user_properties": {"email": format!("user{i}@example.com"),
                        "company": "Example GmbH", "role": "admin"}
                })
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "api_key": "bench", "events": list })).unwrap();
        let marks = body
            .windows(MARK.len())
            .enumerate()
            .filter(|(_, w)| *w == MARK.as_bytes())
            .map(|(i, _)| i)
            .collect();
        Template {
            body,
            marks,
            events,
        }
    }

    /// The body with `sequence` stamped into every insert id.
    #[allow(dead_code)] // the criterion bench checks the template's own body
    pub fn body(&self, sequence: u64) -> Bytes {
        let mut body = self.body.clone();
        let stamp = format!("{sequence:08x}");
        for &at in &self.marks {
            body[at..at + MARK.len()].copy_from_slice(stamp.as_bytes());
        }
        Bytes::from(body)
    }
}
