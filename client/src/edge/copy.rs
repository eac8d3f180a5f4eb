//! One zone as an edge holds it: records by owner name, built from a `ZoneSnapshot` and kept
//! current by applying `ZoneUpdate`s (canonical changes from the server, SOA serial EDIT included).
//!
//! Records are compared as the server prints them (canonical presentation form), so identity is
//! (owner, type, rdata) as on the server; the TTL is not part of it. Each record also keeps its
//! wire form (hickory-proto), made once when it enters the copy, for the DNS server
//! ([`super::dns`]), and the copy keeps the last updates applied ([`Diff`]) for IXFR.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use hickory_proto::rr::{Name, Record, RecordType};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;

use super::dns::wire;

/// Updates kept for IXFR (RFC 1995): at most this many serials back…
pub const HISTORY_SERIALS: usize = 1000;
/// …and at most this many changed records in all; older ones are dropped first, and a client
/// asking from before them gets the whole zone (RFC 1995 §4).
pub const HISTORY_RECORDS: usize = 100_000;

/// Why an update could not be applied to a copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The update does not continue the copy's serial.
    #[error("update to serial {update} does not follow serial {copy}")]
    Gap { copy: u32, update: u32 },
    /// A change does not fit the copy (it diverged from the server).
    #[error("change {index}: {reason}")]
    Diverged { index: usize, reason: String },
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    #[error("name `{0}` does not exist in the zone")]
    NxDomain(String),
    #[error("name `{name}` is outside zone `{zone}`")]
    OutsideZone { name: String, zone: String },
    #[error("invalid name `{0}`")]
    InvalidName(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    name: String,
    /// (type, rdata) → TTL and wire form.
    rrs: BTreeMap<(String, String), Rr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    ttl: u32,
    /// `None` for rdata hickory cannot represent: served by gRPC, left out of DNS answers.
    wire: Option<Record>,
}

/// One applied update as IXFR sends it (RFC 1995 §4): the SOAs before and after, and the records
/// deleted and added between them (SOAs excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) from: u32,
    pub(crate) old_soa: Option<pb::Record>,
    pub(crate) new_soa: Option<pb::Record>,
    pub(crate) deleted: Vec<pb::Record>,
    pub(crate) added: Vec<pb::Record>,
}

impl Diff {
    fn size(&self) -> usize {
        self.deleted.len() + self.added.len() + 2
    }
}

/// A zone copy; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneCopy {
    serial: u32,
    /// Keyed by [`name_key`], so descendants of a name are a key range.
    nodes: BTreeMap<String, Node>,
    records: usize,
    /// The last updates, oldest first, contiguous up to `serial`; bounded by [`HISTORY_SERIALS`]
    /// and [`HISTORY_RECORDS`].
    history: VecDeque<Diff>,
    history_records: usize,
}

