//! Wire frames exchanged between ranks once the handshake is done.
//!
//! On the wire every frame is a 4-byte big-endian length followed by that many bytes (the
//! layout of tokio-util's `LengthDelimitedCodec`; chorus reads it itself so that large
//! bodies land in reused buffers). The body starts with a one-byte kind.
//! Data frames carry a fixed 32-byte binary header and then the payload as raw bytes:
//! payloads are never encoded element by element. A message larger than [`MAX_CHUNK`] is
//! split into several data frames sent back to back, the first flagged [`FIRST`], the
//! last [`LAST`], each carrying the message's total length (a large collective message's
//! first frame is a short one, so that the receiver knows the length early).
//!
//! Decoding never panics: every malformed body is a [`FrameError`].

use bytes::{Buf, Bytes};

/// Bytes of the length prefix in front of every chorus frame body.
pub const LENGTH_PREFIX: usize = 4;

/// The length prefix of a frame body of `len` bytes: 4 bytes, big-endian. Every chorus
/// protocol (ranks, rendezvous, handshake, the task layer) frames its messages so.
pub fn encode_length(len: usize) -> [u8; LENGTH_PREFIX] {
    debug_assert!(len <= u32::MAX as usize);
    (len as u32).to_be_bytes()
}

/// The body length a prefix announces (see [`encode_length`]).
pub fn decode_length(prefix: [u8; LENGTH_PREFIX]) -> usize {
    u32::from_be_bytes(prefix) as usize
}

/// Largest payload carried by one data frame; bigger messages are streamed in chunks.
pub const MAX_CHUNK: usize = 4 << 20;
/// Size of a data frame's fixed header.
pub const DATA_HEADER_LEN: usize = 32;
/// Largest frame body a peer may send; anything longer is rejected before it is buffered.
pub const MAX_FRAME: usize = MAX_CHUNK + DATA_HEADER_LEN;
/// Flag: first chunk of a message.
pub const FIRST: u8 = 1;
/// Flag: last chunk of a message.
pub const LAST: u8 = 2;
/// Flag: the payload is not the message but where it lies in the sender's memory (see
/// [`RemoteParts`]); the receiver copies it from there and answers [`Frame::Taken`].
pub const REMOTE: u8 = 4;
/// Most address ranges one remote message may name.
pub const MAX_REMOTE_PARTS: usize = 1024;

const KIND_DATA: u8 = 0;
const KIND_ABORT: u8 = 1;
const KIND_GOODBYE: u8 = 2;
const KIND_PROBE: u8 = 3;
const KIND_PROBE_REPLY: u8 = 4;
const KIND_TAKEN: u8 = 5;
const KIND_SHARE: u8 = 6;
const KIND_WRITTEN: u8 = 7;
const PROBE_REPLY_LEN: usize = 1 + 8 + 8 + 1 + 1 + 4 + 4;
const MAX_ABORT_REASON: usize = 64 << 10;

/// Which matching space a data frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Part of collective number `seq`; matched strictly in order.
    Collective,
    /// A point-to-point message; matched by tag.
    Message,
}

/// The collective operations, as carried in frame headers to detect mismatched calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum CollectiveOp {
    Barrier,
    Bcast,
    Gatherv,
    Scatterv,
    Allgatherv,
    Reduce,
    Allreduce,
    Alltoallv,
    Finalize,
    /// Point-to-point traffic (not a collective).
    PointToPoint,
}

impl CollectiveOp {
    const ALL: [CollectiveOp; 10] = [
        CollectiveOp::Barrier,
        CollectiveOp::Bcast,
        CollectiveOp::Gatherv,
        CollectiveOp::Scatterv,
        CollectiveOp::Allgatherv,
        CollectiveOp::Reduce,
        CollectiveOp::Allreduce,
        CollectiveOp::Alltoallv,
        CollectiveOp::Finalize,
        CollectiveOp::PointToPoint,
    ];

