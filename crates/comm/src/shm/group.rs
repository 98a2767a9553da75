//! One shared segment for all the ranks of a host, for the collectives that are cheapest
//! done flat: a barrier and an allreduce of a few kilobytes.
//!
//! Through point-to-point rings a barrier on `p` ranks takes ⌈log2 p⌉ rounds of messages,
//! each a frame written, found and decoded. Through this segment it takes one store and
//! one look at every other rank's slot: each rank owns a slot, writes what it brings to
//! a call there (its contribution to an allreduce, the call's number and signature) and
//! then publishes the call's *generation* (the count of flat calls made before it) in its
//! `arrived` word; a call is complete on a rank once every slot has arrived at its
//! generation. Every rank then reads every contribution and combines them in rank order,
//! so all ranks compute bit-identical results with no second round.
//!
//! Each slot holds two blocks, used by even and odd generations. A rank that starts
//! generation `g` has seen every rank arrive at `g - 1`, so every rank has finished
//! reading generation `g - 2`, the block it is about to overwrite: no further
//! acknowledgement is needed.
//!
//! A rank that has polled long enough sets its `sleeping` word and sleeps; a rank that
//! arrives sends each sleeper one wake-up byte over their pair's socket (the same one the
//! rings use). Both sides fence, so either the arriving rank sees the flag or the sleeper's
//! last look sees the arrival.
//!
//! The segment is created by rank 0 and handed to the others over their pair sockets at
//! start-up ([`agree`]), only when every rank reaches every other through rings; like the
//! rings it is an anonymous memory file, freed by the kernel when the last rank is gone.
//! Every value read from another rank's slot is checked before use.

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use tokio::net::UnixStream;

use super::{map_raw, memfd, recv_with_fd, send_with_fd, setup_error};
use crate::frame::{CollectiveOp, Signature};
use crate::{Error, Result};

/// The largest contribution to a flat allreduce, in bytes. Larger ones go through the
/// point-to-point algorithms (measured: at 8 KiB on 2 ranks the flat path still wins).
pub(crate) const FLAT_MAX: usize = 8 << 10;
const MAGIC: u64 = 0x6368_6f72_7573_4752;
const LINE: usize = 64;
/// One generation parity's block: a control line, then the contribution.
const BLOCK: usize = LINE + FLAT_MAX;
/// A rank's slot: the line with `arrived` and `sleeping`, then the two blocks.
const SLOT: usize = LINE + 2 * BLOCK;

// Offsets within a block's control line.
const GEN: usize = 0;
const SEQ: usize = 8;
const OP_ROOT: usize = 16;
const TYPE_HASH: usize = 24;
const LEN: usize = 32;

/// What a rank wrote for one flat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) gen: u64,
    pub(crate) seq: u64,
    pub(crate) sig: Signature,
    /// The contribution's length; it is in the segment only up to [`FLAT_MAX`] bytes.
    pub(crate) len: usize,
}

/// A peer wrote something the protocol does not allow into its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadSlot(pub(crate) String);

/// The shared segment of a host's ranks.
pub(crate) struct Group {
    base: *mut u8,
    len: usize,
    size: usize,
    /// Frees the memory when the group goes (`None` for memory owned elsewhere).
    unmap: Option<fn(*mut u8, usize)>,
}

// SAFETY: plain shared memory, accessed through atomics and through copies of blocks that
// only their owner writes, at times the generation protocol keeps apart.
unsafe impl Send for Group {}
// SAFETY: as above.
unsafe impl Sync for Group {}

impl Group {
    /// The bytes a group of `size` ranks takes.
    pub(crate) fn size_for(size: usize) -> usize {
        LINE + size * SLOT
    }

    /// Wraps a mapping of `len` bytes at `base` for `size` ranks, checking the header the
    /// creator wrote (or writing it, for the creator).
    ///
    /// # Safety
    /// `base` must point to `len` readable and writable bytes, aligned to 64, mapped until
    /// `unmap` is called on them (or for as long as the group lives when `unmap` is None).
    unsafe fn from_raw(base: *mut u8, len: usize, size: usize, create: bool, unmap: Option<fn(*mut u8, usize)>) -> std::result::Result<Group, BadSlot> {
        let group = Group { base, len, size, unmap };
        if len != Group::size_for(size) || base as usize % LINE != 0 {
            return Err(BadSlot(format!("a shared group segment of {len} bytes does not hold {size} ranks' slots")));
        }
        let magic = group.word(0);
        if create {
            magic.store(MAGIC, Ordering::Release);
        } else if magic.load(Ordering::Acquire) != MAGIC {
            return Err(BadSlot("the shared group segment is not chorus's (wrong magic)".into()));
        }
        Ok(group)
    }

