//! The collective algorithms, on byte payloads.
//!
//! Every rank runs the same schedule, so messages never go through a central rank unless
//! the operation itself has a root:
//!
//! - barrier: dissemination, ⌈log2 p⌉ rounds (on one host, one step through the shared
//!   group segment instead: [`super::flat`], which also serves small allreduces);
//! - bcast: binomial tree, pipelined chunk by chunk so large messages stream down the tree
//!   (on one host each large message is copied once, by receiver and sender together);
//! - reduce: binomial tree towards rank 0, combining in rank order, then to the root;
//! - allreduce: recursive doubling (with the usual fold for non-powers of two), combining
//!   lower ranks on the left so every rank computes bit-identical results; large slices use
//!   recursive halving then doubling (Rabenseifner), with the same ordering;
//! - allgatherv: ring, p − 1 steps, each rank sending one block while receiving another;
//! - alltoallv: pairwise exchange, step s pairing rank r with r ± s;
//! - gatherv/scatterv: direct exchange with the root, all transfers in flight at once.

use std::mem::MaybeUninit;

use bytemuck::Pod;
use bytes::Bytes;
use futures_util::future::try_join_all;

use super::core::{Call, Core, Received};
use crate::frame::{DataHeader, Space, FIRST, LAST, REMOTE};
use crate::reduce::ReduceOp;
use crate::Result;

/// Combines two partial results, lower ranks' on the left.
pub(crate) type Combine<'a> = dyn FnMut(Bytes, Bytes) -> Result<Bytes> + 'a;

/// Where a broadcast's receiver puts the root's bytes.
pub(crate) trait Sink {
    /// Room for the whole message of `total` bytes, where it is copied straight from the
    /// sender's memory or out of the chunks as they come; `None` to take the chunks.
    fn room(&mut self, _total: usize) -> Option<&mut [MaybeUninit<u8>]> {
        None
    }
    /// The room given by [`Sink::room`] has been filled.
    fn filled(&mut self) {}
    /// The next chunk of a message of `total` bytes.
    fn chunk(&mut self, total: usize, chunk: Bytes);
}

/// A sink that keeps the chunks.
impl Sink for Received {
    fn chunk(&mut self, total: usize, chunk: Bytes) {
        self.total = total;
        self.chunks.push(chunk);
    }
}

