//! The body check per core (criterion): counting and checking Amplitude batches of ~400-byte
//! events with [`gf_receiver::payload::inspect`] (the byte scanner, falling back to serde),
//! beside the serde path alone ([`gf_receiver::payload::inspect_serde`], the check before the
//! scanner) and two references on the same bytes:
//! serde_json skipping the body without looking at it (the floor of any serde-based walk) and
//! UTF-8 validation (what memory speed looks like). Throughput is in bytes.

mod common;

use common::Template;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gf_receiver::payload::{inspect, inspect_serde};
use gf_schemas::Provider;

fn body_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("body_check");
    for events in [1usize, 10, 100, 1000] {
        let template = Template::new(events);
        let body = template.body.clone();
        group.throughput(Throughput::Bytes(body.len() as u64));
        let counted = inspect(Provider::Amplitude, &body, 10_000).expect("a valid batch");
        assert_eq!(counted.accepted, template.events);
        group.bench_with_input(BenchmarkId::new("inspect", events), &body, |b, body| {
            b.iter(|| inspect(Provider::Amplitude, std::hint::black_box(body), 10_000))
        });
        group.bench_with_input(BenchmarkId::new("serde_path", events), &body, |b, body| {
            b.iter(|| inspect_serde(Provider::Amplitude, std::hint::black_box(body), 10_000))
        });
        group.bench_with_input(BenchmarkId::new("serde_skip", events), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("utf8", events), &body, |b, body| {
            b.iter(|| std::str::from_utf8(std::hint::black_box(body)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, body_check);
criterion_main!(benches);
