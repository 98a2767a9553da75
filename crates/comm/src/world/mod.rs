//! [`World`]: the processes of one SPMD job and the collectives among them.

mod api;
mod collectives;
mod core;
mod flat;
mod mesh;
pub mod probe;
mod received;
mod remote;
mod rings;
mod shared;

use std::time::{Duration, Instant};

use crate::fingerprint::Fingerprint;
use crate::frame::CollectiveOp;
use crate::link::{Listeners, TransportPreference};
use crate::rendezvous::{CoordinatorLink, PeerAddress, Registration};
use crate::secret::Secret;
use crate::settings::SingleCopy;
use crate::{Error, Result};

pub use self::shared::PeerLostHook;
use self::core::Core;

/// How to reach the other ranks of a job; launchers fill this in from the environment.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub size: usize,
    /// `host:port` of the job's rendezvous coordinator.
    pub coordinator: String,
    /// The job secret.
    pub secret: Secret,
    /// Unix sockets or TCP between same-host ranks.
    pub transport: TransportPreference,
    /// How long to wait for the coordinator and for every peer to connect.
    pub connect_timeout: Duration,
    /// How long a rank may wait inside one collective before it logs which rank it is
    /// waiting for.
    pub warn_after: Duration,
    /// How a waiting call polls before it sleeps; `None` picks [`Spin::auto`] for the
    /// ranks found on this host.
    pub spin: Option<Spin>,
    /// Whether large messages between same-host ranks may be copied once, straight from
    /// one's memory into the other's (where the kernel allows it), or always stream through
    /// shared memory in two copies (`CHORUS_SINGLE_COPY`).
    pub single_copy: SingleCopy,
}

/// How a rank reaches one other rank ([`World::links`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLink {
    /// This rank itself.
    Itself,
    /// Shared-memory rings (same host); `single_copy` when large collective messages are
    /// copied straight between the two processes' memory (`process_vm_readv`), else they
    /// stream through the rings.
    SharedMemory {
        /// Whether both ranks may read each other's memory.
        single_copy: bool,
    },
    /// A Unix-domain socket (same host, shared memory unavailable or not chosen).
    Unix,
    /// TCP (another host, or chosen).
    Tcp,
}

impl std::fmt::Display for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerLink::Itself => "itself",
            PeerLink::SharedMemory { single_copy: true } => "shared memory, single-copy large messages",
            PeerLink::SharedMemory { single_copy: false } => "shared memory, large messages through the rings",
            PeerLink::Unix => "Unix socket",
            PeerLink::Tcp => "TCP",
        })
    }
}

/// How a call waiting for a message polls before it sleeps. Sleeping and being woken by
/// the kernel costs tens of microseconds on virtual machines, so short waits are cheaper
/// when polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spin {
    /// How long to poll.
    pub duration: Duration,
    /// Offer the core to other processes between polls (`sched_yield`): right when ranks
    /// share cores, since the rank being waited for may need this one.
    pub yield_cpu: bool,
}

impl Spin {
    /// Never poll: sleep at once.
    pub const NONE: Spin = Spin { duration: Duration::ZERO, yield_cpu: false };

    /// The measured best (`bench/collectives`): with at least one core per rank on this
    /// host, poll for 50 µs; with more ranks than cores, poll for 200 µs yielding the core
    /// between polls. `CHORUS_SPIN_US` overrides the duration.
    pub fn auto(ranks_on_this_host: usize) -> Result<Spin> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let shared_cores = ranks_on_this_host > cores;
        let default = if shared_cores { 200 } else { 50 };
        let us = crate::settings::settings()?.spin_us.unwrap_or(default);
        Ok(Spin { duration: Duration::from_micros(us), yield_cpu: shared_cores })
    }
}

