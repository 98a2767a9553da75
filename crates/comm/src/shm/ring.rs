//! Single-producer/single-consumer byte rings in a shared mapping.
//!
//! A [`Segment`] holds two rings, one per direction of a pair of ranks. Each ring is a
//! byte pipe: the producer copies bytes in at `head`, the consumer copies them out at
//! `tail`, both positions count bytes since the start and only ever grow, and a position
//! is turned into an offset by masking with the (power-of-two) capacity. The frames of
//! [`crate::frame`] travel through it exactly as through a socket, so a frame may be larger
//! than the ring: the consumer assembles it as it arrives, or copies its payload straight
//! to where a caller wants it ([`Consumer::drain_placing`]): a large message then crosses
//! in two copies, the producer's into the ring and the consumer's out of it, both at once.
//!
//! Besides the positions each ring has two counters of waiting parties: the consumer's
//! threads that sleep for data, and the producer's that sleep for room. A side that moves
//! its position checks the other side's counter after a full fence and, only when someone
//! sleeps, sends a wake-up byte over the pair's Unix socket; while both run, a message
//! costs two copies and no system call.
//!
//! The other process can write anything into the mapping. Every value read from it is
//! checked (a `head` more than a capacity ahead of `tail`, a frame longer than
//! [`MAX_FRAME`](crate::frame::MAX_FRAME)) and turns into [`Corrupt`], never into an access
//! outside the mapping.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::frame;
use crate::pool::{BufferPool, POOLED_FRAME};

/// Bytes of bookkeeping in front of each ring's data: `head`, the producer's waiters,
/// `tail` and the consumer's waiters, each on a cache line of its own, so that the
/// counters, which change only when a side sleeps, stay in the other side's cache while
/// the positions move.
pub(crate) const RING_HEADER: usize = 256;
const HEAD_POS: usize = 0;
const PRODUCER_WAITING: usize = 64;
const TAIL: usize = 128;
const CONSUMER_WAITING: usize = 192;

/// Bytes a side copies before it publishes its position: the other side goes on with them
/// while this one copies the next, so that a large message is copied by both at once
/// (measured: 32 KiB to 1 MiB steps all run at memory speed; a whole ring per step halves
/// it, each side waiting for the other's copy to end).
const STEP: usize = 64 << 10;

/// The mapping is not what the protocol allows: the peer wrote nonsense into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) String);

/// A shared mapping of two rings of `capacity` bytes each.
pub(crate) struct Segment {
    base: *mut u8,
    len: usize,
    capacity: usize,
    /// Unmaps the memory when the segment goes.
    unmap: Option<Box<dyn FnOnce(*mut u8, usize) + Send + Sync>>,
}

