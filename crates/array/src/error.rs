//! The crate's error type.

/// Result alias of chorus-array.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong building or computing an array.
///
/// Errors about shapes, chunks, axes and element types are found when the expression is
/// built, before any task runs, and name the shapes involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes do not broadcast under numpy's rules.
    #[error("shapes {left:?} and {right:?} do not broadcast: along each axis (from the last) the lengths must be equal or one of them 1")]
    Broadcast {
        /// The left operand's shape.
        left: Vec<usize>,
        /// The right operand's shape.
        right: Vec<usize>,
    },
    /// Chunks that do not fit the shape, or operands whose chunks do not line up.
    #[error("chunks: {0}")]
    Chunks(String),
    /// An axis that the array does not have, or a permutation that is not one.
    #[error("axis: {0}")]
    Axis(String),
    /// An argument out of its range (a zero step, a negative count…).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A block that a task made or received is not what the plan says (a bug, or
    /// driver and workers of different builds).
    #[error("block {index:?}: {detail}")]
    Block {
        /// The block's index in the grid.
        index: Vec<usize>,
        /// What is wrong with it.
        detail: String,
    },
    /// A file could not be read or written, or is not what it should be.
    #[error("{}: {detail}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The cluster failed a task or could not be reached; the source says which.
    #[error("computing the array failed: {0}")]
    Cluster(#[source] chorus_tasks::Error),
}

impl From<chorus_tasks::Error> for Error {
    fn from(e: chorus_tasks::Error) -> Self {
        Error::Cluster(e)
    }
}