/// The processes of one SPMD job.
///
/// Every rank runs the same program and calls the same collectives in the same order, as
/// with MPI. All methods block the calling thread; none may be called from inside an async
/// runtime (use `tokio::task::spawn_blocking` there). Calls are numbered in the order they
/// start, so ranks that make calls from several threads must start them in the same order. Each collective comes in two forms: the plain one moves any serde value
/// (encoded with postcard), the `_slice` one moves plain numbers ([`bytemuck::Pod`] types
/// such as `f64`, `i64` or `u8`) by copying their bytes.
///
/// Calls that do not match across ranks — a different collective, root, element type or
/// length — end in [`Error::CollectiveMismatch`] on the rank that notices and
/// [`Error::Aborted`] on every other rank, never in a hang or in wrong data. A rank that
/// crashes makes its peers' pending calls fail with [`Error::PeerLost`].
///
/// ```
/// use chorus_comm::{World, Sum};
/// let world = World::single();
/// assert_eq!(world.allreduce(21.0_f64 * 2.0, Sum).unwrap(), 42.0);
/// assert_eq!(world.gatherv(0, &"only me".to_string()).unwrap(), Some(vec!["only me".to_string()]));
/// ```
pub struct World {
    core: Core,
    /// Always `Some` until `Drop` takes it to shut it down.
    runtime: Option<tokio::runtime::Runtime>,
    finalized: bool,
    /// In a mutex only so that `World` is `Sync`; reached through `&mut self`.
    on_finalized: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the communication runtime", e))
}

impl World {
    /// A world of one process: every collective returns this process's own contribution.
    pub fn single() -> World {
        let runtime = runtime().expect("a current-thread runtime can always be built");
        let core = {
            let _guard = runtime.enter();
            Core::start(0, vec![None], Duration::from_secs(60), Spin::NONE, true, None)
        };
        World { core, runtime: Some(runtime), finalized: false, on_finalized: std::sync::Mutex::new(None) }
    }

