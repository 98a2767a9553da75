//! Authenticated blocking connections for the task layer.
//!
//! Connections are made and accepted with the handshake of `chorus-comm` (TLS when the
//! connection leaves the host, cluster secret, protocol version, roles), run on a small
//! tokio runtime, and then used as blocking sockets: one reader thread per connection and
//! direct writes keep a message's path free of executor hand-offs. A TLS connection keeps
//! its session beside the socket ([`tls::TlsSocket`]).

pub(crate) mod tls;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use tls::TlsSocket;

use chorus_comm::fingerprint::Fingerprint;
use chorus_comm::link::SocketDir;
use chorus_comm::handshake::{handshake, handshake_tcp, Hello, Role};
use chorus_comm::tls::Secured;
use chorus_comm::{Refusal, Secret};

use crate::proto::DataAddress;
use crate::{Error, Result};

/// A connected socket: TCP, TCP under TLS, or a Unix socket. Clones share the socket
/// (and the TLS session).
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Arc<TlsSocket>),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.clone()),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// The socket's descriptor, for calls made on it directly.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.socket().as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// The address peers on other hosts can reach this process at: the local end of
    /// this connection's TCP socket, or loopback for a Unix socket.
    pub(crate) fn local_ip(&self) -> String {
        let tcp = match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.socket(),
            Stream::Unix(_) => return "127.0.0.1".into(),
        };
        tcp.local_addr().map(|a| a.ip().to_string()).unwrap_or_else(|_| "127.0.0.1".into())
    }

    /// Asks for large socket buffers, for connections that carry object bytes.
    pub(crate) fn enlarge_buffers(&self) {
        match self {
            Stream::Tcp(s) => chorus_comm::link::enlarge_buffers(socket2::SockRef::from(s)),
            Stream::Tls(s) => chorus_comm::link::enlarge_buffers(socket2::SockRef::from(s.socket())),
            Stream::Unix(s) => chorus_comm::link::enlarge_buffers(socket2::SockRef::from(s)),
        }
    }

    /// Ends both directions, waking a thread blocked reading it.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) => s.socket().shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    /// Encrypts `bytes` for a caller that writes to [`Self::fd`] itself (outgoing
    /// queues); on a connection without TLS, the bytes are what is written.
    pub(crate) fn seal(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Stream::Tls(s) => s.seal(&bytes),
            Stream::Tcp(_) | Stream::Unix(_) => Ok(bytes),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => read_when_readable(s, buf),
        }
    }
}

/// Reads from a Unix socket, waiting for data in `poll` rather than in `recv`.
///
/// A thread blocked in `recv` on a Unix stream socket is woken each time its peer reads
/// what this side wrote: the kernel signals the freed send space on the wait queue the
/// reader sleeps on, and `recv`'s wait does not filter by event. So on a connection with
/// requests one way and replies the other, every message would cost a spurious wake-up
/// (two context switches) of the thread that only reads. `poll` for `POLLIN` is woken by
/// incoming data, end of stream and errors only.
fn read_when_readable(s: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    loop {
        // SAFETY: `buf` is valid for writes of its length; `fd` is an open socket.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {}
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The read side of a connection that, when `may_spin` says so, looks for data for up
/// to `window` before going to sleep in the kernel. `may_spin` is given how many bytes
/// the previous read returned.
///
/// Waking a sleeping thread costs tens of microseconds on a virtual machine whose idle
/// CPUs halt, several times a round trip's own work. A reader that expects an answer
/// soon (a worker that has just reported and has nothing else to do) saves that
/// wake-up by polling for a little while. Only Unix sockets spin: their peer is on this
/// host, where the answer can come that quickly.
pub(crate) struct SpinRead<F> {
    stream: Stream,
    window: Duration,
    may_spin: F,
    last: usize,
}

impl<F: FnMut(usize) -> bool> SpinRead<F> {
    pub(crate) fn new(stream: Stream, window: Duration, may_spin: F) -> SpinRead<F> {
        SpinRead { stream, window, may_spin, last: 0 }
    }
}

impl<F: FnMut(usize) -> bool> Read for SpinRead<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = None;
        if let Stream::Unix(s) = &self.stream {
            if !self.window.is_zero() && (self.may_spin)(self.last) {
                got = recv_within(s, buf, self.window)?;
            }
        }
        let n = match got {
            Some(n) => n,
            None => self.stream.read(buf)?,
        };
        self.last = n;
        Ok(n)
    }
}