impl Core {
    /// Broadcast from `call.sig.root`. The root passes `Some(data)`; the others receive the
    /// root's bytes chunk by chunk through `sink(total_len, chunk)`, each chunk forwarded
    /// down the tree before it is handed over.
    pub(crate) async fn bcast_bytes(
        &self,
        call: &Call,
        data: Option<&[u8]>,
        sink: &mut dyn Sink,
    ) -> Result<()> {
        let (r, p, root) = (self.rank(), self.size(), call.sig.root as usize);
        let vr = (r + p - root) % p;
        let children: Vec<usize> = {
            // In the binomial tree over relative ranks, vr's children are vr + 2^k for every
            // 2^k below vr's lowest set bit (all powers of two for the root).
            let limit = if vr == 0 { p.next_power_of_two() } else { vr & vr.wrapping_neg() };
            let mut c = Vec::new();
            let mut mask = limit >> 1;
            while mask > 0 {
                if vr + mask < p {
                    c.push((vr + mask + root) % p);
                }
                mask >>= 1;
            }
            c
        };
        if let Some(data) = data {
            if children.iter().all(|&c| self.sends_remote(c, Space::Collective, data.len(), 1)) {
                try_join_all(children.iter().map(|&c| self.send(call, c, data))).await?;
                return Ok(());
            }
            let total = data.len() as u64;
            let mut pieces = super::core::pieces(&[data], Space::Collective).into_iter().peekable();
            let mut flags = FIRST;
            if pieces.peek().is_none() {
                for &c in &children {
                    self.send(call, c, &[]).await?;
                }
            }
            while let Some(piece) = pieces.next() {
                if pieces.peek().is_none() {
                    flags |= LAST;
                }
                let header = DataHeader { space: Space::Collective, flags, sig: call.sig, seq: call.seq, total };
                for &c in &children {
                    self.forward(c, &header, piece).await?;
                }
                flags = 0;
            }
            return Ok(());
        }
        let parent = {
            let low = vr & vr.wrapping_neg();
            (vr - low + root) % p
        };
        let mut chunk = self.recv_first(call, parent).await?;
        let total = chunk.header.total as usize;
        if chunk.header.flags & REMOTE != 0 {
            if let Some(room) = sink.room(total) {
                self.fetch_into(parent, &chunk, room, true).await?;
                // SAFETY: fetch_into wrote every byte of `room`.
                let data = unsafe { std::slice::from_raw_parts(room.as_ptr().cast::<u8>(), room.len()) };
                try_join_all(children.iter().map(|&c| self.send(call, c, data))).await?;
                sink.filled();
            } else {
                let data = self.fetch(parent, &chunk, true).await?;
                try_join_all(children.iter().map(|&c| self.send(call, c, &data))).await?;
                sink.chunk(total, data);
            }
            return Ok(());
        }
        if let Some(room) = sink.room(total) {
            // Chunk by chunk into the sink's room (straight out of a shared-memory ring
            // when the parent's is one), each forwarded as it lands.
            self.place_chunks(call, parent, chunk, room, &children, None).await?;
            sink.filled();
            return Ok(());
        }
        loop {
            for &c in &children {
                self.forward(c, &chunk.header, &chunk.payload).await?;
            }
            let last = chunk.header.flags & LAST != 0;
            sink.chunk(total, chunk.payload);
            if last {
                return Ok(());
            }
            chunk = self.recv_more(call, parent).await?;
        }
    }

    /// Gathers one part per rank at the root, in rank order (`None` at the root's own
    /// place: the caller has it); `None` on other ranks.
    pub(crate) async fn gatherv_bytes(&self, call: &Call, part: &[u8]) -> Result<Option<Vec<Option<Received>>>> {
        let (r, root) = (self.rank(), call.sig.root as usize);
        if r != root {
            self.send(call, root, part).await?;
            return Ok(None);
        }
        let others = try_join_all((0..self.size()).filter(|&q| q != root).map(|q| self.recv(call, q))).await?;
        let mut others = others.into_iter();
        Ok(Some((0..self.size()).map(|q| if q == root { None } else { others.next() }).collect()))
    }

    /// Scatters part `q` of the root's `parts` to rank `q`; the root gets `None` (its own
    /// part is `parts[root]`).
    pub(crate) async fn scatterv_bytes(&self, call: &Call, parts: Option<&[&[u8]]>) -> Result<Option<Received>> {
        let (r, root) = (self.rank(), call.sig.root as usize);
        match parts {
            Some(parts) => {
                try_join_all((0..self.size()).filter(|&q| q != r).map(|q| self.send(call, q, parts[q]))).await?;
                Ok(None)
            }
            None => Ok(Some(self.recv(call, root).await?)),
        }
    }

    /// Ring allgather: every rank ends with every rank's part, in rank order (`None` at its
    /// own place).
    pub(crate) async fn allgatherv_bytes(&self, call: &Call, part: &[u8]) -> Result<Vec<Option<Received>>> {
        let (r, p) = (self.rank(), self.size());
        let mut blocks: Vec<Option<Received>> = (0..p).map(|_| None).collect();
        let (right, left) = ((r + 1) % p, (r + p - 1) % p);
        for step in 0..p.saturating_sub(1) {
            let out = (r + p - step) % p;
            let inc = (r + 2 * p - step - 1) % p;
            let send = async {
                match &blocks[out] {
                    None => self.send(call, right, part).await,
                    Some(block) => self.send_received(call, right, block).await,
                }
            };
            let (sent, got) = tokio::join!(send, self.recv(call, left));
            sent?;
            blocks[inc] = Some(got?);
        }
        Ok(blocks)
    }

