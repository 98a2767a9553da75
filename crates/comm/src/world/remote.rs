//! Single-copy large messages between ranks of one host.
//!
//! A collective message of at least [`REMOTE_MIN`] bytes to a peer that can read this
//! process's memory ([`crate::shm`]) is not copied through the ring: the sender writes a
//! data frame flagged [`REMOTE`] whose payload says where the message lies
//! ([`RemoteParts`]), the receiver copies it with `process_vm_readv` straight into its
//! destination and answers [`Frame::Taken`], and only then does the sender's call return
//! (its buffer is borrowed until then). Only collectives use it: both sides are in the
//! same call, so the sender waiting for the copy cannot deadlock, whereas a tagged send
//! must complete whether or not its receive has been posted yet.
//!
//! The sender would sit idle while the receiver copies, so for messages of at least
//! [`SHARE_MIN`] bytes, when the sender may write into the receiver's memory, the
//! receiver asks it to copy the tail ([`Frame::Share`]) with `process_vm_writev` while
//! the receiver reads the head: two cores copy at once. The sender answers
//! [`Frame::Written`] with how long its write took (or that it would not write, once the
//! job is aborted), and the receiver answers [`Frame::Taken`] only after that, so that
//! neither side's buffer goes while the other may still copy.
//!
//! The two directions seldom run at the same speed. A cross-memory copy pins the other
//! process's pages one at a time, so it is about twice as fast when that memory is backed
//! by 2 MiB pages (as the receive buffers chorus allocates are, [`crate::cma`]) as when it
//! is in 4 KiB pages (as a `Vec` of the user's usually is). Each rank keeps, per peer,
//! the rates it measured both ways in recent shared copies ([`CopyRates`]) and divides
//! the next so that both sides should finish together. A large copy whose sender is busy
//! with other copies of the same collective (an allgather's) is written whole by the
//! sender into the receiver's buffer, which is in huge pages where the kernel allows.
//!
//! A receiver that dies in the middle closes its socket, and the sender's wait ends in
//! [`Error::PeerLost`]; a sender that dies makes the copy fail, and the receiver's call
//! ends the same way.
//!
//! Messages that are not remote arrive in chunks. A call that has a buffer for the whole
//! message ([`Core::place`], [`Core::place_chunks`]) claims the sender's ring, when there
//! is one, for the rest of it ([`super::rings::Claim`]): its chunks are then copied out of
//! the ring straight into the buffer, two copies in all.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use bytes::Bytes;

use super::core::Core;
use super::rings::Claimed;
use super::shared::{Chunk, Closed, InboxState};
use crate::frame::{DataHeader, Frame, RemoteParts, Space, FIRST, LAST, MAX_REMOTE_PARTS, REMOTE};
use crate::shm::ring::PLACE_MIN;
use crate::{Error, Result};

/// Collective messages at least this large cross by a remote copy when the peer allows it
/// (below it, two copies through the ring are as fast as the copy's extra round trip).
pub(crate) const REMOTE_MIN: usize = 64 << 10;
/// Remote messages at least this large are copied by both sides at once (measured: at
/// 1 MiB the extra round trip is already repaid).
pub(crate) const SHARE_MIN: usize = 1 << 20;
/// Shared copies shorter than this teach nothing about rates (fixed costs dominate).
const RATE_SAMPLE_MIN: usize = 1 << 20;
/// How fast the recent shared copies with one peer ran each way.
#[derive(Default)]
pub(crate) struct CopyRates {
    /// Bytes per nanosecond of this rank's recent reads from the peer's memory.
    read: Option<f64>,
    /// Bytes per nanosecond of the peer's recent writes into this rank's memory.
    write: Option<f64>,
}

impl CopyRates {
    /// The share of a copy both sides make at once that this rank reads (the peer writes
    /// the rest): in proportion to the rates, so that both should end together. Each side
    /// keeps at least an eighth, so both rates stay measured.
    fn read_share(&self) -> f64 {
        match (self.read, self.write) {
            (Some(r), Some(w)) => (r / (r + w)).clamp(0.125, 0.875),
            _ => 0.5,
        }
    }

    /// Averages a new measurement into `rate`, the older ones weighing half: one copy
    /// slowed by a descheduled thread moves the next division only half way, and the
    /// first copies into fresh memory (which also pay its page faults) are soon forgotten.
    fn note(rate: &mut Option<f64>, bytes: usize, nanos: u64) {
        if bytes >= RATE_SAMPLE_MIN && nanos > 0 {
            let now = bytes as f64 / nanos as f64;
            *rate = Some(rate.map_or(now, |before| (before + now) / 2.0));
        }
    }
}