    /// The name users know the operation by.
    pub fn name(self) -> &'static str {
        match self {
            CollectiveOp::Barrier => "barrier",
            CollectiveOp::Bcast => "bcast",
            CollectiveOp::Gatherv => "gatherv",
            CollectiveOp::Scatterv => "scatterv",
            CollectiveOp::Allgatherv => "allgatherv",
            CollectiveOp::Reduce => "reduce",
            CollectiveOp::Allreduce => "allreduce",
            CollectiveOp::Alltoallv => "alltoallv",
            CollectiveOp::Finalize => "finalize",
            CollectiveOp::PointToPoint => "send/recv",
        }
    }

    pub(crate) fn code(self) -> u8 {
        Self::ALL.iter().position(|&op| op == self).unwrap_or(0) as u8
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

/// What a collective call looked like on the sending rank; receivers compare it with
/// their own call to detect mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The operation.
    pub op: CollectiveOp,
    /// The root rank (0 for rootless collectives).
    pub root: u32,
    /// A hash of the element type's name (0 when untyped).
    pub type_hash: u32,
}

/// The fixed header of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Matching space.
    pub space: Space,
    /// [`FIRST`] and/or [`LAST`].
    pub flags: u8,
    /// The sender's view of the call.
    pub sig: Signature,
    /// Collective sequence number, or the user's tag for point-to-point messages.
    pub seq: u64,
    /// Total length of the message this chunk belongs to.
    pub total: u64,
}

impl DataHeader {
    /// Writes the 32-byte header.
    pub fn encode(&self) -> [u8; DATA_HEADER_LEN] {
        let mut b = [0u8; DATA_HEADER_LEN];
        b[0] = KIND_DATA;
        b[1] = match self.space {
            Space::Collective => 0,
            Space::Message => 1,
        };
        b[2] = self.flags;
        b[3] = self.sig.op.code();
        b[4..8].copy_from_slice(&self.sig.root.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.sig.type_hash.to_le_bytes());
        b[24..32].copy_from_slice(&self.total.to_le_bytes());
        b
    }

    /// Reads the 32 bytes [`DataHeader::encode`] wrote (the kind byte included).
    pub(crate) fn decode(h: &[u8]) -> Result<DataHeader, FrameError> {
        if h.len() != DATA_HEADER_LEN || h[0] != KIND_DATA {
            return Err(FrameError(format!("a data header of {} bytes", h.len())));
        }
        let space = match h[1] {
            0 => Space::Collective,
            1 => Space::Message,
            other => return Err(FrameError(format!("unknown matching space {other}"))),
        };
        let flags = h[2];
        if flags & !(FIRST | LAST | REMOTE) != 0 || (flags & REMOTE != 0 && flags & (FIRST | LAST) != FIRST | LAST) {
            return Err(FrameError(format!("unknown flags {flags:#x}")));
        }
        let op = CollectiveOp::from_code(h[3]).ok_or_else(|| FrameError(format!("unknown operation code {}", h[3])))?;
        let mut rest = &h[4..];
        let root = rest.get_u32_le();
        let seq = rest.get_u64_le();
        let type_hash = rest.get_u32_le();
        let _reserved = rest.get_u32_le();
        let total = rest.get_u64_le();
        Ok(DataHeader { space, flags, sig: Signature { op, root, type_hash }, seq, total })
    }
}

/// A decoded frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One chunk of a message.
    Data {
        /// Its header.
        header: DataHeader,
        /// The chunk's bytes.
        payload: Bytes,
    },
    /// The sender aborts the whole job.
    Abort {
        /// Why, for people.
        reason: String,
    },
    /// The sender has finalized and will send nothing more.
    Goodbye,
    /// The sender has waited a long time in collective `seq` for a message from us and
    /// asks what we called there.
    Probe {
        /// The collective the sender is waiting in.
        seq: u64,
    },
    /// The answer to a [`Frame::Probe`].
    ProbeReply(ProbeReply),
    /// The sender has copied remote message `id` out of our memory: its buffer may go.
    Taken {
        /// The number the message was sent with.
        id: u64,
    },
    /// The receiver of our remote message `id` copies its bytes before `from` itself and
    /// asks us to write the rest into its memory at `addr`, so that both copy at once.
    Share {
        /// The number the message was sent with.
        id: u64,
        /// Where the sender's part starts, in bytes from the message's start.
        from: u64,
        /// Where the sender's part goes in the receiver's memory.
        addr: u64,
    },
    /// The answer to a [`Frame::Share`]: the part was written (`true`), or it was not
    /// because the job is aborted.
    Written {
        /// The number the message was sent with.
        id: u64,
        /// Whether the part was written.
        done: bool,
        /// How long the write took, in nanoseconds: the receiver balances its next
        /// shares by it.
        nanos: u64,
    },
}

