//! The handshake every chorus connection starts with.
//!
//! Both sides send a fixed-layout [`Hello`] at once: magic bytes, protocol version, binary
//! fingerprint, a fresh nonce and their role. Each then checks the other's version and (when
//! both are ranks of a job) fingerprint, and proves knowledge of the job secret with
//! `HMAC-SHA256(secret, "chorus-proof" ‖ own nonce ‖ peer nonce)`; the secret never crosses
//! the wire and a proof cannot be replayed or reflected. Finally both exchange a verdict,
//! so that when one side refuses, the other learns exactly why (protocol version, binary, or
//! secret) instead of seeing a closed socket.
//!
//! [`handshake_tcp`] first secures a TCP connection with TLS when it leaves the host (see
//! [`crate::tls`]) and then runs the same handshake inside it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fingerprint::Fingerprint;
use crate::secret::Secret;
use crate::tls::{ClusterTls, Secured, TlsMode};
use crate::{Error, Refusal, Result};

/// The version of the chorus wire protocol spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;
const MAGIC: &[u8; 6] = b"CHORUS";
const HELLO_LEN: usize = 6 + 2 + 32 + 32 + 1 + 4 + 4;
const MAX_HANDSHAKE_FRAME: usize = 4096;
/// The largest TLS record (RFC 8446: 2^14 bytes and 256 of expansion).
const MAX_TLS_RECORD: usize = (1 << 14) + 256;
/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// What a process is, as announced in its [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The rendezvous service (a launcher, or a thread of rank 0).
    Coordinator,
    /// Rank `rank` of a job of `size` processes.
    Rank {
        /// This process's rank.
        rank: u32,
        /// The job's size.
        size: u32,
    },
    /// A member of a task cluster (scheduler, worker, client…). `kind` and `id` are
    /// defined by the layer above; this crate only carries them. Members are not checked
    /// for equal builds here: a cluster's scheduler may be another program than its workers,
    /// so the caller's [`PeerCheck`] decides.
    Member {
        /// What the member is, as numbered by the layer above.
        kind: u8,
        /// Its number, if it has one.
        id: u32,
    },
}

/// The greeting each side sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Wire protocol version.
    pub version: u16,
    /// Fingerprint of the sender's executable.
    pub fingerprint: Fingerprint,
    /// Fresh random bytes for the challenge.
    pub nonce: [u8; 32],
    /// What the sender is.
    pub role: Role,
}

impl Hello {
    /// A greeting for this process in `role`, with a fresh nonce.
    pub fn new(role: Role) -> Result<Hello> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::Config(format!("the operating system gave no random bytes for a nonce: {e}")))?;
        Ok(Hello { version: PROTOCOL_VERSION, fingerprint: Fingerprint::current(), nonce, role })
    }

    /// The fixed binary layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HELLO_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.fingerprint.0);
        b.extend_from_slice(&self.nonce);
        let (kind, rank, size) = match self.role {
            Role::Coordinator => (0u8, 0, 0),
            Role::Rank { rank, size } => (1u8, rank, size),
            Role::Member { kind, id } => (2u8, u32::from(kind), id),
        };
        b.push(kind);
        b.extend_from_slice(&rank.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b
    }

    /// Parses a greeting. A body that is not a chorus greeting is [`Refusal::NotChorus`];
    /// one from another protocol version is [`Refusal::ProtocolVersion`] (the version field
    /// sits right after the magic in every version, so it can always be read).
    pub fn decode(b: &[u8]) -> Result<Hello, Refusal> {
        if b.len() < 8 || &b[..6] != MAGIC {
            return Err(Refusal::NotChorus);
        }
        let version = u16::from_le_bytes([b[6], b[7]]);
        if version != PROTOCOL_VERSION {
            return Err(Refusal::ProtocolVersion { local: PROTOCOL_VERSION, peer: version });
        }
        if b.len() != HELLO_LEN {
            return Err(Refusal::NotChorus);
        }
        let fingerprint = Fingerprint(b[8..40].try_into().expect("length checked"));
        let nonce: [u8; 32] = b[40..72].try_into().expect("length checked");
        let rank = u32::from_le_bytes(b[73..77].try_into().expect("length checked"));
        let size = u32::from_le_bytes(b[77..81].try_into().expect("length checked"));
        let role = match b[72] {
            0 => Role::Coordinator,
            1 if rank < size => Role::Rank { rank, size },
            2 if rank <= u32::from(u8::MAX) => Role::Member { kind: rank as u8, id: size },
            _ => return Err(Refusal::NotChorus),
        };
        Ok(Hello { version, fingerprint, nonce, role })
    }
}

