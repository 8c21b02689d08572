//! [`ReportError`]: why a report could not be read or a repair not made.

use oms_shared::error::OmsError;

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// The errors of this crate. Connection and SQL/Redis failures are [`OmsError`]s (which
/// say whether they are transient); the rest name what was not found or refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Oms(#[from] OmsError),
    #[error(transparent)]
    NoSuchImport(#[from] NoSuchImport),
    #[error(transparent)]
    NoSuchDeadLetter(#[from] NoSuchDeadLetter),
    /// A repair that would touch something it must not (e.g. a key outside the prefix).
    #[error("{0}")]
    Refused(String),
    /// A report that needs a connection it was not given.
    #[error("{0}")]
    NotConnected(&'static str),
    /// `error` while doing `what`.
    #[error("{what}: {source}")]
    During {
        what: String,
        #[source]
        source: Box<ReportError>,
    },
}

/// `status IMPORT` named no import.
#[derive(Debug, thiserror::Error)]
#[error("import {0} not found")]
pub struct NoSuchImport(pub u64);

/// `failed retry ID` named no dead letter.
#[derive(Debug, thiserror::Error)]
#[error("no dead letter {id} in {key}")]
pub struct NoSuchDeadLetter {
    pub id: String,
    pub key: String,
}

impl ReportError {
    /// Not found: the named import or dead letter does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            ReportError::NoSuchImport(_) | ReportError::NoSuchDeadLetter(_) => true,
            ReportError::During { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// A server could not be reached (worth retrying later).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ReportError::Oms(e) => e.is_transient(),
            ReportError::During { source, .. } => source.is_unavailable(),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for ReportError {
    fn from(e: sqlx::Error) -> Self {
        ReportError::Oms(e.into())
    }
}

impl From<redis::RedisError> for ReportError {
    fn from(e: redis::RedisError) -> Self {
        ReportError::Oms(e.into())
    }
}

impl From<deadpool_redis::PoolError> for ReportError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        ReportError::Oms(e.into())
    }
}
