//! State shared by a rank's calls and its reader tasks: one inbox per peer, the links'
//! writing halves, the job's abort state, and what this rank has called so far (which peers
//! may ask about, to find mismatched calls that would otherwise wait forever).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use super::core::Call;
use crate::frame::{self, DataHeader, Frame, ProbeReply, Space};
use super::rings::{PeerWriter, RingReader};
use crate::link::LinkReader;
use crate::pool::{BufferPool, POOLED_FRAME};
use crate::shm::group::Group;
use crate::{diag, Error};

/// How many recent calls a rank remembers for mismatch reports and probes.
const HISTORY: usize = 64;

pub(crate) struct Chunk {
    pub(crate) header: DataHeader,
    pub(crate) payload: Bytes,
    /// Set when the payload went straight into the receiving call's buffer
    /// ([`super::rings::Claim`]): where it starts there and how long it is (`payload` is
    /// empty then).
    pub(crate) placed: Option<(usize, usize)>,
}

impl Chunk {
    /// A chunk whose payload is in `payload`.
    pub(crate) fn new(header: DataHeader, payload: Bytes) -> Chunk {
        Chunk { header, payload, placed: None }
    }

    /// The payload's length, wherever it is.
    pub(crate) fn len(&self) -> usize {
        self.placed.map_or(self.payload.len(), |(_, len)| len)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Finalized,
    Lost,
}

#[derive(Default)]
pub(crate) struct InboxState {
    pub(crate) collective: VecDeque<Chunk>,
    pub(crate) messages: HashMap<u64, VecDeque<Chunk>>,
    /// Remote messages of ours the peer has copied ([`Frame::Taken`]), not yet waited for.
    pub(crate) taken: std::collections::HashSet<u64>,
    /// The peer's requests to write part of our remote messages ([`Frame::Share`]): id to
    /// (from, addr).
    pub(crate) shares: HashMap<u64, (u64, u64)>,
    /// Our requests the peer has answered ([`Frame::Written`]): id to whether it wrote,
    /// and how long that took in nanoseconds.
    pub(crate) written: HashMap<u64, (bool, u64)>,
    pub(crate) closed: Option<Closed>,
}

#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) state: Mutex<InboxState>,
    pub(crate) notify: Notify,
}

impl Inbox {
    /// Waits until the peer's connection has ended (goodbye, or lost) and says how.
    pub(crate) async fn closed(&self) -> Closed {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(how) = self.state.lock().expect("inbox lock").closed {
                return how;
            }
            notified.await;
        }
    }

    /// Wakes every call waiting on this inbox (a receive and a failed send may both be),
    /// and the next one to wait.
    fn wake_all(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// Whether large messages to and from a peer may be copied straight between the two
/// processes' memory.
#[derive(Default, Clone, Copy)]
pub(crate) struct Cma {
    /// The peer's process id, when this rank can read its memory.
    pub(crate) read_from: Option<u32>,
    /// Whether the peer can read this rank's memory.
    pub(crate) peer_reads: bool,
}

/// Called with the rank of a peer that was lost, before the error is returned; launchers
/// use it to report the peer's own failure instead.
pub type PeerLostHook = Arc<dyn Fn(usize) + Send + Sync>;

/// Why the job cannot go on.
enum Poison {
    /// This rank found that the ranks called different collectives.
    Mismatch(String),
    /// A rank (maybe this one) aborted the job.
    Aborted { by: usize, reason: String },
}

/// What this rank has called, and what its peers said of their progress.
#[derive(Default)]
pub(crate) struct Calls {
    pub(crate) history: VecDeque<Call>,
    /// The generation the next flat collective will have ([`crate::shm::group`]).
    pub(crate) flat_next: u64,
    /// Each peer's answer to our latest probe.
    pub(crate) peers: HashMap<usize, ProbeReply>,
}

impl Calls {
    pub(crate) fn record(&mut self, call: Call) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(call);
    }

    pub(crate) fn at(&self, seq: u64) -> Option<Call> {
        self.history.iter().rev().find(|c| c.seq == seq).copied()
    }
}

