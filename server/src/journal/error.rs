//! Errors of a journal and their gRPC codes.

use std::path::PathBuf;

use tonic::Code;

/// Why a journal operation failed; [`JournalError::code`] gives the gRPC code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Another writer got there first: the zone's last serial is not the one the append expected
    /// (`ABORTED`: re-read and retry).
    #[error(
        "zone `{zone}` changed concurrently: the journal is at serial {actual}, the batch expected {expected}"
    )]
    Conflict {
        zone: String,
        expected: u32,
        actual: u32,
    },
    /// The batch's serial does not follow the expected one (`INTERNAL`: a caller bug).
    #[error("batch serial {serial} of zone `{zone}` does not follow {expected}")]
    NotConsecutive {
        zone: String,
        expected: u32,
        serial: u32,
    },
    /// The zone is not registered in the journal (`FAILED_PRECONDITION`).
    #[error("zone `{0}` is not in the journal")]
    UnknownZone(String),
    /// The zone files changed since the journal was started on them (`FAILED_PRECONDITION`).
    #[error(
        "zone `{zone}` differs from the zone the journal was started on (journal: file serial \
         {journal_base_serial}, {batches} batches up to serial {journal_last_serial}; now: file \
         serial {file_serial}). Restore the zone file, or start over: move the journal away or \
         rebase it (zone-server --journal-rebase), which drops this zone's journaled changes"
    )]
    BaseChanged {
        zone: String,
        journal_base_serial: u32,
        journal_last_serial: u32,
        batches: u64,
        file_serial: u32,
    },
    /// Stored data does not decode or is inconsistent (`DATA_LOSS`).
    #[error("journal data is corrupt: {0}")]
    Corrupt(String),
    /// The journal was closed (`UNAVAILABLE`).
    #[error("the journal is closed")]
    Closed,
    /// A networked journal (NATS JetStream) cannot be reached or did not answer in time
    /// (`UNAVAILABLE`: retry later). An append that failed this way may still have been stored;
    /// the zone store then learns it like another server's batch.
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
    /// The batch exceeds what the journal accepts in one record, e.g. nats-server's
    /// `max_payload` (`RESOURCE_EXHAUSTED`: split the batch or raise the limit).
    #[error("the batch is too large for the journal: {0}")]
    TooLarge(String),
    /// The journal's configuration (e.g. its URL) is invalid (`INVALID_ARGUMENT`).
    #[error("journal configuration: {0}")]
    Config(String),
    /// Opening the journal file failed (`INTERNAL`).
    #[error("cannot open journal {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: ::redb::Error,
    },
    /// A journal task panicked or was cancelled (`INTERNAL`).
    #[error("journal task failed: {0}")]
    Task(String),
    /// The storage engine failed (`INTERNAL`).
    #[error("journal storage: {0}")]
    Storage(#[from] ::redb::Error),
}

impl JournalError {
    pub fn code(&self) -> Code {
        match self {
            Self::Conflict { .. } => Code::Aborted,
            Self::UnknownZone(_) | Self::BaseChanged { .. } => Code::FailedPrecondition,
            Self::Corrupt(_) => Code::DataLoss,
            Self::Closed | Self::Unavailable(_) => Code::Unavailable,
            Self::TooLarge(_) => Code::ResourceExhausted,
            Self::Config(_) => Code::InvalidArgument,
            Self::NotConsecutive { .. } | Self::Open { .. } | Self::Task(_) | Self::Storage(_) => {
                Code::Internal
            }
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(err: $t) -> Self {
                Self::Storage(err.into())
            }
        }
    )*};
}

storage_from!(
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);
