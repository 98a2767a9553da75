//! The errors of bag operations.

use std::path::PathBuf;

/// Result alias of `chorus-bag`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a bag.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task layer failed: a task's error (a user function's panic names the function,
    /// the partition and the element), a lost cluster…
    #[error(transparent)]
    Tasks(#[from] chorus_tasks::Error),
    /// A file of `read_text` cannot be used (missing, not a regular file…); nothing was
    /// submitted.
    #[error("read_text: {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A glob of `read_text` matches no file; nothing was submitted.
    #[error("read_text: the pattern {pattern:?} matches no file")]
    NoMatch {
        /// The glob.
        pattern: String,
    },
    /// An argument is out of range (a fraction above 1, zero partitions…).
    #[error("{0}")]
    InvalidArgument(String),
    /// An operation needs code for an element type that no registration in this program
    /// made: types reach the workers through `func!` (the types of its parameters and
    /// result) and `element!`.
    #[error("{operation} needs the element type `{type_name}` to be registered: add `chorus::bag::element!({short});` to the program (or let a func! take or return it)", short = type_name.rsplit("::").next().unwrap_or(type_name))]
    NotRegistered {
        /// What was asked.
        operation: String,
        /// The type.
        type_name: String,
    },
    /// A reduction without an identity (`min`, `max`, `mean`…) of a bag with no
    /// elements.
    #[error("{operation} of an empty bag")]
    Empty {
        /// Which one.
        operation: String,
    },
    /// A sum does not fit its element type.
    #[error("the sum does not fit in {type_name}: map the elements to a wider type first")]
    Overflow {
        /// The element type.
        type_name: String,
    },
    /// A DataFrame operation failed (`to_dataframe`, `from_dataframe`).
    #[cfg(feature = "frame")]
    #[error(transparent)]
    Frame(#[from] chorus_frame::Error),
    /// A result from the workers could not be decoded: driver and workers are not the
    /// same build.
    #[error("decoding a result of the workers: {0}; are driver and workers the same build?")]
    Decode(String),
}