/// How long an aborted job's calls still wait for a peer that may be copying into or out
/// of their buffers.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Core {
    /// Whether a message of `total` bytes to `peer` goes by remote copy.
    pub(crate) fn sends_remote(&self, peer: usize, space: Space, total: usize, parts: usize) -> bool {
        space == Space::Collective && total >= REMOTE_MIN && parts <= MAX_REMOTE_PARTS && self.shared.cma[peer].peer_reads
    }

    /// Sends `parts` as one remote message and waits until `peer` has copied it.
    pub(crate) async fn send_remote(&self, peer: usize, header: DataHeader, parts: &[&[u8]]) -> Result<()> {
        let id = self.shared.next_remote.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let remote = RemoteParts { id, ranges: parts.iter().filter(|p| !p.is_empty()).map(|p| (p.as_ptr() as u64, p.len())).collect() };
        let description = remote.encode();
        let total = header.total as usize;
        let header = DataHeader { flags: FIRST | LAST | REMOTE, ..header }.encode();
        if self.shared.write_frame(peer, &[&header, &description]).await.is_err() {
            return Err(self.write_failed(peer).await);
        }
        self.wait_taken(peer, id, &remote.ranges, total).await
    }

    /// Writes the part of our remote message `id` (made of `ranges`, `total` bytes) that
    /// `peer` asked for, from `from` on, into its memory at `addr`, and says so.
    async fn serve_share(&self, peer: usize, id: u64, ranges: &[(u64, usize)], total: usize, from: u64, addr: u64) {
        let me = self.rank();
        let pid = self.shared.cma[peer].read_from;
        let started = std::time::Instant::now();
        let outcome = match (pid, usize::try_from(from)) {
            (Some(pid), Ok(from)) if from <= total && self.shared.poisoned().is_none() => {
                Some(crate::shm::write_remote(pid, &crate::shm::cut_ranges(ranges, from, total), addr))
            }
            _ => None,
        };
        let done = matches!(outcome, Some(Ok(())));
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The peer waits for this whatever the outcome.
        let _ = self.shared.write_frame(peer, &[&Frame::written_body(id, done, nanos)]).await;
        if let Some(Err(e)) = outcome {
            self.fail(format!("rank {me} could not copy its message into rank {peer}'s memory: {e}")).await;
        }
    }

    /// Waits for `peer`'s [`Frame::Taken`] of remote message `id` (made of `ranges`,
    /// `total` bytes), writing the part the peer asks for meanwhile.
    async fn wait_taken(&self, peer: usize, id: u64, ranges: &[(u64, usize)], total: usize) -> Result<()> {
        loop {
            let found = self
                .wait_receipt(peer, |st| {
                    if st.taken.remove(&id) {
                        Some(None)
                    } else {
                        st.shares.remove(&id).map(Some)
                    }
                })
                .await?;
            match found {
                // A failed write of our part poisoned the job: the call fails.
                None => return self.shared.poisoned().map_or(Ok(()), Err),
                // The peer answers Taken even when the write failed (the job is then
                // aborted): wait for it, the peer may still be reading the head.
                Some((from, addr)) => {
                    // The copy holds this thread until it ends: let the call's other
                    // futures first ask for the copies they wait for (an allgather's
                    // receive asks its peer to write), or the peer idles meanwhile.
                    tokio::task::yield_now().await;
                    self.serve_share(peer, id, ranges, total, from, addr).await
                }
            }
        }
    }

    /// Waits until `look` finds what it wants in `peer`'s inbox. Only the peer's end, or
    /// an abort that outlasts [`ABORT_GRACE`], ends the wait otherwise: the peer may be
    /// copying out of or into our buffer right now.
    async fn wait_receipt<T>(&self, peer: usize, mut look: impl FnMut(&mut InboxState) -> Option<T>) -> Result<T> {
        let inbox = &self.shared.inboxes[peer];
        let spin_until = std::time::Instant::now() + self.shared.spin.duration;
        let mut asleep = None;
        let mut poisoned_at: Option<std::time::Instant> = None;
        loop {
            let notified = inbox.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.shared.drain_rings();
            {
                let mut st = inbox.state.lock().expect("inbox lock");
                if let Some(found) = look(&mut st) {
                    return Ok(found);
                }
                if let Some(how) = st.closed {
                    drop(st);
                    return Err(self.lost(peer, how));
                }
            }
            if let Some(e) = self.shared.poisoned() {
                let since = *poisoned_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > ABORT_GRACE {
                    return Err(e);
                }
            }
            let now = std::time::Instant::now();
            if now < spin_until {
                if !self.shared.watch_ring(peer, (now + super::core::RING_WATCH).min(spin_until), self.shared.spin.yield_cpu) {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            if asleep.is_none() {
                asleep = Some(self.shared.asleep());
                continue;
            }
            let _ = tokio::time::timeout(super::rings::RECHECK, notified).await;
        }
    }

    /// Copies the remote message `chunk` describes from `peer` into a new buffer (`share`:
    /// as in [`Core::fetch_into`]).
    pub(crate) async fn fetch(&self, peer: usize, chunk: &Chunk, share: bool) -> Result<Bytes> {
        let total = chunk.header.total as usize;
        let mut buf: Vec<u8> = Vec::new();
        buf.try_reserve_exact(total).map_err(|_| {
            Error::InvalidArgument(format!("rank {} cannot allocate {total} bytes for a message from rank {peer}", self.rank()))
        })?;
        let room = &mut buf.spare_capacity_mut()[..total];
        crate::cma::advise_huge_pages(room);
        self.fetch_into(peer, chunk, room, share).await?;
        // SAFETY: fetch_into filled all `total` bytes.
        unsafe { buf.set_len(total) };
        Ok(Bytes::from(buf))
    }

    /// Copies the remote message `chunk` describes from `peer` into `dst` (exactly its
    /// length), then tells the peer its buffer is free. With `share` (for callers whose
    /// sender has nothing else to do meanwhile, as a broadcast's or a gather's) a large
    /// message is copied by both sides at once; without, a large one is written by the
    /// sender while it waits for its other copies.
    pub(crate) async fn fetch_into(&self, peer: usize, chunk: &Chunk, dst: &mut [MaybeUninit<u8>], share: bool) -> Result<()> {
        let me = self.rank();
        let parts = match RemoteParts::decode(&chunk.payload, chunk.header.total) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(format!("rank {me}: rank {peer} sent a malformed remote message: {e}")).await),
        };
        let Some(pid) = self.shared.cma[peer].read_from else {
            return Err(self
                .fail(format!("rank {me}: rank {peer} sent a remote message, but rank {me} cannot read its memory"))
                .await);
        };
        let total = dst.len();
        // The peer writes from `split` on while we read up to it.
        let split = if total < SHARE_MIN || !self.shared.cma[peer].peer_reads {
            total
        } else if share {
            let rates = self.shared.copy_rates[peer].lock().expect("copy rates lock");
            ((total as f64 * rates.read_share()) as usize).min(total) & !4095
        } else if total >= crate::cma::HUGE_PAGES_FROM {
            // `dst` was advised to huge pages, which the peer's write pins faster than we
            // would pin its memory (which may be in 4 KiB pages) to read it. Every rank of
            // the collective does the same, so the copies stay evenly spread.
            0
        } else {
            total
        };
        if split < total {
            let addr = dst[split..].as_mut_ptr() as u64;
            if self.shared.write_frame(peer, &[&Frame::share_body(parts.id, split as u64, addr)]).await.is_err() {
                return Err(self.write_failed(peer).await);
            }
        }
        let started = std::time::Instant::now();
        let mut copied = crate::shm::read_remote(pid, &crate::shm::cut_ranges(&parts.ranges, 0, split), &mut dst[..split]);
        let read_nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut write_nanos = 0;
        if split < total {
            // Our buffer must not go while the peer may write into it: wait for its word.
            match self.wait_receipt(peer, |st| st.written.remove(&parts.id)).await {
                Ok((true, nanos)) => write_nanos = nanos,
                Ok((false, _)) => {
                    if copied.is_ok() {
                        copied = Err(std::io::Error::other(format!("rank {peer} did not write its part")));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if copied.is_ok() {
            let mut rates = self.shared.copy_rates[peer].lock().expect("copy rates lock");
            CopyRates::note(&mut rates.read, split, read_nanos);
            CopyRates::note(&mut rates.write, total - split, write_nanos);
        }
        // The peer waits for this whatever the outcome.
        let _ = self.shared.write_frame(peer, &[&Frame::taken_body(parts.id)]).await;
        if let Err(e) = copied {
            // A peer that died while we copied has closed its socket by now, or soon.
            let how = tokio::time::timeout(std::time::Duration::from_millis(200), self.shared.inboxes[peer].closed()).await;
            if let Ok(Closed::Lost) = how {
                return Err(self.lost(peer, Closed::Lost));
            }
            return Err(self.fail(format!("rank {me} could not copy a message from rank {peer}'s memory: {e}")).await);
        }
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        Ok(())
    }
}

impl Core {
    /// The first chunk of this call's message from each of `peers`, placed at the peer's
    /// rank (`None` elsewhere).
    pub(crate) async fn firsts_from(&self, call: &super::core::Call, peers: impl Iterator<Item = usize>) -> Result<Vec<Option<Chunk>>> {
        let peers: Vec<usize> = peers.collect();
        let got = futures_util::future::try_join_all(peers.iter().map(|&q| self.recv_first(call, q))).await?;
        let mut firsts: Vec<Option<Chunk>> = (0..self.size()).map(|_| None).collect();
        for (q, c) in peers.into_iter().zip(got) {
            firsts[q] = Some(c);
        }
        Ok(firsts)
    }

    /// Copies the message whose first chunk is `first` (from `peer`, in `call`) into `dst`,
    /// exactly its length: from the peer's memory if it is remote (`share`: as in
    /// [`Core::fetch_into`]), else chunk by chunk ([`Core::place_chunks`], with `claim`).
    pub(crate) async fn place(
        &self,
        call: &super::core::Call,
        peer: usize,
        first: Chunk,
        dst: &mut [MaybeUninit<u8>],
        share: bool,
        claim: Option<Claimed<'_>>,
    ) -> Result<()> {
        if first.header.flags & REMOTE != 0 {
            return self.fetch_into(peer, &first, dst, share).await;
        }
        self.place_chunks(call, peer, first, dst, &[], claim).await
    }

    /// Copies the chunked message whose first chunk is `first` (from `peer`, in `call`)
    /// into `dst`, exactly its length, forwarding each chunk to `children` as it lands
    /// (pipelined broadcasts). The chunks after the first are copied out of a
    /// shared-memory ring straight into `dst` ([`Shared::claim`]); `claim` is one made
    /// already, else one is made here.
    ///
    /// [`Shared::claim`]: super::shared::Shared::claim
    pub(crate) async fn place_chunks(
        &self,
        call: &super::core::Call,
        peer: usize,
        first: Chunk,
        dst: &mut [MaybeUninit<u8>],
        children: &[usize],
        mut claim: Option<Claimed<'_>>,
    ) -> Result<()> {
        let total = dst.len();
        // From here on `dst` is written through `base` only: ring drains on other threads
        // may write the places a claim hands out.
        let base = NonNull::new(dst.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        let mut at = 0;
        let mut chunk = first;
        loop {
            let len = chunk.len();
            if len > total - at {
                return Err(self.fail(format!("rank {peer} sent more than the {total} bytes it announced in {}", call.describe())).await);
            }
            match chunk.placed {
                Some((offset, _)) if offset != at => {
                    return Err(self
                        .fail(format!("rank {}: a part of rank {peer}'s message in {} landed out of place", self.rank(), call.describe()))
                        .await)
                }
                Some(_) => {}
                // SAFETY: the payload and the range `at..at + len` of `dst` do not overlap,
                // and no claim hands out that range (it counts it as arrived).
                None => unsafe { std::ptr::copy_nonoverlapping(chunk.payload.as_ptr(), base.as_ptr().add(at), len) },
            }
            if !children.is_empty() {
                // SAFETY: those bytes were written above or by the drain that delivered the
                // chunk (before it did), and nothing writes them again.
                let piece = unsafe { std::slice::from_raw_parts(base.as_ptr().add(at), len) };
                for &c in children {
                    self.forward(c, &chunk.header, piece).await?;
                }
            }
            at += len;
            if chunk.header.flags & LAST != 0 {
                break;
            }
            if claim.is_none() && total - at >= PLACE_MIN {
                // SAFETY: `dst` is borrowed until we return, after the claim is dropped, and
                // this loop writes only the ranges the claim counts as arrived.
                claim = unsafe { self.shared.claim(peer, call.seq, base, total, at) };
            }
            chunk = self.recv_more(call, peer).await?;
        }
        drop(claim);
        if at != total {
            return Err(self.fail(format!("rank {peer} sent {at} of the {total} bytes it announced in {}", call.describe())).await);
        }
        Ok(())
    }

    /// Puts every rank's part into `out` in rank order, copying each received one straight
    /// into its place: `firsts[q]` is the first chunk of rank `q`'s part (`None` at this
    /// rank's own place, whose part is `own`). Returns the element count of each part.
    /// `share`: as in [`Core::fetch_into`].
    pub(crate) async fn gather_into<T: bytemuck::Pod>(
        &self,
        call: &super::core::Call,
        firsts: Vec<Option<Chunk>>,
        own: &[T],
        out: &mut Vec<T>,
        share: bool,
    ) -> Result<Vec<usize>> {
        let width = std::mem::size_of::<T>().max(1);
        let mut counts = Vec::with_capacity(firsts.len());
        for (q, f) in firsts.iter().enumerate() {
            counts.push(match f {
                None => own.len(),
                Some(f) => {
                    let total = f.header.total as usize;
                    if std::mem::size_of::<T>() == 0 || total % width != 0 {
                        return Err(Error::Decode {
                            rank: self.rank(),
                            peer: q,
                            type_name: std::any::type_name::<T>(),
                            detail: format!("{total} bytes is not a whole number of {width}-byte elements"),
                        });
                    }
                    total / width
                }
            });
        }
        let sum: usize = counts.iter().sum();
        out.clear();
        if out.try_reserve_exact(sum).is_err() {
            return Err(self
                .fail(format!(
                    "rank {} cannot allocate {sum} elements of {} for {}",
                    self.rank(),
                    std::any::type_name::<T>(),
                    call.describe()
                ))
                .await);
        }
        let spare = out.spare_capacity_mut();
        // SAFETY: the spare capacity holds `sum` elements; viewed as possibly uninitialised
        // bytes.
        let room = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), sum * width) };
        crate::cma::advise_huge_pages(room);
        // Every part's place, and a claim on each peer's ring for the rest of its part, so
        // that all of them land in place from now on whichever is being waited for.
        let mut places = Vec::with_capacity(firsts.len());
        let mut rest = room;
        for count in &counts {
            let (dst, after) = rest.split_at_mut(count * width);
            places.push(dst);
            rest = after;
        }
        let mut claims: Vec<Option<Claimed<'_>>> = Vec::with_capacity(firsts.len());
        for (q, (f, dst)) in firsts.iter().zip(places.iter_mut()).enumerate() {
            claims.push(match f {
                Some(f) if f.header.flags & (REMOTE | LAST) == 0 && dst.len() - f.len() >= PLACE_MIN => {
                    let base = NonNull::new(dst.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
                    // SAFETY: `dst` is borrowed until `place` has dropped the claim, and is
                    // written only by `place` (the ranges the claim counts as arrived).
                    unsafe { self.shared.claim(q, call.seq, base, dst.len(), f.len()) }
                }
                _ => None,
            });
        }
        // This rank's own part is copied last: the peers' copies need them too (they wait
        // for us to ask, or write into our buffer themselves), ours does not.
        let mut own_place = None;
        for (((q, f), dst), claim) in firsts.into_iter().enumerate().zip(places).zip(claims) {
            match f {
                None => own_place = Some(dst),
                Some(f) => self.place(call, q, f, dst, share, claim).await?,
            }
        }
        if let Some(dst) = own_place {
            let src: &[u8] = bytemuck::cast_slice(own);
            // SAFETY: equal lengths, distinct buffers.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len()) };
        }
        // SAFETY: every byte of the `sum` elements was written above; T is Pod.
        unsafe { out.set_len(sum) };
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::CopyRates;

    #[test]
    fn a_shared_copy_is_divided_in_proportion_to_the_measured_rates_within_an_eighth() {
        let mut rates = CopyRates::default();
        assert_eq!(rates.read_share(), 0.5, "nothing measured yet");
        CopyRates::note(&mut rates.read, 40 << 20, 10_000_000);
        assert_eq!(rates.read_share(), 0.5, "one direction measured");
        CopyRates::note(&mut rates.write, 60 << 20, 10_000_000);
        assert!((rates.read_share() - 0.4).abs() < 1e-9, "{}", rates.read_share());
        // A short copy teaches nothing; a long one moves the estimate half way.
        CopyRates::note(&mut rates.write, 4096, 1);
        assert!((rates.read_share() - 0.4).abs() < 1e-9);
        CopyRates::note(&mut rates.write, 20 << 20, 10_000_000);
        assert!((rates.read_share() - 0.5).abs() < 1e-9, "the write rate is now (6 + 2) / 2 MiB per ms");
        CopyRates::note(&mut rates.write, 4000 << 20, 10_000_000);
        assert_eq!(rates.read_share(), 0.125, "clamped, so the reader's rate stays measured");
        CopyRates::note(&mut rates.read, 20000 << 20, 1_000_000);
        assert_eq!(rates.read_share(), 0.875);
    }
}
