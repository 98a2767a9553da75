//! The chorus launch layer: how the processes of an SPMD job are started, how they
//! learn their rank, size, coordinator and secret, and how a job fails as a whole.
//!
//! Three ways lead to the same [`World`]:
//!
//! - **self-spawn**: a program started directly asks for N processes
//!   ([`WorldBuilder::procs`] or `CHORUS_PROCS=N`) and re-executes itself for ranks 1..N;
//! - **`chorus run -n N PROGRAM`**: the launcher starts every rank (see [`run_job`]);
//! - **existing launchers**: under `mpiexec`/`mpirun` (Open MPI, MPICH/Hydra) or Slurm's
//!   `srun`, rank and size come from their environment and rank 0 serves the rendezvous at
//!   `CHORUS_COORDINATOR=host:port`.
//!
//! In every case a rank that panics, returns an error from `main` or dies stops the whole
//! job quickly, and the failing rank and its cause are reported.
//!
//! ```no_run
//! // Started directly: spawns 3 more copies of this program (or CHORUS_PROCS of them).
//! // Started by `chorus run`, mpiexec or srun: joins the job they started.
//! let world = chorus_launch::WorldBuilder::new().procs(4).init()?;
//! println!("rank {} of {}", world.rank(), world.size());
//! # Ok::<(), chorus_launch::Error>(())
//! ```

#![warn(missing_docs)]

pub mod env;
mod error;
pub mod job;
mod watch;

pub use error::{Error, Result};

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use chorus_comm::{Secret, TransportPreference, World, WorldConfig};

pub use job::{Job, JobSpec, Outcome};
use env::{Launcher, Placement};


const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_WARN_AFTER: Duration = Duration::from_secs(60);

/// Joins the job this process belongs to, or forms a job of one process (see
/// [`WorldBuilder::init`]).
pub fn init() -> Result<World> {
    WorldBuilder::new().init()
}

/// Options for joining or starting an SPMD job.
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    procs: Option<usize>,
    prefix_output: bool,
    connect_timeout: Option<Duration>,
    warn_after: Option<Duration>,
    progress: bool,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WorldBuilder {
    /// Default options: one process unless a launcher or `CHORUS_PROCS` says otherwise.
    pub fn new() -> Self {
        WorldBuilder { procs: None, prefix_output: true, connect_timeout: None, warn_after: None, progress: false }
    }

    /// When the program was started directly, run the job on `n` processes: this one
    /// becomes rank 0 and starts `n - 1` copies of itself. `CHORUS_PROCS` overrides it;
    /// under a launcher it is ignored.
    pub fn procs(mut self, n: usize) -> Self {
        self.procs = Some(n.max(1));
        self
    }

    /// [`procs`](Self::procs) with one process per available core.
    pub fn procs_per_core(self) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        self.procs(cores)
    }

    /// Prefix the spawned ranks' output lines with `[rank] ` (default: on).
    pub fn prefix_output(mut self, on: bool) -> Self {
        self.prefix_output = on;
        self
    }

    /// When this process starts the other ranks, draw `ranks started: N/M` on stderr while
    /// they join (a terminal only), as `chorus run --progress` does. `CHORUS_PROGRESS=1`
    /// turns it on too.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// How long to wait for all ranks to connect (default 60 s, or
    /// `CHORUS_CONNECT_TIMEOUT` seconds).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a collective may wait before it logs which rank it is waiting for
    /// (default 60 s, or `CHORUS_WARN_AFTER` seconds).
    pub fn warn_after(mut self, after: Duration) -> Self {
        self.warn_after = Some(after);
        self
    }

    /// Joins the job.
    ///
    /// - Under `chorus run`, `mpiexec`/`mpirun` or `srun`, rank and size come from the
    ///   launcher's environment; with an external launcher rank 0 serves the rendezvous at
    ///   `CHORUS_COORDINATOR=host:port` and the secret comes from `CHORUS_SECRET`,
    ///   `CHORUS_SECRET_FILE` or `~/.chorus/secret` (created on first use).
    /// - Started directly with a process count above one, this process becomes rank 0 and
    ///   starts the other ranks; if any of them fails, the job stops and this process exits
    ///   with the failing rank's status after printing `rank N failed: cause`.
    /// - Otherwise the world has one process.
    pub fn init(self) -> Result<World> {
        let settings = chorus_comm::settings::settings()?;
        let connect_timeout = self.connect_timeout.or(settings.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let warn_after = self.warn_after.or(settings.warn_after).unwrap_or(DEFAULT_WARN_AFTER);
        let transport = TransportPreference::from_env()?;
        let config = |rank, size, coordinator: String, secret| WorldConfig {
            rank,
            size,
            coordinator,
            secret,
            transport,
            connect_timeout,
            warn_after,
            spin: None,
            single_copy: settings.single_copy,
        };
        if let Some(Placement { launcher, rank, size }) = env::detect()? {
            if size == 1 {
                return Ok(World::single());
            }
            let coordinator = settings.coordinator.clone().ok_or_else(|| {
                Error::Config(format!(
                    "rank {rank} of {size} was started by {launcher:?} but {} is not set; export {}=HOST:PORT (rank 0's host, a free port) to every rank",
                    env::COORDINATOR_ENV,
                    env::COORDINATOR_ENV
                ))
            })?;
            let secret = match (launcher, Secret::from_env()?) {
                (_, Some(secret)) => secret,
                (Launcher::Chorus, None) => {
                    return Err(Error::Config("a chorus launcher started this rank without CHORUS_SECRET".into()))
                }
                (_, None) => Secret::user_default()?,
            };
            if rank == 0 && launcher != Launcher::Chorus {
                serve_rendezvous_in_background(&coordinator, size, secret.clone(), connect_timeout)?;
            }
            return Ok(World::connect(config(rank, size, coordinator, secret))?);
        }
        let size = settings.procs.or(self.procs).unwrap_or(1);
        if size == 1 {
            return Ok(World::single());
        }
        let progress = self.progress || settings.progress;
        self_spawn(size, self.prefix_output, progress, connect_timeout, config)
    }
}

