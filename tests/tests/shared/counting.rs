//! The receiver and the normalizer count the same body the same way: what the receiver answers
//! as accepted, the normalizer turns into that many canonical events or per-event dead letters;
//! nothing acknowledged is lost silently. Shared by the property test (`counting_agrees.rs`)
//! and the fuzz target `counting_agrees` (included by path, so both check one rule).

use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_receiver::payload::inspect;
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use uuid::Uuid;

/// Panics, saying how, when the receiver's answer for `body` and the normalizer's outcome
/// disagree.
pub fn check_counting_agrees(provider: Provider, body: &[u8], max_events: usize) {
    let Ok(summary) = inspect(provider, body, max_events) else {
        // Refused with 4xx: nothing was acknowledged, nothing is stored.
        return;
    };
    let meta = RawRecordMeta {
        connection_id: Uuid::from_u128(1),
        product_id: Uuid::from_u128(2),
        provider,
        received_at_ms: 1_779_105_600_000,
        request_id: "agree".into(),
        content_type: None,
        traceparent: None,
    };
    let input = RawInput {
        body,
        meta: &meta,
        topic: "gf.raw.v1",
        partition: 0,
        offset: 0,
    };
    let mapped = match map_record(&input, &MapOptions::default()) {
        Ok(mapped) => mapped,
        Err(e) if summary.accepted == 0 => {
            // A body with nothing accepted may still be unreadable as a whole (its dead letter
            // loses nothing that was acknowledged).
            let _ = e;
            return;
        }
        Err(e) => panic!(
            "the receiver accepted {} events of a body the normalizer cannot read: {e}",
            summary.accepted
        ),
    };
    let kept = mapped.events.len() + mapped.refused.len();
    assert!(
        kept >= summary.accepted,
        "accepted {} but only {} events and {} dead letters",
        summary.accepted,
        mapped.events.len(),
        mapped.refused.len()
    );
    assert_eq!(
        kept + mapped.dropped,
        summary.received,
        "received {} = events {} + dead letters {} + dropped {}",
        summary.received,
        mapped.events.len(),
        mapped.refused.len(),
        mapped.dropped
    );
    // Every event the mapper could read is counted the same way on both sides.
    let unreadable = mapped
        .refused
        .iter()
        .filter(|r| r.reason.contains("cannot be read"))
        .count();
    assert!(
        mapped.dropped + unreadable >= summary.dropped && mapped.dropped <= summary.dropped,
        "dropped: receiver {}, normalizer {} (+{unreadable} unreadable)",
        summary.dropped,
        mapped.dropped
    );
}
