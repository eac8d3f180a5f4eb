//! Protobuf (prost) vs JSON (serde_json) encode/decode of the same `zone.v1.RecordBatch` data.
//!
//! Run: `cargo bench -p zone-proto --bench codec`. Every decode result is unwrapped inside the timed
//! loop and checked for equality with the original before timing, so a codec that fails cannot look
//! fast (the seed benchmark decoded JSON bytes as protobuf and ignored the error).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{JsonRecordBatch, SIZES, batch};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prost::Message as _;
use std::hint::black_box;
use std::time::Duration;
use zone_proto::zone::v1::RecordBatch;

fn codec(c: &mut Criterion) {
    for n in SIZES {
        let proto = batch(n);
        let json = JsonRecordBatch::from(&proto);
        let proto_bytes = proto.encode_to_vec();
        let json_bytes = serde_json::to_vec(&json).expect("serialize JSON");

        // Check outside the timed loop that both codecs round-trip the same data exactly.
        let proto_back = RecordBatch::decode(proto_bytes.as_slice()).expect("decode protobuf");
        assert_eq!(proto_back, proto, "protobuf round trip ({n} records)");
        let json_back: JsonRecordBatch =
            serde_json::from_slice(&json_bytes).expect("deserialize JSON");
        assert_eq!(json_back, json, "JSON round trip ({n} records)");
        assert_eq!(
            RecordBatch::try_from(json_back).expect("convert JSON mirror"),
            proto,
            "JSON mirror converts back to the prost value ({n} records)"
        );
        eprintln!(
            "records={n} protobuf_bytes={} json_bytes={} json/protobuf={:.2}",
            proto_bytes.len(),
            json_bytes.len(),
            json_bytes.len() as f64 / proto_bytes.len() as f64
        );

        let mut g = c.benchmark_group(format!("codec/{n}"));
        g.bench_function(BenchmarkId::new("encode", "protobuf"), |b| {
            b.iter(|| black_box(&proto).encode_to_vec())
        });
        g.bench_function(BenchmarkId::new("encode", "json"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&json)).unwrap())
        });
        g.bench_function(BenchmarkId::new("decode", "protobuf"), |b| {
            b.iter(|| RecordBatch::decode(black_box(proto_bytes.as_slice())).unwrap())
        });
        g.bench_function(BenchmarkId::new("decode", "json"), |b| {
            b.iter(|| serde_json::from_slice::<JsonRecordBatch>(black_box(&json_bytes)).unwrap())
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // Short runs keep the whole suite around a minute; `--measurement-time` etc. still override.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