// SAFETY: the segment is plain shared memory; every access to it goes through atomics or
// through copies of byte ranges that only one side writes at a time (guarded by the ring
// protocol), and the pointer stays valid until drop.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// The bytes two rings of `capacity` take.
    pub(crate) fn size_for(capacity: usize) -> usize {
        2 * (RING_HEADER + capacity)
    }

    /// Wraps a mapping of `len` bytes at `base`; `unmap` releases it on drop.
    ///
    /// # Safety
    /// `base` must point to `len` readable and writable bytes, aligned to 64, that stay
    /// mapped until `unmap` is called.
    pub(crate) unsafe fn from_raw(
        base: *mut u8,
        len: usize,
        unmap: Box<dyn FnOnce(*mut u8, usize) + Send + Sync>,
    ) -> Result<Segment, Corrupt> {
        let capacity = (len / 2).saturating_sub(RING_HEADER);
        if !capacity.is_power_of_two() || Segment::size_for(capacity) != len || base as usize % 64 != 0 {
            unmap(base, len);
            return Err(Corrupt(format!("a shared segment of {len} bytes does not hold two rings of a power-of-two size")));
        }
        Ok(Segment { base, len, capacity, unmap: Some(unmap) })
    }

    /// A segment in this process's own memory (tests, and the fuzzing of the protocol).
    #[cfg(test)]
    pub(crate) fn in_process(capacity: usize) -> Segment {
        let len = Segment::size_for(capacity);
        let layout = std::alloc::Layout::from_size_align(len, 64).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let unmap = Box::new(move |p: *mut u8, _| {
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(p, layout) }
        });
        // SAFETY: freshly allocated, aligned, `len` bytes.
        unsafe { Segment::from_raw(base, len, unmap) }.expect("a valid segment")
    }

    fn ring_base(&self, ring: usize) -> *mut u8 {
        debug_assert!(ring < 2);
        // SAFETY: ring 0 or 1 lies within the mapping by construction.
        unsafe { self.base.add(ring * (RING_HEADER + self.capacity)) }
    }

    fn word(&self, ring: usize, offset: usize) -> &AtomicU64 {
        // SAFETY: the offset is within the ring's header, 8-aligned, and the memory lives
        // as long as `self`; AtomicU64 has the layout of u64.
        unsafe { AtomicU64::from_ptr(self.ring_base(ring).add(offset).cast()) }
    }

    fn counter(&self, ring: usize, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `word`, 4-aligned.
        unsafe { AtomicU32::from_ptr(self.ring_base(ring).add(offset).cast()) }
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: the data follows the header within the mapping.
        unsafe { self.ring_base(ring).add(RING_HEADER) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(unmap) = self.unmap.take() {
            unmap(self.base, self.len);
        }
    }
}

/// Counts one more (or one fewer) waiting thread in `c`, fenced so that the other side's
/// next check sees it.
fn count_waiting(c: &AtomicU32, waiting: bool) {
    if waiting {
        c.fetch_add(1, Ordering::SeqCst);
    } else {
        c.fetch_sub(1, Ordering::SeqCst);
    }
    fence(Ordering::SeqCst);
}

/// Whether the other side counts any waiting thread (after a full fence, so that either it
/// sees what we just published or we see it waiting).
fn any_waiting(c: &AtomicU32) -> bool {
    fence(Ordering::SeqCst);
    c.load(Ordering::Relaxed) > 0
}

/// Checked `head - tail`.
fn used(head: u64, tail: u64, capacity: usize) -> Result<usize, Corrupt> {
    match head.checked_sub(tail) {
        Some(n) if n <= capacity as u64 => Ok(n as usize),
        _ => Err(Corrupt(format!("ring positions head {head} and tail {tail} are more than {capacity} bytes apart"))),
    }
}

/// The writing end of one ring.
pub(crate) struct Producer {
    segment: Arc<Segment>,
    ring: usize,
    /// Our own copy of `head`: the peer cannot move it.
    head: u64,
    /// `tail` as last read: the room it leaves is there for sure, so the consumer's line
    /// is read again only when that room is used up.
    tail: u64,
}

impl Producer {
    /// The producer of ring `ring` (0 or 1) of `segment`, starting where the ring is.
    pub(crate) fn new(segment: Arc<Segment>, ring: usize) -> Producer {
        let head = segment.word(ring, HEAD_POS).load(Ordering::Acquire);
        let tail = segment.word(ring, TAIL).load(Ordering::Acquire);
        Producer { segment, ring, head, tail }
    }

