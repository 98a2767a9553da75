//! What scheduler, workers and clients say to each other.
//!
//! Messages are serde enums encoded with postcard, one per length-prefixed frame
//! (`u32` little-endian length, then the body). Frames are bounded by [`MAX_FRAME`];
//! objects larger than a frame travel as several [`DataMsg::Chunk`]s.

use std::io::{Read, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::tasks::error::TaskError;

/// Identifies a task and the object it produces. The high 16 bits are the submitting
/// client's number, so clients allocate ids without asking the scheduler.
pub type TaskId = u64;
/// A worker's number, assigned by the scheduler when it joins.
pub type WorkerId = u32;
/// A client's number, assigned by the scheduler when it connects.
pub type ClientId = u16;

/// The largest frame any chorus task-protocol reader accepts.
pub const MAX_FRAME: usize = 64 << 20;
/// Objects up to this size travel with the completion message (and inside the compute
/// messages of their dependents) instead of being fetched from the worker that holds them.
pub const INLINE_MAX: usize = 1024;
/// Objects are sent in pieces of this size.
pub const CHUNK: usize = 4 << 20;

/// Handshake kinds carried in [`chorus_comm::handshake::Role::Member`].
pub mod kind {
    /// The scheduler.
    pub const SCHEDULER: u8 = 1;
    /// A worker's connection to the scheduler.
    pub const WORKER: u8 = 2;
    /// A driver's connection to the scheduler.
    pub const CLIENT: u8 = 3;
    /// A connection to a worker's data server (from a peer worker or a client).
    pub const DATA: u8 = 4;
    /// A worker's data server answering.
    pub const DATA_SERVER: u8 = 5;
    /// `chorus status` and other read-only observers.
    pub const OBSERVER: u8 = 6;
}

/// How much of a resource a task needs, or a worker has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Threads the task occupies (default 1).
    pub cpus: u32,
    /// Named custom resources (`("GPU", 1.0)`), matched by name.
    pub custom: Vec<(String, f64)>,
}

impl Resources {
    /// Whether `self` (a worker's total) can ever hold `need`.
    pub fn covers(&self, need: &Resources) -> bool {
        need.cpus <= self.cpus
            && need.custom.iter().all(|(name, amount)| {
                self.custom.iter().any(|(n, have)| n == name && *have >= *amount)
            })
    }
}

/// Scheduling options of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Higher runs first among ready tasks.
    pub priority: i32,
    /// How many times a task that fails (panic or `Err`) is run again.
    pub retries: u32,
    /// What the task needs while it runs.
    pub resources: Resources,
    /// Run only on this worker (used by `run_on_all` and SPMD jobs).
    pub pin: Option<WorkerId>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions { priority: 0, retries: 0, resources: Resources { cpus: 1, custom: Vec::new() }, pin: None }
    }
}

impl TaskOptions {
    /// Default options: priority 0, no retries, one thread.
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// Higher runs first among ready tasks.
    pub fn priority(mut self, p: i32) -> TaskOptions {
        self.priority = p;
        self
    }

    /// Runs the task again up to `n` times if it panics or returns `Err`.
    pub fn retries(mut self, n: u32) -> TaskOptions {
        self.retries = n;
        self
    }

    /// Threads the task occupies on its worker.
    pub fn cpus(mut self, n: u32) -> TaskOptions {
        self.resources.cpus = n;
        self
    }

    /// Needs `amount` of the named custom resource (workers offer them with
    /// `--resources NAME=AMOUNT`).
    pub fn resource(mut self, name: &str, amount: f64) -> TaskOptions {
        self.resources.custom.push((name.to_string(), amount));
        self
    }

    /// Runs only on this worker.
    pub fn on_worker(mut self, worker: WorkerId) -> TaskOptions {
        self.pin = Some(worker);
        self
    }
}
/// One argument of a task: a serialized value, or the result of another task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ArgSlot {
    /// The value, postcard-encoded.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The result of this task.
    Future(TaskId),
}

