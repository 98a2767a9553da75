//! What scheduler, workers and clients say to each other.
//!
//! Each connection has one role, fixed by its handshake: a worker's, a client's or an
//! observer's connection to the scheduler, or a data connection to a worker's (or a
//! driver's) data server. Each role and direction has a message type of its own —
//! [`FromWorker`] / [`ToWorker`], [`FromClient`] / [`ToClient`], [`FromObserver`] /
//! [`ToObserver`], [`DataRequest`] / [`DataReply`] — framed as [`wire`] describes, so a
//! message of another role is a protocol error that closes the connection.
//!
//! Control messages are small and bounded; bulk bytes (task arguments and results of
//! any size) never travel inside them. Small values ride along inline (up to
//! [`INLINE_MAX`] bytes); larger ones stay where they are and are fetched over data
//! connections as byte streams.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;

mod ids;
pub mod wire;

pub use ids::{ClientId, Instance, TaskId, WorkerId};
pub use wire::{Message, WireError, MAX_FRAME};

/// Objects up to this size travel with the completion message (and inside the compute
/// messages of their dependents) instead of being fetched from the worker that holds them.
pub const INLINE_MAX: usize = 1024;

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
/// One argument of a task: a serialized value, the result of another task, or a large
/// value its driver keeps for the workers to fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ArgSlot {
    /// The value, encoded (see `crate::codec`).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The result of this task.
    Future(TaskId),
    /// A value above the inline threshold, kept in its driver's object store under `id`
    /// and fetched from the driver's data server by the worker that runs the task.
    Stored {
        /// Its key in the driver's store.
        id: TaskId,
        /// Its encoded size.
        size: u64,
        /// Where the driver serves it (shared by every task of the driver).
        at: Arc<DataAddress>,
    },
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
                ArgSlot::Value(_) | ArgSlot::Stored { .. } => None,
            })
            .collect();
        if let TaskKind::ActorCall { actor, .. } = self.kind {
            deps.push(actor);
        }
        deps.sort_unstable();
        deps.dedup();
        deps
    }

    /// Whether an argument waits in the driver's store, which the driver must keep until
    /// the scheduler forgets the task (see [`ToClient::Forgotten`]).
    pub fn has_stored_args(&self) -> bool {
        self.args.iter().any(|a| matches!(a, ArgSlot::Stored { .. }))
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
    /// Which assignment of the task this is; the worker's reports carry it back.
    pub instance: Instance,
    /// Where its inputs are.
    pub deps: Vec<DepSource>,
}

/// A task that ended well on a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    /// The task whose result is now in the worker's store.
    pub id: TaskId,
    /// The assignment that ran it.
    pub instance: Instance,
    /// Size of the encoded result, in bytes.
    pub size: u64,
    /// The result itself when at most [`INLINE_MAX`] bytes.
    pub inline: Option<Arc<Vec<u8>>>,
    /// When and where it ran.
    pub timing: Timing,
}

/// When and where a task ran, as its worker measured it: what the dashboard's task
/// stream, performance reports and traces draw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// When the function started, in microseconds since the Unix epoch (worker clock).
    pub start_us: u64,
    /// How long the function ran, in microseconds.
    pub micros: u64,
    /// How long fetching its inputs from other workers and the driver took, in
    /// microseconds, just before it started (0 when every input was local).
    pub fetch_micros: u64,
    /// Bytes of inputs fetched from other workers and the driver.
    pub fetched: u64,
    /// How long reading its spilled inputs back from this worker's spill directory took,
    /// in microseconds, just before the fetch (0 when every input was in memory).
    pub unspill_micros: u64,
    /// Bytes of inputs read back from the spill directory.
    pub unspilled: u64,
    /// The executor thread that ran it, `0..nthreads`; actors' calls are `nthreads`.
    pub thread: u32,
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
        format!("{} (pid {} on {})", self.id, self.pid, self.host)
    }
}

/// A task that failed on a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    /// The task.
    pub id: TaskId,
    /// The assignment that failed.
    pub instance: Instance,
    /// What happened (messages are cut to [`MAX_ERROR_TEXT`]).
    pub error: TaskError,
    /// When and where it ran (zero when it never started).
    pub timing: Timing,
}

