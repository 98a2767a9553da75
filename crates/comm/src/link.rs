//! Byte streams between processes: Unix-domain sockets between processes of one host (and
//! network namespace), TCP otherwise. Ranks of one host then set up shared-memory rings
//! over their Unix socket (see the `shm` module); the socket stays beside them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::{Error, Result};

/// The reading half of a link.
pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a link.
pub type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Which transport same-host ranks use (`CHORUS_TRANSPORT=auto|shm|unix|tcp`). Ranks on
/// different hosts always use TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportPreference {
    /// Shared-memory rings between processes sharing a host and network namespace, with
    /// single-copy large messages where the kernel allows it; Unix sockets when the rings
    /// cannot be made (said once). The fastest, measured by `bench/collectives`.
    #[default]
    Auto,
    /// Unix-domain sockets alone between same-host processes.
    Unix,
    /// TCP everywhere.
    Tcp,
}

impl TransportPreference {
    /// `CHORUS_TRANSPORT`, from [`settings`](crate::settings::settings).
    pub fn from_env() -> Result<Self> {
        Ok(crate::settings::settings()?.transport)
    }
}

/// Identifies "the same host and network namespace": processes with equal keys can reach
/// each other's Unix sockets and loopback addresses.
pub fn host_key() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let netns = std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{}|{}", boot.trim(), netns)
}

/// The listeners a rank accepts its peers on.
pub struct Listeners {
    /// TCP, bound to the address this rank reaches its coordinator from.
    pub tcp: TcpListener,
    /// Unix socket, for same-host peers, and the directory it lives in.
    pub unix: Option<(UnixListener, SocketDir)>,
}

impl Listeners {
    /// Binds a TCP listener on `ip` (any port) and, unless TCP is forced, a Unix socket in a
    /// fresh private directory.
    pub async fn bind(ip: std::net::IpAddr, pref: TransportPreference) -> Result<Listeners> {
        let tcp = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|e| Error::io(format!("binding a TCP listener on {ip}"), e))?;
        let unix = match pref {
            TransportPreference::Tcp => None,
            TransportPreference::Auto | TransportPreference::Unix => {
                let dir = SocketDir::create("rank.sock")?;
                let l = UnixListener::bind(dir.socket())
                    .map_err(|e| Error::io(format!("binding a Unix socket at {}", dir.socket().display()), e))?;
                Some((l, dir))
            }
        };
        Ok(Listeners { tcp, unix })
    }

    /// The TCP address peers connect to.
    pub fn tcp_addr(&self) -> Result<SocketAddr> {
        self.tcp.local_addr().map_err(|e| Error::io("reading the listener's address", e))
    }
}

/// A fresh directory only this user can enter (`0700`) for one Unix socket; the socket
/// and the directory are removed when this is dropped. The directory's name carries the
/// process id and a random tag, so a later process that happens to get the same id never
/// collides with a directory left behind by a killed one.
#[derive(Debug)]
pub struct SocketDir {
    socket: PathBuf,
}

impl SocketDir {
    /// Creates the directory, under `$XDG_RUNTIME_DIR` or else the temporary directory;
    /// the socket in it will be called `name`.
    pub fn create(name: &str) -> Result<SocketDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_dir()).unwrap_or_else(std::env::temp_dir);
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(|e| Error::Config(format!("no random bytes: {e}")))?;
        let dir = base.join(format!("chorus-{}-{}", std::process::id(), crate::secret::hex(&tag)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("creating the private socket directory {}", dir.display()), e))?;
        Ok(SocketDir { socket: dir.join(name) })
    }

    /// Where the socket is bound.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Connects over TCP, retrying until `deadline` (the listener may not be up yet).
pub async fn connect_tcp_retrying(addr: &str, deadline: Instant) -> Result<TcpStream> {
    let mut delay = Duration::from_millis(2);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if Instant::now() + delay < deadline => {
                tracing::debug!("connecting to {addr}: {e}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(Error::io(format!("connecting to {addr}"), e)),
        }
    }
}

/// Socket buffer size asked for on every link: large transfers then need far fewer wake-ups
/// (the kernel caps it at `net.core.wmem_max`/`rmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for large socket buffers ([`SOCKET_BUFFER`]) on a socket that carries bulk data.
pub fn enlarge_buffers(sock: socket2::SockRef<'_>) {
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
}

/// Splits a Unix stream into boxed halves.
pub fn split_unix(s: UnixStream) -> (LinkReader, LinkWriter) {
    enlarge_buffers(socket2::SockRef::from(&s));
    let (r, w) = s.into_split();
    (Box::new(r), Box::new(w))
}

/// Connects to a Unix socket.
pub async fn connect_unix(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).await.map_err(|e| Error::io(format!("connecting to {}", path.display()), e))
}