    /// Binomial-tree reduce to rank 0 in rank order, then to the root.
    pub(crate) async fn reduce_bytes(&self, call: &Call, mine: Bytes, combine: &mut Combine<'_>) -> Result<Option<Bytes>> {
        let (r, p, root) = (self.rank(), self.size(), call.sig.root as usize);
        let mut acc = mine;
        let mut mask = 1;
        while mask < p {
            if r & mask != 0 {
                self.send(call, r - mask, &acc).await?;
                break;
            }
            if r + mask < p {
                let higher = self.recv(call, r + mask).await?.into_bytes();
                acc = combine(acc, higher)?;
            }
            mask <<= 1;
        }
        match (r, root) {
            (0, 0) => Ok(Some(acc)),
            (0, _) => {
                self.send(call, root, &acc).await?;
                Ok(None)
            }
            (_, _) if r == root => Ok(Some(self.recv(call, 0).await?.into_bytes())),
            _ => Ok(None),
        }
    }

    /// Recursive-doubling allreduce.
    pub(crate) async fn allreduce_bytes(&self, call: &Call, mine: Bytes, combine: &mut Combine<'_>) -> Result<Bytes> {
        let (r, p) = (self.rank(), self.size());
        let pow2 = if p.is_power_of_two() { p } else { p.next_power_of_two() / 2 };
        let rem = p - pow2;
        let mut acc = mine;
        // Fold: among the first 2·rem ranks, even ones hand their value to the next odd one.
        let new_rank = if r < 2 * rem {
            if r % 2 == 0 {
                self.send(call, r + 1, &acc).await?;
                None
            } else {
                let lower = self.recv(call, r - 1).await?.into_bytes();
                acc = combine(lower, acc)?;
                Some(r / 2)
            }
        } else {
            Some(r - rem)
        };
        if let Some(nr) = new_rank {
            let mut mask = 1;
            while mask < pow2 {
                let partner_new = nr ^ mask;
                let partner = if partner_new < rem { partner_new * 2 + 1 } else { partner_new + rem };
                let (sent, got) = tokio::join!(self.send(call, partner, &acc), self.recv(call, partner));
                sent?;
                let theirs = got?.into_bytes();
                acc = if partner_new < nr { combine(theirs, acc)? } else { combine(acc, theirs)? };
                mask <<= 1;
            }
        }
        if r < 2 * rem {
            if r % 2 == 1 {
                self.send(call, r - 1, &acc).await?;
            } else {
                acc = self.recv(call, r + 1).await?.into_bytes();
            }
        }
        Ok(acc)
    }

    /// Pairwise exchange: part `q` goes to rank `q`; returns the part from each rank
    /// (`None` at this rank's own place).
    pub(crate) async fn alltoallv_bytes(&self, call: &Call, parts: &[&[u8]]) -> Result<Vec<Option<Received>>> {
        let (r, p) = (self.rank(), self.size());
        let mut out: Vec<Option<Received>> = (0..p).map(|_| None).collect();
        for step in 1..p {
            let to = (r + step) % p;
            let from = (r + p - step) % p;
            let (sent, got) = tokio::join!(self.send(call, to, parts[to]), self.recv(call, from));
            sent?;
            out[from] = Some(got?);
        }
        Ok(out)
    }
}

/// Slices at least this large (in bytes) are all-reduced by halving and doubling.
pub(crate) const SEGMENTED_ALLREDUCE: usize = 64 << 10;

