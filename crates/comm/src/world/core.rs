//! The machinery under the collectives: one inbox per peer filled by a reader task, chunked
//! sends, the collective sequence and its mismatch checks, and job-wide abort.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::frame::{self, CollectiveOp, DataHeader, Frame, Signature, Space, FIRST, LAST, MAX_CHUNK};
use crate::link::{LinkReader, LinkWriter};
use crate::{diag, Error, Result};

/// How many recent calls a rank remembers for mismatch reports.
const HISTORY: usize = 64;
/// Messages at most this large are written with a single system call.
const SMALL_MESSAGE: usize = 64 << 10;

pub(crate) struct Chunk {
    pub(crate) header: DataHeader,
    pub(crate) payload: Bytes,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Closed {
    Finalized,
    Lost,
}

#[derive(Default)]
struct InboxState {
    collective: VecDeque<Chunk>,
    messages: HashMap<u64, VecDeque<Chunk>>,
    closed: Option<Closed>,
}

#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    notify: Notify,
}

/// Called with the rank of a peer that was lost, before the error is returned; launchers
/// use it to report the peer's own failure instead.
pub type PeerLostHook = Arc<dyn Fn(usize) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    inboxes: Vec<Inbox>,
    poison: Mutex<Option<(usize, String)>>,
    pub(crate) on_peer_lost: Mutex<Option<PeerLostHook>>,
    pool: Arc<BufferPool>,
}

impl Shared {
    fn poison(&self, by: usize, reason: String) {
        let mut p = self.poison.lock().expect("poison lock");
        if p.is_none() {
            *p = Some((by, reason));
        }
        drop(p);
        for inbox in &self.inboxes {
            inbox.notify.notify_one();
        }
    }

    fn poisoned(&self) -> Option<Error> {
        let p = self.poison.lock().expect("poison lock");
        p.as_ref().map(|(by, reason)| Error::Aborted { by: *by, reason: reason.clone() })
    }

    fn push(&self, peer: usize, chunk: Chunk) {
        let inbox = &self.inboxes[peer];
        let mut st = inbox.state.lock().expect("inbox lock");
        match chunk.header.space {
            Space::Collective => st.collective.push_back(chunk),
            Space::Message => st.messages.entry(chunk.header.seq).or_default().push_back(chunk),
        }
        drop(st);
        inbox.notify.notify_one();
    }

    fn close(&self, peer: usize, how: Closed) {
        let inbox = &self.inboxes[peer];
        inbox.state.lock().expect("inbox lock").closed.get_or_insert(how);
        inbox.notify.notify_one();
    }
}

/// Frames at least this large are read into pooled buffers.
const POOLED_FRAME: usize = 64 << 10;
/// Pooled buffers kept for reuse per world.
const POOL_SIZE: usize = 16;

/// Receive buffers for large frames, reused so that streaming a big message does not
/// page-fault fresh memory for every chunk.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// A pooled buffer holding one frame; it goes back to the pool when the last `Bytes`
/// pointing into it is dropped.
struct PooledFrame {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().expect("pool lock");
        if free.len() < POOL_SIZE {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.free.lock().expect("pool lock").pop().unwrap_or_else(|| vec![0; frame::MAX_FRAME])
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
    let len = u32::from_be_bytes(len) as usize;
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
    Ok(Some(Bytes::from_owner(PooledFrame { buf, len, pool: pool.clone() })))
}

/// Reads frames from one peer until it says goodbye or the connection ends.
async fn read_loop(shared: Arc<Shared>, peer: usize, reader: LinkReader) {
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
        match Frame::decode(body) {
            Ok(Frame::Data { header, payload }) => shared.push(peer, Chunk { header, payload }),
            Ok(Frame::Abort { reason }) => shared.poison(peer, reason),
            Ok(Frame::Goodbye) => return shared.close(peer, Closed::Finalized),
            Err(e) => {
                let why = format!("rank {peer} sent a malformed frame: {e}");
                diag::warn(&format!("rank {}: {why}", shared.rank));
                shared.poison(shared.rank, why);
                return shared.close(peer, Closed::Lost);
            }
        }
    }
}

/// Identifies one collective call on this rank.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub(crate) seq: u64,
    pub(crate) sig: Signature,
    pub(crate) type_name: &'static str,
}

/// The communicator proper: links to every peer, inboxes, and the collective counter.
pub(crate) struct Core {
    pub(crate) shared: Arc<Shared>,
    writers: Vec<Option<tokio::sync::Mutex<LinkWriter>>>,
    next_seq: AtomicU64,
    /// This rank's most recent collective calls, to name both sides of a mismatch found
    /// after the fact.
    history: Mutex<VecDeque<Call>>,
    pub(crate) warn_after: Duration,
    spin: super::Spin,
}

