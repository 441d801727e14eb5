//! What the mapper targets share.

use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use uuid::Uuid;

/// Maps `body` as a raw record of `provider` twice: same outcome, same ids, serializable events.
pub fn check_mapping(provider: Provider, body: &[u8]) {
    let meta = RawRecordMeta {
        connection_id: Uuid::from_u128(1),
        product_id: Uuid::from_u128(2),
        provider,
        received_at_ms: 1_779_105_600_000,
        request_id: "fuzz".into(),
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
    let first = map_record(&input, &MapOptions::default());
    let second = map_record(&input, &MapOptions::default());
    match (first, second) {
        (Ok(a), Ok(b)) => {
            let ids = |m: &gf_normalizer::mapping::Mapped| {
                m.events
                    .iter()
                    .map(|e| (e.id, e.insert_id.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&a), ids(&b));
            for event in &a.events {
                assert!(!event.event_type.is_empty());
                assert!(serde_json::to_vec(event).is_ok());
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("the same record mapped once and failed once"),
    }
}
