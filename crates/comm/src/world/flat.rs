//! Barrier and small allreduce through the host's shared group segment
//! ([`crate::shm::group`]), when every rank of the job is on one host and reaches the
//! others through rings.
//!
//! A flat call publishes this rank's part, then polls the other ranks' slots until all
//! have arrived: one store and `p - 1` loads where the point-to-point algorithms need
//! ⌈log2 p⌉ rounds of frames. The wait keeps every guarantee of a receive:
//!
//! - a rank that arrives with a different call (another collective, root or type, or
//!   another call number) is a [`crate::Error::CollectiveMismatch`]; so is a rank that sends this
//!   call's message the point-to-point way instead (it took another algorithm, having
//!   been passed another length);
//! - a rank that dies or finalizes while others wait for it fails them at once, through
//!   its socket ([`crate::Error::PeerLost`], [`crate::Error::PeerFinalized`]);
//! - a long wait probes the missing ranks (so ranks stuck in different calls are told)
//!   and warns after `warn_after`, naming whom it waits for;
//! - after polling for the spin time the call sleeps, and arriving ranks wake it.
//!
//! Publishing and the first look need no runtime ([`Core::flat_start`]), so a barrier
//! whose ranks arrive together ends before `World` would have entered its runtime,
//! which costs more than the barrier itself.

use bytes::Bytes;

use super::collectives::Combine;
use super::core::{Awaited, Call, Core, WaitRecord, PROBE_AFTER, RING_WATCH};
use super::rings::{wake, RECHECK};
use crate::frame::{DataHeader, Space, FIRST};
use crate::shm::group::{Entry, Group, FLAT_MAX};
use crate::{diag, Result};

/// Looks at the other ranks' slots this many times before a flat call does anything else.
const QUICK_POLLS: usize = 2000;

/// Holds this rank's turn for flat generation `gen`; the next generation's turn comes
/// when it is dropped.
struct Turn<'a>(&'a super::shared::Shared, u64);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.flat_done.store(self.1 + 1, std::sync::atomic::Ordering::Release);
        self.0.flat_turn.notify_waiters();
    }
}

/// A flat call this rank has arrived at: its turn, the lengths of the contributions
/// found (index = rank), and the ranks not found yet.
pub(crate) struct Started<'a> {
    turn: Turn<'a>,
    lens: Vec<usize>,
    missing: Vec<usize>,
}

impl<'a> Started<'a> {
    /// The call, if every rank has arrived at it.
    pub(crate) fn complete(self) -> Result<Arrived<'a>, Started<'a>> {
        if self.missing.is_empty() {
            Ok(Arrived { lens: self.lens, gen: self.turn.1, _turn: self.turn })
        } else {
            Err(self)
        }
    }
}

/// Every rank has arrived at a flat call: their contributions' lengths (index = rank).
/// While this lives no later flat call of this rank starts, so no rank can overwrite
/// the contributions yet.
pub(crate) struct Arrived<'a> {
    pub(crate) lens: Vec<usize>,
    gen: u64,
    _turn: Turn<'a>,
}

/// Clears this rank's sleeping flag when the wait ends.
struct Sleeping<'a>(&'a Group, usize);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.set_sleeping(self.1, false);
    }
}

impl Core {
    fn group(&self) -> &Group {
        self.shared.group.as_ref().expect("flat calls are made only with a group segment")
    }

    /// A barrier: through the group segment as generation `gen` (from where
    /// [`Self::flat_start`] left it, if it was started), or by dissemination.
    pub(crate) async fn barrier(&self, call: &Call, gen: Option<u64>, started: Option<Started<'_>>) -> Result<()> {
        match (gen, started) {
            (Some(gen), Some(started)) => self.flat_wait(call, gen, started).await.map(drop),
            (Some(gen), None) => self.flat(call, gen, &[]).await.map(drop),
            (None, _) => self.dissemination_barrier(call).await,
        }
    }

    /// Combines every rank's contribution to a flat call (this rank's is `mine`) in rank
    /// order, or returns `None` when some contribution was too large for the segment
    /// (every rank then decides alike).
    pub(crate) fn flat_combine(&self, arrived: &Arrived<'_>, mine: &[u8], combine: &mut Combine<'_>) -> Result<Option<Bytes>> {
        let (gen, lens) = (arrived.gen, &arrived.lens);
        if lens.iter().any(|&n| n > FLAT_MAX) {
            return Ok(None);
        }
        let group = self.group();
        let mut acc: Option<Bytes> = None;
        for (q, &len) in lens.iter().enumerate() {
            let part = if q == self.rank() {
                Bytes::copy_from_slice(mine)
            } else {
                group.contribution(q, gen, len).expect("lengths up to FLAT_MAX are in the segment")
            };
            acc = Some(match acc {
                None => part,
                Some(left) => combine(left, part)?,
            });
        }
        Ok(acc)
    }

