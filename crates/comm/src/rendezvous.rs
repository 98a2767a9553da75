//! How the ranks of a job find each other.
//!
//! A coordinator (the `chorus run` launcher, the rank-0 process of a self-spawned job, or a
//! thread of rank 0 under `mpiexec`/`srun`) listens on a known address. Every rank connects
//! to it, proves the secret, and registers the addresses it listens on. When all `size`
//! ranks have registered with the same binary fingerprint, the coordinator sends everyone
//! the full table; the ranks then connect to each other directly (see `mesh`) and the
//! coordinator is no longer needed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fingerprint::Fingerprint;
use crate::handshake::{handshake_tcp, Hello, Role};
use crate::secret::Secret;
use crate::tls::Secured;
use crate::{diag, Error, Refusal, Result};

/// What a rank tells the coordinator about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    /// Its rank.
    pub rank: u32,
    /// Binary fingerprint.
    pub fingerprint: [u8; 32],
    /// Where it can be reached.
    pub address: PeerAddress,
    /// Host name, for messages.
    pub hostname: String,
}

/// Where a rank accepts connections from its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    /// TCP address.
    pub tcp: SocketAddr,
    /// Unix socket path, usable by peers with the same host key.
    pub unix: Option<String>,
    /// See [`crate::link::host_key`].
    pub host_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Table(Vec<PeerAddress>),
    Refused(String),
}

const MAX_RENDEZVOUS_MSG: usize = 16 << 20;

async fn write_msg<T: Serialize>(s: &mut Secured, value: &T) -> std::io::Result<()> {
    let body = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
    s.write_all(&crate::frame::encode_length(body.len())).await?;
    s.write_all(&body).await?;
    s.flush().await
}

async fn read_msg<T: for<'de> Deserialize<'de>>(s: &mut Secured) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = crate::frame::decode_length(len);
    if len > MAX_RENDEZVOUS_MSG {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "rendezvous message too large"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Serves the rendezvous for one job of `size` ranks, then returns.
///
/// Connections that fail the handshake (wrong secret, another protocol, not chorus) are
/// refused, reported as warnings, and do not disturb the job. The job fails, and every
/// registered rank is told why, when ranks disagree on the binary, register twice, or do
/// not all arrive within `timeout`.
pub async fn serve(listener: TcpListener, size: usize, secret: Secret, timeout: Duration) -> Result<()> {
    serve_counting(listener, size, secret, timeout, Default::default()).await
}

/// [`serve`], counting in `joined` the ranks that have registered so far: what a
/// launcher's start-up bar shows while it waits for the last rank.
pub async fn serve_counting(
    listener: TcpListener,
    size: usize,
    secret: Secret,
    timeout: Duration,
    joined_count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Secured, Registration)>();
    let accept = async {
        loop {
            let Ok((stream, from)) = listener.accept().await else { continue };
            let (tx, secret) = (tx.clone(), secret.clone());
            tokio::spawn(async move {
                let check = move |h: &Hello| match h.role {
                    Role::Rank { size: s, .. } if s as usize == size => Ok(()),
                    Role::Rank { size: s, .. } => Err(Refusal::Unexpected(format!(
                        "the peer belongs to a job of {s} ranks, this coordinator serves {size}"
                    ))),
                    Role::Coordinator | Role::Member { .. } => {
                        Err(Refusal::Unexpected(format!("only ranks join a job, found {:?}", h.role)))
                    }
                };
                let me = match Hello::new(Role::Coordinator) {
                    Ok(me) => me,
                    Err(e) => return diag::warn(&e.to_string()),
                };
                let mut stream = match handshake_tcp(stream, &secret, me, &check, "from", &from.to_string()).await {
                    Ok((stream, _)) => stream,
                    Err(e) => return diag::warn(&format!("rendezvous: {e}")),
                };
                match read_msg::<Registration>(&mut stream).await {
                    Ok(reg) => {
                        let _ = tx.send((stream, reg));
                    }
                    Err(e) => diag::warn(&format!("rendezvous: bad registration from {from}: {e}")),
                }
            });
        }
    };
    let collect = async {
        let mut joined: BTreeMap<u32, (Secured, Registration)> = BTreeMap::new();
        let mut failure = None;
        while joined.len() < size {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, rx.recv()).await {
                Ok(Some((mut stream, reg))) => {
                    if joined.contains_key(&reg.rank) {
                        let why = format!("two processes registered as rank {}; check the launcher's rank variables", reg.rank);
                        let _ = write_msg(&mut stream, &Reply::Refused(why.clone())).await;
                        failure = Some(why);
                        break;
                    }
                    joined.insert(reg.rank, (stream, reg));
                    joined_count.store(joined.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Ok(None) => unreachable!("the accept loop holds a sender"),
                Err(_) => {
                    let missing: Vec<String> =
                        (0..size as u32).filter(|r| !joined.contains_key(r)).map(|r| r.to_string()).collect();
                    failure = Some(format!(
                        "rank(s) {} did not join within {} s; were they started, with the same CHORUS_COORDINATOR and secret?",
                        missing.join(", "),
                        timeout.as_secs()
                    ));
                    break;
                }
            }
        }
        if failure.is_none() {
            failure = fingerprint_mismatch(joined.values().map(|(_, r)| r));
        }
        let reply = match &failure {
            Some(why) => Reply::Refused(why.clone()),
            None => Reply::Table(joined.values().map(|(_, r)| r.address.clone()).collect()),
        };
        for (stream, _) in joined.values_mut() {
            let _ = write_msg(stream, &reply).await;
        }
        match failure {
            Some(why) => Err(Error::Rendezvous(why)),
            None => Ok(()),
        }
    };
    tokio::select! {
        () = accept => unreachable!("the accept loop never ends"),
        outcome = collect => outcome,
    }
}

fn fingerprint_mismatch<'a>(regs: impl Iterator<Item = &'a Registration>) -> Option<String> {
    let regs: Vec<&Registration> = regs.collect();
    let reference = regs.first()?;
    let odd: Vec<String> =
        regs.iter().filter(|r| r.fingerprint != reference.fingerprint).map(|r| format!("{} (on {})", r.rank, r.hostname)).collect();
    if odd.is_empty() {
        return None;
    }
    Some(format!(
        "binary mismatch: rank(s) {} run a different build than rank {} on {} (fingerprint {}); start every rank from the same executable",
        odd.join(", "),
        reference.rank,
        reference.hostname,
        Fingerprint(reference.fingerprint).short()
    ))
}

