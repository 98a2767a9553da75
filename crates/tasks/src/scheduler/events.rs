//! What goes into the scheduler and what comes out.

use crate::proto::{ClientId, Failed, Finished, Instance, TaskId, TaskSpec, ToClient, ToWorker, WorkerId, WorkerInfo};

/// Something that happened, as the server tells the scheduler.
#[derive(Debug)]
pub enum Event {
    /// A worker joined (its `id` is already assigned).
    WorkerJoined(WorkerInfo),
    /// A worker's connection closed or it stopped answering.
    WorkerLost {
        /// Which.
        worker: WorkerId,
        /// Why, for error messages.
        reason: String,
    },
    /// A client submitted tasks.
    Submit {
        /// Who.
        client: ClientId,
        /// What.
        tasks: Vec<TaskSpec>,
    },
    /// A client dropped its last futures of these.
    Release {
        /// Who.
        client: ClientId,
        /// What.
        ids: Vec<TaskId>,
    },
    /// A client cancels these.
    Cancel {
        /// Who.
        client: ClientId,
        /// What.
        ids: Vec<TaskId>,
    },
    /// A client stored objects on a worker directly.
    Scattered {
        /// Who.
        client: ClientId,
        /// Where.
        worker: WorkerId,
        /// (id, size) of each.
        objects: Vec<(TaskId, u64)>,
    },
    /// A client connected.
    ClientJoined(ClientId),
    /// A client disconnected: everything it held is released.
    ClientLeft(ClientId),
    /// Tasks ended well on a worker.
    Finished {
        /// Where.
        worker: WorkerId,
        /// What.
        results: Vec<Finished>,
    },
    /// Tasks failed on a worker.
    Failed {
        /// Where.
        worker: WorkerId,
        /// Which, which assignment, and why.
        failures: Vec<Failed>,
    },
    /// A worker could not fetch some inputs of a task from the holders it was given.
    MissingInputs {
        /// Which worker.
        worker: WorkerId,
        /// The task.
        id: TaskId,
        /// The assignment that could not start.
        instance: Instance,
        /// The inputs.
        missing: Vec<TaskId>,
    },
    /// A worker gave back these unstarted tasks after a steal request.
    Stolen {
        /// Which worker.
        worker: WorkerId,
        /// The tasks.
        ids: Vec<TaskId>,
    },
    /// A worker's memory figures.
    Heartbeat {
        /// Which.
        worker: WorkerId,
        /// Bytes in its object store.
        stored: u64,
        /// Its resident set size.
        rss: u64,
    },
}

/// Something the server must send.
#[derive(Debug)]
pub enum Command {
    /// A message to a worker.
    Worker(WorkerId, ToWorker),
    /// Messages to a client, in order.
    Client(ClientId, Vec<ToClient>),
}

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How many times a task may be running on a worker that dies before it fails with a
    /// "killed worker" error (Dask's `allowed-failures`).
    pub allowed_failures: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { allowed_failures: 3 }
    }
}
