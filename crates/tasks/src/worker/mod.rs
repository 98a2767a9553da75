//! The worker process: runs tasks, keeps their results, serves them to peers.
//!
//! Threads, and why: the main thread reads the scheduler's messages and queues tasks;
//! `nthreads` executor threads take the highest-priority task whose resources fit, fetch
//! any input it lacks straight from the worker holding it, run it, and report; each
//! actor has a thread of its own so its calls run one at a time in arrival order; the
//! data server answers peers and clients. Reports are written by the thread that has them
//! (no thread sits between a finished task and the socket), batched as the `reporter`
//! module describes: what piles up during a write leaves with it, and an executor
//! running quick tasks back to back sends its reports in batches.
//!
//! One exception saves a thread hand-off on round trips: a worker with one executor and
//! nothing running runs a lone task of a function known to be quick on the main thread
//! itself (see `Worker::quick_one`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chorus_comm::Secret;

use crate::settings::Limits;
use crate::data::{self, DataPool, Fetched, ObjectStore};
use crate::memory;
use crate::settings::human;
use crate::store::{SpillConfig, SpillDir};
use crate::error::{FailureKind, TaskError};
use crate::net;
use crate::proto::{
    kind, wire, ArgSlot, ComputeTask, DataAddress, Failed, Finished, FromWorker, Heartbeat, Resources, TaskId, TaskKind, Timing, ToWorker,
    WireError, WorkerId, WorkerInfo, INLINE_MAX, MAX_ERROR_TEXT,
};
use crate::registry::{registry, Fault};
use crate::{Error, Result};

mod queue;
mod reporter;

use queue::Queue;
use reporter::Reporter;

/// Environment variables a worker process is started with.
pub mod env {
    /// Address of the scheduler; its presence makes `#[chorus::main]` run a worker.
    pub const SCHEDULER: &str = "CHORUS_WORKER_SCHEDULER";
    /// Threads that run tasks.
    pub const NTHREADS: &str = "CHORUS_WORKER_NTHREADS";
    /// Memory limit in bytes.
    pub const MEMORY_LIMIT: &str = "CHORUS_WORKER_MEMORY_LIMIT";
    /// Custom resources, `NAME=AMOUNT,NAME=AMOUNT`.
    pub const RESOURCES: &str = "CHORUS_WORKER_RESOURCES";
    /// The address the worker's data server binds (default: the address used to reach
    /// the scheduler, port 0).
    pub const LISTEN: &str = "CHORUS_WORKER_LISTEN";
    /// Where the worker makes its spill directory.
    pub const SPILL_DIR: &str = "CHORUS_WORKER_SPILL_DIR";
    /// Bytes the worker may spill at most.
    pub const MAX_SPILL: &str = "CHORUS_WORKER_MAX_SPILL";
}

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `host:port` or `unix:/path` of the scheduler.
    pub scheduler: String,
    /// The cluster secret.
    pub secret: Secret,
    /// Threads that run tasks.
    pub nthreads: u32,
    /// Named custom resources it offers.
    pub resources: Vec<(String, f64)>,
    /// The worker's memory limit in bytes (0: none, and no spilling); see
    /// [`crate::memory`] for what happens at 60, 70, 80 and 95% of it.
    pub memory_limit: u64,
    /// IP for the data server; `None` picks the one that reaches the scheduler.
    pub listen: Option<String>,
    /// Where the worker makes its spill directory (`worker-PID` inside it); `None`: the
    /// system's temporary directory, `chorus-spill` in it.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Bytes the worker may spill to disk at most (`None`: as much as the disk holds).
    pub max_spill: Option<u64>,
}

impl WorkerConfig {
    /// Reads the configuration a cluster put in the environment (`CHORUS_WORKER_*`, see
    /// [`chorus_comm::settings`]); `None` when this process is not a worker.
    pub fn from_env() -> Result<Option<WorkerConfig>> {
        let w = &chorus_comm::settings::settings()?.worker;
        let Some(scheduler) = w.scheduler.clone() else { return Ok(None) };
        let secret = Secret::from_env()?.ok_or_else(|| {
            Error::Config(format!("{} is set but the cluster secret is not (CHORUS_SECRET or CHORUS_SECRET_FILE)", env::SCHEDULER))
        })?;
        let resources = match &w.resources {
            Some(v) => parse_resources(v)?,
            None => Vec::new(),
        };
        Ok(Some(WorkerConfig {
            scheduler,
            secret,
            nthreads: w.nthreads.unwrap_or(1),
            resources,
            memory_limit: w.memory_limit.unwrap_or(0),
            listen: w.listen.clone(),
            spill_dir: w.spill_dir.clone(),
            max_spill: w.max_spill,
        }))
    }
}

