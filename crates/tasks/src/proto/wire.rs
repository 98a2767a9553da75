//! The frame codec of the task protocol.
//!
//! A frame is chorus-comm's: a 4-byte big-endian length, then the body
//! ([`chorus_comm::frame::encode_length`]). The body's first byte tags the message
//! type — one type per role and direction ([`Message::TAG`]) — and the rest is the
//! postcard encoding of the message. A reader therefore tells a message meant for
//! another role from a malformed one, and names both in its error.
//!
//! Frames are bounded by [`MAX_FRAME`]: a reader rejects a longer length before it
//! allocates anything, and writers split batches ([`encode_batched`]) so that no frame
//! they produce comes near it. Bulk bytes never travel in frames: they follow a data
//! header as a plain byte stream (see `crate::data`).

use std::io::Read;

use chorus_comm::frame::{decode_length, encode_length, LENGTH_PREFIX};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame a task-protocol reader accepts.
pub const MAX_FRAME: usize = 64 << 20;
/// Batches of tasks, results or reports are cut into frames of about this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;

/// A message type of the task protocol: one per role and direction.
pub trait Message: Serialize + DeserializeOwned {
    /// The first byte of every frame of this type.
    const TAG: u8;
    /// What the type is, for errors ("a worker's message to the scheduler").
    const NAME: &'static str;
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection between frames.
    #[error("the connection was closed")]
    Closed,
    /// Reading failed.
    #[error("reading failed: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix announced more than the limit.
    #[error("a frame of {len} bytes is larger than the limit of {MAX_FRAME} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// A well-formed message of another role or direction.
    #[error("expected {expected}, received {found}")]
    WrongRole {
        /// What the connection carries.
        expected: &'static str,
        /// What arrived instead.
        found: &'static str,
    },
    /// Bytes that are no message.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was expected.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// Every message type's tag and name, to name a message that arrived on the wrong
/// connection.
const TAGS: &[(u8, &str)] = &[
    (super::FromWorker::TAG, super::FromWorker::NAME),
    (super::ToWorker::TAG, super::ToWorker::NAME),
    (super::FromClient::TAG, super::FromClient::NAME),
    (super::ToClient::TAG, super::ToClient::NAME),
    (super::FromObserver::TAG, super::FromObserver::NAME),
    (super::ToObserver::TAG, super::ToObserver::NAME),
    (super::DataRequest::TAG, super::DataRequest::NAME),
    (super::DataReply::TAG, super::DataReply::NAME),
];

/// Appends `msg` as one frame to `out`.
pub fn encode_into<M: Message>(msg: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    out.push(M::TAG);
    // Writing into a Vec cannot fail, and every message type here is serializable.
    *out = postcard::to_extend(msg, std::mem::take(out)).expect("task-protocol messages always encode");
    let len = out.len() - start - LENGTH_PREFIX;
    out[start..start + LENGTH_PREFIX].copy_from_slice(&encode_length(len));
}

/// `msg` as one frame.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    let mut v = Vec::new();
    encode_into(msg, &mut v);
    v
}

/// Appends `items` to `out` as frames of `wrap(part)`, each part's frame at most about
/// `limit` bytes (one item alone may make a frame of up to [`MAX_FRAME`]). Returns the
/// indexes of the items that are larger than [`MAX_FRAME`] on their own, which are left
/// out: the caller fails them with an error that names the limit.
///
/// `wrap` must put the items in a newtype variant holding a `Vec`: the frame is then
/// the variant's header followed by the items' encodings, so each item is encoded once.
pub fn encode_batched<M: Message, T: Serialize>(
    items: &[T],
    wrap: impl Fn(Vec<T>) -> M,
    out: &mut Vec<u8>,
    limit: usize,
) -> Vec<usize> {
    if items.is_empty() {
        return Vec::new();
    }
    // postcard writes a newtype variant of a Vec as (variant, count, items…): take the
    // variant's bytes from an empty batch, whose count is the single byte 0.
    let mut head = postcard::to_stdvec(&wrap(Vec::new())).expect("task-protocol messages always encode");
    debug_assert_eq!(head.last(), Some(&0));
    head.pop();
    let mut too_large = Vec::new();
    let mut body = Vec::new();
    let mut count = 0usize;
    let flush = |body: &mut Vec<u8>, count: &mut usize, out: &mut Vec<u8>| {
        if *count == 0 {
            return;
        }
        let mut varint = [0u8; 10];
        let n = postcard::to_slice(&(*count as u64), &mut varint).expect("10 bytes hold any varint").len();
        let len = 1 + head.len() + n + body.len();
        out.extend_from_slice(&encode_length(len));
        out.push(M::TAG);
        out.extend_from_slice(&head);
        out.extend_from_slice(&varint[..n]);
        out.append(body);
        *count = 0;
    };
    for (i, item) in items.iter().enumerate() {
        let before = body.len();
        body = postcard::to_extend(item, body).expect("task-protocol messages always encode");
        let size = body.len() - before;
        if size + head.len() + 16 > MAX_FRAME {
            body.truncate(before);
            too_large.push(i);
            continue;
        }
        if before > 0 && body.len() > limit {
            // This item starts the next frame.
            let item_bytes = body.split_off(before);
            flush(&mut body, &mut count, out);
            body = item_bytes;
        }
        count += 1;
    }
    flush(&mut body, &mut count, out);
    too_large
}

/// Reads one frame into `buf` and decodes it as an `M`. A malformed, oversized or
/// foreign frame is an error, never a panic; the end of the stream between frames is
/// [`WireError::Closed`].
pub fn read<M: Message>(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<M, WireError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(WireError::Io(e)),
    }
    let len = decode_length(prefix);
    if len > MAX_FRAME {
        return Err(WireError::TooLarge { len });
    }
    buf.clear();
    // Grow as bytes arrive, so that a lying length costs no more memory than was sent.
    buf.reserve(len.min(1 << 20));
    let got = r.by_ref().take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    decode(buf)
}

/// Decodes one frame body (tag and message).
pub fn decode<M: Message>(body: &[u8]) -> Result<M, WireError> {
    let Some((&tag, rest)) = body.split_first() else {
        return Err(WireError::Malformed { what: M::NAME, detail: "an empty frame".into() });
    };
    if tag != M::TAG {
        return Err(match TAGS.iter().find(|(t, _)| *t == tag) {
            Some((_, found)) => WireError::WrongRole { expected: M::NAME, found },
            None => WireError::Malformed { what: M::NAME, detail: format!("unknown message tag {tag:#04x}") },
        });
    }
    postcard::from_bytes(rest).map_err(|e| WireError::Malformed { what: M::NAME, detail: e.to_string() })
}
