//! A TLS connection used as a blocking socket by several threads.
//!
//! The task layer reads each connection on one thread and writes it from others (a
//! worker's task threads, a client's callers, the scheduler's outgoing queue). A rustls
//! session keeps the state of both directions, so it sits behind a mutex that is held
//! only to encrypt or decrypt, never across a socket call: a reader blocked waiting for
//! bytes does not stop writers, and a writer blocked on a full socket does not stop the
//! reader.
//!
//! Ciphertext is produced in one place only, when plaintext is sealed, and written in the
//! order it was sealed: by [`TlsSocket::write`] under its own lock, or by an outgoing
//! queue that seals under its lock and writes the records itself ([`TlsSocket::seal`]).
//! A connection is written one way or the other, never both. Records the session wants
//! to send of its own accord (a key-update answer) wait in it and leave with the next
//! sealed bytes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

/// How much plaintext one [`TlsSocket::write`] call seals: large writes are cut so that
/// their ciphertext needs no second copy of the whole buffer.
const SEAL_CHUNK: usize = 256 << 10;
/// Ciphertext read from the socket per system call.
const READ_CHUNK: usize = 128 << 10;

/// A TCP socket with its TLS session (see the module documentation).
pub(crate) struct TlsSocket {
    sock: TcpStream,
    session: Mutex<rustls::Connection>,
    /// Ciphertext read and not yet handed to the session. Held by the reader across its
    /// socket read, so that concurrent readers cannot feed records out of order.
    incoming: Mutex<Incoming>,
    /// Held from sealing until the records are written, with a buffer for them.
    sending: Mutex<Vec<u8>>,
}

struct Incoming {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
}