    /// Copies as much of `bytes` as there is room for, publishing it [`STEP`] bytes at a
    /// time; returns how many.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let s = &*self.segment;
        let cap = s.capacity;
        let mut written = 0;
        while written < bytes.len() {
            let rest = &bytes[written..];
            let mut free = cap - used(self.head, self.tail, cap)?;
            if free < rest.len().min(STEP) {
                self.tail = s.word(self.ring, TAIL).load(Ordering::Acquire);
                free = cap - used(self.head, self.tail, cap)?;
            }
            let at = (self.head as usize) & (cap - 1);
            // Up to the end of the data area: a step never wraps.
            let n = free.min(rest.len()).min(STEP).min(cap - at);
            if n == 0 {
                break;
            }
            // SAFETY: the range lies in the ring's data area; the consumer does not read
            // bytes between tail and head + n until head is published below.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), s.data(self.ring).add(at), n) };
            self.head += n as u64;
            s.word(self.ring, HEAD_POS).store(self.head, Ordering::Release);
            written += n;
        }
        Ok(written)
    }

    /// Whether the ring has room for at least one byte.
    pub(crate) fn has_room(&self) -> Result<bool, Corrupt> {
        let tail = self.segment.word(self.ring, TAIL).load(Ordering::Acquire);
        Ok(used(self.head, tail, self.segment.capacity)? < self.segment.capacity)
    }

    /// Whether the consumer has threads asleep waiting for data (read after a full fence,
    /// so that either they see our bytes or we see them waiting).
    pub(crate) fn consumer_waiting(&self) -> bool {
        any_waiting(self.segment.counter(self.ring, CONSUMER_WAITING))
    }

    /// Counts one more (or one fewer) of our threads asleep waiting for room.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        count_waiting(self.segment.counter(self.ring, PRODUCER_WAITING), waiting);
    }
}

/// The reading end of one ring, with the frame it is in the middle of.
pub(crate) struct Consumer {
    segment: Arc<Segment>,
    ring: usize,
    tail: u64,
    assembly: Assembly,
    /// Where large bodies are read into.
    pool: Arc<BufferPool>,
}

/// Bytes at the start of a data frame's body that say what the frame is (its header):
/// the consumer reads them before it decides where the rest goes.
pub(crate) const HEAD: usize = frame::DATA_HEADER_LEN;

/// Frames whose payload (the bytes after [`HEAD`]) is at least this long may be placed
/// straight into a caller's buffer; smaller ones are not worth the bookkeeping.
pub(crate) const PLACE_MIN: usize = 64 << 10;

/// What the consumer hands over for each frame it has read.
pub(crate) enum Delivery {
    /// The frame's body, in a buffer of its own.
    Body(Bytes),
    /// A frame whose payload went where the placer said: its [`HEAD`] bytes, where the
    /// payload went and its length.
    Placed { head: [u8; HEAD], dst: std::ptr::NonNull<u8>, len: usize },
}

/// Says, from a frame's [`HEAD`] bytes and its payload's length, where the payload goes:
/// `Some(p)` to write it to `p` (the placer vouches for `len` writable bytes there until
/// the frame is delivered or [`Consumer::abandon_placement`] is called), `None` for a
/// buffer of its own. Asked once per frame whose body is at least [`HEAD`] bytes long;
/// `can_place` says whether the frame is large enough ([`PLACE_MIN`]) to be placed at
/// all, so that a placer can account for the small ones too.
pub(crate) type Placer<'a> = dyn FnMut(&[u8; HEAD], usize, bool) -> Option<std::ptr::NonNull<u8>> + 'a;

/// Where the frame being read stands.
#[derive(Default)]
enum Phase {
    /// Reading the 4-byte length prefix.
    #[default]
    Length,
    /// Reading the first [`HEAD`] bytes of a body of `len` bytes.
    Head { len: usize },
    /// Reading a body into its own buffer.
    Body,
    /// Copying a payload of `len` bytes to `dst` (`written` so far); `discard`: its
    /// placer has gone, the rest is skipped.
    Placed { dst: std::ptr::NonNull<u8>, len: usize, written: usize, discard: bool },
}

/// A frame being read: its length prefix, then its body, kept in a buffer or placed.
#[derive(Default)]
struct Assembly {
    len: [u8; 4],
    have_len: usize,
    head: [u8; HEAD],
    have_head: usize,
    /// The body's buffer (from the pool for bodies of [`POOLED_FRAME`] bytes or more):
    /// `expected` bytes of it are the body, `filled` so far.
    body: Vec<u8>,
    filled: usize,
    expected: usize,
    phase: Phase,
}

// SAFETY: the only pointer is a placed frame's destination, which its placer vouched for
// (see `Placer`) whichever thread goes on copying into it.
unsafe impl Send for Assembly {}