/// Polls a Unix socket for data without sleeping, for up to `window`: what arrived, or
/// `None` when nothing did.
fn recv_within(s: &UnixStream, buf: &mut [u8], window: Duration) -> io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let start = std::time::Instant::now();
    loop {
        // SAFETY: `buf` is valid for writes of its length; `fd` is an open socket.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
        if start.elapsed() >= window {
            return Ok(None);
        }
        std::thread::yield_now();
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a scheduler listens: `host:port` for TCP or `unix:/path` for a Unix socket.
pub(crate) fn parse_address(addr: &str) -> (Option<&str>, Option<&str>) {
    match addr.strip_prefix("unix:") {
        Some(path) => (None, Some(path)),
        None => (Some(addr.strip_prefix("tcp://").unwrap_or(addr)), None),
    }
}

/// How long a write may block before the peer is considered gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io { context: "starting a runtime for a handshake".into(), source })
}

/// The check every task-layer connection applies: a peer that runs user code (worker or
/// client) must be the same build as us when we run user code too.
pub(crate) fn same_build_check(me_runs_code: bool, peer_runs_code: impl Fn(u8) -> bool + Sync) -> impl Fn(&Hello) -> Result<(), Refusal> + Sync {
    let mine = Fingerprint::current();
    move |h: &Hello| match h.role {
        Role::Member { kind, .. } => {
            if me_runs_code && peer_runs_code(kind) && h.fingerprint != mine {
                Err(Refusal::BinaryMismatch { local: mine.short(), peer: h.fingerprint.short() })
            } else {
                Ok(())
            }
        }
        other => Err(Refusal::Unexpected(format!("expected a member of a task cluster, found {other:?}"))),
    }
}

/// Connects to `addr` (`host:port` or `unix:/path`) and runs the handshake as `kind`.
pub(crate) fn connect(
    addr: &str,
    secret: &Secret,
    kind: u8,
    check: &(dyn Fn(&Hello) -> Result<(), Refusal> + Sync),
    timeout: Duration,
) -> Result<(Stream, Hello)> {
    let rt = runtime()?;
    let name = addr.to_string();
    let me = Hello::new(Role::Member { kind, id: 0 })?;
    let (tcp, unix) = parse_address(addr);
    let socket_err = |source| Error::Io { context: format!("setting up the connection to {name}"), source };
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(path) = unix {
            let mut s = tokio::time::timeout_at(deadline, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| Error::Timeout(format!("connecting to {name}")))?
                .map_err(|source| Error::Io { context: format!("connecting to {name}"), source })?;
            let hello = handshake(&mut s, secret, me, check, "to", &name).await?;
            Ok::<_, Error>((unix_blocking(s).map_err(socket_err)?, hello))
        } else {
            let host = tcp.expect("one of the two");
            let s = chorus_comm::link::connect_tcp_retrying(host, deadline.into_std()).await?;
            let (s, hello) = handshake_tcp(s, secret, me, check, "to", &name).await?;
            Ok((tcp_blocking(s).map_err(socket_err)?, hello))
        }
    })
}

/// A TCP connection after its handshake, as a blocking [`Stream`] with a bound on how
/// long a write may block before the peer is considered gone.
pub(crate) fn tcp_blocking(s: Secured) -> io::Result<Stream> {
    let (s, session) = s.into_parts();
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(match session {
        Some(session) => Stream::Tls(Arc::new(TlsSocket::new(s, session))),
        None => Stream::Tcp(s),
    })
}

/// A Unix connection after its handshake, as a blocking [`Stream`].
fn unix_blocking(s: tokio::net::UnixStream) -> io::Result<Stream> {
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(Stream::Unix(s))
}

/// Connects to a worker's data server, over its Unix socket when on this host.
pub(crate) fn connect_data(addr: &DataAddress, secret: &Secret, timeout: Duration) -> Result<Stream> {
    let check = same_build_check(true, |k| k == crate::proto::kind::DATA_SERVER);
    let target = match &addr.unix {
        Some(path) if addr.host_key == chorus_comm::link::host_key() => format!("unix:{path}"),
        _ => addr.tcp.clone(),
    };
    let (s, _) = connect(&target, secret, crate::proto::kind::DATA, &check, timeout)?;
    s.enlarge_buffers();
    Ok(s)
}

