//! The machinery under the collectives: receiving chunks from a peer's inbox (polling, then
//! sleeping, then probing the peer), chunked sends, the collective sequence and its
//! mismatch checks, and the end of a rank's part in the job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub(crate) use super::received::{PodFill, Received};
use super::mesh::Link;
use super::rings::{wake_loop, PeerWriter, ReaderState, RingReader};
use super::shared::{read_loop, Chunk, Closed, Cma, Shared};
use crate::frame::{self, CollectiveOp, DataHeader, Frame, Signature, Space, FIRST, LAST, MAX_CHUNK, REMOTE};
use crate::shm::ring::{Consumer, Producer, PLACE_MIN};
use crate::{diag, Error, Result};

/// Messages at most this large are written with a single system call.
const SMALL_MESSAGE: usize = 64 << 10;
/// How long a wait for a ring peer watches the ring between turns of the runtime.
pub(crate) const RING_WATCH: Duration = Duration::from_micros(20);
/// A call that has heard nothing from the peer it waits for in this long asks the peer
/// what it called (and again after each further period).
pub(super) const PROBE_AFTER: Duration = Duration::from_secs(1);

/// Identifies one collective call on this rank.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub(crate) seq: u64,
    pub(crate) sig: Signature,
    pub(crate) type_name: &'static str,
}

impl Call {
    /// `bcast(root 0) as collective #3`.
    pub(crate) fn describe(&self) -> String {
        format!("{}(root {}) as collective #{}", self.sig.op.name(), self.sig.root, self.seq)
    }

    /// A peer's call, described against ours at the same number (whose element type we
    /// know by name and the peer's only by hash).
    pub(crate) fn describe_as_peer(&self, ours: &Call) -> String {
        if self.sig.op == ours.sig.op && self.sig.root == ours.sig.root && self.sig.type_hash != ours.sig.type_hash {
            format!("{} with a different element type (not {})", self.describe(), ours.type_name)
        } else {
            self.describe()
        }
    }
}

/// The communicator proper: links to every peer, inboxes, and the collective counter.
pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    next_seq: AtomicU64,
    pub(crate) warn_after: Duration,
    pub(super) spin: super::Spin,
    /// Whether every rank is on this host (the same on every rank: collectives may pick
    /// their algorithm by it).
    pub(crate) one_host: bool,
    /// How this rank reaches each peer.
    pub(crate) kinds: Vec<super::PeerLink>,
}

/// What a call waits for: a collective's next message, or a tagged point-to-point one.
#[derive(Clone, Copy)]
pub(super) enum Awaited<'a> {
    Collective(&'a Call),
    Tagged(u64),
}

impl Awaited<'_> {
    fn seq(&self) -> Option<u64> {
        match self {
            Awaited::Collective(call) => Some(call.seq),
            Awaited::Tagged(_) => None,
        }
    }

    fn describe(&self, peer: usize) -> String {
        match self {
            Awaited::Collective(call) => call.describe(),
            Awaited::Tagged(tag) => format!("recv(from rank {peer}, tag {tag})"),
        }
    }
}

/// Bytes of a large collective message's first frame: few, so that the receiver learns
/// the message's length and claims the sender's ring for the rest of it
/// ([`super::rings::Claim`]) before much has been copied into a buffer of its own.
const FIRST_PIECE: usize = PLACE_MIN;

/// The frames' payloads of a message made of `parts`: pieces of them of at most
/// [`MAX_CHUNK`] bytes, the first of at most [`FIRST_PIECE`] when the message is a
/// collective's and long enough for the rest to be placed.
pub(crate) fn pieces<'a>(parts: &[&'a [u8]], space: Space) -> Vec<&'a [u8]> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut limit = if space == Space::Collective && total >= FIRST_PIECE + PLACE_MIN { FIRST_PIECE } else { MAX_CHUNK };
    let mut out = Vec::with_capacity(total / MAX_CHUNK + 2);
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(rest.len().min(limit));
            out.push(piece);
            rest = after;
            limit = MAX_CHUNK;
        }
    }
    out
}