impl Assembly {
    /// Takes bytes from `input`, returning how many it used and, when a frame is complete,
    /// what became of it; `place` says where each frame's payload goes.
    fn take_placing(&mut self, input: &[u8], place: &mut Placer<'_>, pool: &Arc<BufferPool>) -> Result<(usize, Option<Delivery>), Corrupt> {
        match &mut self.phase {
            Phase::Length => {
                let n = (4 - self.have_len).min(input.len());
                self.len[self.have_len..self.have_len + n].copy_from_slice(&input[..n]);
                self.have_len += n;
                if self.have_len < 4 {
                    return Ok((n, None));
                }
                let len = frame::decode_length(self.len);
                if len > frame::MAX_FRAME {
                    return Err(Corrupt(format!("a frame of {len} bytes exceeds the {}-byte limit", frame::MAX_FRAME)));
                }
                self.expected = len;
                if len >= HEAD {
                    self.have_head = 0;
                    self.phase = Phase::Head { len };
                    return Ok((n, None));
                }
                self.start_body(pool);
                if len == 0 {
                    return Ok((n, Some(Delivery::Body(self.finish(pool)))));
                }
                Ok((n, None))
            }
            Phase::Head { len } => {
                let len = *len;
                let n = (HEAD - self.have_head).min(input.len());
                self.head[self.have_head..self.have_head + n].copy_from_slice(&input[..n]);
                self.have_head += n;
                if self.have_head < HEAD {
                    return Ok((n, None));
                }
                let payload = len - HEAD;
                let can_place = payload >= PLACE_MIN;
                if let Some(dst) = place(&self.head, payload, can_place).filter(|_| can_place) {
                    self.phase = Phase::Placed { dst, len: payload, written: 0, discard: false };
                    return Ok((n, None));
                }
                self.start_body(pool);
                self.body[..HEAD].copy_from_slice(&self.head);
                self.filled = HEAD;
                if payload == 0 {
                    return Ok((n, Some(Delivery::Body(self.finish(pool)))));
                }
                Ok((n, None))
            }
            Phase::Body => {
                let n = (self.expected - self.filled).min(input.len());
                self.body[self.filled..self.filled + n].copy_from_slice(&input[..n]);
                self.filled += n;
                if self.filled == self.expected {
                    return Ok((n, Some(Delivery::Body(self.finish(pool)))));
                }
                Ok((n, None))
            }
            Phase::Placed { dst, len, written, discard } => {
                let n = (*len - *written).min(input.len());
                if !*discard {
                    // SAFETY: the placer vouched for `len` writable bytes at `dst`, and
                    // `written + n <= len`; the input lies in the ring, apart from them.
                    unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), dst.as_ptr().add(*written), n) };
                }
                *written += n;
                if *written < *len {
                    return Ok((n, None));
                }
                let delivered = (!*discard).then_some(Delivery::Placed { head: self.head, dst: *dst, len: *len });
                self.reset();
                Ok((n, delivered))
            }
        }
    }

    /// The [`HEAD`] bytes and payload length of a frame being read into a buffer of its
    /// own, if one is.
    fn in_flight(&self) -> Option<(&[u8; HEAD], usize)> {
        matches!(self.phase, Phase::Body).then_some(())?;
        (self.expected >= HEAD).then_some((&self.head, self.expected - HEAD))
    }

    /// Readies a buffer for a body of `expected` bytes.
    fn start_body(&mut self, pool: &BufferPool) {
        self.body = if self.expected >= POOLED_FRAME { pool.take() } else { vec![0; self.expected] };
        self.filled = 0;
        self.phase = Phase::Body;
    }

    fn finish(&mut self, pool: &Arc<BufferPool>) -> Bytes {
        let len = self.expected;
        self.reset();
        let body = std::mem::take(&mut self.body);
        if len >= POOLED_FRAME {
            pool.frame(body, len)
        } else {
            Bytes::from(body)
        }
    }

    fn reset(&mut self) {
        self.have_len = 0;
        self.have_head = 0;
        self.expected = 0;
        self.phase = Phase::Length;
    }
}

