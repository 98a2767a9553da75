//! Starting clusters: [`LocalCluster`] (the embedded default), the cluster file of a
//! standing `chorus scheduler`, and the worker entry point behind `#[chorus::main]`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use chorus_comm::Secret;

use crate::settings::Limits;
use crate::client::Client;
use crate::scheduler::SchedulerConfig;
use crate::server::{ProgramPolicy, SchedulerServer, ServerConfig};
use crate::nanny::Nanny;
use crate::worker::{self, WorkerConfig};
use crate::{Error, Result};

/// If this process was started as a worker (by a cluster), runs the worker loop and
/// exits; otherwise returns at once. `#[chorus::main]` calls it first thing.
pub fn worker_entry() {
    match WorkerConfig::from_env() {
        Ok(None) => {}
        Ok(Some(config)) => {
            // A worker started by a local cluster dies with its driver.
            #[cfg(target_os = "linux")]
            unsafe {
                // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal and touches no memory.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            let code = match worker::run_worker(config) {
                Ok(()) => 0,
                Err(e) => {
                    chorus_comm::diag::error(&format!("the worker stopped: {e}"));
                    1
                }
            };
            std::process::exit(code);
        }
        Err(e) => {
            chorus_comm::diag::error(&format!("cannot start as a worker: {e}"));
            std::process::exit(2);
        }
    }
}

/// A scheduler in this process and worker processes of this program: the embedded
/// default, with no set-up.
///
/// The program's `main` must carry `#[chorus::main]`, so that the copies started as
/// workers run the worker loop instead of the program.
///
/// ```no_run
/// # fn main() -> chorus_tasks::Result<()> {
/// use chorus_tasks::LocalCluster;
/// let cluster = LocalCluster::builder().workers(2).threads_per_worker(1).start()?;
/// let client = cluster.client();
/// # Ok(()) }
/// ```
pub struct LocalCluster {
    server: SchedulerServer,
    secret: Secret,
    limits: Limits,
    nanny: Nanny,
    started_in: Duration,
}

/// Options of a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct LocalClusterBuilder {
    workers: usize,
    threads: u32,
    /// `None`: the machine's memory divided among the workers.
    memory_limit: Option<u64>,
    spill_dir: Option<PathBuf>,
    max_spill: Option<u64>,
    resources: Vec<(String, f64)>,
    program: Option<(PathBuf, Vec<OsString>)>,
    timeout: Duration,
    scheduler: SchedulerConfig,
    heartbeat_timeout: Duration,
    max_object: Option<u64>,
    env: Vec<(OsString, OsString)>,
    /// `None`: as `CHORUS_DASHBOARD` says; `Some(None)`: off.
    dashboard: Option<Option<chorus_dashboard::Bind>>,
}

impl Default for LocalClusterBuilder {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        LocalClusterBuilder {
            workers: cores,
            threads: 1,
            memory_limit: None,
            spill_dir: None,
            max_spill: None,
            resources: Vec::new(),
            program: None,
            timeout: Duration::from_secs(30),
            scheduler: SchedulerConfig::default(),
            heartbeat_timeout: Duration::from_secs(30),
            max_object: None,
            env: Vec::new(),
            dashboard: None,
        }
    }
}

impl LocalClusterBuilder {
    /// Number of worker processes (default: one per core).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Threads per worker (default 1).
    pub fn threads_per_worker(mut self, n: u32) -> Self {
        self.threads = n;
        self
    }

    /// Memory limit per worker in bytes (default: the machine's memory divided among
    /// the workers; 0 for none). At 60% of it in stored results a worker spills the
    /// least recently used to disk, at 70% of process memory it spills more, at 80% it
    /// starts no new task, and at 95% it is restarted (see [`crate::memory`]).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Where workers spill (each in a `worker-PID` directory of its own, removed when
    /// it exits; default: `chorus-spill` in the system's temporary directory).
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Bytes each worker may spill to disk at most (default: no cap but the disk's).
    /// A worker at its cap keeps new results in memory.
    pub fn max_spill(mut self, bytes: u64) -> Self {
        self.max_spill = Some(bytes);
        self
    }

    /// A custom resource every worker offers (tasks ask for it with
    /// [`TaskOptions::resource`](crate::TaskOptions::resource)).
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.resources.push((name.into(), amount));
        self
    }