/// A TCP listener and, when possible, a Unix-socket listener beside it.
pub(crate) struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<(UnixListener, SocketDir)>,
}

impl Listeners {
    /// Binds TCP at `tcp_bind` and a Unix socket in a fresh private directory.
    pub(crate) fn bind(tcp_bind: &str, with_unix: bool) -> Result<Listeners> {
        let tcp = TcpListener::bind(tcp_bind)
            .map_err(|source| Error::Io { context: format!("listening on {tcp_bind}"), source })?;
        let unix = if with_unix {
            let dir = SocketDir::create("s")?;
            let l = UnixListener::bind(dir.socket())
                .map_err(|source| Error::Io { context: format!("listening on {}", dir.socket().display()), source })?;
            Some((l, dir))
        } else {
            None
        };
        Ok(Listeners { tcp, unix })
    }

    pub(crate) fn tcp_addr(&self) -> String {
        self.tcp.local_addr().map(|a| a.to_string()).unwrap_or_default()
    }

    pub(crate) fn unix_path(&self) -> Option<String> {
        self.unix.as_ref().map(|(_, d)| d.socket().display().to_string())
    }

    /// Accepts connections forever on background threads; each authenticated one is
    /// handed to `on_conn` on a thread of its own. The accepting threads never return, so
    /// the Unix socket's directory comes back to the caller, to keep for as long as it
    /// serves: dropping it removes the socket.
    pub(crate) fn serve<F, C>(self, secret: Secret, kind: u8, check: C, on_conn: F) -> Result<Option<SocketDir>>
    where
        F: Fn(Stream, Hello) + Send + Sync + 'static,
        C: Fn(&Hello) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        let on_conn = Arc::new(on_conn);
        let check = Arc::new(check);
        let tcp = self.tcp;
        {
            let (secret, on_conn, check) = (secret.clone(), on_conn.clone(), check.clone());
            spawn("chorus-accept", move || loop {
                let Ok((s, peer)) = tcp.accept() else { continue };
                let _ = s.set_nodelay(true);
                let (secret, on_conn, check) = (secret.clone(), on_conn.clone(), check.clone());
                let _ = spawn("chorus-conn", move || {
                    if let Some((s, hello)) = accept(Accepted::Tcp(s), &secret, kind, &*check, &peer.to_string()) {
                        on_conn(s, hello);
                    }
                });
            })?;
        }
        let Some((unix, dir)) = self.unix else { return Ok(None) };
        spawn("chorus-accept", move || loop {
            let Ok((s, _)) = unix.accept() else { continue };
            let (secret, on_conn, check) = (secret.clone(), on_conn.clone(), check.clone());
            let _ = spawn("chorus-conn", move || {
                if let Some((s, hello)) = accept(Accepted::Unix(s), &secret, kind, &*check, "a local process") {
                    on_conn(s, hello);
                }
            });
        })?;
        Ok(Some(dir))
    }
}

/// A freshly accepted socket, before its handshake.
enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Runs the accepting side of the handshake on a freshly accepted socket.
fn accept(
    s: Accepted,
    secret: &Secret,
    kind: u8,
    check: &(dyn Fn(&Hello) -> Result<(), Refusal> + Sync),
    peer: &str,
) -> Option<(Stream, Hello)> {
    let rt = runtime().ok()?;
    let me = Hello::new(Role::Member { kind, id: 0 }).ok()?;
    let warn = |e: chorus_comm::Error| chorus_comm::diag::warn(&e.to_string());
    rt.block_on(async {
        match s {
            Accepted::Tcp(s) => {
                s.set_nonblocking(true).ok()?;
                let t = tokio::net::TcpStream::from_std(s).ok()?;
                let (t, h) = handshake_tcp(t, secret, me, check, "from", peer).await.map_err(warn).ok()?;
                Some((tcp_blocking(t).ok()?, h))
            }
            Accepted::Unix(s) => {
                s.set_nonblocking(true).ok()?;
                let mut t = tokio::net::UnixStream::from_std(s).ok()?;
                let h = handshake(&mut t, secret, me, check, "from", peer).await.map_err(warn).ok()?;
                Some((unix_blocking(t).ok()?, h))
            }
        }
    })
}