impl std::fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket").field("sock", &self.sock).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TlsSocket {
    /// Wraps a socket whose TLS handshake is complete.
    pub(crate) fn new(sock: TcpStream, mut session: rustls::Connection) -> TlsSocket {
        // Everything handed to the session is sealed at once; callers bound what they hand.
        session.set_buffer_limit(None);
        TlsSocket {
            sock,
            session: Mutex::new(session),
            incoming: Mutex::new(Incoming { buf: vec![0u8; READ_CHUNK].into_boxed_slice(), start: 0, end: 0, eof: false }),
            sending: Mutex::new(Vec::new()),
        }
    }

    /// The TCP socket underneath.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Reads decrypted bytes, blocking until some arrive; `Ok(0)` at the end of the
    /// stream. A peer that closes without TLS's closing alert ends the stream the same
    /// way: every message above has its own length, so a cut one is still detected.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut incoming = lock(&self.incoming);
        loop {
            {
                let mut session = lock(&self.session);
                match session.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                let inc = &mut *incoming;
                if inc.start < inc.end || inc.eof {
                    let fed = session.read_tls(&mut &inc.buf[inc.start..inc.end])?;
                    inc.start += fed;
                    // At the end of the stream this feeds nothing, which tells the
                    // session so; the next turn reports it.
                    session.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            let inc = &mut *incoming;
            let n = loop {
                match (&self.sock).read(&mut inc.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            (inc.start, inc.end, inc.eof) = (0, n, n == 0);
        }
    }

    /// Seals up to [`SEAL_CHUNK`] bytes of `buf` and writes their records; returns how
    /// many bytes of `buf` were sent.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(SEAL_CHUNK);
        let mut records = lock(&self.sending);
        records.clear();
        self.seal_into(&buf[..n], &mut records)?;
        (&self.sock).write_all(&records)?;
        Ok(n)
    }

    /// Encrypts `plain` into records that the caller writes to [`Self::socket`], in the
    /// order of its calls (see the module documentation).
    pub(crate) fn seal(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut records = Vec::with_capacity(plain.len() + plain.len() / 1024 + 64);
        self.seal_into(plain, &mut records)?;
        Ok(records)
    }

    fn seal_into(&self, plain: &[u8], records: &mut Vec<u8>) -> io::Result<()> {
        let mut session = lock(&self.session);
        session.writer().write_all(plain)?;
        while session.wants_write() {
            session.write_tls(records)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};

    use chorus_comm::handshake::{handshake_tcp_with, Hello, Role};
    use chorus_comm::tls::TlsMode;
    use chorus_comm::Secret;

    use crate::net::{tcp_blocking, Stream};
    use crate::outgoing::Outgoing;

    /// Two ends of a loopback TCP connection under TLS, as the task layer uses them.
    pub(crate) fn tls_pair() -> (Stream, Stream) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let secret = Secret::generate().unwrap();
        let (a, b) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let me = || Hello::new(Role::Member { kind: 0, id: 0 }).unwrap();
            let dial = async {
                let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                handshake_tcp_with(TlsMode::On, s, &secret, me(), &|_| Ok(()), "to", "b").await.unwrap().0
            };
            let serve = async {
                let (s, _) = listener.accept().await.unwrap();
                handshake_tcp_with(TlsMode::On, s, &secret, me(), &|_| Ok(()), "from", "a").await.unwrap().0
            };
            tokio::join!(dial, serve)
        });
        let (a, b) = (tcp_blocking(a).unwrap(), tcp_blocking(b).unwrap());
        assert!(matches!((&a, &b), (Stream::Tls(_), Stream::Tls(_))));
        (a, b)
    }

    fn pattern(seed: u8, n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn both_directions_flow_at_once_and_a_large_write_arrives_whole() {
        let (a, b) = tls_pair();
        let big = pattern(1, 40 << 20);
        let (mut a_read, mut b_write) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        // b sends 40 MiB to a while a sends 40 MiB to b: neither side's reader may stop
        // its writer, or both would stall with full socket buffers.
        let back = std::thread::spawn({
            let big = big.clone();
            move || {
                b_write.write_all(&big).unwrap();
            }
        });
        let forth = std::thread::spawn({
            let (big, mut a) = (big.clone(), a);
            move || a.write_all(&big).unwrap()
        });
        let mut b = b;
        let mut got_b = vec![0u8; big.len()];
        let reader_b = std::thread::spawn(move || {
            b.read_exact(&mut got_b).unwrap();
            got_b
        });
        let mut got_a = vec![0u8; big.len()];
        a_read.read_exact(&mut got_a).unwrap();
        assert!(got_a == big && reader_b.join().unwrap() == big);
        back.join().unwrap();
        forth.join().unwrap();
    }

    /// Each `write` call seals and sends its records under one lock, so messages written
    /// whole by several threads (as the worker's task threads do) never interleave.
    #[test]
    fn writers_on_several_threads_keep_their_messages_whole() {
        let (a, mut b) = tls_pair();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let mut w = a.try_clone().unwrap();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let body = vec![t; 1 + 3000 * t as usize];
                        let mut msg = (body.len() as u32).to_le_bytes().to_vec();
                        msg.extend_from_slice(&body);
                        assert_eq!(w.write(&msg).unwrap(), msg.len());
                    }
                })
            })
            .collect();
        let mut counts = [0; 4];
        let mut w = a;
        for _ in 0..800 {
            let mut len = [0u8; 4];
            b.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; u32::from_le_bytes(len) as usize];
            b.read_exact(&mut msg).unwrap();
            let t = msg[0];
            assert!(msg.iter().all(|x| *x == t) && msg.len() == 1 + 3000 * t as usize);
            counts[t as usize] += 1;
        }
        assert_eq!(counts, [200; 4]);
        for t in threads {
            t.join().unwrap();
        }
        // The end of the stream is an end, not an error.
        w.flush().unwrap();
        drop(w);
        b.shutdown();
        assert_eq!(b.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn an_outgoing_queue_over_tls_delivers_in_order_and_drops_a_peer_that_does_not_read() {
        let (a, mut b) = tls_pair();
        let out = Outgoing::new(a.try_clone().unwrap(), 64 << 20);
        let mut want = Vec::new();
        for i in 0..200u8 {
            let chunk = pattern(i, 16 << 10);
            want.extend_from_slice(&chunk);
            out.send(chunk).unwrap();
        }
        let mut got = vec![0u8; want.len()];
        b.read_exact(&mut got).unwrap();
        assert!(got == want, "bytes arrive whole and in order");

        let small = Outgoing::new(a, 1 << 20);
        let err = loop {
            if let Err(e) = small.send(vec![7u8; 64 << 10]) {
                break e;
            }
        };
        assert!(err.contains("CHORUS_SEND_BUDGET"), "{err}");
        drop(b);
    }
}