impl Core {
    /// Builds the core from one link per peer (`None` at our own rank) and starts the
    /// reader tasks on the current runtime.
    pub(crate) fn start(
        rank: usize,
        links: Vec<Option<Link>>,
        warn_after: Duration,
        spin: super::Spin,
        one_host: bool,
        group: Option<crate::shm::group::Group>,
    ) -> Core {
        let (mut writers, mut rings, mut streams, mut sockets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let pool = Arc::new(crate::pool::BufferPool::default());
        let mut cma = Vec::new();
        let mut kinds = Vec::new();
        for link in links {
            kinds.push(match &link {
                None => super::PeerLink::Itself,
                Some(Link::Stream(_, _, true)) => super::PeerLink::Unix,
                Some(Link::Stream(_, _, false)) => super::PeerLink::Tcp,
                Some(Link::Rings(l)) => super::PeerLink::SharedMemory { single_copy: l.can_read_peer && l.peer_can_read },
            });
            cma.push(match &link {
                Some(Link::Rings(l)) => Cma { read_from: l.can_read_peer.then_some(l.peer_pid), peer_reads: l.peer_can_read },
                _ => Cma::default(),
            });
            let (writer, ring, stream, socket) = match link {
                None => (None, None, None, None),
                Some(Link::Stream(r, w, _)) => (Some(PeerWriter::Stream(w)), None, Some(r), None),
                Some(Link::Rings(l)) => {
                    let socket = Arc::new(l.socket);
                    let producer = Producer::new(l.segment.clone(), l.outgoing);
                    let consumer = Consumer::new(l.segment.clone(), 1 - l.outgoing, pool.clone());
                    let reader = RingReader {
                        consumer: std::sync::Mutex::new(ReaderState { consumer, done: false, claim: None }),
                        socket: socket.clone(),
                    };
                    (Some(PeerWriter::Ring { producer, socket: socket.clone() }), Some(reader), None, Some(socket))
                }
            };
            writers.push(writer);
            rings.push(ring);
            streams.push(stream);
            sockets.push(socket);
        }
        let shared = Arc::new(Shared::new(rank, writers, rings, cma, spin, group, pool));
        for (peer, (stream, socket)) in streams.into_iter().zip(sockets).enumerate() {
            if let Some(reader) = stream {
                tokio::spawn(read_loop(shared.clone(), peer, reader));
            }
            if let Some(socket) = socket {
                tokio::spawn(wake_loop(shared.clone(), peer, socket));
            }
        }
        Core { shared, next_seq: AtomicU64::new(0), warn_after, spin, one_host, kinds }
    }

    pub(crate) fn rank(&self) -> usize {
        self.shared.rank
    }

    /// Whether the job was already aborted (by any rank).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.shared.poisoned().is_some()
    }

    pub(crate) fn size(&self) -> usize {
        self.shared.size
    }

    /// Starts a collective call: checks the job is healthy and numbers the call.
    pub(crate) fn begin(&self, op: CollectiveOp, root: usize, type_hash: u32, type_name: &'static str) -> Result<Call> {
        self.begin_as(op, root, type_hash, type_name, false).map(|(call, _)| call)
    }

    /// Starts a collective that goes through the host's shared group segment when there is
    /// one: also numbers it among the flat calls (its generation, `None` without a group).
    /// The caller must go on to [`Core::flat`] with the generation.
    pub(crate) fn begin_flat(&self, op: CollectiveOp, root: usize, type_hash: u32, type_name: &'static str) -> Result<(Call, Option<u64>)> {
        self.begin_as(op, root, type_hash, type_name, self.shared.group.is_some())
    }

