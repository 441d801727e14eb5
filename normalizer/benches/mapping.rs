//! Throughput of the pure mapping library on one core: `cargo xtask bench normalizer`.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::raw::RawRecordMeta;
use uuid::Uuid;

/// The binaries' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;

fn mapping(c: &mut Criterion) {
    let meta = RawRecordMeta {
        connection_id: Uuid::from_u128(1),
        product_id: Uuid::from_u128(2),
        provider: Provider::Amplitude,
        received_at_ms: 1_779_105_600_000,
        request_id: "bench".into(),
        content_type: None,
        traceparent: None,
    };
    // The pure library alone (the target), then with the JSON encoding the consumer loop adds.
    for (name, encode) in [("mapping", false), ("mapping_encoded", true)] {
        let mut group = c.benchmark_group(name);
        for events in [1usize, 100, 1000] {
            let body = common::amplitude_batch(0, events);
            group.throughput(Throughput::Elements(events as u64));
            group.bench_function(format!("amplitude_{events}"), |b| {
                b.iter(|| {
                    let input = RawInput {
                        body: body.as_bytes(),
                        meta: &meta,
                        topic: "gf.raw.v1",
                        partition: 0,
                        offset: 0,
                    };
                    let mapped = map_record(&input, &MapOptions::default()).unwrap();
                    if encode {
                        mapped
                            .events
                            .iter()
                            .map(|e| serde_json::to_vec(e).unwrap().len())
                            .sum::<usize>()
                    } else {
                        mapped.events.len()
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, mapping);
criterion_main!(benches);