impl WorkerConfig {
    /// Where a worker of this configuration makes its spill directory (`worker-PID`
    /// inside it), or `None` when it has no memory limit and so never spills. A nanny
    /// passes it to [`Nanny::start`](crate::Nanny::start) to remove the directory of a
    /// worker that could not remove it itself.
    pub fn spill_base(&self) -> Option<std::path::PathBuf> {
        (self.memory_limit > 0).then(|| self.spill_dir.clone().unwrap_or_else(crate::store::default_base))
    }

    /// A command that starts `program` (whose `main` calls [`worker_entry`]) as a worker
    /// with this configuration: the environment [`WorkerConfig::from_env`] reads.
    ///
    /// [`worker_entry`]: crate::worker_entry
    pub fn command(&self, program: &std::path::Path, args: &[std::ffi::OsString]) -> std::process::Command {
        let resources: Vec<String> = self.resources.iter().map(|(n, a)| format!("{n}={a}")).collect();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env(env::SCHEDULER, &self.scheduler)
            .env(chorus_comm::secret::SECRET_ENV, self.secret.to_hex())
            .env(env::NTHREADS, self.nthreads.to_string())
            .env(env::MEMORY_LIMIT, self.memory_limit.to_string())
            .env(env::RESOURCES, resources.join(","))
            .env_remove(chorus_launch::env::PROCS_ENV)
            .stdin(std::process::Stdio::null());
        if let Some(ip) = &self.listen {
            cmd.env(env::LISTEN, ip);
        }
        if let Some(dir) = &self.spill_dir {
            cmd.env(env::SPILL_DIR, dir);
        }
        if let Some(max) = self.max_spill {
            cmd.env(env::MAX_SPILL, max.to_string());
        }
        cmd
    }
}

/// Parses `GPU=1,MEM=4`.
pub fn parse_resources(s: &str) -> Result<Vec<(String, f64)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (name, amount) = p
                .split_once('=')
                .ok_or_else(|| Error::Config(format!("resource `{p}` should be NAME=AMOUNT, e.g. GPU=1")))?;
            let amount: f64 =
                amount.trim().parse().map_err(|_| Error::Config(format!("resource `{p}`: `{amount}` is not a number")))?;
            Ok((name.trim().to_string(), amount))
        })
        .collect()
}

struct ActorCell {
    calls: mpsc::Sender<ComputeTask>,
}

struct Worker {
    id: WorkerId,
    describe: String,
    secret: Secret,
    queue: Mutex<Queue>,
    wake: Condvar,
    store: Arc<ObjectStore>,
    pool: DataPool,
    peers: Mutex<HashMap<WorkerId, DataAddress>>,
    reporter: Reporter,
    actors: Mutex<FxHashMap<TaskId, ActorCell>>,
    cancelled: Mutex<FxHashSet<TaskId>>,
    memory_limit: u64,
    /// It is leaving for memory (see `leave_for_memory`).
    leaving: std::sync::atomic::AtomicBool,
    /// Where it spills (removed when `run_worker` returns, or before a memory exit).
    spill_dir: Option<std::path::PathBuf>,
    limits: Limits,
    nthreads: u32,
    /// Bytes of inputs fetched from peers and drivers.
    received: std::sync::atomic::AtomicU64,
    /// For each function, how long its runs take, in microseconds: the last run if it
    /// was slower than the estimate, otherwise the estimate moves a quarter of the way
    /// towards it (see [`Worker::quick_one`]).
    run_micros: Mutex<FxHashMap<String, u64>>,
}

/// A function whose runs take at most this many microseconds may run on the thread that
/// reads the scheduler's messages (see [`Worker::quick_one`]).
const QUICK_RUN_MICROS: u64 = 100;

/// A task's inputs by id.
type Inputs = FxHashMap<TaskId, Arc<Vec<u8>>>;

/// What fetching a task's inputs took.
#[derive(Default, Clone, Copy)]
struct Fetch {
    micros: u64,
    bytes: u64,
    /// Reading spilled inputs back from this worker's disk.
    unspill_micros: u64,
    unspilled: u64,
}