/// Where a remote message lies in the sender's memory: the payload of a data frame
/// flagged [`REMOTE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParts {
    /// Numbers the message for its [`Frame::Taken`].
    pub id: u64,
    /// Address and length of each part, in order.
    pub ranges: Vec<(u64, usize)>,
}

impl RemoteParts {
    /// Encodes the description.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + 16 * self.ranges.len());
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for &(addr, len) in &self.ranges {
            b.extend_from_slice(&addr.to_le_bytes());
            b.extend_from_slice(&(len as u64).to_le_bytes());
        }
        b
    }

    /// Decodes a description whose parts must add up to `total` bytes.
    pub fn decode(mut b: &[u8], total: u64) -> Result<RemoteParts, FrameError> {
        if b.len() < 12 {
            return Err(FrameError(format!("remote message description of {} bytes", b.len())));
        }
        let id = b.get_u64_le();
        let n = b.get_u32_le() as usize;
        if n > MAX_REMOTE_PARTS || b.len() != 16 * n {
            return Err(FrameError(format!("remote message description of {n} parts in {} bytes", b.len())));
        }
        let ranges: Vec<(u64, usize)> = (0..n).map(|_| (b.get_u64_le(), b.get_u64_le() as usize)).collect();
        let sum = ranges.iter().try_fold(0u64, |acc, r| acc.checked_add(r.1 as u64));
        if sum != Some(total) {
            return Err(FrameError(format!("remote message parts add up to {sum:?} bytes, not its {total}")));
        }
        Ok(RemoteParts { id, ranges })
    }
}

/// What a rank called at the collective a peer asked about, and how far it has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// The collective number the probe asked about.
    pub probed: u64,
    /// The number of the latest collective this rank has entered, if any.
    pub latest: Option<u64>,
    /// What this rank called as collective `probed`, if it got that far (and remembers).
    pub at_probed: Option<Signature>,
}

/// A frame body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

impl Frame {
    /// Encodes an abort frame body.
    pub fn abort_body(reason: &str) -> Vec<u8> {
        let mut reason = reason.as_bytes();
        if reason.len() > MAX_ABORT_REASON {
            reason = &reason[..MAX_ABORT_REASON];
        }
        let mut b = Vec::with_capacity(1 + reason.len());
        b.push(KIND_ABORT);
        b.extend_from_slice(reason);
        b
    }

    /// Encodes a goodbye frame body.
    pub fn goodbye_body() -> Vec<u8> {
        vec![KIND_GOODBYE]
    }

    /// Encodes a probe frame body.
    pub fn probe_body(seq: u64) -> Vec<u8> {
        let mut b = vec![KIND_PROBE];
        b.extend_from_slice(&seq.to_le_bytes());
        b
    }

    /// Encodes a probe reply frame body.
    pub fn probe_reply_body(r: &ProbeReply) -> Vec<u8> {
        let mut b = Vec::with_capacity(PROBE_REPLY_LEN);
        b.push(KIND_PROBE_REPLY);
        b.extend_from_slice(&r.probed.to_le_bytes());
        b.extend_from_slice(&r.latest.unwrap_or(0).to_le_bytes());
        let flags = u8::from(r.latest.is_some()) | u8::from(r.at_probed.is_some()) << 1;
        b.push(flags);
        let sig = r.at_probed.unwrap_or(Signature { op: CollectiveOp::Barrier, root: 0, type_hash: 0 });
        b.push(sig.op.code());
        b.extend_from_slice(&sig.root.to_le_bytes());
        b.extend_from_slice(&sig.type_hash.to_le_bytes());
        b
    }

    /// Encodes a taken frame body.
    pub fn taken_body(id: u64) -> Vec<u8> {
        let mut b = vec![KIND_TAKEN];
        b.extend_from_slice(&id.to_le_bytes());
        b
    }

