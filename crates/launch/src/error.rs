//! The launch layer's error type.

/// Result alias used throughout `chorus-launch`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while launching or joining a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The communication layer failed (rendezvous, handshake, …).
    #[error(transparent)]
    Comm(#[from] chorus_comm::Error),
    /// The launch environment is inconsistent or incomplete, or a setting is invalid.
    #[error("launch configuration: {0}")]
    Config(String),
    /// A rank process could not be started.
    #[error("could not start rank {rank} ({program}): {source}")]
    Spawn {
        /// The rank.
        rank: usize,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Some other operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What chorus was doing.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