/// A panic's message, location and backtrace.
type PanicDetails = (String, Option<String>, Option<String>);
/// How a task ended: its encoded result (`None` for an actor's creation), or a fault
/// with the panic's location and backtrace.
type Outcome = Result<Option<Vec<u8>>, (Fault, Option<String>, Option<String>)>;

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<PanicDetails>> = const { RefCell::new(None) };
    /// The executor thread's number, for [`Timing::thread`].
    static THREAD: Cell<u32> = const { Cell::new(0) };
    /// This thread is an executor, which holds its reports while quick tasks run (see
    /// [`reporter`]); every other thread sends them at once.
    static HOLDS_REPORTS: Cell<bool> = const { Cell::new(false) };
}

/// Panics inside tasks become errors on their futures; the default hook would print
/// them on the worker's stderr as well, so inside tasks only their details are kept.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TASK.with(|t| t.get()) {
            return default(info);
        }
        let msg = crate::panic_message(info.payload());
        let loc = info.location().map(|l| l.to_string());
        let bt = std::backtrace::Backtrace::capture();
        let bt = (bt.status() == std::backtrace::BacktraceStatus::Captured).then(|| bt.to_string());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, loc, bt)));
    }));
}

/// Runs `f` as user code: a panic becomes a [`Fault`]-like error with its details.
fn run_user<T>(f: impl FnOnce() -> Result<T, Fault>) -> Result<T, (Fault, Option<String>, Option<String>)> {
    IN_TASK.with(|t| t.set(true));
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(false));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(fault)) => Err((fault, None, None)),
        Err(_) => {
            let (msg, loc, bt) =
                LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| ("unknown panic".into(), None, None));
            Err((Fault { kind: FailureKind::Panic, message: msg }, loc, bt))
        }
    }
}