    /// Encodes a share frame body.
    pub fn share_body(id: u64, from: u64, addr: u64) -> Vec<u8> {
        let mut b = vec![KIND_SHARE];
        for w in [id, from, addr] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Encodes a written frame body.
    pub fn written_body(id: u64, done: bool, nanos: u64) -> Vec<u8> {
        let mut b = vec![KIND_WRITTEN];
        b.extend_from_slice(&id.to_le_bytes());
        b.push(u8::from(done));
        b.extend_from_slice(&nanos.to_le_bytes());
        b
    }

    /// Decodes a frame body (the bytes after the length prefix).
    pub fn decode(mut body: Bytes) -> Result<Frame, FrameError> {
        if body.len() > MAX_FRAME {
            return Err(FrameError(format!("frame of {} bytes exceeds the {MAX_FRAME}-byte limit", body.len())));
        }
        let Some(&kind) = body.first() else {
            return Err(FrameError("empty frame".into()));
        };
        match kind {
            KIND_DATA => {
                if body.len() < DATA_HEADER_LEN {
                    return Err(FrameError(format!("data frame of {} bytes is shorter than its header", body.len())));
                }
                let header = DataHeader::decode(&body.split_to(DATA_HEADER_LEN))?;
                let DataHeader { flags, total, .. } = header;
                if flags & REMOTE == 0 && (body.len() as u64) > total {
                    return Err(FrameError(format!("chunk of {} bytes is larger than its message ({total} bytes)", body.len())));
                }
                Ok(Frame::Data { header, payload: body })
            }
            KIND_ABORT => {
                Ok(Frame::Abort { reason: String::from_utf8_lossy(&body[1..]).into_owned() })
            }
            KIND_GOODBYE if body.len() == 1 => Ok(Frame::Goodbye),
            KIND_PROBE if body.len() == 9 => {
                Ok(Frame::Probe { seq: u64::from_le_bytes(body[1..9].try_into().expect("length checked")) })
            }
            KIND_PROBE => Err(FrameError(format!("probe frame of {} bytes", body.len()))),
            KIND_TAKEN if body.len() == 9 => {
                Ok(Frame::Taken { id: u64::from_le_bytes(body[1..9].try_into().expect("length checked")) })
            }
            KIND_TAKEN => Err(FrameError(format!("taken frame of {} bytes", body.len()))),
            KIND_SHARE if body.len() == 25 => {
                let mut rest = &body[1..];
                Ok(Frame::Share { id: rest.get_u64_le(), from: rest.get_u64_le(), addr: rest.get_u64_le() })
            }
            KIND_SHARE => Err(FrameError(format!("share frame of {} bytes", body.len()))),
            KIND_WRITTEN if body.len() == 18 && body[9] <= 1 => Ok(Frame::Written {
                id: u64::from_le_bytes(body[1..9].try_into().expect("length checked")),
                done: body[9] == 1,
                nanos: u64::from_le_bytes(body[10..18].try_into().expect("length checked")),
            }),
            KIND_WRITTEN => Err(FrameError(format!("malformed written frame of {} bytes", body.len()))),
            KIND_PROBE_REPLY if body.len() == PROBE_REPLY_LEN => {
                let mut rest = &body[1..];
                let probed = rest.get_u64_le();
                let latest = rest.get_u64_le();
                let flags = rest.get_u8();
                if flags & !3 != 0 {
                    return Err(FrameError(format!("unknown probe reply flags {flags:#x}")));
                }
                let code = rest.get_u8();
                let op = CollectiveOp::from_code(code).ok_or_else(|| FrameError(format!("unknown operation code {code}")))?;
                let root = rest.get_u32_le();
                let type_hash = rest.get_u32_le();
                Ok(Frame::ProbeReply(ProbeReply {
                    probed,
                    latest: (flags & 1 != 0).then_some(latest),
                    at_probed: (flags & 2 != 0).then_some(Signature { op, root, type_hash }),
                }))
            }
            KIND_PROBE_REPLY => Err(FrameError(format!("probe reply frame of {} bytes", body.len()))),
            KIND_GOODBYE => Err(FrameError("goodbye frame with trailing bytes".into())),
            other => Err(FrameError(format!("unknown frame kind {other}"))),
        }
    }
}

/// A stable 32-bit hash of a type's name, carried in headers to detect ranks that disagree
/// on the element type of a collective.
pub fn type_hash<T: ?Sized>() -> u32 {
    // FNV-1a: stable across builds and platforms, unlike `std`'s hasher.
    std::any::type_name::<T>()
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}
