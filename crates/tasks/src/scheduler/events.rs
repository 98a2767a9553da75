//! What goes into the scheduler and what comes out.

use crate::error::TaskError;
use crate::proto::{
    ClientId, ComputeTask, Done, Failed, Finished, Heartbeat, Instance, TaskId, TaskSpec, ToClient, WorkerId, WorkerInfo,
};

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
        /// It went past its memory limit (and was restarted), rather than dying or
        /// losing its connection.
        memory: bool,
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
    /// A worker's figures, once a second.
    Heartbeat {
        /// Which.
        worker: WorkerId,
        /// What it sent.
        beat: Heartbeat,
        /// When it arrived, in microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A client ran a DataFrame query (its plan, exchanges and timing).
    Query(Box<chorus_dashboard::model::QueryRecord>),
    /// The time now, in microseconds since the Unix epoch (the server's clock, once a
    /// second): what the scheduler stamps joins and departures with.
    Clock {
        /// The time.
        now_us: u64,
    },
}

/// What the scheduler decided, for the server to carry out. These are the scheduler's
/// own types: the server translates them into the wire messages of each role
/// (`ToWorker`, `ToClient`), batching and framing as it likes.
#[derive(Debug)]
pub enum Command {
    /// Run these tasks on `worker`, in order.
    Assign {
        /// Where.
        worker: WorkerId,
        /// The tasks, each with where its inputs are.
        tasks: Vec<ComputeTask>,
    },
    /// `worker` may drop these results (and actors): nothing needs them any more.
    Release {
        /// Where.
        worker: WorkerId,
        /// The results.
        ids: Vec<TaskId>,
    },
    /// `worker` should give back these tasks if they have not started (work stealing).
    Steal {
        /// The worker with the backlog.
        worker: WorkerId,
        /// The tasks to give back.
        ids: Vec<TaskId>,
    },
    /// `worker` should not start these (cancelled, failed elsewhere, or finished by
    /// another worker first).
    Cancel {
        /// Where.
        worker: WorkerId,
        /// The tasks.
        ids: Vec<TaskId>,
    },
    /// The workers of the cluster changed: `worker` may fetch from these.
    Peers {
        /// Who is told.
        worker: WorkerId,
        /// Every worker now.
        peers: Vec<WorkerInfo>,
    },
    /// Tell `client` about its tasks, in order.
    Notify {
        /// Who is told.
        client: ClientId,
        /// What happened.
        notes: Vec<Note>,
    },
}

/// What a client is told.
#[derive(Debug, Clone)]
pub enum Note {
    /// A task's result is ready.
    Done(Done),
    /// A task failed for good.
    Erred {
        /// The task.
        id: TaskId,
        /// Why.
        error: TaskError,
    },
    /// The workers of the cluster now.
    Workers(Vec<WorkerInfo>),
    /// The scheduler forgot this task, lineage included (its stored arguments may go).
    Forgotten(TaskId),
}

impl Note {
    /// The client's wire messages for `notes`, consecutive results in one message.
    pub fn into_messages(notes: Vec<Note>) -> Vec<ToClient> {
        let mut out: Vec<ToClient> = Vec::new();
        for n in notes {
            match (n, out.last_mut()) {
                (Note::Done(d), Some(ToClient::Done(batch))) => batch.push(d),
                (Note::Done(d), _) => out.push(ToClient::Done(vec![d])),
                (Note::Forgotten(id), Some(ToClient::Forgotten(batch))) => batch.push(id),
                (Note::Forgotten(id), _) => out.push(ToClient::Forgotten(vec![id])),
                (Note::Erred { id, error }, _) => out.push(ToClient::Erred { id, error }),
                (Note::Workers(w), _) => out.push(ToClient::Workers(w)),
            }
        }
        out
    }
}

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How many times a task may be running on a worker that dies before it fails with a
    /// "killed worker" error (Dask's `allowed-failures`).
    pub allowed_failures: u32,
    /// How many finished runs the task stream keeps (the dashboard, performance
    /// reports and traces show at most these); 0 keeps none.
    pub event_ring: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { allowed_failures: 3, event_ring: 100_000 }
    }
}