/// A check the caller applies to the peer's greeting before proofs are exchanged (for
/// instance "must be a higher rank of a job of my size").
pub type PeerCheck<'a> = &'a (dyn Fn(&Hello) -> Result<(), Refusal> + Sync);

/// Runs the handshake on `stream` and returns the peer's greeting.
///
/// `peer_name` is used in error messages ("connection to 127.0.0.1:4000 refused: …").
/// `direction` is "to" for connections we opened and "from" for accepted ones.
pub async fn handshake<S>(
    stream: &mut S,
    secret: &Secret,
    me: Hello,
    check: PeerCheck<'_>,
    direction: &'static str,
    peer_name: &str,
) -> Result<Hello>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within_timeout(run(stream, secret, me, check), direction, peer_name).await
}

/// Secures a TCP connection with TLS when [`TlsMode`] says so (`CHORUS_TLS`; by default,
/// when it leaves the host), then runs the [`handshake`] over it.
///
/// `direction` "to" makes this side the TLS client. An accepting side that requires TLS
/// and hears a plain chorus greeting answers with [`Refusal::PeerWithoutTls`] in plain
/// text, so the peer learns why ([`Refusal::TlsRequired`] on its side).
pub async fn handshake_tcp(
    tcp: TcpStream,
    secret: &Secret,
    me: Hello,
    check: PeerCheck<'_>,
    direction: &'static str,
    peer_name: &str,
) -> Result<(Secured, Hello)> {
    handshake_tcp_with(TlsMode::from_env()?, tcp, secret, me, check, direction, peer_name).await
}

