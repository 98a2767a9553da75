//! Forming the full mesh: rank `i` dials every lower rank and accepts every higher one, so
//! each pair is connected exactly once and the mesh forms the same way every time.

use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::future::try_join_all;

use crate::handshake::{handshake, handshake_tcp, Hello, Role};
use crate::link::{self, LinkReader, LinkWriter, Listeners, TransportPreference};
use crate::rendezvous::PeerAddress;
use crate::secret::Secret;
use crate::shm::{self, Setup, ShmLink};
use crate::{diag, Error, Refusal, Result};

/// A connection to one peer.
pub(crate) enum Link {
    /// A byte stream: a Unix socket (`true`) or TCP.
    Stream(LinkReader, LinkWriter, bool),
    /// Shared-memory rings beside a Unix socket.
    Rings(ShmLink),
}

impl Link {
    fn unix(setup: Setup) -> Link {
        match setup {
            Setup::Rings(l) => Link::Rings(l),
            Setup::Socket(s) => {
                let (r, w) = link::split_unix(s);
                Link::Stream(r, w, true)
            }
        }
    }

    fn tcp(s: crate::tls::Secured) -> Link {
        let (r, w) = s.into_split();
        Link::Stream(r, w, false)
    }
}

/// This rank's place in the job.
pub(crate) struct Me<'a> {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// See [`link::host_key`].
    pub(crate) host_key: &'a str,
    /// Bytes per direction of each shared-memory ring this rank creates.
    pub(crate) ring_capacity: usize,
    /// Whether large messages to same-host peers may be copied straight between memories.
    pub(crate) single_copy: bool,
}

pub(crate) async fn connect(
    me: Me<'_>,
    table: &[PeerAddress],
    listeners: &Listeners,
    secret: &Secret,
    pref: TransportPreference,
    deadline: Instant,
) -> Result<Vec<Option<Link>>> {
    let Me { rank, size, host_key: my_key, ring_capacity, single_copy } = me;
    let role = Role::Rank { rank: rank as u32, size: size as u32 };
    let dial = try_join_all((0..rank).map(|j| {
        let addr = &table[j];
        async move {
            let check = move |h: &Hello| match h.role {
                Role::Rank { rank: r, size: s } if r as usize == j && s as usize == size => Ok(()),
                other => Err(Refusal::Unexpected(format!("expected rank {j} of {size}, found {other:?}"))),
            };
            let name = format!("rank {j}");
            let same_host = pref != TransportPreference::Tcp && addr.host_key == my_key;
            let link = match (&addr.unix, same_host) {
                (Some(path), true) => {
                    let mut s = link::connect_unix(path.as_ref()).await?;
                    handshake(&mut s, secret, Hello::new(role)?, &check, "to", &name).await?;
                    Link::unix(shm::dial(s, pref == TransportPreference::Auto, ring_capacity, single_copy).await?)
                }
                _ => {
                    let s = link::connect_tcp_retrying(&addr.tcp.to_string(), deadline).await?;
                    let (s, _) = handshake_tcp(s, secret, Hello::new(role)?, &check, "to", &name).await?;
                    Link::tcp(s)
                }
            };
            Ok::<_, Error>((j, link))
        }
    }));
    let accept = async {
        let mut links: Vec<Option<Link>> = (0..size).map(|_| None).collect();
        let mut missing = size - rank - 1;
        let check = move |h: &Hello| match h.role {
            Role::Rank { rank: r, size: s } if (r as usize) > rank && s as usize == size => Ok(()),
            other => Err(Refusal::Unexpected(format!("expected a rank above {rank} of {size}, found {other:?}"))),
        };
        let check = &check;
        let mut pending = FuturesUnordered::new();
        while missing > 0 {
            tokio::select! {
                Ok((s, from)) = listeners.tcp.accept() => pending.push(Box::pin(async move {
                    let (s, hello) = handshake_tcp(s, secret, Hello::new(role)?, check, "from", &from.to_string()).await?;
                    Ok::<_, Error>((hello, Link::tcp(s)))
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Hello, Link)>> + Send + '_>>),
                Ok((mut s, _)) = async {
                    match &listeners.unix {
                        Some((l, _)) => l.accept().await,
                        None => std::future::pending().await,
                    }
                } => pending.push(Box::pin(async move {
                    let hello = handshake(&mut s, secret, Hello::new(role)?, check, "from", "a local process").await?;
                    Ok::<_, Error>((hello, Link::unix(shm::accept(s, single_copy).await?)))
                })),
                Some(done) = pending.next() => match done {
                    Ok((hello, link)) => {
                        let Role::Rank { rank: r, .. } = hello.role else { unreachable!("checked in the handshake") };
                        if links[r as usize].replace(link).is_some() {
                            return Err(Error::Rendezvous(format!("rank {r} connected twice")));
                        }
                        missing -= 1;
                    }
                    Err(e) => diag::warn(&format!("rank {rank}: {e}")),
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    let absent: Vec<String> = (rank + 1..size).filter(|&j| links[j].is_none()).map(|j| j.to_string()).collect();
                    return Err(Error::Rendezvous(format!("rank {rank}: rank(s) {} did not connect in time", absent.join(", "))));
                }
            }
        }
        Ok(links)
    };
    let (dialed, mut links) = tokio::try_join!(dial, accept)?;
    for (j, link) in dialed {
        links[j] = Some(link);
    }
    Ok(links)
}

/// Sets up the segment all ranks share for the flat collectives ([`shm::group`]), when
/// every rank reaches every other through rings; every rank learns the same outcome.
pub(crate) async fn share_group(rank: usize, links: &[Option<Link>]) -> Result<Option<shm::group::Group>> {
    fn ring_socket(l: &Option<Link>) -> Option<&tokio::net::UnixStream> {
        match l {
            Some(Link::Rings(l)) => Some(&l.socket),
            _ => None,
        }
    }
    let all_rings = links.iter().enumerate().all(|(q, l)| q == rank || ring_socket(l).is_some());
    let peers: Vec<Option<&tokio::net::UnixStream>> =
        if rank == 0 { links.iter().map(ring_socket).collect() } else { Vec::new() };
    let to_rank0 = if rank == 0 { None } else { ring_socket(&links[0]) };
    shm::group::agree(rank, links.len(), all_rings, to_rank0, &peers).await
}