    /// A job of `n` ranks inside this process, one [`World`] per rank (index = rank),
    /// connected over loopback exactly as separate processes would be. For testing SPMD
    /// code: hand each world to its own thread.
    ///
    /// ```
    /// use chorus_comm::{World, Sum};
    /// let worlds = World::local(3).unwrap();
    /// let totals: Vec<u64> = std::thread::scope(|s| {
    ///     let ranks: Vec<_> = worlds.iter().map(|w| s.spawn(move || w.allreduce(w.rank() as u64, Sum).unwrap())).collect();
    ///     ranks.into_iter().map(|r| r.join().unwrap()).collect()
    /// });
    /// assert_eq!(totals, vec![3, 3, 3]);
    /// ```
    pub fn local(n: usize) -> Result<Vec<World>> {
        if n <= 1 {
            return Ok((0..n).map(|_| World::single()).collect());
        }
        let secret = Secret::generate()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding a loopback coordinator", e))?;
        let coordinator = listener.local_addr().map_err(|e| Error::io("binding a loopback coordinator", e))?.to_string();
        listener.set_nonblocking(true).map_err(|e| Error::io("binding a loopback coordinator", e))?;
        let timeout = Duration::from_secs(30);
        let serve_secret = secret.clone();
        let serving = std::thread::spawn(move || {
            runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::io("serving the rendezvous", e))?;
                crate::rendezvous::serve(listener, n, serve_secret, timeout).await
            })
        });
        let joining: Vec<_> = (0..n)
            .map(|rank| {
                let config = WorldConfig {
                    rank,
                    size: n,
                    coordinator: coordinator.clone(),
                    secret: secret.clone(),
                    transport: TransportPreference::Auto,
                    connect_timeout: timeout,
                    warn_after: Duration::from_secs(60),
                    spin: None,
                    single_copy: SingleCopy::Auto,
                };
                std::thread::spawn(move || World::connect(config))
            })
            .collect();
        let worlds = joining
            .into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err(Error::Config("a rank panicked while joining".into()))))
            .collect::<Result<Vec<_>>>();
        serving.join().unwrap_or_else(|_| Err(Error::Config("the coordinator panicked".into())))?;
        worlds
    }

    /// Joins the job described by `config`: registers with the coordinator, then connects
    /// to every other rank and authenticates each connection.
    pub fn connect(config: WorldConfig) -> Result<World> {
        if config.size == 0 || config.rank >= config.size {
            return Err(Error::Config(format!("rank {} is not within a job of {} ranks", config.rank, config.size)));
        }
        // A bad setting fails here, before any other rank waits for this one.
        crate::settings::settings()?;
        crate::diag::set_process_tag_if_unnamed(format!("rank {}", config.rank));
        if config.size == 1 {
            return Ok(World::single());
        }
        let runtime = runtime()?;
        let deadline = Instant::now() + config.connect_timeout;
        let host_key = crate::link::host_key();
        let links = runtime.block_on(async {
            let (rank, size) = (config.rank as u32, config.size as u32);
            let coordinator = CoordinatorLink::connect(&config.coordinator, &config.secret, rank, size, deadline).await?;
            let listeners = Listeners::bind(coordinator.local_ip()?, config.transport).await?;
            let registration = Registration {
                rank,
                fingerprint: Fingerprint::current().0,
                address: PeerAddress {
                    tcp: listeners.tcp_addr()?,
                    unix: listeners.unix.as_ref().map(|(_, d)| d.socket().display().to_string()),
                    host_key: host_key.clone(),
                },
                hostname: crate::diag::hostname(),
            };
            let table = coordinator.register(registration).await?;
            if table.len() != config.size {
                return Err(Error::Rendezvous(format!(
                    "the coordinator sent {} addresses for a job of {} ranks",
                    table.len(),
                    config.size
                )));
            }
            let local = table.iter().filter(|a| a.host_key == host_key).count();
            let ring_capacity = crate::shm::ring_capacity(local)?;
            let me = mesh::Me {
                rank: config.rank,
                size: config.size,
                host_key: &host_key,
                ring_capacity,
                single_copy: config.single_copy == SingleCopy::Auto,
            };
            let links = mesh::connect(me, &table, &listeners, &config.secret, config.transport, deadline).await?;
            let group = mesh::share_group(config.rank, &links).await?;
            Ok((links, group, local, config.transport != TransportPreference::Tcp))
        })?;
        let (links, group, ranks_on_this_host, same_host_links) = links;
        let spin = match config.spin {
            Some(s) => s,
            None => Spin::auto(ranks_on_this_host)?,
        };
        let core = {
            let _guard = runtime.enter();
            Core::start(config.rank, links, config.warn_after, spin, same_host_links && ranks_on_this_host == config.size, group)
        };
        describe_links(config.rank, &core.kinds);
        probe::register(&config.coordinator, &core.shared);
        if let Some(dir) = crate::settings::settings()?.rank_state_dir.clone() {
            probe::publish(dir, config.coordinator.clone(), &core.shared);
        }
        Ok(World { core, runtime: Some(runtime), finalized: false, on_finalized: std::sync::Mutex::new(None) })
    }

    /// This process's rank, `0..size()`.
    pub fn rank(&self) -> usize {
        self.core.rank()
    }

    /// The number of processes in the job.
    pub fn size(&self) -> usize {
        self.core.size()
    }

    /// How this rank reaches each rank (index = rank), as set up at start-up: shared
    /// memory (and whether large messages are copied once), a Unix socket, or TCP. Also
    /// logged at start-up (`RUST_LOG=chorus=info`).
    ///
    /// ```
    /// use chorus_comm::{PeerLink, World};
    /// let worlds = World::local(2).unwrap();
    /// assert_eq!(worlds[0].links()[0], PeerLink::Itself);
    /// assert!(matches!(worlds[0].links()[1], PeerLink::SharedMemory { .. } | PeerLink::Unix));
    /// ```
    pub fn links(&self) -> &[PeerLink] {
        &self.core.kinds
    }

    /// For launchers: `hook(peer)` runs before a call reports that `peer` was lost, so the
    /// launcher can report the peer's own failure (its panic message, its signal) first.
    pub fn set_peer_lost_hook(&self, hook: PeerLostHook) {
        *self.core.shared.on_peer_lost.lock().expect("hook lock") = Some(hook);
    }

    /// For launchers: runs `hook` once this rank has finalized (used by a self-spawning
    /// rank 0 to wait for the ranks it started).
    pub fn set_finalized_hook(&mut self, hook: Box<dyn FnOnce() + Send>) {
        *self.on_finalized.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Aborts the whole job: every rank's pending and future calls fail with
    /// [`Error::Aborted`] carrying `reason`. Returns the error for this rank.
    pub fn abort(&self, reason: &str) -> Error {
        self.runtime().block_on(self.core.abort_all(reason));
        Error::Aborted { by: self.rank(), reason: reason.to_string() }
    }

    /// The messages (from [`send`](Self::send) and the like) that have arrived at this
    /// rank and that no `recv` has taken yet; a program that ends with some left sent
    /// something nobody expected (`finalize` warns about them).
    pub fn unreceived_messages(&self) -> usize {
        self.core.unreceived_messages()
    }

    /// Ends this rank's part in the job, checking that all ranks agree it is over.
    ///
    /// Finalizing is collective: every rank must call it. It fails with
    /// [`Error::CollectiveMismatch`] if some rank called a collective the others did not,
    /// then closes the connections.
    ///
    /// Dropping a `World` without finalizing is allowed (it is what happens when `main`
    /// returns early with an error): the rank leaves without that check, and any rank still
    /// waiting for it fails at once with [`Error::PeerFinalized`] instead of hanging.
    pub fn finalize(mut self) -> Result<()> {
        self.finalize_inner()
    }

    fn finalize_inner(&mut self) -> Result<()> {
        if self.finalized {
            return Ok(());
        }
        self.finalized = true;
        let outcome = self.run(|core| async move {
            let call = core.begin(CollectiveOp::Finalize, 0, 0, "()")?;
            core.finalize(call).await
        });
        if outcome.is_ok() {
            if let Some(hook) = self.on_finalized.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
                hook();
            }
        }
        outcome
    }

    /// Runs one operation to completion on the communication runtime. Errors that only
    /// this rank can see (bad arguments, undecodable data) abort the job so that no other
    /// rank waits forever.
    fn run<'a, R, F>(&'a self, op: impl FnOnce(&'a Core) -> F) -> Result<R>
    where
        F: std::future::Future<Output = Result<R>> + 'a,
    {
        self.check_not_async();
        let core = &self.core;
        self.runtime().block_on(async move {
            match op(core).await {
                Err(e @ (Error::InvalidArgument(_) | Error::Decode { .. } | Error::Encode { .. } | Error::CollectiveMismatch(_)))
                    if !core.is_poisoned() =>
                {
                    core.abort_all(&format!("rank {}: {e}", core.rank())).await;
                    Err(e)
                }
                other => other,
            }
        })
    }
}

