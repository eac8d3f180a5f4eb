//! Shared fixture for the protobuf-vs-JSON codec benchmark and its round-trip tests: deterministic zone
//! data plus serde mirrors of the prost types (shared via `#[path]` so both measure the same bytes).
//!
//! The mirrors follow the proto3 JSON mapping closely enough to be a fair comparison: lowerCamelCase
//! field names, `uint32` as JSON numbers, enums as their names, and default values omitted (prost also
//! omits them on the wire).

// Each including target uses a different subset of these items.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use zone_proto::zone::v1::{Change, Record, RecordBatch, change};

/// Serde mirror of `zone.v1.Record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub class: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rdata: String,
}

/// Serde mirror of `zone.v1.Change`; `op` is the enum value name, as in proto3 JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonChange {
    #[serde(default = "op_unspecified", skip_serializing_if = "is_op_unspecified")]
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<JsonRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<JsonRecord>,
}

/// Serde mirror of `zone.v1.RecordBatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonRecordBatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub serial: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<JsonRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<JsonChange>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub last: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn op_unspecified() -> String {
    change::Op::Unspecified.as_str_name().to_owned()
}

fn is_op_unspecified(op: &str) -> bool {
    op == change::Op::Unspecified.as_str_name()
}

impl From<&Record> for JsonRecord {
    fn from(r: &Record) -> Self {
        Self {
            name: r.name.clone(),
            r#type: r.r#type.clone(),
            class: r.class.clone(),
            ttl: r.ttl,
            rdata: r.rdata.clone(),
        }
    }
}

impl From<JsonRecord> for Record {
    fn from(r: JsonRecord) -> Self {
        Self {
            name: r.name,
            r#type: r.r#type,
            class: r.class,
            ttl: r.ttl,
            rdata: r.rdata,
        }
    }
}

impl From<&Change> for JsonChange {
    fn from(c: &Change) -> Self {
        // An out-of-range op (possible on the wire) maps to its number, like proto3 JSON does.
        let op = change::Op::try_from(c.op)
            .map(|op| op.as_str_name().to_owned())
            .unwrap_or_else(|_| c.op.to_string());
        Self {
            op,
            record: c.record.as_ref().map(JsonRecord::from),
            previous: c.previous.as_ref().map(JsonRecord::from),
        }
    }
}

/// Error for a JSON `Change.op` that is neither an enum name nor a number.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownOp(pub String);

impl TryFrom<JsonChange> for Change {
    type Error = UnknownOp;

    fn try_from(c: JsonChange) -> Result<Self, UnknownOp> {
        let op = match change::Op::from_str_name(&c.op) {
            Some(op) => op as i32,
            None => c.op.parse::<i32>().map_err(|_| UnknownOp(c.op.clone()))?,
        };
        Ok(Self {
            op,
            record: c.record.map(Record::from),
            previous: c.previous.map(Record::from),
        })
    }
}

impl From<&RecordBatch> for JsonRecordBatch {
    fn from(b: &RecordBatch) -> Self {
        Self {
            zone: b.zone.clone(),
            serial: b.serial,
            records: b.records.iter().map(JsonRecord::from).collect(),
            changes: b.changes.iter().map(JsonChange::from).collect(),
            last: b.last,
        }
    }
}

impl TryFrom<JsonRecordBatch> for RecordBatch {
    type Error = UnknownOp;

    fn try_from(b: JsonRecordBatch) -> Result<Self, UnknownOp> {
        Ok(Self {
            zone: b.zone,
            serial: b.serial,
            records: b.records.into_iter().map(Record::from).collect(),
            changes: b
                .changes
                .into_iter()
                .map(Change::try_from)
                .collect::<Result<_, _>>()?,
            last: b.last,
        })
    }
}

/// Record `i` of the fixture zone: cycles A, AAAA, MX, TXT under `example.com.` with varied TTLs.
/// Class is left empty ("IN"), as the server sends it.
pub fn record(i: usize) -> Record {
    let (name, r#type, ttl, rdata) = match i % 4 {
        0 => (
            format!("host{i}.example.com."),
            "A",
            300,
            format!("192.0.2.{}", i % 254 + 1),
        ),
        1 => (
            format!("host{i}.example.com."),
            "AAAA",
            300,
            format!("2001:db8::{:x}", i + 1),
        ),
        2 => (
            format!("dept{i}.example.com."),
            "MX",
            3600,
            format!("{} mail{}.example.com.", 10 * (i % 3 + 1), i % 7),
        ),
        _ => (
            format!("dept{i}.example.com."),
            "TXT",
            3600,
            format!(
                "\"v=spf1 ip4:198.51.100.{} include:_spf.example.com ~all\"",
                i % 254 + 1
            ),
        ),
    };
    Record {
        name,
        r#type: r#type.to_owned(),
        class: String::new(),
        ttl,
        rdata,
    }
}

/// A full-transfer batch of `n` records of `example.com.` (deterministic).
pub fn batch(n: usize) -> RecordBatch {
    RecordBatch {
        zone: "example.com.".to_owned(),
        serial: 2_024_112_401,
        records: (0..n).map(record).collect(),
        changes: Vec::new(),
        last: true,
    }
}

/// Batch sizes the benchmark and tests cover.
pub const SIZES: [usize; 3] = [1, 100, 1_000];