    /// A group in this process's own memory (tests).
    #[cfg(test)]
    pub(crate) fn in_process(size: usize) -> Group {
        fn free(p: *mut u8, len: usize) {
            // SAFETY: allocated in `in_process` with this layout.
            unsafe { std::alloc::dealloc(p, std::alloc::Layout::from_size_align(len, LINE).expect("layout")) }
        }
        let len = Group::size_for(size);
        let layout = std::alloc::Layout::from_size_align(len, LINE).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        // SAFETY: freshly allocated, aligned, `len` bytes, freed by `free`.
        unsafe { Group::from_raw(base, len, size, true, Some(free)) }.expect("a valid group")
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= self.len && offset % 8 == 0);
        // SAFETY: in bounds and aligned (checked by the callers' layout), living as long
        // as `self`; AtomicU64 has the layout of u64.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }

    fn slot(&self, rank: usize) -> usize {
        assert!(rank < self.size, "rank {rank} has no slot in a group of {}", self.size);
        LINE + rank * SLOT
    }

    fn block(&self, rank: usize, gen: u64) -> usize {
        self.slot(rank) + LINE + (gen % 2) as usize * BLOCK
    }

    fn arrived_word(&self, rank: usize) -> &AtomicU64 {
        self.word(self.slot(rank))
    }

    fn sleeping_word(&self, rank: usize) -> &AtomicU32 {
        // SAFETY: the second word of the slot's first line, 4-aligned, in bounds.
        unsafe { AtomicU32::from_ptr(self.base.add(self.slot(rank) + 8).cast()) }
    }

    /// Publishes `rank`'s part in flat call `entry`: its contribution's length, the
    /// contribution itself when it fits ([`FLAT_MAX`]), then its arrival.
    pub(crate) fn arrive(&self, rank: usize, entry: Entry, data: &[u8]) {
        let block = self.block(rank, entry.gen);
        if data.len() <= FLAT_MAX {
            // SAFETY: the block's data area holds FLAT_MAX bytes; no rank reads this
            // parity's block before the arrival below (module docs).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(block + LINE), data.len()) };
        }
        self.word(block + GEN).store(entry.gen, Ordering::Relaxed);
        self.word(block + SEQ).store(entry.seq, Ordering::Relaxed);
        self.word(block + OP_ROOT).store(u64::from(entry.sig.op.code()) | u64::from(entry.sig.root) << 32, Ordering::Relaxed);
        self.word(block + TYPE_HASH).store(u64::from(entry.sig.type_hash), Ordering::Relaxed);
        self.word(block + LEN).store(data.len() as u64, Ordering::Relaxed);
        self.arrived_word(rank).store(entry.gen + 1, Ordering::Release);
        // Pairs with the fence in `set_sleeping`: a peer either sees this arrival in its
        // last look before sleeping, or we see its flag in `sleeping`.
        fence(Ordering::SeqCst);
    }

    /// Whether `rank` has arrived at generation `gen`.
    pub(crate) fn has_arrived(&self, rank: usize, gen: u64) -> bool {
        self.arrived_word(rank).load(Ordering::Acquire) > gen
    }

    /// What `rank` wrote for generation `gen`, once [`Group::has_arrived`] said so.
    pub(crate) fn entry(&self, rank: usize, gen: u64) -> std::result::Result<Entry, BadSlot> {
        let block = self.block(rank, gen);
        let op_root = self.word(block + OP_ROOT).load(Ordering::Relaxed);
        let op = CollectiveOp::from_code(op_root as u8)
            .ok_or_else(|| BadSlot(format!("rank {rank}'s slot names no collective ({:#x})", op_root as u8)))?;
        let type_hash = u32::try_from(self.word(block + TYPE_HASH).load(Ordering::Relaxed))
            .map_err(|_| BadSlot(format!("rank {rank}'s slot holds a type hash wider than 32 bits")))?;
        let len = usize::try_from(self.word(block + LEN).load(Ordering::Relaxed))
            .map_err(|_| BadSlot(format!("rank {rank}'s slot claims a contribution larger than memory")))?;
        Ok(Entry {
            gen: self.word(block + GEN).load(Ordering::Relaxed),
            seq: self.word(block + SEQ).load(Ordering::Relaxed),
            sig: Signature { op, root: (op_root >> 32) as u32, type_hash },
            len,
        })
    }