/// A rank's connection to its coordinator, established and authenticated.
pub struct CoordinatorLink {
    stream: Secured,
    name: String,
}

impl CoordinatorLink {
    /// Connects (retrying until `deadline`) and runs the handshake as `rank` of `size`.
    pub async fn connect(addr: &str, secret: &Secret, rank: u32, size: u32, deadline: Instant) -> Result<Self> {
        let stream = crate::link::connect_tcp_retrying(addr, deadline).await.map_err(|e| match e {
            Error::Io { source, .. } => Error::Rendezvous(format!(
                "rank {rank} could not reach the job's coordinator at {addr}: {source}; is rank 0 (or the launcher) running, and is CHORUS_COORDINATOR the same for every rank?"
            )),
            other => other,
        })?;
        let me = Hello::new(Role::Rank { rank, size })?;
        let check = |h: &Hello| match h.role {
            Role::Coordinator => Ok(()),
            other => Err(Refusal::Unexpected(format!("expected the job's coordinator, found {other:?}"))),
        };
        let (stream, _) = handshake_tcp(stream, secret, me, &check, "to", &format!("coordinator {addr}")).await?;
        Ok(CoordinatorLink { stream, name: addr.to_string() })
    }

    /// The local address of the connection: the interface this host reaches the
    /// coordinator through, which is where peers can reach us.
    pub fn local_ip(&self) -> Result<std::net::IpAddr> {
        self.stream.tcp().local_addr().map(|a| a.ip()).map_err(|e| Error::io("reading a local address", e))
    }

    /// Registers and waits for the table of every rank's address.
    pub async fn register(mut self, reg: Registration) -> Result<Vec<PeerAddress>> {
        let context = format!("rendezvous with coordinator {}", self.name);
        write_msg(&mut self.stream, &reg).await.map_err(|e| Error::io(context.clone(), e))?;
        match read_msg::<Reply>(&mut self.stream).await.map_err(|e| Error::io(context, e))? {
            Reply::Table(table) => Ok(table),
            Reply::Refused(why) => Err(Error::Rendezvous(why)),
        }
    }
}