/// Runs a worker until the scheduler goes away or tells it to stop.
pub fn run_worker(config: WorkerConfig) -> Result<()> {
    install_panic_hook();
    let limits = Limits::get()?;
    let peer_check = net::same_build_check(true, |k| k == kind::WORKER || k == kind::CLIENT);
    let check = move |h: &chorus_comm::handshake::Hello| match h.role {
        chorus_comm::handshake::Role::Member { kind: kind::SCHEDULER, .. } => peer_check(h),
        other => Err(chorus_comm::Refusal::Unexpected(format!("expected the scheduler, found {other:?}"))),
    };
    let (stream, _) = net::connect(&config.scheduler, &config.secret, kind::WORKER, &check, Duration::from_secs(30))?;
    let listen_ip = config.listen.clone().unwrap_or_else(|| stream.local_ip());
    let listeners = net::Listeners::bind(&format!("{listen_ip}:0"), true)?;
    let data = DataAddress {
        tcp: listeners.tcp_addr(),
        unix: listeners.unix_path(),
        host_key: chorus_comm::link::host_key(),
    };
    let nthreads = config.nthreads.max(1);
    let info = WorkerInfo {
        id: WorkerId(0),
        nthreads,
        resources: Resources { cpus: nthreads, custom: config.resources.clone() },
        memory_limit: config.memory_limit,
        data,
        host: chorus_comm::diag::hostname(),
        pid: std::process::id(),
    };
    let mut writer = stream.try_clone().map_err(|source| Error::Io { context: "socket".into(), source })?;
    // Once the worker is up, an idle worker looks for its next task for a little while
    // before sleeping (see `net::SpinRead`).
    let this: Arc<std::sync::OnceLock<Arc<Worker>>> = Arc::default();
    let idle = {
        let this = this.clone();
        move |_| this.get().is_some_and(|w| w.idle())
    };
    // Buffered: a batch of messages costs one read, not two per message.
    let mut reader = std::io::BufReader::with_capacity(1 << 16, net::SpinRead::new(stream, limits.spin, idle));
    std::io::Write::write_all(&mut writer, &wire::encode(&FromWorker::Register(info.clone())))
        .map_err(|source| Error::Io { context: "registering with the scheduler".into(), source })?;
    let mut buf = Vec::new();
    let protocol = |source| Error::Protocol { peer: format!("the scheduler at {}", config.scheduler), source };
    let id = match wire::read::<ToWorker>(&mut reader, &mut buf) {
        Ok(ToWorker::Welcome(id)) => {
            chorus_comm::diag::set_process_tag(id.to_string());
            id
        }
        Ok(other) => {
            let detail = format!("it answered the registration with {other:?}");
            return Err(protocol(WireError::Malformed { what: "a welcome", detail }));
        }
        Err(e) => return Err(protocol(e)),
    };
    let spill_dir = match config.spill_base() {
        Some(base) => Some(SpillDir::create(&base)?),
        None => None,
    };
    let store = Arc::new(match &spill_dir {
        Some(dir) => ObjectStore::spilling(SpillConfig {
            dir: dir.path().to_path_buf(),
            target: memory::target(config.memory_limit),
            max_spill: config.max_spill.unwrap_or(u64::MAX),
        }),
        None => ObjectStore::default(),
    });
    let _socket_dir = data::serve(listeners, config.secret.clone(), store.clone(), limits)?;
    let worker = Arc::new(Worker {
        id,
        describe: WorkerInfo { id, ..info.clone() }.describe(),
        secret: config.secret.clone(),
        queue: Mutex::new(Queue::new(nthreads, config.resources.clone())),
        wake: Condvar::new(),
        store,
        pool: DataPool::new(config.secret.clone(), limits),
        peers: Mutex::new(HashMap::new()),
        reporter: Reporter::new(writer),
        actors: Mutex::new(FxHashMap::default()),
        cancelled: Mutex::new(FxHashSet::default()),
        memory_limit: config.memory_limit,
        leaving: Default::default(),
        spill_dir: spill_dir.as_ref().map(|d| d.path().to_path_buf()),
        limits,
        nthreads,
        received: Default::default(),
        run_micros: Mutex::default(),
    });
    let _ = this.set(worker.clone());
    for i in 0..nthreads {
        let w = worker.clone();
        net::spawn(&format!("chorus-exec-{i}"), move || {
            THREAD.set(i);
            w.executor_loop()
        })?;
    }
    {
        let w = worker.clone();
        net::spawn("chorus-memory", move || w.monitor())?;
    }
    loop {
        let msg = match wire::read::<ToWorker>(&mut reader, &mut buf) {
            Ok(m) => m,
            // Leaving for memory: the scheduler closed the connection on being told, and
            // the monitor ends the process with the status the nanny looks for.
            Err(_) if worker.leaving.load(std::sync::atomic::Ordering::SeqCst) => loop {
                std::thread::park();
            },
            // The scheduler is gone: a worker has nothing left to do.
            Err(WireError::Closed) => return Ok(()),
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(protocol(e)),
        };
        match msg {
            ToWorker::Compute(tasks) => worker.accept(tasks),
            ToWorker::Delete(ids) => {
                let mut actors = worker.actors.lock().expect("actors lock");
                for id in ids {
                    worker.store.remove(id);
                    actors.remove(&id);
                }
            }
            ToWorker::Steal(ids) => {
                let ids: FxHashSet<TaskId> = ids.into_iter().collect();
                let removed = worker.queue.lock().expect("queue lock").remove(&ids);
                worker.reporter.send(FromWorker::Stolen(removed));
            }
            ToWorker::Cancel(ids) => {
                let ids: FxHashSet<TaskId> = ids.into_iter().collect();
                worker.queue.lock().expect("queue lock").remove(&ids);
                worker.cancelled.lock().expect("cancel lock").extend(ids);
            }
            ToWorker::Peers(infos) => {
                *worker.peers.lock().expect("peers lock") = infos.into_iter().map(|i| (i.id, i.data)).collect();
            }
            ToWorker::Shutdown => return Ok(()),
            ToWorker::Welcome(_) => {}
        }
    }
}

impl Worker {
    /// Watches the process's memory every 100 ms and acts on it (see [`crate::memory`]),
    /// and sends a heartbeat every second.
    fn monitor(&self) {
        let beats_every = (Duration::from_secs(1).as_millis() / memory::MONITOR_EVERY.as_millis()) as u32;
        for reading in 1u32.. {
            std::thread::sleep(memory::MONITOR_EVERY);
            // A task thought quick that runs long keeps its executor's held reports no
            // longer than this.
            self.reporter.flush_held();
            let mut rss = memory::rss_bytes();
            let mut step = memory::assess(self.memory_limit, rss);
            if step.terminate {
                self.leave_for_memory(rss);
            }
            if step.spill > 0 && self.store.spill_bytes(step.spill) > 0 {
                memory::trim();
                rss = memory::rss_bytes();
                step = memory::assess(self.memory_limit, rss);
            }
            self.pause(step.pause, rss);
            if reading % beats_every == 0 {
                let figures = self.store.figures();
                self.reporter.send(FromWorker::Heartbeat(Heartbeat {
                    stored: figures.memory,
                    spilled: figures.spilled,
                    spills: figures.spills,
                    unspills: figures.unspills,
                    spill_error: self.store.spill_error(),
                    spill_io: (figures.spill_bytes, figures.spill_micros),
                    unspill_io: (figures.unspill_bytes, figures.unspill_micros),
                    rss,
                    cpu_micros: cpu_micros(),
                    sent: self.store.served.load(std::sync::atomic::Ordering::Relaxed),
                    received: self.received.load(std::sync::atomic::Ordering::Relaxed),
                    ranks: chorus_comm::probe::ranks(),
                }));
            }
        }
    }