    /// How many times a task may be on a worker that dies before it fails with a
    /// "killed worker" error (default 3).
    pub fn allowed_failures(mut self, n: u32) -> Self {
        self.scheduler.allowed_failures = n;
        self
    }

    /// A worker silent this long is considered lost (default 30 s).
    pub fn heartbeat_timeout(mut self, t: Duration) -> Self {
        self.heartbeat_timeout = t;
        self
    }

    /// The largest value (argument, result, scattered object) the driver and the
    /// workers accept, in bytes (default: `CHORUS_MAX_OBJECT`, else half the machine's
    /// memory). A larger one fails its own future with
    /// [`FailureKind::TooLarge`](crate::FailureKind::TooLarge).
    pub fn max_object(mut self, bytes: u64) -> Self {
        self.max_object = Some(bytes);
        self
    }

    /// Start workers from this program and arguments instead of the current executable
    /// (for test harnesses and tools; the program must call [`worker_entry`]).
    pub fn worker_program(mut self, program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        self.program = Some((program.into(), args));
        self
    }

    /// Sets an environment variable of the worker processes (they inherit the rest of
    /// this process's environment), like the `env` of Dask's `LocalCluster`: a setting
    /// such as `CHORUS_BLAS` for the workers alone.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Where to serve the dashboard: by default `127.0.0.1:8787`, or the next free port
    /// (`CHORUS_DASHBOARD` sets the default); an explicit address that is taken is an
    /// error at [`start`](Self::start).
    pub fn dashboard(mut self, addr: std::net::SocketAddr) -> Self {
        self.dashboard = Some(Some(chorus_dashboard::Bind::Explicit(addr)));
        self
    }

    /// Serves no dashboard.
    pub fn no_dashboard(mut self) -> Self {
        self.dashboard = Some(None);
        self
    }

    /// How long to wait for the workers to join (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Starts the scheduler and the workers, and waits until every worker has joined.
    pub fn start(self) -> Result<LocalCluster> {
        let t0 = Instant::now();
        if self.workers == 0 {
            return Err(Error::Config("a local cluster needs at least one worker".into()));
        }
        let memory_limit = self.memory_limit.unwrap_or_else(|| crate::memory::default_limit(self.workers));
        if memory_limit > 0 {
            // Here rather than in each worker, so that the error reaches the caller.
            crate::store::check_base(&self.spill_dir.clone().unwrap_or_else(crate::store::default_base))?;
        }
        let secret = Secret::generate()?;
        let mut limits = Limits::get()?;
        if let Some(max) = self.max_object {
            limits.max_object = max;
        }
        let dashboard = match self.dashboard.clone() {
            Some(d) => d,
            None => chorus_dashboard::Bind::from_setting(chorus_comm::settings::settings()?.dashboard),
        };
        let server = SchedulerServer::start(ServerConfig {
            dashboard,
            listen: "127.0.0.1:0".into(),
            unix: true,
            secret: secret.clone(),
            program: ProgramPolicy::ThisBinary,
            heartbeat_timeout: self.heartbeat_timeout,
            scheduler: self.scheduler.clone(),
            limits,
        })?;
        let address = server.local_address().unwrap_or_else(|| server.address().to_string());
        let (program, args) = match self.program.clone() {
            Some(p) => p,
            None => (
                std::env::current_exe()
                    .map_err(|source| Error::Io { context: "finding this program's executable".into(), source })?,
                std::env::args_os().skip(1).collect(),
            ),
        };
        let config = WorkerConfig {
            scheduler: address,
            secret: secret.clone(),
            nthreads: self.threads,
            resources: self.resources.clone(),
            memory_limit,
            listen: None,
            spill_dir: self.spill_dir.clone(),
            max_spill: self.max_spill,
        };
        let program_name = program.display().to_string();
        let spill_base = config.spill_base();
        let env = self.env.clone();
        let max_object = limits.max_object;
        let spawn = move |_: usize| {
            config
                .command(&program, &args)
                .env(crate::settings::MAX_OBJECT_ENV, max_object.to_string())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .spawn()
        };
        let mut children = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let child = spawn(i).map_err(|source| Error::Spawn { rank: i, program: program_name.clone(), source })?;
            children.push(child);
        }
        let kill_all = |children: &mut Vec<Child>| {
            for c in children {
                let _ = c.kill();
                let _ = c.wait();
                if let Some(base) = &spill_base {
                    crate::store::remove_ended(base, c.id());
                }
            }
        };
        let joined = server.wait_for_workers(self.workers, self.timeout, || {
            for c in children.iter_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(Error::WorkersDidNotJoin(format!(
                        "a worker process of {program_name} exited ({status}) before joining the cluster; does its `main` carry #[chorus::main]?"
                    )));
                }
            }
            Ok(())
        });
        if let Err(e) = joined {
            kill_all(&mut children);
            return Err(e);
        }
        let nanny = Nanny::start(children, spill_base, spawn);
        let cluster = LocalCluster { server, secret, limits, nanny, started_in: t0.elapsed() };
        if let Some(d) = cluster.server.dashboard() {
            match d.displaced() {
                Some(port) => chorus_comm::diag::info(&format!("port {port} is in use; Dashboard: {}", d.link())),
                None => chorus_comm::diag::info(&format!("Dashboard: {}", d.link())),
            }
        }
        Ok(cluster)
    }
}

