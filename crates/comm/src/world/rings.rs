//! Peers reached through shared-memory rings ([`crate::shm`]): writing frames into a ring,
//! draining the incoming rings into the inboxes, and the wake-ups.
//!
//! Nothing reads a ring in the background while the ranks run: a call that waits drains
//! every incoming ring itself each time it polls, so a message that arrives while the
//! receiver polls costs no system call and no thread hop. Only a call that goes to sleep
//! counts itself in the rings' waiting counters; a producer that sees such a count sends
//! one byte over the pair's socket, and the socket's task ([`wake_loop`]) drains the ring
//! and wakes the sleepers. That task also sees the socket's end of stream when the peer
//! dies, drains what the peer wrote last (an abort, a goodbye) and closes the inbox.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::shared::{Chunk, Closed, Shared};
use crate::diag;
use crate::frame::{DataHeader, Space, FIRST, REMOTE};
use crate::link::LinkWriter;
use crate::shm::ring::{Consumer, Corrupt, Delivery, Placer, Producer, HEAD};

/// A sleeping wait looks again this often even without a wake-up (a safety net; the
/// protocol itself loses none).
pub(crate) const RECHECK: Duration = Duration::from_millis(20);

/// How this rank writes to one peer.
pub(crate) enum PeerWriter {
    /// A byte stream (Unix socket or TCP).
    Stream(LinkWriter),
    /// The outgoing ring of a shared-memory link.
    Ring {
        producer: Producer,
        socket: Arc<UnixStream>,
    },
}

/// The incoming ring of a shared-memory link.
pub(crate) struct RingReader {
    pub(crate) consumer: Mutex<ReaderState>,
    pub(crate) socket: Arc<UnixStream>,
}

pub(crate) struct ReaderState {
    pub(crate) consumer: Consumer,
    /// Set after a goodbye or a corrupt ring: nothing more is read.
    pub(crate) done: bool,
    /// A receiving call's buffer for the rest of the message it is reading from this peer.
    pub(crate) claim: Option<Claim>,
}

/// A collective call's buffer for the rest of one large message from a peer: whoever
/// drains the peer's ring copies each large frame of that message straight into it, at
/// its place, instead of into a buffer of its own that the call would copy again. The
/// message then crosses in two copies, and the two processes copy at the same time (the
/// sender into the ring, the receiver out of it), which is the fallback for large messages
/// when single copies between processes are not allowed ([`crate::shm`]).
pub(crate) struct Claim {
    /// The collective the message belongs to.
    seq: u64,
    /// The buffer, `room` bytes.
    base: NonNull<u8>,
    room: usize,
    /// Where the message's next frame goes, in bytes from `base`.
    at: usize,
    /// A frame did not fit: nothing more is placed, and the call finds the fault itself.
    broken: bool,
}

// SAFETY: the buffer belongs to the call that made the claim, which keeps it until the
// claim is dropped (under the ring's lock, see `Claimed`); any thread draining the ring
// may write to it meanwhile, only at places the claim hands out once each.
unsafe impl Send for Claim {}

impl Claim {
    /// Whether a frame whose header is `head` is the next part of the claimed message.
    fn is_ours(&self, head: &[u8]) -> bool {
        DataHeader::decode(head).is_ok_and(|h| h.space == Space::Collective && h.seq == self.seq && h.flags & (FIRST | REMOTE) == 0)
    }

    /// Where a frame of the message with `len` payload bytes goes, if it can be placed;
    /// every frame of the message moves the place on, placed or not (see [`Placer`]).
    fn place(&mut self, head: &[u8; HEAD], len: usize, can_place: bool) -> Option<NonNull<u8>> {
        if self.broken || !self.is_ours(head) {
            return None;
        }
        if len > self.room - self.at {
            self.broken = true;
            return None;
        }
        let at = self.at;
        self.at += len;
        // SAFETY: `at + len <= room`: within the claimed buffer.
        can_place.then(|| unsafe { NonNull::new_unchecked(self.base.as_ptr().add(at)) })
    }
}

/// A claim on a peer's ring; dropping it withdraws the claim, after which nothing writes
/// to the buffer any more.
pub(crate) struct Claimed<'a> {
    shared: &'a Shared,
    peer: usize,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if let Some(r) = &self.shared.rings[self.peer] {
            let mut st = r.consumer.lock().expect("ring lock");
            st.claim = None;
            // A frame of a call that failed half-way: its bytes are skipped.
            st.consumer.abandon_placement();
        }
    }
}