/// The longest panic or error message carried across processes; longer ones are cut,
/// keeping their start, so that no message of a task can outgrow a frame.
pub const MAX_ERROR_TEXT: usize = 64 << 10;

/// A worker's messages to the scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message: who the worker is.
    Register(WorkerInfo),
    /// Tasks that ended well.
    Finished(Vec<Finished>),
    /// Tasks that failed.
    Failed(Vec<Failed>),
    /// A task could not start because these inputs could not be fetched from the holders
    /// it was given.
    MissingInputs {
        /// The task.
        id: TaskId,
        /// Its assignment.
        instance: Instance,
        /// The inputs that were not found.
        missing: Vec<TaskId>,
    },
    /// Answer to [`ToWorker::Steal`]: these had not started and were dropped.
    Stolen(Vec<TaskId>),
    /// The worker is alive: what it uses, once a second.
    Heartbeat(Heartbeat),
    /// The worker is about to exit, and why: its last message. It went past 95% of its
    /// memory limit; its parent (the nanny) starts a new one.
    Leaving(String),
}

/// A worker's figures, sent once a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Bytes of stored objects in memory.
    pub stored: u64,
    /// Bytes of stored objects whose only copy is on disk.
    pub spilled: u64,
    /// Objects written to disk so far, and read back.
    pub spills: u64,
    /// Objects read back from disk so far.
    pub unspills: u64,
    /// Why it stopped spilling, if it did (a full or unwritable disk).
    pub spill_error: Option<String>,
    /// Bytes written to spill files so far, and the microseconds the writes took.
    pub spill_io: (u64, u64),
    /// Bytes read back from spill files so far, and the microseconds the reads took.
    pub unspill_io: (u64, u64),
    /// Resident set size of the process.
    pub rss: u64,
    /// CPU time the process has used (user + system), in microseconds.
    pub cpu_micros: u64,
    /// Bytes of task data it has sent to peers and clients.
    pub sent: u64,
    /// Bytes of task data it has fetched from peers and drivers.
    pub received: u64,
    /// The SPMD ranks it runs now, and what each is blocked in.
    pub ranks: Vec<chorus_comm::probe::RankState>,
}

impl Message for FromWorker {
    const TAG: u8 = 0x57;
    const NAME: &'static str = "a worker's message to the scheduler";
}

/// The scheduler's messages to a worker.
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

impl Message for ToWorker {
    const TAG: u8 = 0x77;
    const NAME: &'static str = "the scheduler's message to a worker";
}

/// A client's messages to the scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromClient {
    /// First message of a client.
    Register,
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
    /// A DataFrame query the client ran, for the dashboard's Queries page.
    Query(Box<chorus_dashboard::model::QueryRecord>),
}

impl Message for FromClient {
    const TAG: u8 = 0x43;
    const NAME: &'static str = "a client's message to the scheduler";
}

/// A finished task's result, as its client learns of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    /// The task.
    pub id: TaskId,
    /// The result, when at most [`INLINE_MAX`] bytes.
    pub inline: Option<Arc<Vec<u8>>>,
    /// The workers that hold it.
    pub holders: Vec<WorkerId>,
}

/// The scheduler's messages to a client.
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
    /// Results are ready.
    Done(Vec<Done>),
    /// A task failed for good.
    Erred {
        /// Which.
        id: TaskId,
        /// Why.
        error: TaskError,
    },
    /// The scheduler no longer keeps these tasks, not even as lineage: the large
    /// arguments the client stored for them may go.
    Forgotten(Vec<TaskId>),
}

impl Message for ToClient {
    const TAG: u8 = 0x63;
    const NAME: &'static str = "the scheduler's message to a client";
}

/// An observer's (`chorus status`) messages to the scheduler.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromObserver {
    /// First message.
    Register,
    /// Asks for the cluster's state.
    Status,
    /// Asks for what the dashboard shows.
    Snapshot(chorus_dashboard::model::SnapshotQuery),
    /// Asks for the task graph behind these tasks (for `visualize`).
    Graph(Vec<TaskId>),
}

impl Message for FromObserver {
    const TAG: u8 = 0x4f;
    const NAME: &'static str = "an observer's message to the scheduler";
}