impl Consumer {
    /// The consumer of ring `ring` (0 or 1) of `segment`, reading large bodies into
    /// buffers of `pool`.
    pub(crate) fn new(segment: Arc<Segment>, ring: usize, pool: Arc<BufferPool>) -> Consumer {
        let tail = segment.word(ring, TAIL).load(Ordering::Acquire);
        Consumer { segment, ring, tail, assembly: Assembly::default(), pool }
    }

    /// Whether bytes are waiting (one atomic load: cheap enough to poll).
    pub(crate) fn has_data(&self) -> bool {
        self.segment.word(self.ring, HEAD_POS).load(Ordering::Acquire) != self.tail
    }

    /// Reads every byte there is, handing each complete frame to `frame`; returns whether
    /// it read anything (then the producer may be waiting for the room).
    #[cfg(test)]
    pub(crate) fn drain(&mut self, mut frame: impl FnMut(Bytes)) -> Result<bool, Corrupt> {
        self.drain_placing(&mut |_, _, _| None, &mut |d| {
            if let Delivery::Body(b) = d {
                frame(b)
            }
        })
    }

    /// Reads every byte there is, handing each complete frame to `frame` and asking
    /// `place` where each frame's payload goes (see [`Placer`]): a frame placed arrives as
    /// [`Delivery::Placed`], its payload already where `place` said, copied as it came
    /// in. Returns whether it read anything (then the producer may be waiting for room).
    pub(crate) fn drain_placing(&mut self, place: &mut Placer<'_>, frame: &mut dyn FnMut(Delivery)) -> Result<bool, Corrupt> {
        let s = &*self.segment;
        let cap = s.capacity;
        let head = s.word(self.ring, HEAD_POS).load(Ordering::Acquire);
        let mut avail = used(head, self.tail, cap)?;
        if avail == 0 {
            return Ok(false);
        }
        let mut published = self.tail;
        while avail > 0 {
            let at = (self.tail as usize) & (cap - 1);
            let run = avail.min(cap - at).min(STEP);
            // SAFETY: `run` bytes from `at` lie in the data area, and the producer does not
            // write them until `tail` moves past them below.
            let input = unsafe { std::slice::from_raw_parts(s.data(self.ring).add(at), run) };
            let (n, done) = self.assembly.take_placing(input, place, &self.pool)?;
            self.tail += n as u64;
            avail -= n;
            if self.tail - published >= STEP as u64 {
                // The producer may go on writing into what we have copied out.
                s.word(self.ring, TAIL).store(self.tail, Ordering::Release);
                published = self.tail;
            }
            if let Some(delivery) = done {
                frame(delivery);
            }
        }
        s.word(self.ring, TAIL).store(self.tail, Ordering::Release);
        Ok(true)
    }

    /// The [`HEAD`] bytes and payload length of a frame partly read into a buffer of its
    /// own (its placer was asked before the caller could say where it goes).
    pub(crate) fn in_flight(&self) -> Option<(&[u8; HEAD], usize)> {
        self.assembly.in_flight()
    }

    /// Stops copying the frame being placed, if one is: its placer is going, and the rest
    /// of its bytes are skipped (the frame is not delivered).
    pub(crate) fn abandon_placement(&mut self) {
        if let Phase::Placed { discard, .. } = &mut self.assembly.phase {
            *discard = true;
        }
    }

    /// Whether the producer has threads asleep waiting for room (after a full fence).
    pub(crate) fn producer_waiting(&self) -> bool {
        any_waiting(self.segment.counter(self.ring, PRODUCER_WAITING))
    }