    /// Starts or stops new tasks as memory crosses 80% of the limit.
    fn pause(&self, over: bool, rss: u64) {
        let mut q = self.queue.lock().expect("queue lock");
        if q.paused == over {
            return;
        }
        q.paused = over;
        if over {
            chorus_comm::diag::warn(&format!(
                "{}: memory use {} is above {}% of the limit of {}; not starting tasks until it drops",
                self.describe,
                human(rss),
                memory::PAUSE,
                human(self.memory_limit)
            ));
        }
        self.wake.notify_all();
    }

    /// Past 95% of the limit: tells the scheduler why, removes the spill directory and
    /// exits for the nanny to start a new worker.
    fn leave_for_memory(&self, rss: u64) -> ! {
        let reason = format!(
            "exceeded its memory limit: it used {} of {} (over {}%) and was restarted",
            human(rss),
            human(self.memory_limit),
            memory::TERMINATE
        );
        chorus_comm::diag::error(&format!("{} {reason}", self.describe));
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
        self.reporter.send_and_wait(FromWorker::Leaving(reason));
        if let Some(dir) = &self.spill_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(memory::MEMORY_EXIT_CODE);
    }

    fn accept(self: &Arc<Self>, tasks: Vec<ComputeTask>) {
        let mut q = self.queue.lock().expect("queue lock");
        for task in tasks {
            if let TaskKind::ActorCall { actor, .. } = task.spec.kind {
                drop(q);
                self.to_actor(actor, task);
                q = self.queue.lock().expect("queue lock");
                continue;
            }
            q.push(task);
        }
        let here = self.quick_one(&mut q);
        let q_idle = q.idle > 0;
        drop(q);
        match here {
            Some(task) => {
                let need = task.spec.options.resources.clone();
                // Reported as executor 0's (this thread's `THREAD` is 0), which is idle.
                self.run(task);
                self.queue.lock().expect("queue lock").give(&need);
            }
            None if q_idle => self.wake.notify_all(),
            None => {}
        }
    }

    /// The task this thread, the one reading the scheduler's messages, runs itself rather
    /// than handing it to an executor, which saves a thread wake-up and a context switch
    /// on every round trip of a lone short task.
    ///
    /// The worker has one executor (the default: a process per core) and nothing runs,
    /// so a task read meanwhile could not start before this one ends anyway; it is the
    /// only queued task; its inputs are all here in memory; and its function's runs took
    /// at most [`QUICK_RUN_MICROS`], so the other messages that arrive meanwhile
    /// (deletions, steals, actor calls) wait no longer than that. A function's first run
    /// is always on the executor, and one slow run sends the next back there.
    fn quick_one(&self, q: &mut Queue) -> Option<ComputeTask> {
        if self.nthreads != 1 || q.heap.len() != 1 || q.running > 0 || q.paused {
            return None;
        }
        let task = &q.heap.peek()?.task;
        let local = || {
            task.deps.iter().all(|d| d.inline.is_some() || self.store.in_memory(d.id))
                && !task.spec.args.iter().any(|a| matches!(a, ArgSlot::Stored { .. }))
        };
        if self.is_quick(task) && local() {
            q.pop_fitting()
        } else {
            None
        }
    }

    /// Nothing queued and nothing running.
    fn idle(&self) -> bool {
        let q = self.queue.lock().expect("queue lock");
        q.heap.is_empty() && q.running == 0
    }

    /// Hands a task's report on: held on an executor thread, sent at once from any other.
    fn deliver(&self, msg: FromWorker) {
        if HOLDS_REPORTS.get() {
            self.reporter.hold(msg)
        } else {
            self.reporter.send(msg)
        }
    }

    /// Whether `task` calls a function whose runs took at most [`QUICK_RUN_MICROS`].
    fn is_quick(&self, task: &ComputeTask) -> bool {
        let TaskKind::Call { func } = &task.spec.kind else { return false };
        self.run_micros.lock().expect("run times lock").get(func.as_str()).is_some_and(|&us| us <= QUICK_RUN_MICROS)
    }

    /// Notes that a run of `func` took `micros`, for [`Self::quick_one`].
    fn note_run(&self, func: &str, micros: u64) {
        let mut runs = self.run_micros.lock().expect("run times lock");
        match runs.get_mut(func) {
            Some(us) if micros >= *us => *us = micros,
            Some(us) => *us = (*us * 3 + micros) / 4,
            None => {
                runs.insert(func.to_owned(), micros);
            }
        }
    }