pub(crate) struct Shared {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) writers: Vec<Option<tokio::sync::Mutex<PeerWriter>>>,
    /// The incoming rings of peers reached through shared memory.
    pub(crate) rings: Vec<Option<RingReader>>,
    /// Wakes writers waiting for room in a peer's ring.
    pub(crate) room: Vec<Notify>,
    /// How waits poll before they sleep.
    pub(crate) spin: super::Spin,
    /// For each peer: its process id if this rank may copy from its memory, and whether
    /// it may copy from ours ([`crate::shm`]'s cross-memory attach).
    pub(crate) cma: Vec<Cma>,
    /// For each peer: how fast remote copies with it ran each way, to divide the next ones.
    pub(crate) copy_rates: Vec<Mutex<super::remote::CopyRates>>,
    /// Numbers this rank's remote messages.
    pub(crate) next_remote: std::sync::atomic::AtomicU64,
    pub(crate) calls: Mutex<Calls>,
    poison: Mutex<Option<Poison>>,
    /// Whether `poison` is set: read on every poll, without the lock.
    is_poisoned: std::sync::atomic::AtomicBool,
    pub(crate) on_peer_lost: Mutex<Option<PeerLostHook>>,
    /// The call this rank is blocked in, for [`super::probe::ranks`].
    pub(crate) waiting: Mutex<Option<super::probe::Waiting>>,
    pool: Arc<BufferPool>,
    /// The segment shared by all the ranks of the host, when they all are on one.
    pub(crate) group: Option<Group>,
    /// Wakes flat collectives that sleep: on a wake-up byte, a poisoning, a lost peer.
    pub(crate) flat_wake: Notify,
    /// Flat collectives this rank has finished (they run one at a time, in order).
    pub(crate) flat_done: std::sync::atomic::AtomicU64,
    /// Wakes a flat collective waiting for its turn.
    pub(crate) flat_turn: Notify,
}

impl Shared {
    pub(crate) fn new(
        rank: usize,
        writers: Vec<Option<PeerWriter>>,
        rings: Vec<Option<RingReader>>,
        cma: Vec<Cma>,
        spin: super::Spin,
        group: Option<Group>,
        pool: Arc<BufferPool>,
    ) -> Shared {
        Shared {
            rank,
            size: writers.len(),
            inboxes: (0..writers.len()).map(|_| Inbox::default()).collect(),
            writers: writers.into_iter().map(|w| w.map(tokio::sync::Mutex::new)).collect(),
            room: (0..rings.len()).map(|_| Notify::new()).collect(),
            rings,
            spin,
            copy_rates: cma.iter().map(|_| Mutex::default()).collect(),
            cma,
            next_remote: std::sync::atomic::AtomicU64::new(0),
            calls: Mutex::default(),
            poison: Mutex::new(None),
            is_poisoned: std::sync::atomic::AtomicBool::new(false),
            on_peer_lost: Mutex::new(None),
            waiting: Mutex::new(None),
            pool,
            group,
            flat_wake: Notify::new(),
            flat_done: std::sync::atomic::AtomicU64::new(0),
            flat_turn: Notify::new(),
        }
    }

    fn set_poison(&self, poison: Poison) {
        self.poison.lock().expect("poison lock").get_or_insert(poison);
        self.is_poisoned.store(true, std::sync::atomic::Ordering::Release);
        for inbox in &self.inboxes {
            inbox.wake_all();
        }
        self.flat_wake.notify_waiters();
    }

    pub(crate) fn poison(&self, by: usize, reason: String) {
        self.set_poison(Poison::Aborted { by, reason });
    }

    pub(crate) fn poisoned(&self) -> Option<Error> {
        if !self.is_poisoned.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        match self.poison.lock().expect("poison lock").as_ref()? {
            Poison::Mismatch(detail) => Some(Error::CollectiveMismatch(detail.clone())),
            Poison::Aborted { by, reason } => Some(Error::Aborted { by: *by, reason: reason.clone() }),
        }
    }

    pub(crate) fn push(&self, peer: usize, chunk: Chunk) {
        let inbox = &self.inboxes[peer];
        let mut st = inbox.state.lock().expect("inbox lock");
        match chunk.header.space {
            Space::Collective => st.collective.push_back(chunk),
            Space::Message => st.messages.entry(chunk.header.seq).or_default().push_back(chunk),
        }
        drop(st);
        // Several threads may be waiting on this peer for different tags: wake them all,
        // or the one this chunk is for may sleep until its next probe. Waiters register
        // before they look at the queue, so no permit needs storing for a later one.
        inbox.notify.notify_waiters();
    }