    /// A copy of `rank`'s contribution of `len` bytes to generation `gen`, if it is in the
    /// segment (at most [`FLAT_MAX`] bytes).
    pub(crate) fn contribution(&self, rank: usize, gen: u64, len: usize) -> Option<bytes::Bytes> {
        if len > FLAT_MAX {
            return None;
        }
        let at = self.block(rank, gen) + LINE;
        // SAFETY: `len` bytes within the block's data area, written by their owner before
        // it published its arrival, and not rewritten until this rank arrives again.
        Some(bytes::Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(self.base.add(at), len) }))
    }

    /// Marks `rank` asleep (or awake again), fenced against [`Group::arrive`].
    pub(crate) fn set_sleeping(&self, rank: usize, sleeping: bool) {
        self.sleeping_word(rank).store(u32::from(sleeping), Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Whether `rank` sleeps in a flat call and needs a wake-up.
    pub(crate) fn is_sleeping(&self, rank: usize) -> bool {
        self.sleeping_word(rank).load(Ordering::Relaxed) != 0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(unmap) = self.unmap.take() {
            unmap(self.base, self.len);
        }
    }
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: unmapping exactly a mapping `map_raw` made, once (from `Group::drop`).
    unsafe { libc::munmap(p.cast(), len) };
}

/// Start-up messages: rank 0's offer (with the segment's descriptor, or without), each
/// rank's answer, rank 0's decision.
const OFFER_GROUP: u8 = b'G';
const NO_GROUP: u8 = b'N';
const CAN_JOIN: u8 = b'Y';
const USE_GROUP: u8 = b'1';

/// Decides, on every rank alike, whether the job's ranks share a [`Group`], and hands it
/// out. `to_rank0` is this rank's ring socket to rank 0 (`None` on rank 0, or when rank 0
/// is reached otherwise); `peers` are rank 0's ring sockets (index = rank, `None` for
/// ranks reached otherwise); `all_rings` says whether this rank reaches every other
/// through rings.
///
/// Rank 0 offers the segment only when it reaches every rank through rings; each rank
/// answers whether it does too; the group is used only if all do. A rank that dies
/// meanwhile ends its socket, which fails the set-up at once.
pub(crate) async fn agree(
    rank: usize,
    size: usize,
    all_rings: bool,
    to_rank0: Option<&UnixStream>,
    peers: &[Option<&UnixStream>],
) -> Result<Option<Group>> {
    if rank == 0 {
        let created = if all_rings { create(size).ok() } else { None };
        let kind = if created.is_some() { OFFER_GROUP } else { NO_GROUP };
        let fd = created.as_ref().map(|(fd, _)| fd.as_raw_fd());
        for sock in peers.iter().flatten() {
            send_with_fd(sock, &[kind], fd).await.map_err(setup_error)?;
        }
        let Some((_, group)) = created else { return Ok(None) };
        let mut all = true;
        for sock in peers.iter().flatten() {
            let (answer, _) = recv_with_fd::<1>(sock).await.map_err(setup_error)?;
            all &= answer[0] == CAN_JOIN;
        }
        let decision = if all { USE_GROUP } else { NO_GROUP };
        for sock in peers.iter().flatten() {
            send_with_fd(sock, &[decision], None).await.map_err(setup_error)?;
        }
        return Ok(all.then_some(group));
    }
    let Some(sock) = to_rank0 else { return Ok(None) };
    let (offer, fd) = recv_with_fd::<1>(sock).await.map_err(setup_error)?;
    match (offer[0], fd) {
        (NO_GROUP, _) => Ok(None),
        (OFFER_GROUP, Some(fd)) => {
            let len = Group::size_for(size);
            // SAFETY: fstat into a zeroed struct on a descriptor we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let sized = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 && st.st_size as usize == len;
            let group = if sized {
                map_raw(&fd, len).ok().and_then(|base| {
                    // SAFETY: a fresh shared mapping of `len` bytes, unmapped by the group.
                    unsafe { Group::from_raw(base, len, size, false, Some(unmap)) }.ok()
                })
            } else {
                None
            };
            let answer = if group.is_some() && all_rings { CAN_JOIN } else { NO_GROUP };
            send_with_fd(sock, &[answer], None).await.map_err(setup_error)?;
            let (decision, _) = recv_with_fd::<1>(sock).await.map_err(setup_error)?;
            Ok(group.filter(|_| decision[0] == USE_GROUP))
        }
        (other, _) => Err(Error::Rendezvous(format!(
            "rank 0 sent an unknown shared-group offer ({other:#x}): is it another chorus build?"
        ))),
    }
}

/// Creates and maps the segment for `size` ranks.
fn create(size: usize) -> std::io::Result<(std::os::fd::OwnedFd, Group)> {
    let len = Group::size_for(size);
    let fd = memfd(c"chorus-group", len)?;
    let base = map_raw(&fd, len)?;
    // SAFETY: a fresh shared mapping of `len` bytes, unmapped by the group.
    let group = unsafe { Group::from_raw(base, len, size, true, Some(unmap)) }
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.0))?;
    Ok((fd, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(gen: u64, seq: u64) -> Entry {
        Entry { gen, seq, sig: Signature { op: CollectiveOp::Allreduce, root: 0, type_hash: 7 }, len: 3 }
    }

    #[test]
    fn an_arrival_publishes_the_entry_and_the_contribution_for_that_generation_only() {
        let g = Group::in_process(3);
        assert!(!g.has_arrived(1, 0));
        g.arrive(1, entry(0, 4), b"abc");
        assert!(g.has_arrived(1, 0));
        assert!(!g.has_arrived(1, 1));
        assert_eq!(g.entry(1, 0).unwrap(), entry(0, 4));
        assert_eq!(&g.contribution(1, 0, 3).unwrap()[..], b"abc");
        // The next generation uses the other block: generation 0's stays readable. A
        // contribution too large for the segment leaves only its length.
        let large = vec![1u8; FLAT_MAX + 1];
        g.arrive(1, Entry { len: large.len(), ..entry(1, 5) }, &large);
        assert_eq!(g.entry(1, 1).unwrap().len, FLAT_MAX + 1);
        assert_eq!(g.contribution(1, 1, FLAT_MAX + 1), None);
        assert_eq!(&g.contribution(1, 0, 3).unwrap()[..], b"abc");
        assert!(!g.has_arrived(0, 0) && !g.has_arrived(2, 0));
    }

    #[test]
    fn a_corrupt_slot_is_an_error_not_an_out_of_bounds_read() {
        let g = Group::in_process(2);
        g.arrive(1, entry(0, 0), b"abc");
        let block = g.block(1, 0);
        g.word(block + LEN).store(u64::MAX, Ordering::Relaxed);
        let e = g.entry(1, 0).unwrap();
        assert_eq!(g.contribution(1, 0, e.len), None);
        g.word(block + OP_ROOT).store(0xff, Ordering::Relaxed);
        assert!(g.entry(1, 0).unwrap_err().0.contains("names no collective"));
        g.word(block + OP_ROOT).store(0, Ordering::Relaxed);
        g.word(block + TYPE_HASH).store(u64::MAX, Ordering::Relaxed);
        assert!(g.entry(1, 0).is_err());
    }

    #[test]
    fn fuzzed_slots_never_panic() {
        let g = Group::in_process(2);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            for w in 0..(SLOT / 8) {
                if w % 17 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    g.word(g.slot(1) + w * 8).store(x, Ordering::Relaxed);
                }
            }
            for gen in [0, 1] {
                if let Ok(e) = g.entry(1, gen) {
                    if let Some(c) = g.contribution(1, gen, e.len) {
                        assert_eq!(c.len(), e.len);
                    }
                }
            }
            let _ = g.has_arrived(1, x);
        }
    }

    #[test]
    fn a_segment_of_the_wrong_size_or_magic_is_refused() {
        let g = Group::in_process(2);
        // SAFETY: the same live memory, viewed as a larger group: refused before any access.
        assert!(unsafe { Group::from_raw(g.base, g.len, 3, false, None) }.is_err());
        g.word(0).store(0, Ordering::Relaxed);
        // SAFETY: the same live memory, same size, wrong magic: refused.
        assert!(unsafe { Group::from_raw(g.base, g.len, 2, false, None) }.is_err());
    }
}