/// Starts a named thread.
pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| Error::Io { context: format!("starting thread {name}"), source })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::{Listeners, Secret, Stream};

    #[test]
    fn a_unix_stream_reader_gets_every_byte_sleeps_through_its_own_writes_and_wakes_at_shutdown() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut reader = Stream::Unix(a);
        let mut writer_back = reader.try_clone().unwrap();
        let mut peer = Stream::Unix(b);
        let reading = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        // The reader's own side writes too (the peer reads it, freeing send space, the
        // wake-up `recv` would have taken); the reader keeps waiting for data.
        let mut echoed = vec![0u8; 3 << 20];
        let sent: Vec<u8> = (0..echoed.len()).map(|i| (i % 251) as u8).collect();
        let s = sent.clone();
        let writing = std::thread::spawn(move || writer_back.write_all(&s).unwrap());
        peer.read_exact(&mut echoed).unwrap();
        writing.join().unwrap();
        assert_eq!(echoed, sent);
        peer.write_all(b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        peer.write_all(b" world").unwrap();
        peer.shutdown();
        assert_eq!(reading.join().unwrap(), b"hello world", "every byte, then the end of the stream");
    }

    /// Spinning changes when a reader looks, never what it reads: every byte arrives in
    /// order, whether it came during a spin or after the reader went to sleep, then the
    /// end of the stream; `may_spin` hears how much the read before returned.
    #[test]
    fn a_spinning_reader_gets_every_byte_whether_it_arrives_during_the_spin_or_after() {
        let (a, b) = UnixStream::pair().unwrap();
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let mut reader = super::SpinRead::new(Stream::Unix(a), std::time::Duration::from_millis(20), move |last| {
            seen.lock().unwrap().push(last);
            true
        });
        let mut peer = Stream::Unix(b);
        let writing = std::thread::spawn(move || {
            for (i, pause_ms) in [0u64, 5, 60, 0, 30].into_iter().enumerate() {
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                peer.write_all(&vec![i as u8; 1000 + i]).unwrap();
            }
            peer.shutdown();
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        writing.join().unwrap();
        let sent: Vec<u8> = (0..5u8).flat_map(|i| vec![i; 1000 + i as usize]).collect();
        assert_eq!(got, sent);
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes[0], 0, "nothing was read before the first read");
        assert_eq!(sizes.iter().sum::<usize>(), sent.len(), "each read's size is passed on");
    }

    /// A window of zero (`CHORUS_SPIN_US=0`) never polls: `may_spin` is not even asked.
    #[test]
    fn a_reader_with_no_spin_window_never_polls_and_reads_as_before() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut reader = super::SpinRead::new(Stream::Unix(a), std::time::Duration::ZERO, |_| panic!("asked whether to spin"));
        let mut peer = Stream::Unix(b);
        peer.write_all(b"no spin").unwrap();
        peer.shutdown();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"no spin");
    }

    /// A worker killed by SIGKILL leaves its socket behind; a later process given the same
    /// pid used to fail with "address in use" when it tried the same path.
    #[test]
    fn listeners_bind_beside_a_socket_left_by_a_killed_process_with_the_same_pid() {
        let stale = std::env::temp_dir().join(format!("chorus-{}-0", std::process::id()));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("s"), b"").unwrap();
        let a = Listeners::bind("127.0.0.1:0", true).unwrap();
        let b = Listeners::bind("127.0.0.1:0", true).unwrap();
        let (pa, pb) = (a.unix_path().unwrap(), b.unix_path().unwrap());
        assert_ne!(pa, pb);
        let guard = a.serve(Secret::generate().unwrap(), 0, |_| Ok(()), |_, _| {}).unwrap();
        assert!(std::path::Path::new(&pa).exists());
        drop(guard);
        assert!(!std::path::Path::new(&pa).exists(), "the socket goes with its owner");
        drop(b);
        std::fs::remove_dir_all(stale).unwrap();
    }
}
