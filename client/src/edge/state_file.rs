//! The edge's state file: its zone copies with their serials, so a restarted edge resumes from
//! where it was instead of transferring whole zones again.
//!
//! Format: the 8-byte magic `ZEDGE1\r\n`, then one length-delimited `zone.v1.ZoneSnapshot`
//! (protobuf) per zone, then the 4 bytes `END\n`. It is written to `FILE.tmp`, fsync'd and renamed
//! over `FILE` (then the directory is fsync'd), so a crash leaves the old or the new state, never
//! a mix; the end marker catches truncation by other means.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use prost::Message as _;
use zone_proto::zone::v1 as pb;

use super::copy::ZoneCopy;

const MAGIC: &[u8; 8] = b"ZEDGE1\r\n";
const END: &[u8; 4] = b"END\n";

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a zone-edge state file or damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The zones stored in `path`; an empty map when the file does not exist.
pub fn load(path: &Path) -> Result<BTreeMap<String, ZoneCopy>, StateFileError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(StateFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |reason: String| StateFileError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("bad magic".into()))?;
    let mut body = body
        .strip_suffix(END.as_slice())
        .ok_or_else(|| corrupt("truncated (no end marker)".into()))?;
    let mut zones = BTreeMap::new();
    while !body.is_empty() {
        let snapshot = pb::ZoneSnapshot::decode_length_delimited(&mut body)
            .map_err(|e| corrupt(format!("zone {}: {e}", zones.len() + 1)))?;
        zones.insert(snapshot.zone.clone(), ZoneCopy::from_snapshot(&snapshot));
    }
    Ok(zones)
}

/// Replaces `path` atomically with `snapshots`.
pub fn save(path: &Path, snapshots: &[pb::ZoneSnapshot]) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::from(MAGIC.as_slice());
    for snapshot in snapshots {
        snapshot
            .encode_length_delimited(&mut bytes)
            .map_err(|e| io(std::io::Error::other(e)))?;
    }
    bytes.extend_from_slice(END);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable once the directory is.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.state");
        assert!(
            load(&path).unwrap().is_empty(),
            "missing file = empty state"
        );
        let snapshot = pb::ZoneSnapshot {
            zone: "example.com.".into(),
            serial: 42,
            records: vec![pb::Record {
                name: "example.com.".into(),
                r#type: "NS".into(),
                class: "IN".into(),
                ttl: 60,
                rdata: "ns1.example.com.".into(),
            }],
        };
        save(&path, std::slice::from_ref(&snapshot)).unwrap();
        let zones = load(&path).unwrap();
        assert_eq!(zones["example.com."].serial(), 42);
        assert_eq!(zones["example.com."].to_snapshot("example.com."), snapshot);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(matches!(load(&path), Err(StateFileError::Corrupt { .. })));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load(&path), Err(StateFileError::Corrupt { .. })));
    }
}