    fn begin_as(&self, op: CollectiveOp, root: usize, type_hash: u32, type_name: &'static str, flat: bool) -> Result<(Call, Option<u64>)> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        if root >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{}: root {root} is out of range for a job of {} ranks",
                op.name(),
                self.size()
            )));
        }
        // Numbered under the lock, so that calls started from several threads take their
        // call number and their flat generation in the same order.
        let mut calls = self.shared.calls.lock().expect("calls lock");
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let call = Call { seq, sig: Signature { op, root: root as u32, type_hash }, type_name };
        calls.record(call);
        let gen = flat.then(|| {
            calls.flat_next += 1;
            calls.flat_next - 1
        });
        Ok((call, gen))
    }

    pub(crate) fn lost(&self, peer: usize, how: Closed) -> Error {
        if let Some(e) = self.shared.poisoned() {
            return e;
        }
        match how {
            Closed::Finalized => Error::PeerFinalized { rank: self.rank(), peer },
            Closed::Lost => {
                let hook = self.shared.on_peer_lost.lock().expect("hook lock").clone();
                if let Some(hook) = hook {
                    hook(peer);
                }
                Error::PeerLost { rank: self.rank(), peer }
            }
        }
    }

    /// Waits for the next chunk from `peer`: polls briefly, then sleeps. A collective call
    /// that hears nothing for [`PROBE_AFTER`] asks the peer what it called there (so that
    /// ranks that disagree and all wait are told, instead of waiting forever), and one
    /// that waits longer than `warn_after` says whom it is waiting for.
    async fn next_chunk(&self, peer: usize, awaited: Awaited<'_>) -> Result<Chunk> {
        let inbox = &self.shared.inboxes[peer];
        // Clocks are read only once the message is found not to be there yet.
        let mut clocks: Option<(tokio::time::Instant, std::time::Instant)> = None;
        let mut next_probe = None;
        let mut next_warning = None;
        // Set once the call sleeps, cleared when it returns (see `probe`).
        let mut waiting: Option<(WaitRecord<'_>, super::rings::Asleep<'_>)> = None;
        loop {
            let notified = inbox.notify.notified();
            tokio::pin!(notified);
            // Registering costs a lock: only a wait that may sleep needs it, and it must
            // come before the last look at the inbox.
            if waiting.is_some() {
                notified.as_mut().enable();
            }
            if let Some(e) = self.shared.poisoned() {
                return Err(e);
            }
            self.shared.drain_rings();
            {
                let mut st = inbox.state.lock().expect("inbox lock");
                let chunk = match awaited {
                    Awaited::Collective(_) => st.collective.pop_front(),
                    Awaited::Tagged(tag) => st.messages.get_mut(&tag).and_then(std::collections::VecDeque::pop_front),
                };
                if let Some(chunk) = chunk {
                    return Ok(chunk);
                }
                if let Some(how) = st.closed {
                    drop(st);
                    return Err(self.lost(peer, how));
                }
            }
            let now = std::time::Instant::now();
            let (started, spin_until) = *clocks.get_or_insert_with(|| (tokio::time::Instant::now(), now + self.spin.duration));
            let next_probe = next_probe.get_or_insert(started + PROBE_AFTER);
            let next_warning = next_warning.get_or_insert(started + self.warn_after);
            if now < spin_until {
                if self.shared.rings[peer].is_some() {
                    // The peer's bytes land in its ring: watch it here, without a trip
                    // through the runtime (whose every turn polls the sockets), and let the
                    // runtime run now and then for probes and the other peers.
                    if self.shared.watch_ring(peer, (now + RING_WATCH).min(spin_until), self.spin.yield_cpu) {
                        continue;
                    }
                } else if self.spin.yield_cpu {
                    std::thread::yield_now();
                }
                // Lets the runtime poll the sockets without blocking, then checks again.
                tokio::task::yield_now().await;
                continue;
            }
            if waiting.is_none() {
                // Counted asleep, then one more look: a ring's producer either sees the
                // count (and wakes us) or wrote before it, and the look finds its bytes.
                waiting = Some((WaitRecord::start(&self.shared, peer, awaited), self.shared.asleep()));
                continue;
            }
            if tokio::time::timeout_at((*next_probe).min(*next_warning), notified).await.is_ok() {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= *next_probe {
                if let Awaited::Collective(call) = awaited {
                    self.shared.probe(peer, call.seq);
                }
                *next_probe = now + PROBE_AFTER;
            }
            if now >= *next_warning {
                diag::warn(&format!(
                    "rank {} has waited {:.1} s in {} for rank {peer}, {}",
                    self.rank(),
                    started.elapsed().as_secs_f64(),
                    awaited.describe(peer),
                    self.whereabouts(peer, awaited)
                ));
                *next_warning = now + (now - started);
            }
        }
    }

    /// Where `peer` is, as far as its answers to our probes tell.
    pub(super) fn whereabouts(&self, peer: usize, awaited: Awaited<'_>) -> String {
        let calls = self.shared.calls.lock().expect("calls lock");
        super::probe::whereabouts(&calls, peer, awaited.seq())
    }

    /// Receives the first chunk of this call's message from `peer`, checking that the
    /// peer made the same call.
    pub(crate) async fn recv_first(&self, call: &Call, peer: usize) -> Result<Chunk> {
        let first = self.next_chunk(peer, Awaited::Collective(call)).await?;
        let h = first.header;
        if h.seq != call.seq || h.sig != call.sig || h.flags & FIRST == 0 {
            return Err(self.mismatch(call, peer, &h).await);
        }
        Ok(first)
    }

    /// Receives the next chunk of a message whose first chunk came from `peer`.
    pub(crate) async fn recv_more(&self, call: &Call, peer: usize) -> Result<Chunk> {
        let next = self.next_chunk(peer, Awaited::Collective(call)).await?;
        if next.header.seq != call.seq || next.header.flags & FIRST != 0 {
            return Err(self.fail(format!("rank {peer} interrupted a message in {}", call.describe())).await);
        }
        Ok(next)
    }

    /// Receives this call's message from `peer`.
    pub(crate) async fn recv(&self, call: &Call, peer: usize) -> Result<Received> {
        let first = self.recv_first(call, peer).await?;
        self.rest_of_message(peer, Awaited::Collective(call), first).await
    }

    /// Receives a point-to-point message with `tag` from `peer`.
    pub(crate) async fn recv_tagged(&self, peer: usize, tag: u64, type_hash: u32, type_name: &'static str) -> Result<Received> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let first = self.next_chunk(peer, Awaited::Tagged(tag)).await?;
        if first.header.sig.type_hash != type_hash {
            return Err(self
                .fail(format!("rank {} received a message (tag {tag}) from rank {peer} as {type_name}, but it was sent as another type", self.rank()))
                .await);
        }
        self.rest_of_message(peer, Awaited::Tagged(tag), first).await
    }

    /// Collects the chunks that follow `first` up to the message's last.
    async fn rest_of_message(&self, peer: usize, awaited: Awaited<'_>, first: Chunk) -> Result<Received> {
        let total = first.header.total as usize;
        if first.header.flags & REMOTE != 0 {
            return Ok(Received { chunks: vec![self.fetch(peer, &first, false).await?], total });
        }
        let mut last = first.header.flags & LAST != 0;
        let mut chunks = vec![first.payload];
        while !last {
            let next = match awaited {
                Awaited::Collective(call) => self.recv_more(call, peer).await?,
                Awaited::Tagged(_) => self.next_chunk(peer, awaited).await?,
            };
            last = next.header.flags & LAST != 0;
            chunks.push(next.payload);
        }
        Ok(Received { chunks, total })
    }

    /// Reports a mismatched call: aborts the job and returns the error.
    pub(super) async fn mismatch(&self, call: &Call, peer: usize, theirs: &DataHeader) -> Error {
        let me = self.rank();
        let theirs = Call { seq: theirs.seq, sig: theirs.sig, type_name: "" };
        let detail = if theirs.seq > call.seq {
            format!(
                "rank {me} called {}, but rank {peer} had already moved past it (it called a different collective there)",
                call.describe()
            )
        } else {
            match self.shared.calls.lock().expect("calls lock").at(theirs.seq) {
                // Found only now, in a later call: name what this rank called back then.
                Some(earlier) if earlier.seq != call.seq => format!(
                    "rank {me} called {}, but rank {peer} called {} (noticed in rank {me}'s next call, {})",
                    earlier.describe(),
                    theirs.describe_as_peer(&earlier),
                    call.describe()
                ),
                _ => format!("rank {me} called {}, but rank {peer} called {}", call.describe(), theirs.describe_as_peer(call)),
            }
        };
        self.fail_mismatch(detail).await
    }

    pub(crate) async fn fail_mismatch(&self, detail: String) -> Error {
        self.abort_all(&format!("collective mismatch: {detail}")).await;
        Error::CollectiveMismatch(detail)
    }

    /// Aborts the job with `reason` and returns the local error.
    pub(crate) async fn fail(&self, reason: String) -> Error {
        self.abort_all(&reason).await;
        Error::Aborted { by: self.rank(), reason }
    }

    /// Tells every peer the job is aborted (best effort, bounded in time) and poisons
    /// this rank's communicator.
    pub(crate) async fn abort_all(&self, reason: &str) {
        self.shared.abort_all(reason).await;
    }

    /// Sends `payload` to `peer` as one message of this call.
    pub(crate) async fn send(&self, call: &Call, peer: usize, payload: &[u8]) -> Result<()> {
        self.send_message(peer, Space::Collective, call.seq, call.sig, &[payload]).await
    }

    /// Sends a message received earlier on, as it arrived (ring algorithms).
    pub(crate) async fn send_received(&self, call: &Call, peer: usize, message: &Received) -> Result<()> {
        let parts: Vec<&[u8]> = message.chunks.iter().map(|c| &c[..]).collect();
        self.send_message(peer, Space::Collective, call.seq, call.sig, &parts).await
    }

    /// Sends a point-to-point message.
    pub(crate) async fn send_tagged(&self, peer: usize, tag: u64, type_hash: u32, payload: &[u8]) -> Result<()> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let sig = Signature { op: CollectiveOp::PointToPoint, root: 0, type_hash };
        self.send_message(peer, Space::Message, tag, sig, &[payload]).await
    }

    /// Sends the concatenation of `parts` as one message, in frames of at most
    /// [`MAX_CHUNK`] bytes written straight from the caller's buffers ([`pieces`]).
    async fn send_message(&self, peer: usize, space: Space, seq: u64, sig: Signature, parts: &[&[u8]]) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let header = |flags| DataHeader { space, flags, sig, seq, total: total as u64 };
        let mut pieces = pieces(parts, space);
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let flags_of = |i: usize| (if i == 0 { FIRST } else { 0 }) | (if i + 1 == pieces.len() { LAST } else { 0 });
        if peer == self.rank() {
            for (i, piece) in pieces.iter().enumerate() {
                self.shared.push(peer, Chunk::new(header(flags_of(i)), Bytes::copy_from_slice(piece)));
            }
            return Ok(());
        }
        if self.sends_remote(peer, space, total, parts.len()) {
            return self.send_remote(peer, header(FIRST | LAST), parts).await;
        }
        let Some(writer) = &self.shared.writers[peer] else { unreachable!("every other rank has a link") };
        let mut w = writer.lock().await;
        let result = async {
            if total <= SMALL_MESSAGE {
                let h = header(FIRST | LAST).encode();
                // Small frames are put together on the stack, larger ones in one buffer, so
                // each goes out in a single write.
                let mut stack = [0u8; 256];
                let mut heap = Vec::new();
                let len = 4 + h.len() + total;
                let buf: &mut [u8] = if len <= stack.len() {
                    &mut stack[..len]
                } else {
                    heap.resize(len, 0);
                    &mut heap
                };
                buf[..4].copy_from_slice(&crate::frame::encode_length(h.len() + total));
                buf[4..4 + h.len()].copy_from_slice(&h);
                let mut at = 4 + h.len();
                for p in parts {
                    buf[at..at + p.len()].copy_from_slice(p);
                    at += p.len();
                }
                self.shared.write_to(peer, &mut w, buf).await?;
            } else {
                for (i, piece) in pieces.iter().enumerate() {
                    let h = header(flags_of(i)).encode();
                    let mut head = [0u8; 4 + frame::DATA_HEADER_LEN];
                    head[..4].copy_from_slice(&crate::frame::encode_length(h.len() + piece.len()));
                    head[4..].copy_from_slice(&h);
                    self.shared.write_to(peer, &mut w, &head).await?;
                    self.shared.write_to(peer, &mut w, piece).await?;
                }
            }
            Shared::flush_writer(&mut w).await
        }
        .await;
        drop(w);
        match result {
            Ok(()) => Ok(()),
            Err(_) => Err(self.write_failed(peer).await),
        }
    }

    /// The error for a write to `peer` that failed because it is gone. What it sent before
    /// it left (an abort, a goodbye) may still be in our socket: let the reader take it in
    /// first, so that the error says why the peer left.
    pub(crate) async fn write_failed(&self, peer: usize) -> Error {
        let how = tokio::time::timeout(Duration::from_secs(2), self.shared.inboxes[peer].closed()).await;
        self.lost(peer, how.unwrap_or(Closed::Lost))
    }

    /// Forwards one received chunk unchanged to `peer` (pipelined broadcasts).
    pub(crate) async fn forward(&self, peer: usize, header: &DataHeader, payload: &[u8]) -> Result<()> {
        let h = header.encode();
        match self.shared.write_frame(peer, &[&h, payload]).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.write_failed(peer).await),
        }
    }

    /// Point-to-point messages that have arrived and that no call has received yet.
    pub(crate) fn unreceived_messages(&self) -> usize {
        self.shared
            .inboxes
            .iter()
            .map(|inbox| {
                let st = inbox.state.lock().expect("inbox lock");
                st.messages.values().map(|q| q.iter().filter(|c| c.header.flags & FIRST != 0).count()).sum::<usize>()
            })
            .sum()
    }

    /// Finishes the communicator: a last collective that every rank must reach, a check
    /// that no collective message was left unreceived, then goodbye to every peer.
    pub(crate) async fn finalize(&self, call: Call) -> Result<()> {
        self.dissemination_barrier(&call).await?;
        for peer in 0..self.size() {
            let (leftover, pending) = {
                let st = self.shared.inboxes[peer].state.lock().expect("inbox lock");
                let leftover = st.collective.front().map(|c| (c.header.sig.op.name(), c.header.seq));
                let pending: usize =
                    st.messages.values().map(|q| q.iter().filter(|c| c.header.flags & FIRST != 0).count()).sum();
                (leftover, pending)
            };
            if let Some((op, seq)) = leftover {
                let me = self.rank();
                return Err(self
                    .fail_mismatch(format!(
                        "rank {peer} sent rank {me} a message for {op} (collective #{seq}) that rank {me} never received: the ranks called different collectives"
                    ))
                    .await);
            }
            if pending > 0 {
                diag::warn(&format!("rank {} finalized with {pending} unreceived message(s) from rank {peer}", self.rank()));
            }
        }
        self.leave(Duration::from_secs(5)).await;
        Ok(())
    }

    /// Says goodbye to every peer, so that anyone waiting for this rank fails at once
    /// instead of hanging, then waits (at most `linger`) for the peers' own goodbyes so
    /// that no unread bytes are left in our sockets when they close.
    pub(crate) async fn leave(&self, linger: Duration) {
        let bye = Frame::goodbye_body();
        let sends = (0..self.size()).filter(|&p| p != self.rank()).map(|p| {
            let bye = &bye;
            async move {
                let _ = tokio::time::timeout(linger, async {
                    let _ = self.shared.write_frame(p, &[bye]).await;
                    if let Some(w) = &self.shared.writers[p] {
                        Shared::shutdown_writer(&mut *w.lock().await).await;
                    }
                })
                .await;
            }
        });
        futures_util::future::join_all(sends).await;
        let _ = tokio::time::timeout(linger, async {
            for peer in (0..self.size()).filter(|&p| p != self.rank()) {
                self.shared.inboxes[peer].closed().await;
            }
        })
        .await;
    }

    /// Dissemination barrier: ⌈log2 p⌉ rounds, each rank sending to `rank + 2^k` and
    /// receiving from `rank - 2^k`.
    pub(crate) async fn dissemination_barrier(&self, call: &Call) -> Result<()> {
        let (r, p) = (self.rank(), self.size());
        let mut k = 1;
        while k < p {
            let to = (r + k) % p;
            let from = (r + p - k) % p;
            let (sent, got) = tokio::join!(self.send(call, to, &[]), self.recv(call, from));
            sent?;
            got?;
            k *= 2;
        }
        Ok(())
    }
}