impl Core {
    /// Elementwise allreduce of a large slice, in place (Rabenseifner): a recursive-halving
    /// reduce-scatter leaves each rank with one fully reduced segment, and a
    /// recursive-doubling allgather hands every segment to everyone. Each rank sends about
    /// twice its buffer in total whatever the number of ranks, instead of log2(p) times.
    /// Masks ascend, so every partial result covers a contiguous range of ranks and lower
    /// ranks are always combined on the left.
    pub(crate) async fn allreduce_segmented<T: Pod, O: ReduceOp<T>>(&self, call: &Call, buf: &mut [T], op: &O) -> Result<()> {
        let (r, p) = (self.rank(), self.size());
        let pow2 = if p.is_power_of_two() { p } else { p.next_power_of_two() / 2 };
        let rem = p - pow2;
        let new_rank = if r < 2 * rem {
            if r % 2 == 0 {
                self.send(call, r + 1, bytemuck::cast_slice(buf)).await?;
                None
            } else {
                let lower = self.recv(call, r - 1).await?.into_bytes();
                elementwise(op, buf, &lower, true)?;
                Some(r / 2)
            }
        } else {
            Some(r - rem)
        };
        if let Some(nr) = new_rank {
            let real = |q: usize| if q < rem { q * 2 + 1 } else { q + rem };
            let (mut lo, mut hi) = (0, buf.len());
            let mut steps = Vec::new();
            let mut mask = 1;
            while mask < pow2 {
                let partner_new = nr ^ mask;
                let lower = nr < partner_new;
                let mid = lo + (hi - lo) / 2;
                let (keep, give) = if lower { ((lo, mid), (mid, hi)) } else { ((mid, hi), (lo, mid)) };
                let outgoing: &[u8] = bytemuck::cast_slice(&buf[give.0..give.1]);
                let (sent, got) = tokio::join!(self.send(call, real(partner_new), outgoing), self.recv(call, real(partner_new)));
                sent?;
                elementwise(op, &mut buf[keep.0..keep.1], &got?.into_bytes(), !lower)?;
                steps.push((real(partner_new), (lo, hi), keep, give));
                (lo, hi) = keep;
                mask <<= 1;
            }
            for (partner, _, mine, theirs) in steps.into_iter().rev() {
                let outgoing: &[u8] = bytemuck::cast_slice(&buf[mine.0..mine.1]);
                let (sent, got) = tokio::join!(self.send(call, partner, outgoing), self.recv(call, partner));
                sent?;
                let got = got?.into_bytes();
                let segment = bytemuck::cast_slice_mut::<T, u8>(&mut buf[theirs.0..theirs.1]);
                if got.len() != segment.len() {
                    return Err(length_mismatch::<T>(segment.len(), got.len()));
                }
                segment.copy_from_slice(&got);
            }
        }
        if r < 2 * rem {
            if r % 2 == 1 {
                self.send(call, r - 1, bytemuck::cast_slice(buf)).await?;
            } else {
                let result = self.recv(call, r + 1).await?.into_bytes();
                let dst = bytemuck::cast_slice_mut::<T, u8>(buf);
                if result.len() != dst.len() {
                    return Err(length_mismatch::<T>(dst.len(), result.len()));
                }
                dst.copy_from_slice(&result);
            }
        }
        Ok(())
    }
}

/// `seg[i] = theirs[i] ⊕ seg[i]` (theirs from lower ranks) or `seg[i] ⊕ theirs[i]`.
fn elementwise<T: Pod, O: ReduceOp<T>>(op: &O, seg: &mut [T], theirs: &[u8], theirs_lower: bool) -> Result<()> {
    let width = std::mem::size_of::<T>();
    if theirs.len() != std::mem::size_of_val(seg) {
        return Err(length_mismatch::<T>(std::mem::size_of_val(seg), theirs.len()));
    }
    for (mine, raw) in seg.iter_mut().zip(theirs.chunks_exact(width)) {
        let other: T = bytemuck::pod_read_unaligned(raw);
        *mine = if theirs_lower { op.combine(other, *mine) } else { op.combine(*mine, other) };
    }
    Ok(())
}

fn length_mismatch<T>(mine: usize, theirs: usize) -> crate::Error {
    let width = std::mem::size_of::<T>().max(1);
    crate::Error::CollectiveMismatch(format!(
        "ranks passed slices of different lengths ({} and {} elements of {}) to a reduction",
        mine / width,
        theirs / width,
        std::any::type_name::<T>()
    ))
}