impl LocalCluster {
    /// A builder with the defaults: one single-threaded worker per core.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder::default()
    }

    /// A cluster with the defaults.
    pub fn new() -> Result<LocalCluster> {
        LocalCluster::builder().start()
    }

    /// A client of this cluster, talking to the scheduler in-process.
    pub fn client(&self) -> Client {
        Client::local(&self.server, self.secret.clone(), self.limits)
    }

    /// The dashboard's link, `http://127.0.0.1:8787/status` (or the port it took), if
    /// it serves one.
    pub fn dashboard_link(&self) -> Option<&str> {
        self.server.dashboard_link()
    }

    /// Writes the task stream the scheduler keeps as a Chrome trace (see
    /// [`Client::export_trace`]); a cluster does this itself when it stops if
    /// `CHORUS_TRACE=FILE` is set.
    pub fn write_trace(&self, path: &Path) -> Result<()> {
        let snap = self.server.snapshot(chorus_dashboard::model::SnapshotQuery::default())?;
        chorus_dashboard::report::write_chrome_trace(&snap, path).map_err(|source| Error::Io { context: format!("writing the trace {}", path.display()), source })
    }

    /// What the dashboard shows now; see [`SchedulerServer::snapshot`].
    pub fn snapshot(&self, query: chorus_dashboard::model::SnapshotQuery) -> Result<chorus_dashboard::model::Snapshot> {
        self.server.snapshot(query)
    }

    /// The scheduler's TCP address, for [`Client::connect_with_secret`] from elsewhere.
    pub fn address(&self) -> &str {
        self.server.address()
    }

    /// The cluster secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// How long [`start`](LocalClusterBuilder::start) took, until every worker joined.
    pub fn startup_time(&self) -> Duration {
        self.started_in
    }

    /// The cluster's state: workers, their tasks and memory (what `chorus status` shows).
    pub fn status(&self) -> Result<crate::proto::Status> {
        self.server.status()
    }

    /// Bytes the scheduler received over its connections (see
    /// [`SchedulerServer::bytes_received`]).
    pub fn scheduler_bytes_received(&self) -> u64 {
        self.server.bytes_received()
    }

    /// Process ids of the workers (to watch or, in tests, to kill them).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.nanny.pids()
    }

    /// Workers started in place of ones that exceeded their memory limit.
    pub fn worker_restarts(&self) -> u64 {
        self.nanny.restarts()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Ok(Some(path)) = chorus_comm::settings::settings().map(|s| s.trace.clone()) {
            if let Err(e) = self.write_trace(&path) {
                chorus_comm::diag::warn(&format!("the trace {} was not written: {e}", path.display()));
            }
        }
        self.server.shutdown();
        let deadline = Instant::now() + Duration::from_secs(2);
        self.nanny.stop(|children| for c in children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
    }
}