/// A rank's wait, listed for [`super::probe::ranks`] while it lasts.
pub(super) struct WaitRecord<'a>(&'a Shared);

impl<'a> WaitRecord<'a> {
    pub(super) fn start(shared: &'a Shared, peer: usize, awaited: Awaited<'_>) -> WaitRecord<'a> {
        *shared.waiting.lock().expect("waiting lock") = Some(super::probe::Waiting {
            since: std::time::Instant::now(),
            peer,
            call: awaited.describe(peer),
            seq: awaited.seq(),
        });
        WaitRecord(shared)
    }
}

impl Drop for WaitRecord<'_> {
    fn drop(&mut self) {
        *self.0.waiting.lock().expect("waiting lock") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_collective_message_starts_with_a_small_frame_and_every_piece_is_a_slice_of_a_part() {
        let a = vec![1u8; 100 << 10];
        let b = vec![2u8; 9 << 20];
        let lens = |space, parts: &[&[u8]]| pieces(parts, space).iter().map(|p| p.len()).collect::<Vec<_>>();
        assert_eq!(lens(Space::Collective, &[&a, &b]), vec![FIRST_PIECE, (100 << 10) - FIRST_PIECE, MAX_CHUNK, MAX_CHUNK, 1 << 20]);
        assert_eq!(lens(Space::Message, &[&a, &b]), vec![100 << 10, MAX_CHUNK, MAX_CHUNK, 1 << 20]);
        // Too short for its rest to be placed: one frame.
        assert_eq!(lens(Space::Collective, &[&a]), vec![100 << 10]);
        assert!(lens(Space::Collective, &[&[], &[]]).is_empty());
        let joined: Vec<u8> = pieces(&[&a, &b], Space::Collective).concat();
        assert_eq!(joined, [a, b].concat());
    }
}