/// Logs how this rank reaches the others, grouped: `rank 2: shared memory, single-copy
/// large messages to ranks 0, 1, 3`.
fn describe_links(rank: usize, kinds: &[PeerLink]) {
    let mut groups: Vec<(PeerLink, Vec<String>)> = Vec::new();
    for (q, k) in kinds.iter().enumerate().filter(|(_, k)| **k != PeerLink::Itself) {
        match groups.iter_mut().find(|(g, _)| g == k) {
            Some((_, ranks)) => ranks.push(q.to_string()),
            None => groups.push((*k, vec![q.to_string()])),
        }
    }
    let text: Vec<String> = groups.iter().map(|(k, ranks)| format!("{k} to ranks {}", ranks.join(", "))).collect();
    tracing::info!(target: "chorus", "rank {rank}: {}", text.join("; "));
}

impl World {
    /// Panics when called from inside an async runtime, where blocking would stall it.
    fn check_not_async(&self) {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "chorus World calls block the calling thread and cannot be made from inside an async runtime; \
             call them from a plain thread or from tokio::task::spawn_blocking"
        );
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the World")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let in_async_context = tokio::runtime::Handle::try_current().is_ok();
        if !self.finalized && !std::thread::panicking() {
            // A panicking rank closes its connections without goodbye: peers see the crash.
            self.finalized = true;
            let (runtime, core) = (self.runtime(), &self.core);
            let leave = || runtime.block_on(core.leave(Duration::from_millis(500)));
            if in_async_context {
                // Blocking on our runtime is not allowed on an async runtime's thread.
                std::thread::scope(|s| {
                    s.spawn(leave);
                });
            } else {
                leave();
            }
            if let Some(hook) = self.on_finalized.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
                hook();
            }
        }
        if let Some(runtime) = self.runtime.take() {
            if in_async_context {
                runtime.shutdown_background();
            }
        }
    }
}