impl Core {
    /// Builds the core from one link per peer (`None` at our own rank) and starts the
    /// reader tasks on the current runtime.
    pub(crate) fn start(
        rank: usize,
        links: Vec<Option<(LinkReader, LinkWriter)>>,
        warn_after: Duration,
        spin: super::Spin,
    ) -> Core {
        let size = links.len();
        let shared = Arc::new(Shared {
            rank,
            size,
            inboxes: (0..size).map(|_| Inbox::default()).collect(),
            poison: Mutex::new(None),
            on_peer_lost: Mutex::new(None),
            pool: Arc::default(),
        });
        let mut writers = Vec::with_capacity(size);
        for (peer, link) in links.into_iter().enumerate() {
            match link {
                Some((reader, writer)) => {
                    tokio::spawn(read_loop(shared.clone(), peer, reader));
                    writers.push(Some(tokio::sync::Mutex::new(writer)));
                }
                None => writers.push(None),
            }
        }
        Core { shared, writers, next_seq: AtomicU64::new(0), history: Mutex::default(), warn_after, spin }
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
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let call = Call { seq, sig: Signature { op, root: root as u32, type_hash }, type_name };
        let mut history = self.history.lock().expect("history lock");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(call);
        Ok(call)
    }

    fn lost(&self, peer: usize, how: Closed) -> Error {
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

    /// Waits for the next chunk from `peer` in the given space, warning periodically when
    /// the wait is long.
    async fn next_chunk(&self, peer: usize, tag: Option<u64>, what: &dyn Fn() -> String) -> Result<Chunk> {
        let inbox = &self.shared.inboxes[peer];
        let mut warn_after = self.warn_after;
        let started = tokio::time::Instant::now();
        let spin_until = std::time::Instant::now() + self.spin.duration;
        loop {
            let notified = inbox.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.shared.poisoned() {
                return Err(e);
            }
            {
                let mut st = inbox.state.lock().expect("inbox lock");
                let chunk = match tag {
                    None => st.collective.pop_front(),
                    Some(tag) => st.messages.get_mut(&tag).and_then(VecDeque::pop_front),
                };
                if let Some(chunk) = chunk {
                    return Ok(chunk);
                }
                if let Some(how) = st.closed {
                    drop(st);
                    return Err(self.lost(peer, how));
                }
            }
            if std::time::Instant::now() < spin_until {
                // Lets the runtime poll the sockets without blocking, then checks again.
                if self.spin.yield_cpu {
                    std::thread::yield_now();
                }
                tokio::task::yield_now().await;
                continue;
            }
            if tokio::time::timeout(warn_after.saturating_sub(started.elapsed()), notified).await.is_err() {
                diag::warn(&format!(
                    "rank {} has waited {:.1} s in {} for rank {peer}, which has not arrived there yet",
                    self.rank(),
                    started.elapsed().as_secs_f64(),
                    what()
                ));
                warn_after *= 2;
            }
        }
    }

    fn describe(call: &Call) -> String {
        format!("{}(root {}) as collective #{}", call.sig.op.name(), call.sig.root, call.seq)
    }

    /// Receives the first chunk of this call's message from `peer`, checking that the
    /// peer made the same call.
    pub(crate) async fn recv_first(&self, call: &Call, peer: usize) -> Result<Chunk> {
        let first = self.next_chunk(peer, None, &|| Self::describe(call)).await?;
        let h = first.header;
        if h.seq != call.seq || h.sig != call.sig || h.flags & FIRST == 0 {
            return Err(self.mismatch(call, peer, &h).await);
        }
        Ok(first)
    }

    /// Receives the next chunk of a message whose first chunk came from `peer`.
    pub(crate) async fn recv_more(&self, call: &Call, peer: usize) -> Result<Chunk> {
        let next = self.next_chunk(peer, None, &|| Self::describe(call)).await?;
        if next.header.seq != call.seq || next.header.flags & FIRST != 0 {
            return Err(self.fail(format!("rank {peer} interrupted a message in {}", Self::describe(call))).await);
        }
        Ok(next)
    }

    /// Receives this call's message from `peer`.
    pub(crate) async fn recv(&self, call: &Call, peer: usize) -> Result<Received> {
        let first = self.recv_first(call, peer).await?;
        let total = first.header.total as usize;
        let mut last = first.header.flags & LAST != 0;
        let mut chunks = vec![first.payload];
        while !last {
            let next = self.recv_more(call, peer).await?;
            last = next.header.flags & LAST != 0;
            chunks.push(next.payload);
        }
        Ok(Received { chunks, total })
    }

    /// Receives a point-to-point message with `tag` from `peer`.
    pub(crate) async fn recv_tagged(&self, peer: usize, tag: u64, type_hash: u32, type_name: &'static str) -> Result<Received> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let what = || format!("recv(from rank {peer}, tag {tag})");
        let first = self.next_chunk(peer, Some(tag), &what).await?;
        if first.header.sig.type_hash != type_hash {
            return Err(self
                .fail(format!("rank {} received a message (tag {tag}) from rank {peer} as {type_name}, but it was sent as another type", self.rank()))
                .await);
        }
        let total = first.header.total as usize;
        let mut last = first.header.flags & LAST != 0;
        let mut chunks = vec![first.payload];
        while !last {
            let next = self.next_chunk(peer, Some(tag), &what).await?;
            last = next.header.flags & LAST != 0;
            chunks.push(next.payload);
        }
        Ok(Received { chunks, total })
    }

    /// Reports a mismatched call: aborts the job and returns the error.
    async fn mismatch(&self, call: &Call, peer: usize, theirs: &DataHeader) -> Error {
        let me = self.rank();
        let mine = Self::describe(call);
        let detail = if theirs.seq == call.seq && theirs.sig.op == call.sig.op && theirs.sig.root == call.sig.root {
            format!(
                "rank {me} called {mine} with element type {}, but rank {peer} called it with a different element type",
                call.type_name
            )
        } else if theirs.seq > call.seq {
            format!("rank {me} called {mine}, but rank {peer} had already moved past it (it called a different collective there)")
        } else {
            let earlier = self.history.lock().expect("history lock").iter().find(|c| c.seq == theirs.seq).copied();
            let theirs_desc = format!("{}(root {}) as collective #{}", theirs.sig.op.name(), theirs.sig.root, theirs.seq);
            match earlier {
                Some(c) if c.seq != call.seq => format!(
                    "rank {me} called {}, but rank {peer} called {theirs_desc} (noticed in rank {me}'s next call, {mine})",
                    Self::describe(&c)
                ),
                _ => format!("rank {me} called {mine}, but rank {peer} called {theirs_desc}"),
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
        self.shared.poison(self.rank(), reason.to_string());
        let body = Frame::abort_body(reason);
        let sends = (0..self.size()).filter(|&p| p != self.rank()).map(|p| {
            let body = &body;
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), self.write_frame(p, &[body])).await;
            }
        });
        futures_util::future::join_all(sends).await;
    }

