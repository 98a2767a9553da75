//! The crate's error type.

/// Result alias used throughout `chorus-runtime`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while launching a job or using a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The communication layer failed (rendezvous, handshake, …).
    #[error(transparent)]
    Comm(#[from] chorus_comm::Error),
    /// The launch environment is inconsistent or incomplete.
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
    /// A task failed; the error says which function, where and why.
    #[error(transparent)]
    Task(Box<crate::tasks::TaskError>),
    /// The cluster is unreachable or misbehaved (no workers, scheduler gone…).
    #[error("cluster: {0}")]
    Cluster(String),
    /// A wait gave up.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A value could not be encoded or decoded; the message names its type.
    #[error("serialization: {0}")]
    Serialization(String),
    /// A peer sent something that is not the task protocol: a malformed or oversized
    /// frame, or a message meant for another role. The connection was closed.
    #[error("{peer} broke the protocol: {source}")]
    Protocol {
        /// Who.
        peer: String,
        /// What arrived.
        #[source]
        source: crate::tasks::proto::WireError,
    },
    /// Moving an object over a data connection failed.
    #[error("{context}: {source}")]
    Data {
        /// What chorus was doing.
        context: String,
        /// Why.
        #[source]
        source: crate::tasks::proto::WireError,
    },
}

impl From<crate::tasks::TaskError> for Error {
    fn from(e: crate::tasks::TaskError) -> Error {
        Error::Task(Box::new(e))
    }
}

/// The message of a panic's payload (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}
