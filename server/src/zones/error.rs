//! Errors of the zone store and how each becomes a gRPC status.

use std::path::{Path, PathBuf};

use tonic::{Code, Status};

use crate::journal::JournalError;

/// Why a zone-store operation failed. Every variant maps to one gRPC code ([`StoreError::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No zone with that name is loaded (`NOT_FOUND`).
    #[error("zone `{0}` not found")]
    ZoneNotFound(String),
    /// A zone with that origin is already loaded (`ALREADY_EXISTS`).
    #[error("zone `{0}` is already loaded")]
    ZoneExists(String),
    /// A request field is malformed (`INVALID_ARGUMENT`); `field` is its path in the message.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The queried owner name does not exist in the zone, i.e. NXDOMAIN (`NOT_FOUND`).
    #[error("name `{name}` does not exist in zone `{zone}`")]
    NameNotFound { zone: String, name: String },
    /// A CREATE (or the new side of an EDIT) names a record the zone already has
    /// (`ALREADY_EXISTS`).
    #[error("changes[{index}]: record already exists: {record}")]
    RecordExists { index: usize, record: String },
    /// A DELETE or EDIT names a record the zone does not have (`FAILED_PRECONDITION`: the zone
    /// is not in the state the batch assumed, like an RFC 2136 prerequisite failure).
    #[error("changes[{index}]: no such record: {record}")]
    RecordMissing { index: usize, record: String },
    /// The change would leave the zone without exactly one SOA (`FAILED_PRECONDITION`).
    #[error("changes[{index}]: {reason}")]
    SoaConflict { index: usize, reason: &'static str },
    /// `expected_serial` did not match (`ABORTED`: re-read and retry).
    #[error("zone `{zone}` is at serial {actual}, the batch expected {expected}")]
    SerialMismatch {
        zone: String,
        expected: u32,
        actual: u32,
    },
    /// A transfer asked for changes after a serial the zone has not reached (`OUT_OF_RANGE`).
    #[error("serial {requested} is ahead of zone `{zone}` (at serial {current})")]
    SerialAhead {
        zone: String,
        requested: u32,
        current: u32,
    },
    /// A zone file (or zone text) does not parse (`INVALID_ARGUMENT`); `line` is 1-based, 0 when
    /// the problem is the file as a whole.
    #[error("{}: {message}", location(path, *line))]
    ZoneFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The store has a journal: batches must go through the durable path
    /// ([`crate::zones::ZoneStore::push`]) (`FAILED_PRECONDITION`).
    #[error("this zone store has a journal: apply batches with push(), which journals them")]
    JournalAttached,
    /// The zone serial reached 2^32-1; the journal does not wrap serials (`FAILED_PRECONDITION`).
    #[error(
        "zone `{0}` is at the highest serial (4294967295); serials do not wrap on a journaled server"
    )]
    SerialExhausted(String),
    /// The journal refused or failed; the code is the journal error's ([`JournalError::code`]).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A broken invariant inside the server (`INTERNAL`).
    #[error("internal error: {0}")]
    Internal(String),
    /// Reading a zone file or directory failed (`INTERNAL`).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// The gRPC status code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            Self::ZoneNotFound(_) | Self::NameNotFound { .. } => Code::NotFound,
            Self::ZoneExists(_) | Self::RecordExists { .. } => Code::AlreadyExists,
            Self::InvalidArgument { .. } | Self::ZoneFile { .. } => Code::InvalidArgument,
            Self::RecordMissing { .. } | Self::SoaConflict { .. } => Code::FailedPrecondition,
            Self::SerialMismatch { .. } => Code::Aborted,
            Self::SerialAhead { .. } => Code::OutOfRange,
            Self::JournalAttached | Self::SerialExhausted(_) => Code::FailedPrecondition,
            Self::Journal(err) => err.code(),
            Self::Io { .. } | Self::Internal(_) => Code::Internal,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn location(path: &Path, line: usize) -> String {
    match line {
        0 => path.display().to_string(),
        line => format!("{}:{line}", path.display()),
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}
