//! The receiver's body check on arbitrary bytes, raw and as a gzip body: it answers (never
//! panics), its counts add up, its fast path gives exactly what the serde path gives, and
//! decoding stops at the limit.
#![no_main]

use gf_receiver::payload::{PayloadError, gunzip, inspect, inspect_serde};
use gf_schemas::Provider;
use libfuzzer_sys::fuzz_target;

const MAX_EVENTS: usize = 100;
const LIMIT: usize = 64 * 1024;

fn check(body: &[u8]) {
    for provider in Provider::all() {
        let verdict = inspect(provider, body, MAX_EVENTS);
        assert_eq!(verdict, inspect_serde(provider, body, MAX_EVENTS));
        match verdict {
            Ok(summary) => {
                assert_eq!(summary.accepted + summary.dropped, summary.received);
                assert!(summary.received <= MAX_EVENTS);
            }
            Err(PayloadError::TooManyEvents { limit }) => assert_eq!(limit, MAX_EVENTS),
            Err(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    match gunzip(data, LIMIT) {
        Ok(decoded) => {
            assert!(decoded.len() <= LIMIT);
            check(&decoded);
        }
        Err(PayloadError::TooLarge { limit }) => assert_eq!(limit, LIMIT),
        Err(_) => {}
    }
});
