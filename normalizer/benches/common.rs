//! Realistic Amplitude batches for the benchmarks: ~400 bytes per event, distinct insert ids.

use serde_json::json;

const EVENT_TYPES: [&str; 4] = [
    "purchase",
    "Order Completed",
    "page_view",
    "subscription_cancelled",
];

pub fn amplitude_batch(batch: usize, events: usize) -> String {
    let events: Vec<_> = (0..events)
        .map(|i| {
            json!({
                "user_id": format!("user_{:06}", (batch * 7919 + i) % 50_000),
                "device_id": format!("3f2c9e1a-{:04x}-4b7d-9a11-{:012x}", i % 65536, batch),
                "event_type": EVENT_TYPES[i % 4],
                "time": 1_747_569_600_000i64 + (batch * 1000 + i) as i64,
                "insert_id": format!("ins-{batch}-{i}"),
                "revenue": if i % 4 == 0 { json!(49.0) } else { json!(null) },
                "event_properties": {"plan": "pro", "seats": 12, "source": "web", "campaign": "spring_2026"},
                "user_properties": {"email": format!("user{i}@example.com"), "first_name": "Ada", "last_name": "Lovelace"},
                "groups": {"organization": format!("org_{}", i % 100)}
            })
        })
        .collect();
    json!({ "events": events }).to_string()
}