/// What a task runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskKind {
    /// A `#[chorus::remote]` function.
    Call {
        /// Its registered name.
        func: String,
    },
    /// Creates an actor (`#[chorus::actor]`): the result is the actor object, which stays
    /// on its worker.
    ActorNew {
        /// The registered name of the actor type.
        class: String,
    },
    /// Calls a method of an existing actor; calls to one actor run in submission order.
    ActorCall {
        /// The task that created the actor.
        actor: TaskId,
        /// The registered name of the method.
        method: String,
    },
    /// One rank of an SPMD job (`#[chorus::spmd]`) started by `Client::spmd`.
    Spmd {
        /// The registered name of the function.
        func: String,
        /// This task's rank.
        rank: u32,
        /// The job's size.
        size: u32,
        /// Rendezvous coordinator of the job.
        coordinator: String,
    },
}

impl TaskKind {
    /// The name users know the task by, for error messages.
    pub fn name(&self) -> &str {
        match self {
            TaskKind::Call { func } | TaskKind::Spmd { func, .. } => func,
            TaskKind::ActorNew { class } => class,
            TaskKind::ActorCall { method, .. } => method,
        }
    }
}

/// A task as submitted by a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Its id (and the id of its result).
    pub id: TaskId,
    /// What it runs.
    pub kind: TaskKind,
    /// Its arguments, in order.
    pub args: Vec<ArgSlot>,
    /// How it is scheduled.
    pub options: TaskOptions,
}

impl TaskSpec {
    /// The tasks whose results this one needs (the actor it calls included).
    pub fn dependencies(&self) -> Vec<TaskId> {
        let mut deps: Vec<TaskId> = self
            .args
            .iter()
            .filter_map(|a| match a {
                ArgSlot::Future(id) => Some(*id),
                ArgSlot::Value(_) => None,
            })
            .collect();
        if let TaskKind::ActorCall { actor, .. } = self.kind {
            deps.push(actor);
        }
        deps.sort_unstable();
        deps.dedup();
        deps
    }
}

/// Where a worker finds one input of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepSource {
    /// The input's id.
    pub id: TaskId,
    /// The bytes, when small enough to travel with the task.
    pub inline: Option<Arc<Vec<u8>>>,
    /// Workers that hold it.
    pub holders: Vec<WorkerId>,
}

/// A task sent to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComputeTask {
    /// The task.
    pub spec: Arc<TaskSpec>,
    /// Where its inputs are.
    pub deps: Vec<DepSource>,
}

/// A task that ended well on a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    /// Which.
    pub id: TaskId,
    /// Size of the encoded result.
    pub size: u64,
    /// The result itself when at most [`INLINE_MAX`] bytes.
    pub inline: Option<Arc<Vec<u8>>>,
    /// How long the function ran, in microseconds.
    pub micros: u64,
}

/// How a worker can be reached for data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataAddress {
    /// `ip:port` of its TCP data listener.
    pub tcp: String,
    /// Path of its Unix-socket data listener.
    pub unix: Option<String>,
    /// Host identity (boot id + network namespace): Unix sockets are only used when equal.
    pub host_key: String,
}

/// What a worker tells about itself when it joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its number (filled in by the scheduler).
    pub id: WorkerId,
    /// Threads that run tasks.
    pub nthreads: u32,
    /// What it offers (`cpus` = `nthreads`).
    pub resources: Resources,
    /// Memory limit in bytes (0 = none).
    pub memory_limit: u64,
    /// Where its data server listens.
    pub data: DataAddress,
    /// Host name, for people.
    pub host: String,
    /// Process id, for people.
    pub pid: u32,
}

impl WorkerInfo {
    /// "worker 3 (pid 1234 on host)".
    pub fn describe(&self) -> String {
        format!("worker {} (pid {} on {})", self.id, self.pid, self.host)
    }
}