    pub(crate) fn close(&self, peer: usize, how: Closed) {
        let inbox = &self.inboxes[peer];
        inbox.state.lock().expect("inbox lock").closed.get_or_insert(how);
        inbox.wake_all();
        self.room[peer].notify_waiters();
        self.flat_wake.notify_waiters();
    }

    /// Writes one frame to `peer` (a no-op for this rank itself).
    pub(crate) async fn write_frame(self: &Arc<Self>, peer: usize, parts: &[&[u8]]) -> std::io::Result<()> {
        let Some(writer) = &self.writers[peer] else { return Ok(()) };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut w = writer.lock().await;
        self.write_to(peer, &mut w, &frame::encode_length(len)).await?;
        for p in parts {
            self.write_to(peer, &mut w, p).await?;
        }
        Shared::flush_writer(&mut w).await
    }

    /// Tells every peer the job is aborted (best effort, bounded in time) and poisons this
    /// rank's communicator.
    pub(crate) async fn abort_all(self: &Arc<Self>, reason: &str) {
        self.poison(self.rank, reason.to_string());
        self.send_abort(reason).await;
    }

    async fn send_abort(self: &Arc<Self>, reason: &str) {
        let body = Frame::abort_body(reason);
        let sends = (0..self.size).filter(|&p| p != self.rank).map(|p| {
            let body = &body;
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), self.write_frame(p, &[body])).await;
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// Asks `peer` what it called as collective `seq`, unless a send to it is under way
    /// (then it is evidently taking part, and the probe would only queue behind the data).
    pub(crate) fn probe(self: &Arc<Self>, peer: usize, seq: u64) {
        let Some(writer) = &self.writers[peer] else { return };
        if writer.try_lock().is_err() {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let _ = shared.write_frame(peer, &[&Frame::probe_body(seq)]).await;
        });
    }

    /// Answers a peer's probe about collective `seq` (a rank answers only while it is in
    /// a chorus call: the reader tasks run then).
    fn answer_probe(self: &Arc<Self>, peer: usize, seq: u64) {
        let reply = {
            let calls = self.calls.lock().expect("calls lock");
            ProbeReply {
                probed: seq,
                latest: calls.history.back().map(|c| c.seq),
                at_probed: calls.at(seq).map(|c| c.sig),
            }
        };
        let shared = self.clone();
        tokio::spawn(async move {
            let _ = shared.write_frame(peer, &[&Frame::probe_reply_body(&reply)]).await;
        });
    }

    /// Compares a peer's answer with what this rank called at the same collective; a
    /// difference aborts the job.
    fn on_probe_reply(self: &Arc<Self>, peer: usize, reply: ProbeReply) {
        let mismatch = {
            let mut calls = self.calls.lock().expect("calls lock");
            calls.peers.insert(peer, reply);
            match (calls.at(reply.probed), reply.at_probed) {
                (Some(mine), Some(theirs)) if mine.sig != theirs => Some(format!(
                    "rank {} called {}, but rank {peer} called {}",
                    self.rank,
                    mine.describe(),
                    Call { seq: reply.probed, sig: theirs, type_name: "" }.describe_as_peer(&mine)
                )),
                _ => None,
            }
        };
        if let Some(detail) = mismatch {
            let reason = format!("collective mismatch: {detail}");
            self.set_poison(Poison::Mismatch(detail));
            let shared = self.clone();
            tokio::spawn(async move { shared.send_abort(&reason).await });
        }
    }
}

/// Reads one frame body; `None` at a clean end of stream.
async fn read_frame(
    reader: &mut tokio::io::BufReader<LinkReader>,
    pool: &Arc<BufferPool>,
) -> std::io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame::decode_length(len);
    if len > frame::MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes exceeds the {}-byte limit", frame::MAX_FRAME),
        ));
    }
    if len < POOLED_FRAME {
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        return Ok(Some(Bytes::from(body)));
    }
    let mut buf = pool.take();
    reader.read_exact(&mut buf[..len]).await?;
    Ok(Some(pool.frame(buf, len)))
}

