//! Differential: on arbitrary bytes, what the receiver answers as accepted the normalizer turns
//! into that many events or per-event dead letters (the same check as the property test).
#![no_main]

#[path = "../../tests/tests/shared/counting.rs"]
mod counting;

use gf_schemas::Provider;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for provider in Provider::all() {
        counting::check_counting_agrees(provider, data, 100);
    }
});
