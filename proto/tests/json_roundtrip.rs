//! Round trips of the benchmark fixture through prost and serde_json, and a regression test for the
//! seed benchmark's bug (timing `prost::Message::decode` on JSON bytes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/mod.rs"]
mod common;

use common::{JsonChange, JsonRecord, JsonRecordBatch, SIZES, UnknownOp, batch};
use prost::Message as _;
use zone_proto::zone::v1::{Change, Record, RecordBatch, change};

#[test]
fn protobuf_round_trip_is_exact() {
    for n in SIZES {
        let original = batch(n);
        let bytes = original.encode_to_vec();
        let back = RecordBatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, original, "{n} records");
        assert_eq!(back.records.len(), n);
    }
}

#[test]
fn json_round_trip_is_exact() {
    for n in SIZES {
        let original = batch(n);
        let bytes = serde_json::to_vec(&JsonRecordBatch::from(&original)).unwrap();
        let mirror: JsonRecordBatch = serde_json::from_slice(&bytes).unwrap();
        let back = RecordBatch::try_from(mirror).unwrap();
        assert_eq!(back, original, "{n} records");
    }
}

#[test]
fn json_follows_proto3_json_shape() {
    let one = batch(1);
    let text = serde_json::to_string(&JsonRecordBatch::from(&one)).unwrap();
    // Empty class and empty `changes` are omitted like proto3 JSON defaults; `type` keeps its proto name.
    assert_eq!(
        text,
        r#"{"zone":"example.com.","serial":2024112401,"records":[{"name":"host0.example.com.","type":"A","ttl":300,"rdata":"192.0.2.1"}],"last":true}"#
    );
}

#[test]
fn change_ops_round_trip_by_name() {
    let rec = |i| Record::from(JsonRecord::from(&common::record(i)));
    let original = RecordBatch {
        zone: "example.com.".to_owned(),
        serial: 7,
        records: Vec::new(),
        changes: vec![
            Change {
                op: change::Op::Create as i32,
                record: Some(rec(0)),
                previous: None,
            },
            Change {
                op: change::Op::Edit as i32,
                record: Some(rec(1)),
                previous: Some(rec(2)),
            },
            Change {
                op: change::Op::Delete as i32,
                record: Some(rec(3)),
                previous: None,
            },
        ],
        last: true,
    };
    let text = serde_json::to_string(&JsonRecordBatch::from(&original)).unwrap();
    assert!(text.contains(r#""op":"EDIT""#), "{text}");
    let mirror: JsonRecordBatch = serde_json::from_str(&text).unwrap();
    assert_eq!(RecordBatch::try_from(mirror).unwrap(), original);

    let bad = JsonChange {
        op: "UPSERT".to_owned(),
        record: None,
        previous: None,
    };
    assert_eq!(Change::try_from(bad), Err(UnknownOp("UPSERT".to_owned())));
}

/// The seed benchmark fed JSON bytes to `prost::Message::decode` and discarded the result. For this
/// data the very first byte, `{` (0x7B), parses as a tag for field 15 with wire type 3 (start group),
/// which prost rejects, so the "decode" it timed was an early error return, not a decode.
#[test]
fn decoding_json_bytes_as_protobuf_fails() {
    assert_eq!(b'{', 0x7B);
    assert_eq!((0x7B >> 3, 0x7B & 7), (15, 3));
    for n in SIZES {
        let json_bytes = serde_json::to_vec(&JsonRecordBatch::from(&batch(n))).unwrap();
        let err = RecordBatch::decode(json_bytes.as_slice())
            .expect_err("JSON bytes must not decode as a protobuf RecordBatch");
        eprintln!("{n} records: {err}");
    }
}