/// Reads frames from one peer until it says goodbye or the connection ends.
pub(crate) async fn read_loop(shared: Arc<Shared>, peer: usize, reader: LinkReader) {
    let mut reader = tokio::io::BufReader::with_capacity(POOLED_FRAME, reader);
    loop {
        let body = match read_frame(&mut reader, &shared.pool).await {
            Ok(Some(body)) => body,
            Ok(None) => return shared.close(peer, Closed::Lost),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    diag::warn(&format!("rank {}: rank {peer} sent a malformed frame: {e}", shared.rank));
                }
                return shared.close(peer, Closed::Lost);
            }
        };
        if !shared.dispatch(peer, body) {
            return;
        }
    }
}

impl Shared {
    /// Acts on one frame from `peer`; false when nothing more is to be read from it (a
    /// goodbye, or a malformed frame).
    /// Records a remote copy's control frame from `peer` in its inbox and wakes the
    /// waiters (the call that sent or receives that message).
    fn note(&self, peer: usize, record: impl FnOnce(&mut InboxState)) {
        let inbox = &self.inboxes[peer];
        record(&mut inbox.state.lock().expect("inbox lock"));
        inbox.notify.notify_waiters();
    }

    pub(crate) fn dispatch(self: &Arc<Self>, peer: usize, body: Bytes) -> bool {
        match Frame::decode(body) {
            Ok(Frame::Data { header, payload }) => self.push(peer, Chunk::new(header, payload)),
            Ok(Frame::Abort { reason }) => self.poison(peer, reason),
            Ok(Frame::Goodbye) => {
                self.close(peer, Closed::Finalized);
                return false;
            }
            Ok(Frame::Probe { seq }) => self.answer_probe(peer, seq),
            Ok(Frame::ProbeReply(reply)) => self.on_probe_reply(peer, reply),
            Ok(Frame::Taken { id }) => self.note(peer, |st| {
                st.taken.insert(id);
            }),
            Ok(Frame::Share { id, from, addr }) => self.note(peer, |st| {
                st.shares.insert(id, (from, addr));
            }),
            Ok(Frame::Written { id, done, nanos }) => self.note(peer, |st| {
                st.written.insert(id, (done, nanos));
            }),
            Err(e) => {
                let why = format!("rank {peer} sent a malformed frame: {e}");
                diag::warn(&format!("rank {}: {why}", self.rank));
                self.poison(self.rank, why);
                self.close(peer, Closed::Lost);
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn read_all(bytes: Vec<u8>) -> Vec<std::io::Result<Option<Bytes>>> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            let (mut tx, rx) = tokio::io::duplex(1 << 20);
            tx.write_all(&bytes).await.unwrap();
            drop(tx);
            let mut reader = tokio::io::BufReader::new(Box::new(rx) as LinkReader);
            let pool = Arc::new(BufferPool::default());
            let mut out = Vec::new();
            loop {
                let r = read_frame(&mut reader, &pool).await;
                let stop = !matches!(r, Ok(Some(_)));
                out.push(r);
                if stop {
                    return out;
                }
            }
        })
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_refused_before_it_is_buffered() {
        let mut bytes = ((frame::MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 64]);
        let out = read_all(bytes);
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn small_and_pooled_frames_come_back_whole_and_a_truncated_one_is_an_error() {
        let mut bytes = Vec::new();
        for len in [0usize, 5, POOLED_FRAME, POOLED_FRAME + 3] {
            bytes.extend_from_slice(&(len as u32).to_be_bytes());
            bytes.extend((0..len).map(|i| (i % 251) as u8));
        }
        bytes.extend_from_slice(&100u32.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        let out = read_all(bytes);
        let lens: Vec<usize> = out.iter().filter_map(|r| r.as_ref().ok()?.as_ref().map(Bytes::len)).collect();
        assert_eq!(lens, vec![0, 5, POOLED_FRAME, POOLED_FRAME + 3]);
        let last = out[3].as_ref().unwrap().as_ref().unwrap();
        assert!(last.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(out.last().unwrap().as_ref().unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