/// The scheduler's answers to an observer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToObserver {
    /// The cluster's state.
    Status(Status),
    /// What the dashboard shows.
    Snapshot(Box<chorus_dashboard::model::Snapshot>),
    /// A task graph.
    Graph(Vec<GraphNode>),
}

/// One task of a graph, as `visualize` draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// The task.
    pub id: TaskId,
    /// Its function.
    pub name: String,
    /// The tasks whose results it takes.
    pub deps: Vec<TaskId>,
    /// `waiting`, `queued`, `processing`, `memory`, `released` or `erred`.
    pub state: String,
}

impl Message for ToObserver {
    const TAG: u8 = 0x6f;
    const NAME: &'static str = "the scheduler's message to an observer";
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
    /// Bytes of its results only on disk (spilled), at the last heartbeat.
    pub spilled: u64,
    /// Results it has spilled to disk so far.
    pub spills: u64,
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

/// Requests on a data connection, to a worker's or a driver's data server.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataRequest {
    /// Send these objects: one [`DataReply::Object`] or [`DataReply::Missing`] each, in
    /// order.
    Fetch(Vec<TaskId>),
    /// Store this object (scatter): `size` bytes follow the frame as a byte stream,
    /// answered by [`DataReply::Stored`] or [`DataReply::Refused`].
    Put {
        /// Its id.
        id: TaskId,
        /// Its size in bytes.
        size: u64,
    },
    /// Sent first on a connection within one host: the client's process id and probe
    /// word ([`chorus_comm::cma::Probe`]), so that the server can check it may read the
    /// client's memory. Answered by [`DataReply::Attached`].
    Attach {
        /// The client's process id.
        pid: u32,
        /// Where its probe word is.
        address: u64,
        /// The probe word's value.
        value: u64,
    },
    /// Store this object by copying `size` bytes at `address` out of the client's
    /// memory (sent only after [`DataReply::Attached`] said the server can). The client
    /// keeps the bytes there until the answer: [`DataReply::Stored`],
    /// [`DataReply::Refused`], or [`DataReply::Unreadable`] (then it sends a `Put`).
    PutAt {
        /// Its id.
        id: TaskId,
        /// Its size in bytes.
        size: u64,
        /// Where the bytes are in the client's memory.
        address: u64,
    },
    /// Like `Fetch`, but large objects in the server's memory may be answered with
    /// [`DataReply::ObjectAt`], for the client to copy out of the server's memory. The
    /// server keeps those objects where it said until the client's next request
    /// ([`DataRequest::Taken`] when it has nothing else to ask).
    FetchAt(Vec<TaskId>),
    /// The client has copied every object the last `FetchAt` lent it.
    Taken,
}

impl Message for DataRequest {
    const TAG: u8 = 0x44;
    const NAME: &'static str = "a data request";
}

/// Answers of a data server.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataReply {
    /// The object follows the frame as `size` bytes.
    Object {
        /// Which.
        id: TaskId,
        /// Its size in bytes.
        size: u64,
    },
    /// This server does not hold the object.
    Missing(TaskId),
    /// The object of the last `Put` is stored.
    Stored,
    /// The object of the last `Put` was not stored (its bytes were read and dropped).
    Refused {
        /// Which.
        id: TaskId,
        /// Why, for the error of its future.
        reason: String,
    },
    /// The answer to [`DataRequest::Attach`]: the server's process id and probe word,
    /// and whether it could read the client's.
    Attached {
        /// The server's process id.
        pid: u32,
        /// Where its probe word is.
        address: u64,
        /// The probe word's value.
        value: u64,
        /// Whether the server may read the client's memory (so `PutAt` works).
        reads_you: bool,
    },
    /// The object is `size` bytes at `address` in the server's memory (an answer to
    /// `FetchAt`); nothing follows on the stream.
    ObjectAt {
        /// Which.
        id: TaskId,
        /// Its size in bytes.
        size: u64,
        /// Where it is in the server's memory.
        address: u64,
    },
    /// The object of the last `PutAt` could not be copied out of the client's memory;
    /// send it with `Put`.
    Unreadable {
        /// Which.
        id: TaskId,
        /// The system's reason.
        reason: String,
    },
}

impl Message for DataReply {
    const TAG: u8 = 0x64;
    const NAME: &'static str = "a data server's reply";
}