    fn to_actor(self: &Arc<Self>, actor: TaskId, task: ComputeTask) {
        let sent = self.actors.lock().expect("actors lock").get(&actor).map(|a| a.calls.send(task.clone()).is_ok());
        if sent != Some(true) {
            let e = self.error(&task, FailureKind::WorkerLost, "the actor is not on this worker (it was released or failed)".into());
            self.reporter.send(FromWorker::Failed(vec![Failed { id: task.spec.id, instance: task.instance, error: e, timing: Timing::default() }]));
        }
    }

    /// Runs tasks until the process ends. Reports are held while the next task is known
    /// to be quick and sent before anything that may not be (see [`reporter`]).
    fn executor_loop(self: Arc<Self>) {
        HOLDS_REPORTS.set(true);
        loop {
            let task = {
                let mut q = self.queue.lock().expect("queue lock");
                loop {
                    if let Some(t) = q.pop_fitting() {
                        break t;
                    }
                    if self.reporter.has_held() {
                        drop(q);
                        self.reporter.flush_held();
                        q = self.queue.lock().expect("queue lock");
                        continue;
                    }
                    q.idle += 1;
                    q = self.wake.wait(q).expect("queue lock");
                    q.idle -= 1;
                }
            };
            if !self.is_quick(&task) || self.reporter.held_enough() {
                self.reporter.flush_held();
            }
            let need = task.spec.options.resources.clone();
            self.run(task);
            let mut q = self.queue.lock().expect("queue lock");
            q.give(&need);
            if q.idle > 0 {
                drop(q);
                self.wake.notify_all();
            }
        }
    }