impl ZoneCopy {
    /// A copy holding exactly the snapshot's records.
    pub fn from_snapshot(snapshot: &pb::ZoneSnapshot) -> Self {
        let mut copy = ZoneCopy {
            serial: snapshot.serial,
            ..ZoneCopy::default()
        };
        for record in &snapshot.records {
            copy.insert(record);
        }
        copy
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Applies an update in order. On error the copy is partly changed and must be replaced
    /// (by a snapshot): the edge resubscribes from serial 0.
    pub fn apply(&mut self, update: &pb::ZoneUpdate) -> Result<(), CopyError> {
        if u64::from(self.serial) + 1 != u64::from(update.serial) {
            return Err(CopyError::Gap {
                copy: self.serial,
                update: update.serial,
            });
        }
        let apex = name_key(&update.zone.to_ascii_lowercase());
        let old_soa = self.apex_soa(&apex);
        let mut deleted = Vec::new();
        let mut added = Vec::new();
        for (index, change) in update.changes.iter().enumerate() {
            let diverged = |reason: &str| CopyError::Diverged {
                index,
                reason: reason.to_owned(),
            };
            let record = change
                .record
                .as_ref()
                .ok_or_else(|| diverged("no record"))?;
            match Op::try_from(change.op) {
                Ok(Op::Create) => {
                    if !self.insert(record) {
                        return Err(diverged("created record exists already"));
                    }
                    added.push(record.clone());
                }
                Ok(Op::Delete) => {
                    if !self.remove(record) {
                        return Err(diverged("deleted record is missing"));
                    }
                    deleted.push(record.clone());
                }
                Ok(Op::Edit) => {
                    let previous = change
                        .previous
                        .as_ref()
                        .ok_or_else(|| diverged("EDIT without previous"))?;
                    if !self.remove(previous) {
                        return Err(diverged("edited record is missing"));
                    }
                    if !self.insert(record) {
                        return Err(diverged("edited record exists already"));
                    }
                    deleted.push(previous.clone());
                    added.push(record.clone());
                }
                _ => return Err(diverged("unknown operation")),
            }
        }
        let not_soa = |r: &pb::Record| !r.r#type.eq_ignore_ascii_case("SOA");
        deleted.retain(not_soa);
        added.retain(not_soa);
        self.remember(Diff {
            from: self.serial,
            old_soa,
            new_soa: self.apex_soa(&apex),
            deleted,
            added,
        });
        self.serial = update.serial;
        Ok(())
    }

    fn remember(&mut self, diff: Diff) {
        self.history_records += diff.size();
        self.history.push_back(diff);
        while self.history.len() > HISTORY_SERIALS || self.history_records > HISTORY_RECORDS {
            match self.history.pop_front() {
                Some(old) => self.history_records -= old.size(),
                None => break,
            }
        }
    }

    /// The updates from `serial` to the copy's serial, oldest first; `None` when the history does
    /// not reach back to `serial` (RFC 1995 §4: then the whole zone is sent).
    pub(crate) fn diffs_since(&self, serial: u32) -> Option<impl Iterator<Item = &Diff>> {
        let start = self.history.iter().position(|d| d.from == serial)?;
        Some(self.history.iter().skip(start))
    }

    fn apex_soa(&self, apex: &str) -> Option<pb::Record> {
        let node = self.nodes.get(apex)?;
        node.rrs
            .iter()
            .find(|((t, _), _)| t == "SOA")
            .map(|((t, rdata), rr)| record(&node.name, t, rr.ttl, rdata))
    }

    /// The whole copy as a snapshot (records in canonical name order).
    pub fn to_snapshot(&self, zone: &str) -> pb::ZoneSnapshot {
        pb::ZoneSnapshot {
            zone: zone.to_owned(),
            serial: self.serial,
            records: self.records().collect(),
        }
    }

    /// Every record, in canonical name order.
    pub fn records(&self) -> impl Iterator<Item = pb::Record> + '_ {
        self.nodes.values().flat_map(|node| {
            node.rrs
                .iter()
                .map(|((rtype, rdata), rr)| record(&node.name, rtype, rr.ttl, rdata))
        })
    }

