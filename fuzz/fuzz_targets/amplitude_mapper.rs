//! The Amplitude mapper on arbitrary bytes: it maps or refuses (never panics), and mapping the same
//! record twice gives the same events.
#![no_main]

use gf_fuzz::check_mapping;
use gf_schemas::Provider;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check_mapping(Provider::Amplitude, data));
