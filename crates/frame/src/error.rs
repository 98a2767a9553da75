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

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of DataFusion's planner, reported as the user's query being invalid.
    pub(crate) fn plan(e: DataFusionError) -> Error {
        Error::Plan(e.strip_backtrace())
    }

    /// An error while executing on `rank`.
    pub(crate) fn execution(rank: usize, e: &DataFusionError) -> Error {
        let message = e.strip_backtrace();
        match e.find_root() {
            DataFusionError::ResourcesExhausted(_) => Error::MemoryLimit { rank, message },
            _ => Error::Execution { rank, message },
        }
    }
}