/// [`handshake_tcp`] with `mode` in place of `CHORUS_TLS`.
pub async fn handshake_tcp_with(
    mode: TlsMode,
    tcp: TcpStream,
    secret: &Secret,
    me: Hello,
    check: PeerCheck<'_>,
    direction: &'static str,
    peer_name: &str,
) -> Result<(Secured, Hello)> {
    let encrypt = match (tcp.local_addr(), tcp.peer_addr()) {
        (Ok(local), Ok(peer)) => mode.applies(local, peer),
        _ => mode != TlsMode::Off,
    };
    let tls = if encrypt { Some(ClusterTls::for_secret(secret)?) } else { None };
    let steps = async move {
        let Some(tls) = tls else {
            let mut s = Secured::Plain(tcp);
            let hello = run(&mut s, secret, me, check).await?;
            return Ok((s, hello));
        };
        let mut s = if direction == "to" {
            tls.connect(tcp).await.map_err(Step::Refused)?
        } else {
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 0 {
                return Err(Step::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if first[0] != TLS_HANDSHAKE_RECORD {
                let mut plain = tcp;
                run(&mut plain, secret, me, &|_| Err(Refusal::PeerWithoutTls)).await?;
                return Err(Step::Refused(Refusal::PeerWithoutTls));
            }
            tls.accept(tcp).await.map_err(Step::Refused)?
        };
        let hello = run(&mut s, secret, me, check).await?;
        tracing::debug!("connection {direction} {peer_name} secured with TLS");
        Ok((s, hello))
    };
    within_timeout(steps, direction, peer_name).await
}

/// The first byte of every TLS handshake record (a ClientHello included).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn within_timeout<T>(
    steps: impl std::future::Future<Output = Result<T, Step>>,
    direction: &'static str,
    peer_name: &str,
) -> Result<T> {
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, steps).await.unwrap_or_else(|_| {
        Err(Step::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer did not complete the handshake")))
    });
    outcome.map_err(|step| match step {
        Step::Io(e) => Error::io(format!("handshake {direction} {peer_name}"), e),
        Step::Refused(refusal) => Error::Refused { direction, peer: peer_name.to_string(), refusal },
    })
}

enum Step {
    Io(std::io::Error),
    Refused(Refusal),
}

impl From<std::io::Error> for Step {
    fn from(e: std::io::Error) -> Self {
        Step::Io(e)
    }
}

const MSG_PROOF: u8 = b'P';
const MSG_REFUSE: u8 = b'R';
const MSG_ACCEPT: u8 = b'A';

async fn run<S>(stream: &mut S, secret: &Secret, me: Hello, check: PeerCheck<'_>) -> Result<Hello, Step>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    write_msg(stream, &me.encode()).await?;
    let raw = read_msg(stream).await?;
    let peer = match Hello::decode(&raw).and_then(|peer| {
        if let (Role::Rank { .. }, Role::Rank { .. }) = (me.role, peer.role) {
            if peer.fingerprint != me.fingerprint {
                return Err(Refusal::BinaryMismatch { local: me.fingerprint.short(), peer: peer.fingerprint.short() });
            }
        }
        check(&peer)?;
        Ok(peer)
    }) {
        Ok(peer) => peer,
        Err(refusal) => return Err(refuse(stream, refusal).await),
    };

    let mut proof = vec![MSG_PROOF];
    proof.extend_from_slice(&mac(secret, &me.nonce, &peer.nonce));
    write_msg(stream, &proof).await?;
    let answer = read_msg(stream).await?;
    match answer.split_first() {
        Some((&MSG_PROOF, theirs)) => {
            let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            m.update(b"chorus-proof");
            m.update(&peer.nonce);
            m.update(&me.nonce);
            if m.verify_slice(theirs).is_err() {
                return Err(refuse(stream, Refusal::WrongSecret).await);
            }
        }
        Some((&MSG_REFUSE, why)) => return Err(Step::Refused(decode_refusal(why))),
        _ => return Err(refuse(stream, Refusal::NotChorus).await),
    }

    write_msg(stream, &[MSG_ACCEPT]).await?;
    let verdict = read_msg(stream).await?;
    match verdict.split_first() {
        Some((&MSG_ACCEPT, [])) => Ok(peer),
        Some((&MSG_REFUSE, why)) => Err(Step::Refused(decode_refusal(why))),
        _ => Err(Step::Refused(Refusal::NotChorus)),
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret, own: &[u8; 32], peer: &[u8; 32]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(b"chorus-proof");
    m.update(own);
    m.update(peer);
    m.finalize().into_bytes().into()
}

/// Tells the peer why we refuse (best effort) and returns the refusal.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: Refusal) -> Step {
    let mut msg = vec![MSG_REFUSE, refusal.code()];
    // The peer sees the mismatch from its own side: swap local and peer.
    let detail = match &refusal {
        Refusal::ProtocolVersion { local, peer } => format!("{peer}/{local}"),
        Refusal::BinaryMismatch { local, peer } => format!("{peer}/{local}"),
        Refusal::Unexpected(why) | Refusal::Tls(why) => why.clone(),
        _ => String::new(),
    };
    msg.extend_from_slice(detail.as_bytes());
    let _ = write_msg(stream, &msg).await;
    let _ = stream.flush().await;
    Step::Refused(refusal)
}

fn decode_refusal(why: &[u8]) -> Refusal {
    let Some((&code, detail)) = why.split_first() else {
        return Refusal::NotChorus;
    };
    let detail = String::from_utf8_lossy(detail).into_owned();
    let pair = || detail.split_once('/').map(|(a, b)| (a.to_string(), b.to_string()));
    match code {
        2 => match pair().and_then(|(l, p)| Some((l.parse().ok()?, p.parse().ok()?))) {
            Some((local, peer)) => Refusal::ProtocolVersion { local, peer },
            None => Refusal::NotChorus,
        },
        3 => match pair() {
            Some((local, peer)) => Refusal::BinaryMismatch { local, peer },
            None => Refusal::NotChorus,
        },
        4 => Refusal::WrongSecret,
        5 => Refusal::Unexpected(format!("the peer refused us: {detail}")),
        // The peer required TLS and we spoke without it: that is what we are told.
        6 => Refusal::TlsRequired,
        7 => Refusal::PeerWithoutTls,
        8 => Refusal::PeerUsesTls,
        9 => Refusal::WrongKey,
        10 => Refusal::Tls(detail),
        _ => Refusal::NotChorus,
    }
}

async fn write_msg<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&crate::frame::encode_length(body.len()));
    buf.extend_from_slice(body);
    s.write_all(&buf).await?;
    s.flush().await
}

async fn read_msg<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, Step> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    if len[0] == TLS_HANDSHAKE_RECORD && len[1] == 3 {
        // A TLS ClientHello: the peer uses TLS and we do not. Its record (5-byte header,
        // length in bytes 3 and 4) is read to the end so that closing sends no reset,
        // which could destroy our refusal before the peer reads it.
        let mut low = [0u8; 1];
        s.read_exact(&mut low).await?;
        let record = usize::from(len[3]) << 8 | usize::from(low[0]);
        if record <= MAX_TLS_RECORD {
            let mut rest = vec![0u8; record];
            s.read_exact(&mut rest).await?;
        }
        return Err(Step::Refused(Refusal::PeerUsesTls));
    }
    let len = crate::frame::decode_length(len);
    if len > MAX_HANDSHAKE_FRAME {
        // A chorus greeting is tiny; an HTTP request or random bytes land here.
        return Err(Step::Refused(Refusal::NotChorus));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(body)
}
