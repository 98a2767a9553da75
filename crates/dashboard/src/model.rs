//! What the dashboard shows: plain data, filled in by whoever runs the cluster (the
//! task scheduler, or `chorus run` for an SPMD job without one).
//!
//! Every type here is what the JSON API returns, field for field, so the README's API
//! section documents these.

use serde::{Deserialize, Serialize};

pub use chorus_comm::probe::{RankState, RankWait};

/// Everything the pages show at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, in microseconds since the Unix epoch.
    pub now_us: u64,
    /// The cluster.
    pub cluster: ClusterInfo,
    /// Workers connected now.
    pub workers: Vec<WorkerRow>,
    /// Workers that left, the latest last (at most [`DEPARTED_KEPT`]).
    pub departed: Vec<DepartedWorker>,
    /// Tasks by function, in the order the functions were first seen.
    pub groups: Vec<GroupRow>,
    /// Finished and failed tasks with a sequence number of at least the `since` asked
    /// for, oldest first (a bounded window: older ones are gone).
    pub events: Vec<TaskEvent>,
    /// The sequence number the next task event will get: ask for `since = next_event`
    /// to get only what is new.
    pub next_event: u64,
    /// Totals over the cluster's life.
    pub totals: Totals,
    /// SPMD jobs, the latest last (at most [`JOBS_KEPT`]).
    pub spmd: Vec<SpmdJob>,
    /// DataFrame queries drivers ran, the latest last (at most [`QUERIES_KEPT`]).
    pub queries: Vec<QueryRecord>,
    /// Workers' memory and CPU once a second, from the time asked for (empty unless
    /// asked), oldest first.
    pub memory: Vec<MemorySample>,
}

/// What a snapshot should include beyond the current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotQuery {
    /// Task events with at least this sequence number.
    pub events_since: u64,
    /// Memory samples from this time on (microseconds since the Unix epoch); `None`
    /// for none.
    pub memory_since_us: Option<u64>,
}

/// One worker's figures at one heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemorySample {
    /// When, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// Which worker.
    pub worker: u32,
    /// Its resident set size, in bytes.
    pub rss: u64,
    /// Bytes of its stored results in memory.
    pub stored: u64,
    /// Bytes of its stored results on disk only.
    pub spilled: u64,
    /// Its CPU use since the previous sample, in percent of one core.
    pub cpu_percent: f64,
}

/// How many departed workers a snapshot lists.
pub const DEPARTED_KEPT: usize = 100;
/// How many SPMD jobs a snapshot lists.
pub const JOBS_KEPT: usize = 50;
/// How many queries a snapshot lists.
pub const QUERIES_KEPT: usize = 50;

/// Facts about the cluster as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// What serves this: `scheduler` or `launcher`.
    pub kind: String,
    /// The address workers and clients connect to (empty for a launcher).
    pub address: String,
    /// When it started, in microseconds since the Unix epoch.
    pub started_us: u64,
    /// Clients connected now.
    pub clients: u64,
}

/// One connected worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// Its number, as in errors (`worker 3`).
    pub id: u32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Threads that run tasks.
    pub nthreads: u32,
    /// Custom resources it offers, `(name, amount)`.
    pub resources: Vec<(String, f64)>,
    /// Memory limit in bytes (0: none).
    pub memory_limit: u64,
    /// Resident set size of the process, in bytes, at its last heartbeat.
    pub rss: u64,
    /// Bytes of results it holds in memory, as it reported at its last heartbeat.
    pub stored: u64,
    /// Bytes of results it holds only on disk (spilled), at its last heartbeat.
    pub spilled: u64,
    /// Results it has written to disk so far.
    pub spills: u64,
    /// Spilled results it has read back so far.
    pub unspills: u64,
    /// Why it stopped spilling, if it did (a full or unwritable disk).
    pub spill_error: Option<String>,
    /// Bytes written to spill files so far, and the microseconds the writes took.
    pub spill_io: (u64, u64),
    /// Bytes read back from spill files so far, and the microseconds the reads took.
    pub unspill_io: (u64, u64),
    /// Results it holds.
    pub objects: u64,
    /// Bytes of task data it has sent to peers and clients.
    pub sent: u64,
    /// Bytes of task data it has fetched.
    pub received: u64,
    /// Tasks assigned to it and not yet finished (running or queued there).
    pub processing: u64,
    /// CPU use between its last two heartbeats, in percent of one core.
    pub cpu_percent: f64,
    /// When it joined, in microseconds since the Unix epoch.
    pub joined_us: u64,
    /// When its last heartbeat arrived, in microseconds since the Unix epoch.
    pub last_heartbeat_us: u64,
}

/// A worker that left, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DepartedWorker {
    /// Its number.
    pub id: u32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Why it left, e.g. "closed its connection" or "sent nothing for 10s (heartbeat timeout)".
    pub reason: String,
    /// When, in microseconds since the Unix epoch.
    pub left_us: u64,
}