/// What `chorus scheduler` writes for clients and workers: its address and the secret,
/// in an owner-only file.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    /// The scheduler's TCP address.
    pub address: String,
    /// The cluster secret.
    pub secret: Secret,
}

impl ClusterFile {
    /// `~/.chorus/cluster`.
    pub fn default_path() -> Result<PathBuf> {
        let home = std::env::var_os("HOME").ok_or_else(|| Error::Config("HOME is not set".into()))?;
        Ok(Path::new(&home).join(".chorus").join("cluster"))
    }

    /// Writes it with mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { context: format!("creating {}", dir.display()), source })?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| Error::Io { context: format!("writing {}", tmp.display()), source })?;
        writeln!(f, "address={}\nsecret={}", self.address, self.secret.to_hex())
            .map_err(|source| Error::Io { context: format!("writing {}", tmp.display()), source })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io { context: format!("writing {}", path.display()), source })
    }

    /// Reads one.
    pub fn read(path: &Path) -> Result<ClusterFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading the cluster file {} (start `chorus scheduler` first, or set CHORUS_SECRET)", path.display()),
            source,
        })?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                .map(str::trim)
                .ok_or_else(|| Error::Config(format!("{} has no `{name}=` line", path.display())))
        };
        Ok(ClusterFile { address: field("address")?.to_string(), secret: Secret::from_hex(field("secret")?)? })
    }

    /// Reads `~/.chorus/cluster`.
    pub fn read_default() -> Result<ClusterFile> {
        ClusterFile::read(&ClusterFile::default_path()?)
    }
}

/// Asks the scheduler at `address` for the cluster's state (what `chorus status` prints).
pub fn remote_status(address: &str, secret: &Secret) -> Result<crate::proto::Status> {
    use crate::proto::{FromObserver, ToObserver};
    match observe(address, secret, FromObserver::Status, "its status")? {
        ToObserver::Status(st) => Ok(st),
        other => Err(unexpected(address, &other)),
    }
}

/// Asks the scheduler at `address` for what its dashboard shows.
pub fn remote_snapshot(
    address: &str,
    secret: &Secret,
    query: chorus_dashboard::model::SnapshotQuery,
) -> Result<chorus_dashboard::model::Snapshot> {
    use crate::proto::{FromObserver, ToObserver};
    match observe(address, secret, FromObserver::Snapshot(query), "a snapshot")? {
        ToObserver::Snapshot(s) => Ok(*s),
        other => Err(unexpected(address, &other)),
    }
}

/// Asks the scheduler at `address` for the graph behind `roots`.
pub(crate) fn remote_graph(address: &str, secret: &Secret, roots: Vec<crate::proto::TaskId>) -> Result<Vec<crate::proto::GraphNode>> {
    use crate::proto::{FromObserver, ToObserver};
    match observe(address, secret, FromObserver::Graph(roots), "a task graph")? {
        ToObserver::Graph(g) => Ok(g),
        other => Err(unexpected(address, &other)),
    }
}

fn unexpected(address: &str, m: &crate::proto::ToObserver) -> Error {
    Error::Config(format!("the scheduler at {address} answered with the wrong message ({m:?})"))
}

/// One request over an observer connection, and its answer.
fn observe(address: &str, secret: &Secret, ask: crate::proto::FromObserver, what: &str) -> Result<crate::proto::ToObserver> {
    use crate::net;
    use crate::proto::{kind, wire, FromObserver, ToObserver};
    use std::io::Write;
    let check = net::same_build_check(false, |_| false);
    let (mut s, _) = net::connect(address, secret, kind::OBSERVER, &check, Duration::from_secs(10))?;
    let io = |source| Error::Io { context: format!("asking {address} for {what}"), source };
    let mut request = wire::encode(&FromObserver::Register);
    wire::encode_into(&ask, &mut request);
    s.write_all(&request).map_err(io)?;
    let mut buf = Vec::new();
    wire::read::<ToObserver>(&mut s, &mut buf).map_err(|source| Error::Protocol { peer: format!("the scheduler at {address}"), source })
}