    fn error(&self, task: &ComputeTask, kind: FailureKind, mut message: String) -> TaskError {
        if message.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            let total = message.len();
            message.truncate(cut);
            message.push_str(&format!("… (cut to {cut} of {total} bytes)"));
        }
        let mut e = TaskError::new(kind, task.spec.kind.name(), message);
        e.worker = Some(self.describe.clone());
        e
    }

    /// Gets every input of `task`: inline, local, or fetched from the holders; and the
    /// large arguments its driver keeps, fetched from the driver.
    fn inputs(&self, task: &ComputeTask) -> Result<(Inputs, Fetch), Missing> {
        let begun = Instant::now();
        let mut fetched_bytes = 0u64;
        let (mut unspill_micros, mut unspilled) = (0u64, 0u64);
        let mut have = FxHashMap::with_capacity_and_hasher(task.deps.len(), Default::default());
        let mut wanted: HashMap<WorkerId, Vec<TaskId>> = HashMap::new();
        for d in &task.deps {
            if let Some(b) = &d.inline {
                have.insert(d.id, b.clone());
            } else if let Some((b, read_micros)) = self.store.get_read(d.id) {
                if read_micros > 0 {
                    unspill_micros += read_micros;
                    unspilled += b.len() as u64;
                }
                have.insert(d.id, b);
            } else if let Some(h) = d.holders.iter().find(|h| **h != self.id) {
                wanted.entry(*h).or_default().push(d.id);
            }
        }
        for (holder, ids) in wanted {
            let addr = self.peers.lock().expect("peers lock").get(&holder).cloned();
            let got = addr.and_then(|a| self.pool.fetch(&a, &ids).ok());
            for (id, fetched) in ids.iter().zip(got.into_iter().flatten()) {
                match fetched {
                    Fetched::Object(b) => {
                        fetched_bytes += b.len() as u64;
                        self.store.insert(*id, b.clone());
                        have.insert(*id, b);
                    }
                    Fetched::TooLarge(why) => return Err(Missing::Fault(FailureKind::TooLarge, format!("input {id}: {why}"))),
                    Fetched::Missing => {}
                }
            }
        }
        let missing: Vec<TaskId> = task.deps.iter().map(|d| d.id).filter(|id| !have.contains_key(id)).collect();
        if !missing.is_empty() {
            return Err(Missing::Inputs(missing));
        }
        for (index, arg) in task.spec.args.iter().enumerate() {
            let ArgSlot::Stored { id, size, at } = arg else { continue };
            if have.contains_key(id) {
                continue;
            }
            let fetched = self.pool.fetch(at, &[*id]).map_err(|e| e.to_string()).and_then(|mut f| match f.pop() {
                Some(Fetched::Object(b)) => Ok(b),
                Some(Fetched::TooLarge(why)) => Err(why),
                _ => Err("the driver no longer holds it".into()),
            });
            match fetched {
                Ok(b) => {
                    fetched_bytes += b.len() as u64;
                    have.insert(*id, b);
                }
                Err(why) => {
                    let kind = if *size > self.limits.max_object { FailureKind::TooLarge } else { FailureKind::DataLost };
                    let message = format!("argument {index} ({size} bytes, kept by the driver at {}) could not be fetched: {why}", at.tcp);
                    return Err(Missing::Fault(kind, message));
                }
            }
        }
        let fetch = if fetched_bytes == 0 {
            Fetch { unspill_micros, unspilled, ..Fetch::default() }
        } else {
            self.received.fetch_add(fetched_bytes, std::sync::atomic::Ordering::Relaxed);
            let micros = (begun.elapsed().as_micros() as u64).saturating_sub(unspill_micros);
            Fetch { micros, bytes: fetched_bytes, unspill_micros, unspilled }
        };
        Ok((have, fetch))
    }

    fn run(self: &Arc<Self>, task: ComputeTask) {
        let id = task.spec.id;
        if self.cancelled.lock().expect("cancel lock").remove(&id) {
            return;
        }
        let (inputs, fetch) = match self.inputs(&task) {
            Ok(i) => i,
            Err(missing) => return self.missing(&task, missing),
        };
        let args = arg_bytes(&task, &inputs);
        let reg = registry();
        let started = Instant::now();
        let outcome: Outcome = match &task.spec.kind {
            TaskKind::Call { func } => match reg.functions.get(func.as_str()) {
                Some(entry) => run_user(|| (entry.call)(&args)).map(Some),
                None => Err((unknown(func, "function", "#[chorus::remote]"), None, None)),
            },
            TaskKind::ActorNew { class } => match reg.actors.get(class.as_str()) {
                Some(entry) => run_user(|| (entry.create)(&args)).map(|obj| {
                    self.start_actor(id, obj);
                    None
                }),
                None => Err((unknown(class, "actor type", "#[chorus::actor]"), None, None)),
            },
            TaskKind::Spmd { func, rank, size, coordinator } => match reg.spmd.get(func.as_str()) {
                Some(entry) => {
                    let settings = match chorus_comm::settings::settings() {
                        Ok(s) => s,
                        Err(e) => {
                            let fault = Fault { kind: FailureKind::Error, message: e.to_string() };
                            return self.report(&task, Err((fault, None, None)), started, fetch);
                        }
                    };
                    let config = chorus_comm::WorldConfig {
                        rank: *rank as usize,
                        size: *size as usize,
                        coordinator: coordinator.clone(),
                        secret: self.secret.clone(),
                        transport: settings.transport,
                        connect_timeout: Duration::from_secs(60),
                        warn_after: Duration::from_secs(60),
                        spin: None,
                        single_copy: settings.single_copy,
                    };
                    run_user(|| {
                        let world = chorus_comm::World::connect(config).map_err(|e| Fault {
                            kind: FailureKind::Error,
                            message: format!("joining the SPMD job as rank {rank} of {size}: {e}"),
                        })?;
                        let world = Arc::new(world);
                        let out = (entry.call)(&world, &args)?;
                        let world = Arc::into_inner(world).ok_or_else(|| Fault {
                            kind: FailureKind::Error,
                            message: format!("SPMD function {func} kept a clone of its World after returning"),
                        })?;
                        world.finalize().map_err(|e| Fault { kind: FailureKind::Error, message: e.to_string() })?;
                        Ok(out)
                    })
                    .map(Some)
                }
                None => Err((unknown(func, "SPMD function", "#[chorus::spmd]"), None, None)),
            },
            TaskKind::ActorCall { .. } => unreachable!("actor calls run on the actor's thread"),
        };
        self.report(&task, outcome, started, fetch);
    }

    fn report(
        &self,
        task: &ComputeTask,
        outcome: Outcome,
        started: Instant,
        fetch: Fetch,
    ) {
        let id = task.spec.id;
        let micros = started.elapsed().as_micros() as u64;
        if let TaskKind::Call { func } = &task.spec.kind {
            self.note_run(func, micros);
        }
        let timing = Timing {
            start_us: chorus_comm::diag::unix_micros().saturating_sub(micros),
            micros,
            fetch_micros: fetch.micros,
            fetched: fetch.bytes,
            unspill_micros: fetch.unspill_micros,
            unspilled: fetch.unspilled,
            thread: THREAD.get(),
        };
        let instance = task.instance;
        match outcome {
            Ok(Some(bytes)) if bytes.len() as u64 > self.limits.max_object => {
                let e = self.error(task, FailureKind::TooLarge, format!("its result: {}", self.limits.too_large(bytes.len() as u64)));
                self.deliver(FromWorker::Failed(vec![Failed { id, instance, error: e, timing }]));
            }
            Ok(Some(bytes)) => {
                let size = bytes.len() as u64;
                if self.memory_limit > 0 && size > self.memory_limit {
                    chorus_comm::diag::warn(&format!(
                        "{}: the result of task `{}` ({id}) is {}, more than the memory limit of {}; it is kept, and spilled when it is not in use",
                        self.describe,
                        task.spec.kind.name(),
                        human(size),
                        human(self.memory_limit)
                    ));
                }
                let bytes = Arc::new(bytes);
                let inline = (bytes.len() <= INLINE_MAX).then(|| bytes.clone());
                self.store.insert(id, bytes);
                self.deliver(FromWorker::Finished(vec![Finished { id, instance, size, inline, timing }]));
            }
            // An actor's creation: the object stays on its thread; its future's value is `()`.
            Ok(None) => {
                let inline = Some(Arc::new(Vec::new()));
                self.deliver(FromWorker::Finished(vec![Finished { id, instance, size: 0, inline, timing }]))
            }
            Err((fault, location, backtrace)) => {
                let mut e = self.error(task, fault.kind, fault.message);
                e.location = location;
                e.backtrace = backtrace;
                self.deliver(FromWorker::Failed(vec![Failed { id, instance, error: e, timing }]));
            }
        }
    }

    /// Reports a task whose inputs could not all be had.
    fn missing(&self, task: &ComputeTask, missing: Missing) {
        let (id, instance) = (task.spec.id, task.instance);
        match missing {
            Missing::Inputs(missing) => self.deliver(FromWorker::MissingInputs { id, instance, missing }),
            Missing::Fault(kind, message) => {
                let error = self.error(task, kind, message);
                self.deliver(FromWorker::Failed(vec![Failed { id, instance, error, timing: Timing::default() }]));
            }
        }
    }

    fn start_actor(self: &Arc<Self>, id: TaskId, mut obj: Box<dyn Any + Send>) {
        let (tx, rx) = mpsc::channel::<ComputeTask>();
        self.actors.lock().expect("actors lock").insert(id, ActorCell { calls: tx });
        let w = self.clone();
        let started = net::spawn(&format!("chorus-actor-{:x}", id.0), move || {
            THREAD.set(w.nthreads);
            // Ends when the actor is deleted (its sender dropped).
            for call in rx {
                let TaskKind::ActorCall { method, .. } = &call.spec.kind else { continue };
                let begun = Instant::now();
                let (inputs, fetch) = match w.inputs(&call) {
                    Ok(i) => i,
                    Err(missing) => {
                        w.missing(&call, missing);
                        continue;
                    }
                };
                let args = arg_bytes(&call, &inputs);
                let outcome = match registry().methods.get(method.as_str()) {
                    Some(entry) => run_user(|| (entry.call)(&mut *obj, &args)).map(Some),
                    None => Err((unknown(method, "actor method", "#[chorus::actor]"), None, None)),
                };
                w.report(&call, outcome, begun, fetch);
            }
        });
        if started.is_err() {
            self.actors.lock().expect("actors lock").remove(&id);
        }
    }
}

/// Why a task's inputs are not all there.
enum Missing {
    /// These results were not where the scheduler said: it finds them again.
    Inputs(Vec<TaskId>),
    /// An input or argument cannot be had at all: the task fails.
    Fault(FailureKind, String),
}

/// The bytes of each argument: its value, or the result or stored value it names.
fn arg_bytes<'a>(task: &'a ComputeTask, inputs: &'a FxHashMap<TaskId, Arc<Vec<u8>>>) -> Vec<&'a [u8]> {
    task.spec
        .args
        .iter()
        .map(|a| match a {
            ArgSlot::Value(v) => v.as_slice(),
            ArgSlot::Future(d) | ArgSlot::Stored { id: d, .. } => inputs[d].as_slice(),
        })
        .collect()
}

fn unknown(name: &str, what: &str, attr: &str) -> Fault {
    Fault {
        kind: FailureKind::UnknownFunction,
        message: format!(
            "no {what} named `{name}` is registered in this worker's binary; mark it with {attr} and start the workers from the same build as the driver"
        ),
    }
}



/// CPU time this process has used, user and system, in microseconds.
fn cpu_micros() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}