/// The tasks of one function, by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    /// The group's number, which [`TaskEvent::group`] refers to.
    pub id: u32,
    /// The function (`crate::path::name`, `Class.method` for actor calls).
    pub name: String,
    /// Waiting for inputs.
    pub waiting: u64,
    /// Ready, waiting for a worker.
    pub queued: u64,
    /// Sent to a worker, not finished.
    pub processing: u64,
    /// Finished, the result held by a worker.
    pub memory: u64,
    /// Finished and released (or not needed yet), description kept as lineage.
    pub released: u64,
    /// Failed for good.
    pub erred: u64,
    /// Finished and forgotten by the scheduler.
    pub forgotten: u64,
    /// Failed and forgotten.
    pub forgotten_erred: u64,
    /// Runs that finished, retries and recomputations included.
    pub runs: u64,
    /// Their total run time, in microseconds.
    pub run_micros: u64,
    /// Bytes of their results.
    pub result_bytes: u64,
}

impl GroupRow {
    /// Tasks that finished: in memory, released or forgotten.
    pub fn done(&self) -> u64 {
        self.memory + self.released + self.forgotten
    }

    /// Every task the group ever had.
    pub fn total(&self) -> u64 {
        self.waiting + self.queued + self.processing + self.done() + self.erred + self.forgotten_erred
    }
}

/// The lane of a worker's disk writes in the task stream: [`TaskEvent::thread`] of a
/// [`EventKind::Spill`].
pub const SPILL_LANE: u32 = u32::MAX;

/// What a [`TaskEvent`] records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A task run.
    #[default]
    Run,
    /// A worker writing results to its spill directory: `size` bytes over `micros`,
    /// the writes since its previous heartbeat drawn as one bar that ends at it, in the
    /// lane [`SPILL_LANE`]; `group` and `task` mean nothing.
    Spill,
}

/// A task run that ended, or a worker's spill to disk, for the task stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Its place in the stream, counting from 0.
    pub seq: u64,
    /// A run or a spill.
    #[serde(default)]
    pub kind: EventKind,
    /// Its function's [`GroupRow::id`].
    pub group: u32,
    /// The task's id.
    pub task: u64,
    /// The worker that ran it.
    pub worker: u32,
    /// Its executor thread there (`nthreads` for actors).
    pub thread: u32,
    /// When the function started, in microseconds since the Unix epoch.
    pub start_us: u64,
    /// How long it ran, in microseconds.
    pub micros: u64,
    /// How long fetching its inputs took just before, in microseconds.
    pub fetch_micros: u64,
    /// Bytes of inputs it fetched.
    pub fetched: u64,
    /// How long reading its spilled inputs back from the worker's disk took, in
    /// microseconds, just before the fetch.
    #[serde(default)]
    pub unspill_micros: u64,
    /// Bytes of inputs read back from disk.
    #[serde(default)]
    pub unspilled: u64,
    /// Bytes of its result (of a spill: bytes written).
    pub size: u64,
    /// Whether it failed.
    pub erred: bool,
}

/// Totals over the cluster's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Task runs that finished.
    pub finished: u64,
    /// Task runs that failed.
    pub failed: u64,
    /// Tasks whose inputs had to be fetched from elsewhere.
    pub transfers: u64,
    /// Bytes those fetches moved.
    pub transfer_bytes: u64,
    /// Task records the scheduler holds now.
    pub tasks: u64,
    /// Finished runs by duration: `(upper bound in seconds, count)` per bucket,
    /// cumulative like Prometheus's, the last bound being infinity.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Sum of all run durations, in seconds.
    pub duration_sum: f64,
}

/// One SPMD job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpmdJob {
    /// The job, by its coordinator's address.
    pub job: String,
    /// The SPMD function (or program, for `chorus run`).
    pub name: String,
    /// Ranks in the job.
    pub size: u32,
    /// When it was started, in microseconds since the Unix epoch.
    pub started_us: u64,
    /// Every rank.
    pub ranks: Vec<RankRow>,
    /// `running`, `finished` or `failed`.
    pub state: String,
    /// The failure that ended it.
    pub error: Option<String>,
}

/// One rank of an SPMD job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankRow {
    /// Its rank.
    pub rank: u32,
    /// The worker it runs on (0 for `chorus run`).
    pub worker: u32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// `waiting` (for a worker), `running`, `finished` or `failed`.
    pub state: String,
    /// Collectives it has started.
    pub collectives: u64,
    /// The call it is blocked in, and for whom.
    pub wait: Option<RankWait>,
}

/// A DataFrame query a driver ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// Counts queries from 0.
    pub id: u64,
    /// The SQL, or a description of the DataFrame.
    pub label: String,
    /// The distributed plan with each operator's distribution, as `explain()` prints it.
    pub plan: String,
    /// When it started, in microseconds since the Unix epoch.
    pub started_us: u64,
    /// How long it took, in microseconds (0 while it runs).
    pub micros: u64,
    /// Its stages, in order.
    pub stages: Vec<StageRecord>,
    /// Its exchanges (shuffles, gathers, broadcasts).
    pub exchanges: Vec<ExchangeRecord>,
    /// Rows of the result.
    pub rows: u64,
    /// The error that ended it.
    pub error: Option<String>,
}

/// One stage of a query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Which.
    pub name: String,
    /// How long it took, in microseconds (the slowest rank).
    pub micros: u64,
}

/// One exchange of a query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeRecord {
    /// Which, e.g. `hash repartition on [l_orderkey]`.
    pub name: String,
    /// Rows it moved between ranks.
    pub rows: u64,
    /// Bytes it moved between ranks.
    pub bytes: u64,
}
