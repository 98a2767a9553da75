//! The errors of distributed DataFrame queries.

use datafusion::error::DataFusionError;

/// What went wrong with a DataFrame or SQL query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The query is invalid: an unknown table or column, a type mismatch, a syntax
    /// error. Found while planning, before any data is read, identically on every rank.
    #[error("invalid query: {0}")]
    Plan(String),
    /// Reading or computing failed on this rank (a malformed input row, a division by
    /// zero). The job is aborted so that no other rank waits for this one.
    #[error("query failed on rank {rank}: {message}")]
    Execution {
        /// The rank that hit the failure.
        rank: usize,
        /// What failed, with the file, line and column of the input where known.
        message: String,
    },
    /// An operator on this rank needed more memory than the rank's query memory pool
    /// has left, and cannot spill (the build side of a hash join, an aggregate's
    /// emitting state). The message names the operator, the pool and its largest
    /// consumers. Raise [`FrameOptions::memory_limit`](crate::FrameOptions::memory_limit)
    /// (or `CHORUS_FRAME_MEMORY_LIMIT`), or run on more ranks so that each holds less.
    #[error(
        "query failed on rank {rank}: {message}. The rank's query memory pool is too small for an operator that \
         cannot spill: raise FrameOptions::memory_limit (CHORUS_FRAME_MEMORY_LIMIT), or run on more ranks"
    )]
    MemoryLimit {
        /// The rank whose pool was exhausted.
        rank: usize,
        /// DataFusion's account: the operator, the allocation that failed, the pool.
        message: String,
    },
    /// Another rank failed, or the job's communication broke; the cause names the rank.
    #[error(transparent)]
    Comm(#[from] chorus_comm::Error),
    /// The cluster could not run the query (from a driver): no workers, a worker lost,
    /// or the query failed there; the source says which rank and why.
    #[error("the cluster could not run the query: {0}")]
    Cluster(#[source] chorus_tasks::Error),
    /// The query job ended without rank 0's result.
    #[error("the cluster could not run the query: {0}")]
    NoResult(String),
    /// An argument to a chorus-frame call is unusable.
    #[error("{0}")]
    InvalidArgument(String),
    /// Reading or writing object storage failed: `url` names the object, prefix or
    /// bucket, `kind` says how, and the message gives the store's answer (the HTTP
    /// status, the retries). On a rank's failure while the query runs, the job is aborted
    /// as for [`Error::Execution`].
    #[error("{message}")]
    Storage {
        /// The object, prefix or bucket.
        url: String,
        /// What went wrong.
        kind: StorageFailure,
        /// What failed, with the URL, the store's answer (the HTTP status, the retries)
        /// and the rank it came to.
        message: String,
    },
    /// Writing results failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory being written.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How a request to object storage failed (see [`Error::Storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StorageFailure {
    /// No object, prefix or bucket at the URL.
    NotFound,
    /// The store refused the credentials, or they may not do this: check
    /// [`StorageOptions`](crate::StorageOptions) and the environment, or use anonymous
    /// access for a public bucket.
    Denied,
    /// The object changed after the query was planned (its ETag no longer matched):
    /// run the query again.
    Changed,
    /// Requests kept failing after the retries (server errors, throttling, an
    /// unreachable endpoint), or the store answered with another error.
    Failed,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of DataFusion's planner, reported as the user's query being invalid
    /// unless object storage failed.
    pub(crate) fn plan(e: DataFusionError) -> Error {
        storage(&e, None).unwrap_or_else(|| Error::Plan(e.strip_backtrace()))
    }

    /// An error while executing on `rank`.
    pub(crate) fn execution(rank: usize, e: &DataFusionError) -> Error {
        if let Some(storage) = storage(e, Some(rank)) {
            return storage;
        }
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::ResourcesExhausted(_) => Error::MemoryLimit { rank, message },
            _ => Error::Execution { rank, message },
        }
    }
}

/// [`Error::Storage`] if `e` is a failure of object storage (see
/// `storage::named`, which puts the URL in every error of the stores).
fn storage(e: &DataFusionError, rank: Option<usize>) -> Option<Error> {
    use object_store::Error as E;
    let on = |message: String| match rank {
        Some(rank) => format!("{message} (on rank {rank})"),
        None => message,
    };
    match e.find_root() {
        DataFusionError::ObjectStore(os) => {
            let (url, kind) = match os.as_ref() {
                E::NotFound { path, .. } => (path.clone(), StorageFailure::NotFound),
                E::PermissionDenied { path, .. } | E::Unauthenticated { path, .. } => (path.clone(), StorageFailure::Denied),
                E::Precondition { path, .. } => (path.clone(), StorageFailure::Changed),
                E::Generic { source, .. } => {
                    let text = source.to_string();
                    let url = text.split_once(": ").map(|(url, _)| url).filter(|u| crate::is_url(u)).unwrap_or_default();
                    let kind = if text.contains(" 404 Not Found") {
                        // A listing of a bucket that does not exist.
                        StorageFailure::NotFound
                    } else if text.contains("169.254.169.254") {
                        // No credentials anywhere, and no instance role to ask.
                        StorageFailure::Denied
                    } else {
                        StorageFailure::Failed
                    };
                    (url.to_string(), kind)
                }
                _ => (String::new(), StorageFailure::Failed),
            };
            let mut message = os.to_string();
            if kind == StorageFailure::Denied {
                message.push_str(
                    "; check the credentials (StorageOptions key and secret, the AWS_*, GOOGLE_* or AZURE_* variables, \
                     ~/.aws/credentials) and that they may read it, or set StorageOptions::anonymous for a public bucket",
                );
            }
            Some(Error::Storage { url, kind, message: on(message) })
        }
        // A listing that found nothing under a URL.
        DataFusionError::Plan(text) => {
            let rest = text.strip_prefix("No files found at ")?;
            let url = rest.split_once(". ").map_or(rest, |(url, _)| url);
            crate::is_url(url).then(|| Error::Storage { url: url.to_string(), kind: StorageFailure::NotFound, message: on(text.clone()) })
        }
        _ => None,
    }
}