    async fn write_frame(&self, peer: usize, parts: &[&[u8]]) -> std::io::Result<()> {
        let Some(writer) = &self.writers[peer] else { return Ok(()) };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut w = writer.lock().await;
        w.write_all(&(len as u32).to_be_bytes()).await?;
        for p in parts {
            w.write_all(p).await?;
        }
        w.flush().await
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
    /// [`MAX_CHUNK`] bytes written straight from the caller's buffers.
    async fn send_message(&self, peer: usize, space: Space, seq: u64, sig: Signature, parts: &[&[u8]]) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let header = |flags| DataHeader { space, flags, sig, seq, total: total as u64 };
        let mut pieces: Vec<&[u8]> = parts.iter().flat_map(|p| p.chunks(MAX_CHUNK)).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let flags_of = |i: usize| (if i == 0 { FIRST } else { 0 }) | (if i + 1 == pieces.len() { LAST } else { 0 });
        if peer == self.rank() {
            for (i, piece) in pieces.iter().enumerate() {
                self.shared.push(peer, Chunk { header: header(flags_of(i)), payload: Bytes::copy_from_slice(piece) });
            }
            return Ok(());
        }
        let Some(writer) = &self.writers[peer] else { unreachable!("every other rank has a link") };
        let mut w = writer.lock().await;
        let result = async {
            if total <= SMALL_MESSAGE {
                let h = header(FIRST | LAST).encode();
                let mut buf = Vec::with_capacity(4 + h.len() + total);
                buf.extend_from_slice(&((h.len() + total) as u32).to_be_bytes());
                buf.extend_from_slice(&h);
                for p in parts {
                    buf.extend_from_slice(p);
                }
                w.write_all(&buf).await?;
            } else {
                for (i, piece) in pieces.iter().enumerate() {
                    let h = header(flags_of(i)).encode();
                    let mut head = [0u8; 4 + frame::DATA_HEADER_LEN];
                    head[..4].copy_from_slice(&((h.len() + piece.len()) as u32).to_be_bytes());
                    head[4..].copy_from_slice(&h);
                    w.write_all(&head).await?;
                    w.write_all(piece).await?;
                }
            }
            w.flush().await
        }
        .await;
        drop(w);
        result.map_err(|_| {
            let closed = self.shared.inboxes[peer].state.lock().expect("inbox lock").closed;
            self.lost(peer, closed.unwrap_or(Closed::Lost))
        })
    }