    /// Takes part in flat call `gen` with `data` (copied into the segment when it fits)
    /// and waits for every rank. The result holds this rank's turn: the contributions
    /// stay readable until it is dropped.
    pub(crate) async fn flat(&self, call: &Call, gen: u64, data: &[u8]) -> Result<Arrived<'_>> {
        let started = match self.flat_start(call, gen, data) {
            Some(s) => s,
            None => {
                let turn = self.turn(gen).await;
                self.flat_arrive(turn, call, gen, data)
            }
        };
        self.flat_wait(call, gen, started).await
    }

    /// The part of flat call `gen` that needs no runtime: when it is this call's turn
    /// (`None` otherwise), publishes `data` and looks for the other ranks for a moment.
    /// A call whose ranks all arrived with the same call is then complete, without
    /// entering the runtime at all ([`Started::complete`]).
    pub(crate) fn flat_start(&self, call: &Call, gen: u64, data: &[u8]) -> Option<Started<'_>> {
        use std::sync::atomic::Ordering;
        // Mostly it is this call's turn already.
        (self.shared.flat_done.load(Ordering::Acquire) == gen).then(|| self.flat_arrive(Turn(&self.shared, gen), call, gen, data))
    }

    fn flat_arrive<'a>(&'a self, turn: Turn<'a>, call: &Call, gen: u64, data: &[u8]) -> Started<'a> {
        let (me, p) = (self.rank(), self.size());
        let group = self.group();
        group.arrive(me, Entry { gen, seq: call.seq, sig: call.sig, len: data.len() }, data);
        for q in (0..p).filter(|&q| q != me) {
            if group.is_sleeping(q) {
                if let Some(r) = &self.shared.rings[q] {
                    wake(&r.socket);
                }
            }
        }
        let mut lens = vec![0; p];
        lens[me] = data.len();
        let mut missing: Vec<usize> = (0..p).filter(|&q| q != me).collect();
        // The others mostly arrive within a microsecond or two: look for them before any
        // bookkeeping (not when ranks share cores: the one awaited may need this core).
        if !self.spin.yield_cpu && self.spin.duration > std::time::Duration::ZERO {
            for _ in 0..QUICK_POLLS {
                if missing.iter().all(|&q| group.has_arrived(q, gen)) {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        // Arrivals with this very call are taken; anything else is left for
        // `take_arrivals` to report.
        missing.retain(|&q| match group.has_arrived(q, gen).then(|| group.entry(q, gen)) {
            Some(Ok(e)) if e.gen == gen && e.seq == call.seq && e.sig == call.sig => {
                lens[q] = e.len;
                false
            }
            _ => true,
        });
        Started { turn, lens, missing }
    }

    /// Waits for the ranks [`Self::flat_start`] did not find.
    async fn flat_wait<'a>(&'a self, call: &Call, gen: u64, started: Started<'a>) -> Result<Arrived<'a>> {
        let Started { turn, mut lens, mut missing } = started;
        let (me, group) = (self.rank(), self.group());
        let mut clocks: Option<(tokio::time::Instant, std::time::Instant)> = None;
        let (mut next_probe, mut next_warning) = (None, None);
        let mut asleep: Option<(WaitRecord<'_>, super::rings::Asleep<'_>, Sleeping<'_>)> = None;
        loop {
            let notified = self.shared.flat_wake.notified();
            tokio::pin!(notified);
            if asleep.is_some() {
                notified.as_mut().enable();
            }
            self.take_arrivals(call, gen, group, &mut missing, &mut lens).await?;
            if missing.is_empty() {
                return Ok(Arrived { lens, gen, _turn: turn });
            }
            self.check_missing(call, &missing).await?;
            let now = std::time::Instant::now();
            let (started, spin_until) = *clocks.get_or_insert_with(|| (tokio::time::Instant::now(), now + self.spin.duration));
            let next_probe = next_probe.get_or_insert(started + PROBE_AFTER);
            let next_warning = next_warning.get_or_insert(started + self.warn_after);
            if now < spin_until {
                let until = (now + RING_WATCH).min(spin_until);
                let mut polls = 0u32;
                while !group.has_arrived(missing[0], gen) {
                    if self.spin.yield_cpu {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    polls = polls.wrapping_add(1);
                    if polls % 64 == 0 && std::time::Instant::now() >= until {
                        break;
                    }
                }
                // Lets the runtime poll the sockets (probes, a lost peer) now and then.
                tokio::task::yield_now().await;
                continue;
            }
            if asleep.is_none() {
                // Flagged asleep, then one more look: an arriving rank either sees the
                // flag (and wakes us) or arrived before it, and the look finds it.
                group.set_sleeping(me, true);
                let record = WaitRecord::start(&self.shared, missing[0], Awaited::Collective(call));
                asleep = Some((record, self.shared.asleep(), Sleeping(group, me)));
                continue;
            }
            let deadline = (*next_probe).min(*next_warning).min(tokio::time::Instant::now() + RECHECK);
            if tokio::time::timeout_at(deadline, notified).await.is_ok() {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= *next_probe {
                for &q in &missing {
                    self.shared.probe(q, call.seq);
                }
                *next_probe = now + PROBE_AFTER;
            }
            if now >= *next_warning {
                let peer = missing[0];
                diag::warn(&format!(
                    "rank {} has waited {:.1} s in {} for rank {peer}, {}",
                    self.rank(),
                    started.elapsed().as_secs_f64(),
                    call.describe(),
                    self.whereabouts(peer, Awaited::Collective(call))
                ));
                *next_warning = now + (now - started);
            }
        }
    }

    /// Waits until this rank's flat calls before `gen` are done (calls started from
    /// several threads take their turns in the order they were numbered).
    async fn turn(&self, gen: u64) -> Turn<'_> {
        use std::sync::atomic::Ordering;
        // Mostly it is this call's turn already: no waiter to register then.
        if self.shared.flat_done.load(Ordering::Acquire) == gen {
            return Turn(&self.shared, gen);
        }
        loop {
            let notified = self.shared.flat_turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.flat_done.load(Ordering::Acquire) == gen {
                return Turn(&self.shared, gen);
            }
            notified.await;
        }
    }

    /// Moves the ranks of `missing` that have arrived at `gen` into `lens`, checking that
    /// each made the same call.
    async fn take_arrivals(&self, call: &Call, gen: u64, group: &Group, missing: &mut Vec<usize>, lens: &mut [usize]) -> Result<()> {
        let mut i = 0;
        while i < missing.len() {
            let q = missing[i];
            if !group.has_arrived(q, gen) {
                i += 1;
                continue;
            }
            let entry = match group.entry(q, gen) {
                Ok(e) => e,
                Err(e) => return Err(self.fail(format!("rank {q}'s slot in the shared group segment is corrupt: {}", e.0)).await),
            };
            if entry.gen != gen || entry.seq != call.seq || entry.sig != call.sig {
                let theirs = DataHeader { space: Space::Collective, flags: FIRST, sig: entry.sig, seq: entry.seq, total: 0 };
                return Err(self.mismatch(call, q, &theirs).await);
            }
            lens[q] = entry.len;
            missing.swap_remove(i);
        }
        Ok(())
    }

    /// Fails a call of equal-length slices (of `T`, `lens` from [`Core::flat`]) in which
    /// some rank passed another length, naming both.
    pub(crate) async fn check_same_lengths<T>(&self, call: &Call, lens: &[usize]) -> Result<()> {
        let me = self.rank();
        let Some(q) = lens.iter().position(|&n| n != lens[me]) else { return Ok(()) };
        let size = std::mem::size_of::<T>().max(1);
        Err(self
            .fail_mismatch(format!(
                "rank {me} passed {} elements to {} and rank {q} passed {}: the ranks passed slices of different lengths",
                lens[me] / size,
                call.describe(),
                lens[q] / size
            ))
            .await)
    }

    /// Fails the call if the job is poisoned, a missing rank is gone, or one sent this
    /// call's message the point-to-point way (it took another algorithm: the ranks passed
    /// different lengths).
    async fn check_missing(&self, call: &Call, missing: &[usize]) -> Result<()> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        self.shared.drain_rings();
        for &q in missing {
            let (sent, closed) = {
                let st = self.shared.inboxes[q].state.lock().expect("inbox lock");
                (st.collective.front().map(|c| c.header).filter(|h| h.seq == call.seq), st.closed)
            };
            if let Some(h) = sent {
                if h.sig != call.sig {
                    return Err(self.mismatch(call, q, &h).await);
                }
                let me = self.rank();
                return Err(self
                    .fail_mismatch(format!(
                        "rank {me} called {} and rank {q} sent its part the point-to-point way: the ranks passed \
                         contributions of different lengths (every rank must pass the same length)",
                        call.describe()
                    ))
                    .await);
            }
            if let Some(how) = closed {
                return Err(self.lost(q, how));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::World;

    #[test]
    fn ranks_of_one_host_share_a_group_segment_for_barriers_and_small_allreduces() {
        let worlds = World::local(3).unwrap();
        for w in &worlds {
            let all_rings = w.links().iter().all(|l| matches!(l, crate::PeerLink::SharedMemory { .. } | crate::PeerLink::Itself));
            assert!(all_rings && w.core.shared.group.is_some(), "rank {}: {:?}", w.rank(), w.links());
        }
        std::thread::scope(|s| {
            for w in &worlds {
                s.spawn(move || {
                    for i in 0..200u64 {
                        w.barrier().unwrap();
                        let sum = w.allreduce(i + w.rank() as u64, crate::Sum).unwrap();
                        assert_eq!(sum, 3 * i + 3);
                    }
                });
            }
        });
    }
}