/// Messages to the scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToScheduler {
    /// First message of a worker.
    RegisterWorker(WorkerInfo),
    /// First message of a client.
    RegisterClient,
    /// First message of an observer (`chorus status`).
    RegisterObserver,
    /// New tasks.
    Submit(Vec<TaskSpec>),
    /// The client dropped its last future of these.
    Release(Vec<TaskId>),
    /// The client cancels these.
    Cancel(Vec<TaskId>),
    /// The client stored these objects (id, size) on a worker itself.
    Scattered {
        /// Where.
        worker: WorkerId,
        /// What.
        objects: Vec<(TaskId, u64)>,
    },
    /// Tasks that ended well.
    Finished(Vec<Finished>),
    /// A task that failed.
    Failed {
        /// Which.
        id: TaskId,
        /// Why.
        error: TaskError,
    },
    /// A task could not start because an input could not be fetched.
    MissingInputs {
        /// The task.
        id: TaskId,
        /// The inputs that were not found.
        missing: Vec<TaskId>,
    },
    /// Answer to [`ToWorker::Steal`]: these had not started and were dropped.
    Stolen(Vec<TaskId>),
    /// A worker is alive; memory it uses.
    Heartbeat {
        /// Bytes held in its object store.
        stored: u64,
        /// Resident set size of the process.
        rss: u64,
    },
    /// An observer asks for the cluster's state.
    Status,
}

/// Messages to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Accepted, with this number.
    Welcome(WorkerId),
    /// Run these.
    Compute(Vec<ComputeTask>),
    /// Drop these objects (and actors).
    Delete(Vec<TaskId>),
    /// Give these back if they have not started.
    Steal(Vec<TaskId>),
    /// Do not start these.
    Cancel(Vec<TaskId>),
    /// The workers of the cluster, whose data servers this one may fetch from.
    Peers(Vec<WorkerInfo>),
    /// Leave the cluster.
    Shutdown,
}

/// Messages to a client (and observers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToClient {
    /// Accepted, with this number, and the workers there are now.
    Welcome {
        /// The client's number.
        client: ClientId,
        /// The workers.
        workers: Vec<WorkerInfo>,
    },
    /// The set of workers changed.
    Workers(Vec<WorkerInfo>),
    /// A task's result is ready.
    Done {
        /// Which.
        id: TaskId,
        /// The result, when small.
        inline: Option<Arc<Vec<u8>>>,
        /// Who holds it.
        holders: Vec<WorkerId>,
    },
    /// A task failed for good.
    Erred {
        /// Which.
        id: TaskId,
        /// Why.
        error: TaskError,
    },
    /// The cluster's state, for observers.
    Status(Status),
}

/// One worker's line in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Who.
    pub info: WorkerInfo,
    /// Tasks assigned to it and not finished.
    pub processing: u64,
    /// Objects it holds.
    pub objects: u64,
    /// Bytes of those objects.
    pub stored: u64,
    /// Its resident set size at the last heartbeat.
    pub rss: u64,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The workers.
    pub workers: Vec<WorkerStatus>,
    /// Tasks the scheduler knows.
    pub tasks: u64,
    /// Tasks waiting for inputs or for a free worker.
    pub waiting: u64,
    /// Connected clients.
    pub clients: u64,
}

/// Messages on data connections (peer workers and clients to a worker's data server).
#[derive(Debug, Serialize, Deserialize)]
pub enum DataMsg {
    /// Send these objects.
    Fetch(Vec<TaskId>),
    /// Store this object (scatter); followed by its chunks.
    Put {
        /// Its id.
        id: TaskId,
        /// Its total size.
        size: u64,
    },
    /// Answer to fetch: this object follows in chunks totalling `size` bytes, or is
    /// missing (`size` = `u64::MAX`).
    Object {
        /// Which.
        id: TaskId,
        /// Total size.
        size: u64,
    },
    /// A piece of the object announced last.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// All `Put`s of a batch were stored.
    Stored,
}

/// Encodes `msg` as one frame appended to `out`.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Writing into a Vec cannot fail, and every message type here is serializable.
    *out = postcard::to_extend(msg, std::mem::take(out)).expect("task-protocol messages always encode");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = Vec::new();
    encode_into(msg, &mut v);
    v
}

/// Writes one frame.
pub fn write_msg<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    w.write_all(&encode(msg))
}

/// Reads one frame and decodes it; a malformed or oversized frame is an
/// `InvalidData` error, never a panic.
pub fn read_msg<T: for<'de> Deserialize<'de>>(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is larger than the limit of {MAX_FRAME}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    postcard::from_bytes(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed message: {e}")))
}
