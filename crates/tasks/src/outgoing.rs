//! Outgoing queues: every connection the scheduler writes to has one.
//!
//! The scheduler's state machine must never wait on a socket, or one peer that stops
//! reading would stall the cluster. So it only hands bytes to an [`Outgoing`]: when
//! nothing is queued they are written at once, without blocking (`MSG_DONTWAIT`), which
//! keeps the common path free of thread hand-offs; whatever the socket does not take is
//! queued and written by the connection's own writer thread, started the first time it
//! is needed. A queue may hold at most its budget ([`Limits::send_budget`]); past it,
//! the peer is dropped with a reason, and nobody else waits for it.
//!
//! [`Limits::send_budget`]: crate::settings::Limits::send_budget

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::settings::human;
use crate::net::{self, Stream};

/// The outgoing side of one connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outgoing {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stream: Stream,
    budget: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// The writer thread holds bytes taken from the queue.
    writing: bool,
    started: bool,
    closed: Option<String>,
}

impl Outgoing {
    /// Queues for `stream` (a clone of the connection's socket), holding at most
    /// `budget` bytes for a peer that does not read.
    pub(crate) fn new(stream: Stream, budget: usize) -> Outgoing {
        Outgoing { shared: Arc::new(Shared { state: Mutex::default(), wake: Condvar::new(), stream, budget }) }
    }

    /// Sends `bytes` in order after everything sent before; never blocks. An error means
    /// the peer is dropped (its budget is full, or its socket failed), and says why.
    pub(crate) fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let sh = &*self.shared;
        let mut st = sh.state.lock().expect("outgoing lock");
        if let Some(why) = &st.closed {
            return Err(why.clone());
        }
        // Sealed under the queue's lock, so records are queued in the order they were made.
        let mut bytes = match sh.stream.seal(bytes) {
            Ok(sealed) => sealed,
            Err(e) => return Err(sh.close(&mut st, format!("could not be encrypted for: {e}"))),
        };
        if st.queue.is_empty() && !st.writing {
            match send_nonblocking(&sh.stream, &bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    bytes.drain(..n);
                }
                Err(e) => return Err(sh.close(&mut st, format!("could not be written to: {e}"))),
            }
        }
        if st.queued + bytes.len() > sh.budget {
            let why = format!(
                "stopped reading: {} were waiting for it, more than the send budget of {} (CHORUS_SEND_BUDGET)",
                human((st.queued + bytes.len()) as u64),
                human(sh.budget as u64)
            );
            return Err(sh.close(&mut st, why));
        }
        st.queued += bytes.len();
        st.queue.push_back(bytes);
        if !st.started {
            st.started = true;
            let shared = self.shared.clone();
            if net::spawn("chorus-writer", move || shared.write_loop()).is_err() {
                return Err(sh.close(&mut st, "no thread could be started to write to it".into()));
            }
        } else {
            sh.wake.notify_one();
        }
        Ok(())
    }

    /// Drops the peer: nothing more is written, and its socket is shut down so that its
    /// reader ends too.
    pub(crate) fn close(&self, why: &str) {
        let mut st = self.shared.state.lock().expect("outgoing lock");
        if st.closed.is_none() {
            self.shared.close(&mut st, why.to_string());
        }
    }

    /// Bytes waiting in the queue (for tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.state.lock().expect("outgoing lock").queued
    }
}

impl Shared {
    fn close(&self, st: &mut State, why: String) -> String {
        st.closed = Some(why.clone());
        st.queue.clear();
        st.queued = 0;
        self.stream.shutdown();
        self.wake.notify_all();
        why
    }

    fn write_loop(&self) {
        let mut st = self.state.lock().expect("outgoing lock");
        loop {
            if st.closed.is_some() {
                return;
            }
            let Some(bytes) = st.queue.pop_front() else {
                st = self.wake.wait(st).expect("outgoing lock");
                continue;
            };
            st.writing = true;
            drop(st);
            let result = write_all_blocking(&self.stream, &bytes);
            st = self.state.lock().expect("outgoing lock");
            st.writing = false;
            st.queued = st.queued.saturating_sub(bytes.len());
            if let Err(e) = result {
                if st.closed.is_none() {
                    self.close(&mut st, format!("could not be written to: {e}"));
                }
                return;
            }
        }
    }
}

/// Writes what the socket takes now; `Ok(0)` when it takes nothing. The bytes go to the
/// socket as they are (sealed already on a TLS connection).
fn send_nonblocking(stream: &Stream, bytes: &[u8]) -> std::io::Result<usize> {
    send_raw(stream, bytes, libc::MSG_DONTWAIT)
}

/// Writes all of `bytes` to the socket as they are, blocking (up to the socket's write
/// timeout) while it is full.
fn write_all_blocking(stream: &Stream, bytes: &[u8]) -> std::io::Result<()> {
    let sent = send_raw(stream, bytes, 0)?;
    if sent < bytes.len() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer took nothing for the write timeout"));
    }
    Ok(())
}

fn send_raw(stream: &Stream, mut bytes: &[u8], flags: libc::c_int) -> std::io::Result<usize> {
    let fd = stream.fd();
    let mut sent = 0;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length for the call's
        // duration, and `fd` is an open socket owned by `stream`.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock => Ok(sent),
                std::io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        sent += n as usize;
        bytes = &bytes[n as usize..];
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_peer_that_does_not_read_is_dropped_at_its_budget_and_sending_never_blocks() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let out = Outgoing::new(Stream::Unix(a), 1 << 20);
        let t = std::time::Instant::now();
        let mut sent = 0usize;
        let err = loop {
            match out.send(vec![7u8; 64 << 10]) {
                Ok(()) => sent += 64 << 10,
                Err(e) => break e,
            }
            assert!(sent < 64 << 20, "the budget must stop a peer that never reads");
        };
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "sending never waits for the peer");
        assert!(err.contains("stopped reading") && err.contains("CHORUS_SEND_BUDGET"), "{err}");
        assert_eq!(out.send(vec![1]).unwrap_err(), err, "a dropped peer stays dropped");
        // The peer sees the end of the stream after whatever had been written.
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert!(got.len() <= sent && got.iter().all(|x| *x == 7));
    }

    #[test]
    fn queued_bytes_arrive_in_order_once_the_peer_reads() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let out = Outgoing::new(Stream::Unix(a), 64 << 20);
        let mut want = Vec::new();
        for i in 0..200u32 {
            let chunk: Vec<u8> = (0..(16 << 10)).map(|j| (i as usize * 31 + j) as u8).collect();
            want.extend_from_slice(&chunk);
            out.send(chunk).unwrap();
        }
        assert!(out.queued() > 0, "more than a socket buffer was sent, so some of it waits");
        let mut got = vec![0u8; want.len()];
        b.read_exact(&mut got).unwrap();
        assert!(got == want, "bytes arrive whole and in order");
    }
}