    /// Forwards one received chunk unchanged to `peer` (pipelined broadcasts).
    pub(crate) async fn forward(&self, peer: usize, header: &DataHeader, payload: &[u8]) -> Result<()> {
        let h = header.encode();
        self.write_frame(peer, &[&h, payload]).await.map_err(|_| self.lost(peer, Closed::Lost))
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
                    let _ = self.write_frame(p, &[bye]).await;
                    if let Some(w) = &self.writers[p] {
                        let _ = w.lock().await.shutdown().await;
                    }
                })
                .await;
            }
        });
        futures_util::future::join_all(sends).await;
        let _ = tokio::time::timeout(linger, async {
            for peer in (0..self.size()).filter(|&p| p != self.rank()) {
                let inbox = &self.shared.inboxes[peer];
                loop {
                    let notified = inbox.notify.notified();
                    if inbox.state.lock().expect("inbox lock").closed.is_some() {
                        break;
                    }
                    notified.await;
                }
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

/// A message as it arrived: one or more chunks.
pub(crate) struct Received {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) total: usize,
}

impl Received {
    /// The message as one buffer (no copy when it came in one chunk).
    pub(crate) fn into_bytes(mut self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks.pop().expect("one chunk");
        }
        let mut out = BytesMut::with_capacity(self.total);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out.freeze()
    }

    /// Replaces the contents of `out` with the message's elements, copying each byte once
    /// and reusing `out`'s allocation. The caller checks that the length is a whole number
    /// of elements.
    pub(crate) fn copy_into_vec<T: bytemuck::Pod>(&self, out: &mut Vec<T>) {
        out.clear();
        self.append_to_vec(out);
    }

    /// Appends the message's elements to `out` (see [`Self::copy_into_vec`]).
    pub(crate) fn append_to_vec<T: bytemuck::Pod>(&self, out: &mut Vec<T>) {
        let mut fill = PodFill::new(out, self.total);
        for c in &self.chunks {
            fill.push(c);
        }
        let complete = fill.finish();
        debug_assert!(complete, "a received message holds `total` bytes");
    }
}

/// Appends `total` bytes, arriving in pieces that may split elements, to a `Vec<T>` of
/// plain numbers without zero-filling it first.
pub(crate) struct PodFill<'a, T> {
    out: &'a mut Vec<T>,
    written: usize,
    total: usize,
}

impl<'a, T: bytemuck::Pod> PodFill<'a, T> {
    /// Makes room for `total` bytes (a whole number of elements, checked by the caller).
    pub(crate) fn new(out: &'a mut Vec<T>, total: usize) -> Self {
        let width = std::mem::size_of::<T>().max(1);
        out.reserve_exact(total / width);
        PodFill { out, written: 0, total: total - total % width }
    }

    /// Copies the next piece (anything beyond `total` is ignored).
    pub(crate) fn push(&mut self, piece: &[u8]) {
        let piece = &piece[..piece.len().min(self.total - self.written)];
        let spare = self.out.spare_capacity_mut();
        // SAFETY: `new` reserved room for total/width elements past the current length, so
        // the spare capacity spans at least `total` bytes; MaybeUninit<T> has T's layout
        // and we only view it as bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), self.total) };
        dst[self.written..self.written + piece.len()].copy_from_slice(piece);
        self.written += piece.len();
    }

    /// Makes the written elements part of the vector; false if fewer than `total` bytes
    /// arrived (the vector is then left as it was).
    pub(crate) fn finish(self) -> bool {
        if self.written != self.total {
            return false;
        }
        let width = std::mem::size_of::<T>().max(1);
        let len = self.out.len() + self.total / width;
        // SAFETY: the `total` bytes after the old length were all written by `push`, and
        // every bit pattern is a valid T because T: Pod.
        unsafe { self.out.set_len(len) };
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

    #[test]
    fn pooled_buffers_are_reused_once_released() {
        let pool = Arc::new(BufferPool::default());
        let buf = pool.take();
        let ptr = buf.as_ptr();
        drop(Bytes::from_owner(PooledFrame { buf, len: 10, pool: pool.clone() }));
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr);
    }
}
