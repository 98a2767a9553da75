//! Single-producer/single-consumer byte rings in a shared mapping.
//!
//! A [`Segment`] holds two rings, one per direction of a pair of ranks. Each ring is a
//! byte pipe: the producer copies bytes in at `head`, the consumer copies them out at
//! `tail`, both positions count bytes since the start and only ever grow, and a position
//! is turned into an offset by masking with the (power-of-two) capacity. The frames of
//! [`crate::frame`] travel through it exactly as through a socket, so a frame may be larger
//! than the ring: the consumer assembles it as it arrives ([`Assembly`]).
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

/// Bytes of bookkeeping in front of each ring's data: `head`, the producer's waiters,
/// `tail` and the consumer's waiters, each on a cache line of its own, so that the
/// counters, which change only when a side sleeps, stay in the other side's cache while
/// the positions move.
pub(crate) const RING_HEADER: usize = 256;
const HEAD: usize = 0;
const PRODUCER_WAITING: usize = 64;
const TAIL: usize = 128;
const CONSUMER_WAITING: usize = 192;

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
        let head = segment.word(ring, HEAD).load(Ordering::Acquire);
        let tail = segment.word(ring, TAIL).load(Ordering::Acquire);
        Producer { segment, ring, head, tail }
    }

    /// Copies as much of `bytes` as there is room for and publishes it; returns how many.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let s = &*self.segment;
        let cap = s.capacity;
        let mut free = cap - used(self.head, self.tail, cap)?;
        if free < bytes.len() {
            self.tail = s.word(self.ring, TAIL).load(Ordering::Acquire);
            free = cap - used(self.head, self.tail, cap)?;
        }
        let n = free.min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        let at = (self.head as usize) & (cap - 1);
        let first = n.min(cap - at);
        // SAFETY: both ranges lie in the ring's data area; the consumer does not read
        // bytes between tail and head + n until head is published below.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.data(self.ring).add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), s.data(self.ring), n - first);
        }
        self.head += n as u64;
        s.word(self.ring, HEAD).store(self.head, Ordering::Release);
        Ok(n)
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
}

/// A frame being read: its length prefix, then its body.
#[derive(Default)]
pub(crate) struct Assembly {
    len: [u8; 4],
    have_len: usize,
    body: Vec<u8>,
    expected: usize,
}

impl Assembly {
    /// Takes bytes from `input`, returning how many it used and, when a frame is complete,
    /// its body.
    pub(crate) fn take(&mut self, input: &[u8]) -> Result<(usize, Option<Bytes>), Corrupt> {
        if self.have_len < 4 {
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
            self.body = Vec::with_capacity(len);
            if len == 0 {
                return Ok((n, Some(self.finish())));
            }
            return Ok((n, None));
        }
        let n = (self.expected - self.body.len()).min(input.len());
        self.body.extend_from_slice(&input[..n]);
        if self.body.len() == self.expected {
            return Ok((n, Some(self.finish())));
        }
        Ok((n, None))
    }

    fn finish(&mut self) -> Bytes {
        self.have_len = 0;
        self.expected = 0;
        Bytes::from(std::mem::take(&mut self.body))
    }
}

impl Consumer {
    /// The consumer of ring `ring` (0 or 1) of `segment`.
    pub(crate) fn new(segment: Arc<Segment>, ring: usize) -> Consumer {
        let tail = segment.word(ring, TAIL).load(Ordering::Acquire);
        Consumer { segment, ring, tail, assembly: Assembly::default() }
    }

    /// Whether bytes are waiting (one atomic load: cheap enough to poll).
    pub(crate) fn has_data(&self) -> bool {
        self.segment.word(self.ring, HEAD).load(Ordering::Acquire) != self.tail
    }

    /// Reads every byte there is, handing each complete frame to `frame`; returns whether
    /// it read anything (then the producer may be waiting for the room).
    pub(crate) fn drain(&mut self, mut frame: impl FnMut(Bytes)) -> Result<bool, Corrupt> {
        let s = &*self.segment;
        let cap = s.capacity;
        let head = s.word(self.ring, HEAD).load(Ordering::Acquire);
        let mut avail = used(head, self.tail, cap)?;
        if avail == 0 {
            return Ok(false);
        }
        while avail > 0 {
            let at = (self.tail as usize) & (cap - 1);
            let run = avail.min(cap - at);
            // SAFETY: `run` bytes from `at` lie in the data area, and the producer does not
            // write them until `tail` moves past them below.
            let input = unsafe { std::slice::from_raw_parts(s.data(self.ring).add(at), run) };
            let (n, done) = self.assembly.take(input)?;
            self.tail += n as u64;
            avail -= n;
            if let Some(body) = done {
                frame(body);
            }
        }
        s.word(self.ring, TAIL).store(self.tail, Ordering::Release);
        Ok(true)
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
        let (mut tx, mut rx) = (Producer::new(seg.clone(), 1), Consumer::new(seg.clone(), 1));
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
        let mut rx = Consumer::new(seg.clone(), 0);
        seg.word(0, HEAD).store(65, Ordering::Release);
        assert!(rx.drain(|_| ()).is_err());
        seg.word(0, HEAD).store(u64::MAX, Ordering::Release);
        assert!(rx.drain(|_| ()).is_err());
        let mut tx = Producer::new(seg.clone(), 1);
        seg.word(1, TAIL).store(1, Ordering::Release);
        // Read again once the room known for sure is used up (here at once).
        assert!(tx.write(&[0; 65]).is_err(), "a tail ahead of head is nonsense");
    }

    #[test]
    fn an_oversized_frame_length_is_refused_before_it_is_buffered() {
        let seg = Arc::new(Segment::in_process(64));
        let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg, 0));
        tx.write(&((frame::MAX_FRAME + 1) as u32).to_be_bytes()).unwrap();
        assert!(rx.drain(|_| ()).is_err());
    }

    proptest! {
        /// Any bytes in the header and data (a corrupt or hostile peer) end in frames or in
        /// `Corrupt`, never in a panic or a read outside the mapping.
        #[test]
        fn fuzzed_rings_never_read_out_of_bounds(words in proptest::collection::vec(any::<u64>(), 4), data in proptest::collection::vec(any::<u8>(), 256)) {
            let seg = Arc::new(Segment::in_process(256));
            let mut rx = Consumer::new(seg.clone(), 0);
            // SAFETY: the data area of ring 0 is 256 bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), seg.data(0), 256) };
            seg.word(0, HEAD).store(words[0], Ordering::Release);
            seg.word(0, TAIL).store(words[1], Ordering::Release);
            let mut rx2 = Consumer::new(seg.clone(), 0);
            seg.word(0, HEAD).store(words[2] % 1024, Ordering::Release);
            let mut frames = 0;
            let _ = rx.drain(|_| frames += 1);
            let _ = rx2.drain(|_| frames += 1);
            let mut tx = Producer::new(seg.clone(), 0);
            seg.word(0, TAIL).store(words[3], Ordering::Release);
            let _ = tx.write(&data);
            let _ = tx.has_room();
        }

        /// Whatever the ring size and the way writes and reads interleave, the frames come
        /// out whole and in order.
        #[test]
        fn frames_arrive_whole_and_in_order(cap_log in 4u32..10, sizes in proptest::collection::vec(0usize..2000, 1..20), step in 1usize..700) {
            let seg = Arc::new(Segment::in_process(1 << cap_log));
            let (mut tx, mut rx) = (Producer::new(seg.clone(), 0), Consumer::new(seg.clone(), 0));
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