fn bind_coordinator(addr: &str) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|source| Error::Io { context: format!("rank 0 could not listen on {addr} for the rendezvous"), source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Io { context: "configuring the rendezvous listener".into(), source })?;
    Ok(listener)
}

/// Serves the rendezvous of a job of `size` ranks at `addr` (port 0 for any) on a thread
/// of its own, and returns the address ranks should use; failures reach the ranks as
/// refusals. The task layer's `Client::spmd` serves its jobs' rendezvous this way.
pub fn serve_rendezvous_in_background(addr: &str, size: usize, secret: Secret, timeout: Duration) -> Result<SocketAddr> {
    Ok(serve_rendezvous_counting(addr, size, secret, timeout)?.0)
}

/// [`serve_rendezvous_in_background`], with the count of ranks registered so far.
fn serve_rendezvous_counting(addr: &str, size: usize, secret: Secret, timeout: Duration) -> Result<(SocketAddr, Arc<AtomicUsize>)> {
    let joined = Arc::new(AtomicUsize::new(0));
    let counter = joined.clone();
    let listener = bind_coordinator(addr)?;
    let local = listener.local_addr().map_err(|source| Error::Io { context: "reading the rendezvous address".into(), source })?;
    std::thread::Builder::new()
        .name("chorus-rendezvous".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rendezvous runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("registering the rendezvous listener");
                if let Err(e) = chorus_comm::rendezvous::serve_counting(listener, size, secret, timeout, counter).await {
                    chorus_comm::diag::warn(&e.to_string());
                }
            });
        })
        .map_err(|source| Error::Io { context: "starting the rendezvous thread".into(), source })?;
    Ok((local, joined))
}

/// A fresh job secret and a rendezvous serving it, as chorus's own launchers start them.
struct Rendezvous {
    coordinator: String,
    secret: Secret,
    /// Ranks registered so far.
    joined: Arc<AtomicUsize>,
}

impl Rendezvous {
    fn start(bind: &str, size: usize, timeout: Duration) -> Result<Rendezvous> {
        let secret = Secret::generate()?;
        let (coordinator, joined) = serve_rendezvous_counting(bind, size, secret.clone(), timeout)?;
        Ok(Rendezvous { coordinator: coordinator.to_string(), secret, joined })
    }

    /// What every rank started for this job needs in its environment.
    fn rank_env(&self) -> Vec<(String, String)> {
        vec![
            (env::COORDINATOR_ENV.into(), self.coordinator.clone()),
            (chorus_comm::secret::SECRET_ENV.into(), self.secret.to_hex()),
        ]
    }
}