    /// Every record's wire form, in canonical name order.
    pub(crate) fn wire_records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.nodes
            .values()
            .flat_map(|node| node.rrs.values().filter_map(|rr| rr.wire.as_ref()))
    }

    /// Whether `name` exists in the copy (RFC 4592 §2.2.2: has records, or is an empty
    /// non-terminal above names that have).
    pub(crate) fn name_exists(&self, name: &Name) -> bool {
        let key = wire_key(name);
        self.nodes.contains_key(&key) || self.has_descendant(&key)
    }

    /// Whether `name` owns records.
    pub(crate) fn has_node(&self, name: &Name) -> bool {
        self.nodes.contains_key(&wire_key(name))
    }

    /// The wire records of one type at `name`.
    pub(crate) fn rrset(&self, name: &Name, rtype: RecordType) -> Vec<&Record> {
        let Some(node) = self.nodes.get(&wire_key(name)) else {
            return Vec::new();
        };
        let rtype = rtype.to_string();
        node.rrs
            .range((rtype.clone(), String::new())..)
            .take_while(|((t, _), _)| *t == rtype)
            .filter_map(|(_, rr)| rr.wire.as_ref())
            .collect()
    }

    /// Every wire record at `name`.
    pub(crate) fn node_records(&self, name: &Name) -> Vec<&Record> {
        self.nodes
            .get(&wire_key(name))
            .map(|node| {
                node.rrs
                    .values()
                    .filter_map(|rr| rr.wire.as_ref())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The records at `name` (relative names are taken relative to `zone`), of type `rtype`
    /// (empty or `ANY`: all types). An existing name (or empty non-terminal) without such
    /// records gives an empty list (NODATA); a name that does not exist is
    /// [`LookupError::NxDomain`].
    pub fn lookup(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Vec<pb::Record>, LookupError> {
        let fqdn = absolute(name, zone).ok_or_else(|| LookupError::InvalidName(name.to_owned()))?;
        let key = name_key(&fqdn);
        let zone_key = name_key(zone);
        let inside =
            zone_key.is_empty() || key == zone_key || key.starts_with(&format!("{zone_key}\0"));
        if !inside {
            return Err(LookupError::OutsideZone {
                name: fqdn,
                zone: zone.to_owned(),
            });
        }
        let rtype = rtype.trim().to_ascii_uppercase();
        let all = rtype.is_empty() || rtype == "ANY";
        match self.nodes.get(&key) {
            Some(node) => Ok(node
                .rrs
                .iter()
                .filter(|((t, _), _)| all || *t == rtype)
                .map(|((t, rdata), rr)| record(&node.name, t, rr.ttl, rdata))
                .collect()),
            None if self.has_descendant(&key) => Ok(Vec::new()),
            None => Err(LookupError::NxDomain(fqdn)),
        }
    }

    fn has_descendant(&self, key: &str) -> bool {
        let prefix = format!("{key}\0");
        self.nodes
            .range::<str, _>((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .is_some_and(|(next, _)| key.is_empty() || next.starts_with(&prefix))
    }

    fn insert(&mut self, record: &pb::Record) -> bool {
        let name = record.name.to_ascii_lowercase();
        let node = self.nodes.entry(name_key(&name)).or_insert_with(|| Node {
            name,
            rrs: BTreeMap::new(),
        });
        let key = (record.r#type.to_ascii_uppercase(), record.rdata.clone());
        if node.rrs.contains_key(&key) {
            return false;
        }
        let wire = wire::record(&node.name, &key.0, record.ttl, &key.1);
        if wire.is_none() {
            tracing::warn!(name = %node.name, rtype = %key.0, rdata = %key.1,
                "record has no wire form; DNS answers leave it out");
        }
        node.rrs.insert(
            key,
            Rr {
                ttl: record.ttl,
                wire,
            },
        );
        self.records += 1;
        true
    }

    fn remove(&mut self, record: &pb::Record) -> bool {
        let key = name_key(&record.name.to_ascii_lowercase());
        let Some(node) = self.nodes.get_mut(&key) else {
            return false;
        };
        if node
            .rrs
            .remove(&(record.r#type.to_ascii_uppercase(), record.rdata.clone()))
            .is_none()
        {
            return false;
        }
        if node.rrs.is_empty() {
            self.nodes.remove(&key);
        }
        self.records -= 1;
        true
    }
}

fn record(name: &str, rtype: &str, ttl: u32, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.to_owned(),
        r#type: rtype.to_owned(),
        class: "IN".to_owned(),
        ttl,
        rdata: rdata.to_owned(),
    }
}

/// `name` as a lower-case FQDN: `@` or empty is the zone itself, names without a trailing dot are
/// relative to it. `None` for names with empty labels.
fn absolute(name: &str, zone: &str) -> Option<String> {
    let name = name.trim();
    let zone = zone.trim().to_ascii_lowercase();
    let zone = if zone.ends_with('.') {
        zone
    } else {
        format!("{zone}.")
    };
    let fqdn = match name {
        "" | "@" => zone,
        _ if ends_with_unescaped_dot(name) => name.to_ascii_lowercase(),
        _ if zone == "." => format!("{}.", name.to_ascii_lowercase()),
        _ => format!("{}.{zone}", name.to_ascii_lowercase()),
    };
    let labels = labels(&fqdn);
    (fqdn == "." || labels.iter().all(|l| !l.is_empty())).then_some(fqdn)
}

fn ends_with_unescaped_dot(name: &str) -> bool {
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    // An odd number of backslashes before the dot escapes it.
    body.chars().rev().take_while(|c| *c == '\\').count() % 2 == 0
}

/// The labels of a presentation-form name, escapes kept, without the root label.
fn labels(name: &str) -> Vec<&str> {
    let mut labels = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in name.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '.' => {
                labels.push(&name[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < name.len() {
        labels.push(&name[start..]);
    }
    labels
}

/// The key of a wire name: its canonical text (hickory prints names as the server does).
fn wire_key(name: &Name) -> String {
    name_key(&name.to_lowercase().to_ascii())
}

/// Labels from the root, separated by NUL: keys sort parents before children and the
/// descendants of a name share its key plus NUL as a prefix.
fn name_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for (i, label) in labels(name).into_iter().rev().enumerate() {
        if i > 0 {
            key.push('\0');
        }
        key.push_str(label);
    }
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: &str, rdata: &str) -> pb::Record {
        record(name, rtype, 300, rdata)
    }

    fn copy() -> ZoneCopy {
        ZoneCopy::from_snapshot(&pb::ZoneSnapshot {
            zone: "example.com.".into(),
            serial: 7,
            records: vec![
                rec(
                    "example.com.",
                    "SOA",
                    "ns1.example.com. h.example.com. 7 1 1 1 1",
                ),
                rec("www.example.com.", "A", "192.0.2.1"),
                rec("www.example.com.", "AAAA", "2001:db8::1"),
                rec("a.b.example.com.", "TXT", "\"x\""),
                rec("a\\.b.example.com.", "A", "192.0.2.9"),
            ],
        })
    }

    #[test]
    fn lookups_tell_nxdomain_from_nodata() {
        let copy = copy();
        let zone = "example.com.";
        assert_eq!(copy.lookup(zone, "WWW", "").unwrap().len(), 2);
        assert_eq!(
            copy.lookup(zone, "www.example.com.", "aaaa").unwrap().len(),
            1
        );
        assert!(copy.lookup(zone, "www", "MX").unwrap().is_empty());
        // Empty non-terminal: NODATA.
        assert!(copy.lookup(zone, "b", "").unwrap().is_empty());
        assert_eq!(
            copy.lookup(zone, "a\\.b", "A").unwrap()[0].rdata,
            "192.0.2.9"
        );
        assert!(matches!(
            copy.lookup(zone, "nope", ""),
            Err(LookupError::NxDomain(_))
        ));
        assert!(matches!(
            copy.lookup(zone, "www.example.org.", ""),
            Err(LookupError::OutsideZone { .. })
        ));
        assert!(matches!(
            copy.lookup(zone, "a..b", ""),
            Err(LookupError::InvalidName(_))
        ));
        assert_eq!(copy.lookup(zone, "@", "SOA").unwrap().len(), 1);
    }

    #[test]
    fn updates_apply_in_order_and_refuse_gaps_and_divergence() {
        let mut copy = copy();
        let change = |op: Op, record: pb::Record, previous: Option<pb::Record>| pb::Change {
            op: op.into(),
            record: Some(record),
            previous,
        };
        let update = pb::ZoneUpdate {
            zone: "example.com.".into(),
            serial: 8,
            changes: vec![
                change(Op::Create, rec("new.example.com.", "A", "192.0.2.2"), None),
                change(
                    Op::Delete,
                    rec("www.example.com.", "AAAA", "2001:db8::1"),
                    None,
                ),
                change(
                    Op::Edit,
                    rec("www.example.com.", "A", "192.0.2.3"),
                    Some(rec("www.example.com.", "A", "192.0.2.1")),
                ),
            ],
        };
        copy.apply(&update).unwrap();
        assert_eq!((copy.serial(), copy.len()), (8, 5));
        assert_eq!(
            copy.lookup("example.com.", "www", "").unwrap()[0].rdata,
            "192.0.2.3"
        );
        assert_eq!(
            copy.apply(&update).unwrap_err(),
            CopyError::Gap { copy: 8, update: 8 }
        );
        let diverged = pb::ZoneUpdate {
            serial: 9,
            changes: vec![change(
                Op::Delete,
                rec("gone.example.com.", "A", "192.0.2.4"),
                None,
            )],
            ..update
        };
        assert!(matches!(
            copy.apply(&diverged),
            Err(CopyError::Diverged { index: 0, .. })
        ));
        let round_trip = ZoneCopy::from_snapshot(&copy.to_snapshot("example.com."));
        assert_eq!(round_trip.len(), copy.len());
    }

    #[test]
    fn the_ixfr_history_is_bounded_and_contiguous() {
        let mut copy = copy();
        let a = |i: u32| {
            rec(
                "h.example.com.",
                "A",
                &format!("10.0.{}.{}", i / 250, i % 250),
            )
        };
        let total = u32::try_from(HISTORY_SERIALS).unwrap() + 5;
        for i in 0..total {
            let previous = (i > 0).then(|| a(i - 1));
            let op = if i == 0 { Op::Create } else { Op::Edit };
            copy.apply(&pb::ZoneUpdate {
                zone: "example.com.".into(),
                serial: 8 + i,
                changes: vec![pb::Change {
                    op: op.into(),
                    record: Some(a(i)),
                    previous,
                }],
            })
            .unwrap();
        }
        let last = 7 + total;
        assert_eq!(copy.serial(), last);
        // The oldest serials fell out; the newest HISTORY_SERIALS remain, in order.
        assert!(copy.diffs_since(7).is_none());
        let oldest = last - u32::try_from(HISTORY_SERIALS).unwrap();
        assert!(copy.diffs_since(oldest - 1).is_none());
        let diffs: Vec<&Diff> = copy.diffs_since(oldest).unwrap().collect();
        assert_eq!(diffs.len(), HISTORY_SERIALS);
        assert!(diffs.windows(2).all(|w| w[0].from + 1 == w[1].from));
        assert_eq!(diffs[0].deleted, [a(oldest - 7 - 1)]);
        assert_eq!(diffs[0].added, [a(oldest - 7)]);
        // Current: nothing to send.
        assert_eq!(copy.diffs_since(last).map(Iterator::count), None);
    }
}
