//! The crate's error type.

use std::io;

/// Result alias used throughout `chorus-comm`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a connection was refused during the handshake.
///
/// Both sides of a refused connection report the same variant: the side that notices the
/// problem tells the other before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer did not speak the chorus protocol at all.
    #[error("the peer is not a chorus process (bad greeting)")]
    NotChorus,
    /// The peer speaks another version of the chorus wire protocol.
    #[error("protocol version mismatch: this process speaks v{local}, the peer speaks v{peer}; run the same chorus version everywhere")]
    ProtocolVersion {
        /// Our protocol version.
        local: u16,
        /// The peer's protocol version.
        peer: u16,
    },
    /// The peer runs a different build of the program.
    #[error("binary mismatch: the peer runs a different build (fingerprint {peer}, this process {local}); start every rank from the same executable")]
    BinaryMismatch {
        /// Our binary fingerprint (short hex).
        local: String,
        /// The peer's binary fingerprint (short hex).
        peer: String,
    },
    /// The peer's proof of the job secret did not verify (or ours did not, on its side).
    #[error("wrong secret: the peer does not share this job's secret; give every process the same CHORUS_SECRET or CHORUS_SECRET_FILE")]
    WrongSecret,
    /// The peer is a chorus process but not one this side expected (wrong rank, job size…).
    #[error("unexpected peer: {0}")]
    Unexpected(String),
    /// This side requires TLS on the connection and the peer spoke without it.
    #[error("the peer does not use TLS, which connections between hosts require: it probably runs with CHORUS_TLS=off; set CHORUS_TLS the same on every process")]
    PeerWithoutTls,
    /// The peer requires TLS on the connection and this side spoke without it (what the
    /// other side of [`Refusal::PeerWithoutTls`] sees).
    #[error("the peer requires TLS on connections between hosts, and this process has it off (CHORUS_TLS=off); set CHORUS_TLS the same on every process")]
    TlsRequired,
    /// The peer started TLS and this side does not use it on the connection.
    #[error("the peer uses TLS, and this process has it off (CHORUS_TLS=off); set CHORUS_TLS the same on every process")]
    PeerUsesTls,
    /// The peer's TLS key is not the one this side's secret gives (or ours is not its).
    #[error("the peer's TLS key is not this job's or cluster's: it was started with another secret; give every process the same CHORUS_SECRET or CHORUS_SECRET_FILE")]
    WrongKey,
    /// The TLS handshake failed for another reason.
    #[error("TLS failed: {0}")]
    Tls(String),
}

impl Refusal {
    pub(crate) fn code(&self) -> u8 {
        match self {
            Refusal::NotChorus => 1,
            Refusal::ProtocolVersion { .. } => 2,
            Refusal::BinaryMismatch { .. } => 3,
            Refusal::WrongSecret => 4,
            Refusal::Unexpected(_) => 5,
            Refusal::PeerWithoutTls => 6,
            Refusal::TlsRequired => 7,
            Refusal::PeerUsesTls => 8,
            Refusal::WrongKey => 9,
            Refusal::Tls(_) => 10,
        }
    }
}

/// Everything that can go wrong in `chorus-comm`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{context}: {source}")]
    Io {
        /// What chorus was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A connection was refused during the handshake.
    #[error("connection {direction} {peer} refused: {refusal}")]
    Refused {
        /// "to" or "from".
        direction: &'static str,
        /// The peer's address or rank.
        peer: String,
        /// Why.
        refusal: Refusal,
    },
    /// A peer sent bytes that are not a valid chorus frame.
    #[error("malformed frame from {peer}: {detail}")]
    MalformedFrame {
        /// Who sent it.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// A rank went away without finalizing (crashed, was killed, or its connection broke).
    #[error("rank {rank}: lost connection to rank {peer} (it crashed, was killed, or exited without finalizing)")]
    PeerLost {
        /// The rank reporting.
        rank: usize,
        /// The rank that is gone.
        peer: usize,
    },
    /// A rank waited for a message from a peer that had already finalized.
    #[error("rank {rank}: rank {peer} has already finalized and will send nothing more")]
    PeerFinalized {
        /// The rank reporting.
        rank: usize,
        /// The rank that finalized.
        peer: usize,
    },
    /// The job was aborted, by this rank or another.
    #[error("job aborted by rank {by}: {reason}")]
    Aborted {
        /// The rank that aborted the job.
        by: usize,
        /// Why.
        reason: String,
    },
    /// Ranks called different collectives, or the same one with different roots, types or
    /// sizes.
    #[error("collective mismatch: {0}")]
    CollectiveMismatch(String),
    /// A message could not be decoded as the requested type.
    #[error("rank {rank}: could not decode a message from rank {peer} as {type_name}: {detail}")]
    Decode {
        /// The receiving rank.
        rank: usize,
        /// The sender.
        peer: usize,
        /// The type the receiver asked for.
        type_name: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// A value could not be serialized.
    #[error("could not serialize a value of type {type_name}: {detail}")]
    Encode {
        /// The type being encoded.
        type_name: &'static str,
        /// The encoder's complaint.
        detail: String,
    },
    /// A call's arguments were invalid (a root out of range, the wrong number of parts…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Ranks could not find each other.
    #[error("rendezvous failed: {0}")]
    Rendezvous(String),
    /// A configuration value (usually an environment variable) is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