fn self_spawn(
    size: usize,
    prefix: bool,
    progress: bool,
    connect_timeout: Duration,
    config: impl Fn(usize, usize, String, Secret) -> WorldConfig,
) -> Result<World> {
    let rendezvous = Rendezvous::start("127.0.0.1:0", size, connect_timeout)?;
    let program = std::env::current_exe()
        .map_err(|source| Error::Io { context: "finding this program's executable to start the other ranks".into(), source })?;
    let spec = JobSpec {
        program,
        args: std::env::args_os().skip(1).collect(),
        env: rendezvous.rank_env(),
        ranks: 1..size,
        size,
        prefix,
    };
    // The ranks die with the thread that starts them, so a thread that lives as long as
    // the process starts and watches them.
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("chorus-ranks".into())
        .spawn(move || {
            let job = match Job::spawn(&spec) {
                Ok(job) => {
                    let _ = started_tx.send(Ok(()));
                    job
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            match job.wait() {
                Outcome::Success => {
                    let _ = done_tx.send(());
                }
                failed @ Outcome::Failed { code, .. } => {
                    eprintln!("{}", failed.report().expect("a failure has a report"));
                    std::process::exit(code.max(1));
                }
            }
        })
        .map_err(|source| Error::Io { context: "starting the rank monitor thread".into(), source })?;
    started_rx.recv().expect("the monitor reports the start")?;
    let bar = if progress { watch::StartupBar::start(size, rendezvous.joined.clone()) } else { None };
    let world = World::connect(config(0, size, rendezvous.coordinator, rendezvous.secret));
    drop(bar);
    let mut world = world?;
    // A lost rank is a failed rank: give the monitor time to report it and end the job.
    world.set_peer_lost_hook(std::sync::Arc::new(|_| std::thread::sleep(Duration::from_secs(3))));
    world.set_finalized_hook(Box::new(move || {
        let _ = done_rx.recv();
    }));
    Ok(world)
}

/// Options of `chorus run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Number of ranks.
    pub procs: usize,
    /// The program and its arguments.
    pub program: std::path::PathBuf,
    /// Arguments.
    pub args: Vec<std::ffi::OsString>,
    /// Prefix output lines with `[rank] `.
    pub prefix: bool,
    /// Where the rendezvous listens (`127.0.0.1:0` for a job on this host).
    pub coordinator_bind: String,
    /// Serve a dashboard of the job's ranks here (`chorus run --dashboard`).
    pub dashboard: Option<chorus_dashboard::Bind>,
    /// Draw a start-up bar of the ranks as they join (`chorus run --progress`).
    pub progress: bool,
}

/// Runs a whole job, as `chorus run` does: serves the rendezvous, starts every rank,
/// forwards their output and waits. The caller prints [`Outcome::report`].
pub fn run_job(options: &RunOptions) -> Result<Outcome> {
    if options.procs == 0 {
        return Err(Error::Config("a job needs at least one process (-n 1 or more)".into()));
    }
    let timeout = chorus_comm::settings::settings()?.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let rendezvous = Rendezvous::start(&options.coordinator_bind, options.procs, timeout)?;
    let mut env = rendezvous.rank_env();
    // With a dashboard, the ranks write their states where it reads them.
    let dir = std::env::temp_dir().join(format!("chorus-run-{}", std::process::id()));
    if options.dashboard.is_some() {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { context: format!("creating {}", dir.display()), source })?;
        env.push(("CHORUS_RANK_STATE_DIR".into(), dir.display().to_string()));
    }
    let spec = JobSpec {
        program: options.program.clone(),
        args: options.args.clone(),
        env,
        ranks: 0..options.procs,
        size: options.procs,
        prefix: options.prefix,
    };
    let name = options.program.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let view = Arc::new(watch::JobView::new(dir.clone(), rendezvous.coordinator.clone(), name, options.procs));
    // Before any rank starts: a dashboard address that is taken ends the job here.
    let dashboard = match &options.dashboard {
        Some(bind) => {
            let token = chorus_dashboard::token(&rendezvous.secret);
            let d = chorus_dashboard::Dashboard::serve(bind.clone(), token, view.clone()).map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                Error::Config(e.to_string())
            })?;
            chorus_comm::diag::info(&format!("Dashboard: {}", d.link()));
            Some(d)
        }
        None => None,
    };
    let job = Job::spawn(&spec)?;
    *view.pids.lock().expect("pids lock") = job.pids().to_vec();
    let bar = if options.progress { watch::StartupBar::start(options.procs, rendezvous.joined.clone()) } else { None };
    let outcome = job.wait();
    drop(bar);
    *view.outcome.lock().expect("outcome lock") = Some(outcome.clone());
    drop(dashboard);
    if options.dashboard.is_some() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(outcome)
}