fn corrupt(e: Corrupt) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.0)
}

/// Sends a wake-up byte without blocking; a full socket already holds wake-ups enough,
/// and a peer that is gone raises no `SIGPIPE` (its end of stream is seen by its task).
pub(crate) fn wake(socket: &UnixStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: a one-byte send on a socket we own, from a live buffer.
    let _ = unsafe { libc::send(socket.as_raw_fd(), [0u8].as_ptr().cast(), 1, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
}

/// Counts the calling wait as asleep on every incoming ring until dropped.
pub(crate) struct Asleep<'a>(&'a Shared);

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        for r in self.0.rings.iter().flatten() {
            r.consumer.lock().expect("ring lock").consumer.set_waiting(false);
        }
    }
}

impl Shared {
    /// Marks the caller asleep on every incoming ring (see [`Asleep`]).
    pub(crate) fn asleep(&self) -> Asleep<'_> {
        for r in self.rings.iter().flatten() {
            r.consumer.lock().expect("ring lock").consumer.set_waiting(true);
        }
        Asleep(self)
    }

    /// Polls `peer`'s ring until it has data (true), or the job is poisoned or `until`
    /// passes (false).
    pub(crate) fn watch_ring(&self, peer: usize, until: std::time::Instant, yield_cpu: bool) -> bool {
        let Some(r) = &self.rings[peer] else { return false };
        let mut polls = 0u32;
        loop {
            if let Ok(st) = r.consumer.try_lock() {
                if st.done || st.consumer.has_data() {
                    return true;
                }
            }
            if yield_cpu {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            polls = polls.wrapping_add(1);
            if polls % 64 == 0 && (std::time::Instant::now() >= until || self.poisoned().is_some()) {
                return false;
            }
        }
    }

    /// Drains every incoming ring that has data and no other drainer (cheap when empty:
    /// one atomic load per ring).
    pub(crate) fn drain_rings(self: &Arc<Self>) {
        for peer in 0..self.rings.len() {
            let Some(r) = &self.rings[peer] else { continue };
            if let Ok(mut st) = r.consumer.try_lock() {
                if !st.done && st.consumer.has_data() {
                    self.drain_locked(peer, r, &mut st);
                }
            }
        }
    }

    /// Drains `peer`'s ring, waiting for a concurrent drainer if there is one.
    pub(crate) fn drain_ring(self: &Arc<Self>, peer: usize) {
        let Some(r) = &self.rings[peer] else { return };
        let mut st = r.consumer.lock().expect("ring lock");
        if !st.done {
            self.drain_locked(peer, r, &mut st);
        }
    }

    /// Lets whoever drains `peer`'s ring copy the rest of collective `seq`'s message from
    /// it straight into `room` bytes at `base`, from byte `from` on (the bytes before it
    /// have arrived). `None` when the peer is not reached through a ring.
    ///
    /// # Safety
    /// The `room` bytes at `base` must stay writable, and be written by nobody else at the
    /// places the claim hands out, until the returned claim is dropped.
    pub(crate) unsafe fn claim(&self, peer: usize, seq: u64, base: NonNull<u8>, room: usize, from: usize) -> Option<Claimed<'_>> {
        let r = self.rings[peer].as_ref()?;
        let mut st = r.consumer.lock().expect("ring lock");
        if st.done || st.claim.is_some() {
            return None;
        }
        let mut claim = Claim { seq, base, room, at: from, broken: false };
        // Parts of the message taken in already, and a frame being read into a buffer of
        // its own, come before the first one placed.
        claim.at += self.inboxes[peer].state.lock().expect("inbox lock").collective.iter().filter(|c| c.header.seq == seq).map(Chunk::len).sum::<usize>();
        if let Some((head, len)) = st.consumer.in_flight() {
            if claim.is_ours(head) {
                claim.at += len;
            }
        }
        if claim.at > room {
            return None;
        }
        st.claim = Some(claim);
        Some(Claimed { shared: self, peer })
    }

    fn drain_locked(self: &Arc<Self>, peer: usize, r: &RingReader, st: &mut ReaderState) {
        let mut stop = false;
        let ReaderState { consumer, done, claim } = st;
        let base = claim.as_ref().map(|c| c.base);
        let mut place = |head: &[u8; HEAD], len: usize, can_place: bool| claim.as_mut()?.place(head, len, can_place);
        let place: &mut Placer<'_> = &mut place;
        let read = consumer.drain_placing(place, &mut |delivery| match delivery {
            Delivery::Body(body) => {
                if !stop && !self.dispatch(peer, body) {
                    stop = true;
                }
            }
            Delivery::Placed { head, dst, len } => {
                // Only a claim places frames, and only data frames of its message.
                if let (Ok(header), Some(base)) = (DataHeader::decode(&head), base) {
                    let offset = dst.as_ptr() as usize - base.as_ptr() as usize;
                    self.push(peer, Chunk { header, payload: Bytes::new(), placed: Some((offset, len)) });
                }
            }
        });
        match read {
            Ok(read) => {
                if read && consumer.producer_waiting() {
                    wake(&r.socket);
                }
            }
            Err(e) => {
                let why = format!("rank {peer}'s shared-memory ring is corrupt: {}", e.0);
                diag::warn(&format!("rank {}: {why}", self.rank));
                self.poison(self.rank, why);
                self.close(peer, Closed::Lost);
                stop = true;
            }
        }
        *done |= stop;
    }

    /// Writes `bytes` to `peer`, waiting for room in a full ring.
    pub(crate) async fn write_to(self: &Arc<Self>, peer: usize, w: &mut PeerWriter, bytes: &[u8]) -> std::io::Result<()> {
        match w {
            PeerWriter::Stream(s) => s.write_all(bytes).await,
            PeerWriter::Ring { producer, socket } => {
                let mut rest = bytes;
                loop {
                    let n = producer.write(rest).map_err(corrupt)?;
                    rest = &rest[n..];
                    if n > 0 && producer.consumer_waiting() {
                        wake(socket);
                    }
                    if rest.is_empty() {
                        return Ok(());
                    }
                    self.wait_for_room(peer, producer).await?;
                }
            }
        }
    }

    /// Flushes a stream writer (rings need none).
    pub(crate) async fn flush_writer(w: &mut PeerWriter) -> std::io::Result<()> {
        match w {
            PeerWriter::Stream(s) => s.flush().await,
            PeerWriter::Ring { .. } => Ok(()),
        }
    }

    /// Ends our direction of the link: the peer sees the end of stream.
    pub(crate) async fn shutdown_writer(w: &mut PeerWriter) {
        match w {
            PeerWriter::Stream(s) => {
                let _ = s.shutdown().await;
            }
            PeerWriter::Ring { socket, .. } => {
                let _ = socket2::SockRef::from(&**socket).shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Waits until `peer` has taken bytes out of our full ring: polls (draining our own
    /// rings meanwhile, since the peer may be waiting for room in them), then sleeps.
    async fn wait_for_room(self: &Arc<Self>, peer: usize, producer: &Producer) -> std::io::Result<()> {
        let spin_until = std::time::Instant::now() + self.spin.duration;
        let mut asleep = None;
        loop {
            let notified = self.room[peer].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if producer.has_room().map_err(corrupt)? {
                return Ok(());
            }
            if self.inboxes[peer].state.lock().expect("inbox lock").closed.is_some() {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, format!("rank {peer} is gone")));
            }
            self.drain_rings();
            if std::time::Instant::now() < spin_until {
                if self.spin.yield_cpu {
                    std::thread::yield_now();
                }
                tokio::task::yield_now().await;
                continue;
            }
            if asleep.is_none() {
                producer.set_waiting(true);
                asleep = Some((self.asleep(), WaitingForRoom(producer)));
                continue;
            }
            let _ = tokio::time::timeout(RECHECK, notified).await;
        }
    }
}

/// Counts a producer's wait for room until dropped.
struct WaitingForRoom<'a>(&'a Producer);

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.0.set_waiting(false);
    }
}

/// Serves the socket of a ring link: each wake-up drains the ring and wakes the calls
/// waiting for data or room; the end of stream closes the peer's inbox.
pub(crate) async fn wake_loop(shared: Arc<Shared>, peer: usize, socket: Arc<UnixStream>) {
    let mut buf = [0u8; 256];
    loop {
        if socket.readable().await.is_err() {
            break;
        }
        match socket.try_read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                shared.drain_ring(peer);
                shared.room[peer].notify_waiters();
                shared.flat_wake.notify_waiters();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    // What the peer wrote before it went (an abort, its goodbye) is still in the ring.
    shared.drain_ring(peer);
    shared.close(peer, Closed::Lost);
}
