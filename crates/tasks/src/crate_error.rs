//! The crate's error type.

/// Result alias used throughout `chorus-tasks`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while using a cluster, or launching a job (the launch layer's
/// errors convert into it, variant for variant).
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
    Task(Box<crate::TaskError>),
    /// The connection to the scheduler is gone (it stopped, or dropped this client, or
    /// the network failed); every later call on the client fails the same way.
    #[error("{doing}: {reason}")]
    Disconnected {
        /// What the client was doing.
        doing: String,
        /// What ended the connection.
        reason: String,
    },
    /// The operation needs workers and the cluster has none.
    #[error("cannot {operation}: the cluster has no workers")]
    NoWorkers {
        /// What could not be done ("scatter", "start an SPMD job").
        operation: String,
    },
    /// Worker processes did not join the cluster.
    #[error("starting the cluster: {0}")]
    WorkersDidNotJoin(String),
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
        source: crate::proto::WireError,
    },
    /// The dashboard could not start (its address is taken, say).
    #[error(transparent)]
    Dashboard(#[from] chorus_dashboard::Error),
    /// Moving an object over a data connection failed.
    #[error("{context}: {source}")]
    Data {
        /// What chorus was doing.
        context: String,
        /// Why.
        #[source]
        source: crate::proto::WireError,
    },
}

/// What kind of failure an [`Error`] is, for callers to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A task failed; its [`FailureKind`](crate::FailureKind) says how.
    Task(crate::FailureKind),
    /// The connection to the scheduler is gone.
    Disconnected,
    /// The cluster has no workers.
    NoWorkers,
    /// Workers did not join.
    WorkersDidNotJoin,
    /// A wait gave up.
    Timeout,
    /// A value could not be encoded or decoded.
    Serialization,
    /// A peer broke the protocol.
    Protocol,
    /// Moving an object between processes failed.
    Data,
    /// The dashboard could not start.
    Dashboard,
    /// A setting or the launch environment is invalid.
    Config,
    /// A process could not be started.
    Spawn,
    /// An operating-system call failed.
    Io,
    /// The communication layer failed: a refused handshake, a lost or failed rank.
    Comm,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Comm(_) => ErrorKind::Comm,
            Error::Config(_) => ErrorKind::Config,
            Error::Spawn { .. } => ErrorKind::Spawn,
            Error::Io { .. } => ErrorKind::Io,
            Error::Task(t) => ErrorKind::Task(t.kind),
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::NoWorkers { .. } => ErrorKind::NoWorkers,
            Error::WorkersDidNotJoin(_) => ErrorKind::WorkersDidNotJoin,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Serialization(_) => ErrorKind::Serialization,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Data { .. } => ErrorKind::Data,
            Error::Dashboard(_) => ErrorKind::Dashboard,
        }
    }
}

impl From<crate::TaskError> for Error {
    fn from(e: crate::TaskError) -> Error {
        Error::Task(Box::new(e))
    }
}

impl From<chorus_launch::Error> for Error {
    fn from(e: chorus_launch::Error) -> Error {
        match e {
            chorus_launch::Error::Comm(e) => Error::Comm(e),
            chorus_launch::Error::Config(m) => Error::Config(m),
            chorus_launch::Error::Spawn { rank, program, source } => Error::Spawn { rank, program, source },
            chorus_launch::Error::Io { context, source } => Error::Io { context, source },
            other => Error::Config(other.to_string()),
        }
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