    /// Counts one more (or one fewer) of our threads asleep waiting for data.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        count_waiting(self.segment.counter(self.ring, CONSUMER_WAITING), waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = frame::encode_length(body.len()).to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_larger_than_the_ring_pass_through_in_order() {
        let seg = Arc::new(Segment::in_process(64));
        let (mut tx, mut rx) = (Producer::new(seg.clone(), 1), Consumer::new(seg.clone(), 1, Arc::default()));
        let bodies: Vec<Vec<u8>> = vec![vec![], vec![7; 3], (0..300u32).map(|i| i as u8).collect(), vec![9; 64]];
        let stream: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        let mut got = Vec::new();
        let mut at = 0;
        while at < stream.len() || rx.has_data() {
            at += tx.write(&stream[at..]).unwrap();
            rx.drain(|b| got.push(b.to_vec())).unwrap();
        }
        assert_eq!(got, bodies);
    }

    #[test]
    fn a_head_too_far_ahead_is_reported_not_read() {
        let seg = Arc::new(Segment::in_process(64));
        let mut rx = Consumer::new(seg.clone(), 0, Arc::default());
        seg.word(0, HEAD_POS).store(65, Ordering::Release);
        assert!(rx.drain(|_| ()).is_err());
        seg.word(0, HEAD_POS).store(u64::MAX, Ordering::Release);
        assert!(rx.drain(|_| ()).is_err());
        let mut tx = Producer::new(seg.clone(), 1);
        seg.word(1, TAIL).store(1, Ordering::Release);
        // Read again once the room known for sure is used up (here at once).
        assert!(tx.write(&[0; 65]).is_err(), "a tail ahead of head is nonsense");
    }

    #[test]
    fn an_oversized_frame_length_is_refused_before_it_is_buffered() {
        let seg = Arc::new(Segment::in_process(64));
        let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg, 0, Arc::default()));
        tx.write(&((frame::MAX_FRAME + 1) as u32).to_be_bytes()).unwrap();
        assert!(rx.drain(|_| ()).is_err());
    }

    /// A data frame of collective `seq` whose payload is `payload`.
    fn data_frame(seq: u64, flags: u8, payload: &[u8]) -> Vec<u8> {
        let h = frame::DataHeader {
            space: frame::Space::Collective,
            flags,
            sig: frame::Signature { op: frame::CollectiveOp::Bcast, root: 0, type_hash: 0 },
            seq,
            total: 1 << 30,
        };
        let mut body = h.encode().to_vec();
        body.extend_from_slice(payload);
        framed(&body)
    }

    /// Places the payloads of collective 7's frames one after another in `dst`.
    fn placer(dst: &mut [u8]) -> impl FnMut(&[u8; HEAD], usize, bool) -> Option<std::ptr::NonNull<u8>> + '_ {
        let mut at = 0;
        move |head, len, can_place| {
            let h = frame::DataHeader::decode(head).ok()?;
            if h.seq != 7 || !can_place {
                return None;
            }
            let p = std::ptr::NonNull::new(dst[at..at + len].as_mut_ptr());
            at += len;
            p
        }
    }

    #[test]
    fn an_abandoned_placement_skips_the_rest_of_its_frame_and_the_next_one_arrives_whole() {
        let seg = Arc::new(Segment::in_process(1 << 16));
        let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg, 0, Arc::default()));
        let big: Vec<u8> = (0..PLACE_MIN + 100).map(|i| i as u8).collect();
        let mut stream = data_frame(7, 0, &big);
        stream.extend(data_frame(8, frame::LAST, b"after"));
        let mut dst = vec![0u8; big.len()];
        let mut place = placer(&mut dst);
        let mut got = Vec::new();
        // Half the large frame, then the placer goes.
        let half = stream.len() / 3;
        tx.write(&stream[..half]).unwrap();
        rx.drain_placing(&mut place, &mut |d| got.push(matches!(d, Delivery::Placed { .. }))).unwrap();
        rx.abandon_placement();
        let mut at = half;
        while at < stream.len() || rx.has_data() {
            at += tx.write(&stream[at..]).unwrap();
            rx.drain_placing(&mut |_, _, _| None, &mut |d| {
                if let Delivery::Body(b) = d {
                    assert_eq!(&b[frame::DATA_HEADER_LEN..], b"after");
                    got.push(false);
                }
            })
            .unwrap();
        }
        assert_eq!(got, vec![false], "the abandoned frame is not delivered; the next one is");
    }

    proptest! {
        /// Any bytes in the header and data (a corrupt or hostile peer) end in frames or in
        /// `Corrupt`, never in a panic or a read outside the mapping.
        #[test]
        fn fuzzed_rings_never_read_out_of_bounds(words in proptest::collection::vec(any::<u64>(), 4), data in proptest::collection::vec(any::<u8>(), 256)) {
            let seg = Arc::new(Segment::in_process(256));
            let mut rx = Consumer::new(seg.clone(), 0, Arc::default());
            // SAFETY: the data area of ring 0 is 256 bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), seg.data(0), 256) };
            seg.word(0, HEAD_POS).store(words[0], Ordering::Release);
            seg.word(0, TAIL).store(words[1], Ordering::Release);
            let mut rx2 = Consumer::new(seg.clone(), 0, Arc::default());
            seg.word(0, HEAD_POS).store(words[2] % 1024, Ordering::Release);
            let mut frames = 0;
            let _ = rx.drain(|_| frames += 1);
            let _ = rx2.drain(|_| frames += 1);
            let mut tx = Producer::new(seg.clone(), 0);
            seg.word(0, TAIL).store(words[3], Ordering::Release);
            let _ = tx.write(&data);
            let _ = tx.has_room();
        }

        /// Frames placed by a placer land in place and in order, whatever the ring size and
        /// the interleaving, and the frames between them arrive whole as before.
        #[test]
        fn placed_frames_land_in_place_and_the_others_whole(cap_log in 12u32..18, sizes in proptest::collection::vec((any::<bool>(), 0usize..3 * PLACE_MIN), 1..8), step in 1000usize..200_000) {
            let seg = Arc::new(Segment::in_process(1 << cap_log));
            let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg.clone(), 0, Arc::default()));
            let frames: Vec<(bool, Vec<u8>)> = sizes.iter().enumerate().map(|(i, &(ours, n))| (ours, (0..n).map(|j| (i * 31 + j / 7) as u8).collect())).collect();
            let stream: Vec<u8> = frames.iter().flat_map(|(ours, p)| data_frame(if *ours { 7 } else { 9 }, 0, p)).collect();
            let expect_placed: Vec<u8> = frames.iter().filter(|(ours, p)| *ours && p.len() >= PLACE_MIN).flat_map(|(_, p)| p.clone()).collect();
            let expect_bodies: Vec<Vec<u8>> = frames.iter().filter(|(ours, p)| !*ours || p.len() < PLACE_MIN).map(|(_, p)| p.clone()).collect();
            let mut dst = vec![0u8; expect_placed.len()];
            let mut place = placer(&mut dst);
            let (mut bodies, mut placed) = (Vec::new(), 0);
            let mut at = 0;
            while at < stream.len() || rx.has_data() {
                let end = (at + step).min(stream.len());
                at += tx.write(&stream[at..end]).unwrap();
                rx.drain_placing(&mut place, &mut |d| match d {
                    Delivery::Body(b) => bodies.push(b[frame::DATA_HEADER_LEN..].to_vec()),
                    Delivery::Placed { len, .. } => placed += len,
                }).unwrap();
            }
            drop(place);
            prop_assert_eq!(bodies, expect_bodies);
            prop_assert_eq!(placed, expect_placed.len());
            prop_assert!(dst == expect_placed);
        }

        /// Whatever the ring size and the way writes and reads interleave, the frames come
        /// out whole and in order.
        #[test]
        fn frames_arrive_whole_and_in_order(cap_log in 4u32..10, sizes in proptest::collection::vec(0usize..2000, 1..20), step in 1usize..700) {
            let seg = Arc::new(Segment::in_process(1 << cap_log));
            let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg.clone(), 0, Arc::default()));
            let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect()).collect();
            let stream: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
            let mut got = Vec::new();
            let mut at = 0;
            while at < stream.len() || rx.has_data() {
                let end = (at + step).min(stream.len());
                at += tx.write(&stream[at..end]).unwrap();
                rx.drain(|b| got.push(b.to_vec())).unwrap();
            }
            prop_assert_eq!(got, bodies);
        }
    }
}
