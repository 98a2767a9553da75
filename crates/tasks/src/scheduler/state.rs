//! Records, events, commands and the transitions between them.

use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::error::{FailureKind, TaskError};
use crate::proto::{
    ClientId, ComputeTask, DepSource, Done, Failed, Finished, GraphNode, Instance, Status, TaskId, TaskKind, TaskSpec, WorkerId,
    WorkerInfo, WorkerStatus,
};

mod placement;

use placement::{Order, ReadyEntry};

use super::observe::{Observer, Slot};

use super::events::{Command, Event, Note, SchedulerConfig};
use chorus_dashboard::model::{Snapshot, SnapshotQuery, WorkerRow};

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Some inputs are not in memory yet.
    Waiting { missing: u32 },
    /// Inputs ready, waiting for a worker.
    Ready,
    /// Sent to a worker.
    Assigned(WorkerId),
    /// The result is held by `who_has`.
    Memory,
    /// The result is gone (nobody needed it, or it was lost); the description is kept
    /// as lineage.
    Released,
    /// Failed for good.
    Erred(Box<TaskError>),
}

impl State {
    fn slot(&self) -> Slot {
        match self {
            State::Waiting { .. } => Slot::Waiting,
            State::Ready => Slot::Queued,
            State::Assigned(_) => Slot::Processing,
            State::Memory => Slot::Memory,
            State::Released => Slot::Released,
            State::Erred(_) => Slot::Erred,
        }
    }

    fn is_active(&self) -> bool {
        matches!(self, State::Waiting { .. } | State::Ready | State::Assigned(_))
    }
}

#[derive(Debug)]
struct Record {
    /// `None` for scattered data, which has no lineage.
    spec: Option<Arc<TaskSpec>>,
    deps: Vec<TaskId>,
    dependents: FxHashSet<TaskId>,
    state: State,
    /// Inline for the usual one or two holders: no allocation per result.
    who_has: SmallVec<[WorkerId; 2]>,
    size: u64,
    inline: Option<Arc<Vec<u8>>>,
    owner: ClientId,
    client_refs: u32,
    /// Active dependents: they will need this result.
    waiters: u32,
    retries_left: u32,
    /// Times it was on a worker that died.
    suspicious: u32,
    /// Changes at each `Ready`, so stale heap entries are recognized.
    ready_seq: u64,
    /// Where it stands in the graph's order (see [`Order`]).
    order: Order,
    /// Counts assignments, so that reports about an earlier one are recognized.
    instance: Instance,
    /// Its function's group, for the [`Observer`].
    group: u32,
}

/// Moves `r` to state `to`, counting it in its group.
#[inline]
fn set_state(obs: &mut Observer, r: &mut Record, to: State) {
    obs.moved(r.group, Some(r.state.slot()), to.slot());
    r.state = to;
}

impl Record {
    fn name(&self) -> &str {
        self.spec.as_ref().map_or("scattered data", |s| s.kind.name())
    }

    fn bound_to_worker(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| {
            s.options.pin.is_some() || matches!(s.kind, TaskKind::ActorCall { .. } | TaskKind::Spmd { .. })
        })
    }
}

#[derive(Debug)]
struct WorkerState {
    info: WorkerInfo,
    processing: FxHashSet<TaskId>,
    has: FxHashSet<TaskId>,
    stored: u64,
    rss: u64,
    steal_pending: bool,
}

/// What a task is assumed to take before any has finished: long enough that workers
/// are not handed deep queues of tasks that may be slow.
const INITIAL_TASK_MICROS: f64 = 5_000.0;

#[derive(Default)]
struct Outbox {
    compute: BTreeMap<WorkerId, Vec<ComputeTask>>,
    delete: BTreeMap<WorkerId, Vec<TaskId>>,
    /// Steals, cancels and peer lists, in the order they were decided.
    other: Vec<Command>,
    clients: BTreeMap<ClientId, Vec<Note>>,
}

/// The scheduler state machine. See the module documentation.
pub struct Scheduler {
    config: SchedulerConfig,
    tasks: FxHashMap<TaskId, Record>,
    workers: BTreeMap<WorkerId, WorkerState>,
    ready: BinaryHeap<ReadyEntry>,
    /// Tasks no current worker can run (resources); retried when workers join.
    no_worker: Vec<TaskId>,
    /// Pending calls of each actor, in submission order.
    actor_queues: FxHashMap<TaskId, VecDeque<TaskId>>,
    clients: HashSet<ClientId>,
    /// Counts `Ready` transitions, for [`Record::ready_seq`].
    seq: u64,
    /// Counts submissions, for [`Order::seq`].
    submitted: u64,
    /// Moving average of task run time.
    avg_micros: f64,
    out: Outbox,
    obs: Observer,
}

impl Scheduler {
    /// An empty cluster.
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config: config.clone(),
            tasks: FxHashMap::default(),
            workers: BTreeMap::new(),
            ready: BinaryHeap::new(),
            no_worker: Vec::new(),
            actor_queues: FxHashMap::default(),
            clients: HashSet::new(),
            seq: 0,
            submitted: 0,
            avg_micros: INITIAL_TASK_MICROS,
            out: Outbox::default(),
            obs: Observer::new(config.event_ring),
        }
    }

    /// Applies one event; the resulting commands wait in the outbox until [`drain`].
    ///
    /// [`drain`]: Scheduler::drain
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::WorkerJoined(info) => self.worker_joined(info),
            Event::WorkerLost { worker, reason, memory } => self.worker_lost(worker, &reason, memory),
            Event::Submit { client, tasks } => self.submit(client, tasks),
            Event::Release { client: _, ids } => {
                for id in ids {
                    if let Some(r) = self.tasks.get_mut(&id) {
                        r.client_refs = r.client_refs.saturating_sub(1);
                        self.maybe_release(id);
                    }
                }
            }
            Event::Cancel { client: _, ids } => self.cancel(ids),
            Event::Scattered { client, worker, objects } => self.scattered(client, worker, objects),
            Event::ClientJoined(client) => {
                self.clients.insert(client);
            }
            Event::ClientLeft(client) => self.client_left(client),
            Event::Finished { worker, results } => {
                for f in results {
                    self.finished(worker, f);
                }
            }
            Event::Failed { worker, failures } => {
                for f in failures {
                    self.failed(worker, f);
                }
            }
            Event::MissingInputs { worker, id, instance, missing } => self.missing_inputs(worker, id, instance, missing),
            Event::Stolen { worker, ids } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.steal_pending = false;
                }
                for id in ids {
                    if self.tasks.get(&id).is_some_and(|r| r.state == State::Assigned(worker)) {
                        self.unassign(id, worker);
                        self.make_ready(id);
                    }
                }
            }
            Event::Heartbeat { worker, beat, at_us } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.stored = beat.stored;
                    w.rss = beat.rss;
                }
                self.obs.heartbeat(worker, beat, at_us);
                return;
            }
            Event::Clock { now_us } => {
                self.obs.clock(now_us);
                return;
            }
            Event::Query(record) => {
                self.obs.query(*record);
                return;
            }
        }
        self.schedule();
    }

    /// Takes the commands produced since the last call, one message per destination and
    /// kind.
    pub fn drain(&mut self) -> Vec<Command> {
        let out = std::mem::take(&mut self.out);
        let mut cmds = Vec::new();
        for (worker, ids) in out.delete {
            cmds.push(Command::Release { worker, ids });
        }
        cmds.extend(out.other);
        for (worker, tasks) in out.compute {
            cmds.push(Command::Assign { worker, tasks });
        }
        for (client, notes) in out.clients {
            cmds.push(Command::Notify { client, notes });
        }
        cmds
    }

    /// Whether commands are waiting in the outbox.
    pub fn has_commands(&self) -> bool {
        let o = &self.out;
        !(o.compute.is_empty() && o.delete.is_empty() && o.other.is_empty() && o.clients.is_empty())
    }

    /// The workers, for clients.
    pub fn worker_infos(&self) -> Vec<WorkerInfo> {
        self.workers.values().map(|w| w.info.clone()).collect()
    }

    /// The cluster's state, for `chorus status`.
    pub fn status(&self, clients: u64) -> Status {
        Status {
            workers: self
                .workers
                .values()
                .map(|w| WorkerStatus {
                    info: w.info.clone(),
                    processing: w.processing.len() as u64,
                    objects: w.has.len() as u64,
                    stored: w.has.iter().filter_map(|id| self.tasks.get(id)).map(|r| r.size).sum(),
                    rss: w.rss,
                    spilled: self.obs.figures(w.info.id).map_or(0, |f| f.0.spilled),
                    spills: self.obs.figures(w.info.id).map_or(0, |f| f.0.spills),
                })
                .collect(),
            tasks: self.tasks.len() as u64,
            waiting: self.tasks.values().filter(|r| matches!(r.state, State::Waiting { .. } | State::Ready)).count()
                as u64,
            clients,
        }
    }

    /// What the dashboard shows, as far as the state machine knows it (the server adds
    /// the cluster's address and clients).
    pub fn observe(&self, query: SnapshotQuery) -> Snapshot {
        let (events, next_event) = self.obs.events(query.events_since);
        let workers = self
            .workers
            .values()
            .map(|w| {
                let (beat, cpu_percent, joined_us, last_heartbeat_us) =
                    self.obs.figures(w.info.id).map(|(b, c, j, l)| (b.clone(), c, j, l)).unwrap_or_default();
                WorkerRow {
                    id: w.info.id.0,
                    host: w.info.host.clone(),
                    pid: w.info.pid,
                    nthreads: w.info.nthreads,
                    resources: w.info.resources.custom.clone(),
                    memory_limit: w.info.memory_limit,
                    rss: w.rss,
                    // The worker's own count at its last heartbeat: summing the sizes of
                    // what it holds would cost a lookup per object on every snapshot.
                    stored: w.stored,
                    spilled: beat.spilled,
                    spills: beat.spills,
                    unspills: beat.unspills,
                    spill_error: beat.spill_error.clone(),
                    spill_io: beat.spill_io,
                    unspill_io: beat.unspill_io,
                    objects: w.has.len() as u64,
                    sent: beat.sent,
                    received: beat.received,
                    processing: w.processing.len() as u64,
                    cpu_percent,
                    joined_us,
                    last_heartbeat_us,
                }
            })
            .collect();
        let spmd = self.obs.jobs(
            |id| {
                self.tasks.get(&id).map(|r| match r.state {
                    State::Waiting { .. } | State::Ready => ("waiting", None),
                    State::Assigned(w) => ("running", Some(w)),
                    State::Memory | State::Released => ("finished", None),
                    State::Erred(_) => ("failed", None),
                })
            },
            |w| self.workers.get(&w).map(|w| (w.info.host.clone(), w.info.pid)),
        );
        Snapshot {
            workers,
            departed: self.obs.departed(),
            groups: self.obs.groups(),
            events,
            next_event,
            totals: self.obs.totals(self.tasks.len() as u64),
            spmd,
            queries: self.obs.queries(),
            memory: query.memory_since_us.map(|t| self.obs.memory(t)).unwrap_or_default(),
            ..Snapshot::default()
        }
    }

    /// The tasks behind `roots`, each once, with their dependencies (lineage the
    /// scheduler still keeps): what `visualize` draws. At most `limit` tasks.
    pub fn graph(&self, roots: &[TaskId], limit: usize) -> Vec<GraphNode> {
        let mut seen = FxHashSet::default();
        let mut stack: Vec<TaskId> = roots.to_vec();
        let mut out = Vec::new();
        while let Some(id) = stack.pop() {
            if out.len() >= limit || !seen.insert(id) {
                continue;
            }
            let Some(r) = self.tasks.get(&id) else { continue };
            stack.extend(r.deps.iter().copied());
            let state = match r.state.slot() {
                Slot::Waiting => "waiting",
                Slot::Queued => "queued",
                Slot::Processing => "processing",
                Slot::Memory => "memory",
                Slot::Released => "released",
                Slot::Erred => "erred",
            };
            out.push(GraphNode { id, name: r.name().to_string(), deps: r.deps.clone(), state: state.to_string() });
        }
        out
    }

    /// How many task records the scheduler holds (for memory tests).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    // ---- events ------------------------------------------------------------------

    fn worker_joined(&mut self, info: WorkerInfo) {
        let id = info.id;
        self.obs.worker_joined(id);
        self.workers.insert(
            id,
            WorkerState {
                info,
                processing: FxHashSet::default(),
                has: FxHashSet::default(),
                stored: 0,
                rss: 0,
                steal_pending: false,
            },
        );
        for t in std::mem::take(&mut self.no_worker) {
            if self.tasks.get(&t).is_some_and(|r| r.state == State::Ready) {
                self.make_ready(t);
            }
        }
        self.announce_workers();
    }

    fn announce_workers(&mut self) {
        let infos = self.worker_infos();
        for w in self.workers.keys() {
            self.out.other.push(Command::Peers { worker: *w, peers: infos.clone() });
        }
        for c in self.clients.clone() {
            self.out.clients.entry(c).or_default().push(Note::Workers(infos.clone()));
        }
    }

    fn submit(&mut self, client: ClientId, specs: Vec<TaskSpec>) {
        for spec in specs {
            let id = spec.id;
            let deps = spec.dependencies();
            let retries = spec.options.retries;
            match &spec.kind {
                TaskKind::ActorCall { actor, .. } => self.actor_queues.entry(*actor).or_default().push_back(id),
                TaskKind::Spmd { func, rank, size, coordinator } => {
                    self.obs.rank_submitted(coordinator, func, *rank, *size, id);
                }
                _ => {}
            }
            let group = self.obs.group(spec.kind.name());
            self.submitted += 1;
            let seq = self.submitted;
            let anchor = deps
                .iter()
                .filter_map(|d| self.tasks.get(d))
                .filter(|d| d.state.is_active())
                .map(|d| d.order.anchor)
                .max()
                .unwrap_or(seq);
            let mut record = Record {
                spec: Some(Arc::new(spec)),
                deps: deps.clone(),
                dependents: FxHashSet::default(),
                state: State::Released,
                who_has: SmallVec::new(),
                size: 0,
                inline: None,
                owner: client,
                client_refs: 1,
                waiters: 0,
                retries_left: retries,
                suspicious: 0,
                ready_seq: 0,
                order: Order { anchor, seq },
                instance: Instance::default(),
                group,
            };
            if let Some(missing) = deps.iter().find(|d| !self.tasks.contains_key(d)) {
                // The client holds a future for every id it names, so this is a bug or a
                // future from another client.
                let e = TaskError::new(
                    FailureKind::DependencyFailed,
                    record.name(),
                    format!(
                        "an argument of task `{}` is a future the scheduler does not know (id {missing}); futures cannot be passed between clients",
                        record.name()
                    ),
                );
                record.deps.clear();
                record.state = State::Erred(Box::new(e.clone()));
                self.obs.moved(group, None, Slot::Erred);
                self.tasks.insert(id, record);
                self.notify_erred(id, e);
                continue;
            }
            for d in &deps {
                self.tasks.get_mut(d).expect("checked above").dependents.insert(id);
            }
            self.obs.moved(group, None, Slot::Released);
            self.tasks.insert(id, record);
            self.recompute(id);
        }
    }

    /// A client is gone: nobody can ask for its results any more, so its unfinished
    /// tasks are cancelled (freeing the workers for other clients) and everything it
    /// held is released.
    fn client_left(&mut self, client: ClientId) {
        self.clients.remove(&client);
        let mut active = Vec::new();
        let mut held = Vec::new();
        for (id, r) in &self.tasks {
            if r.owner == client {
                if r.state.is_active() {
                    active.push(*id);
                }
                if r.client_refs > 0 {
                    held.push(*id);
                }
            }
        }
        for id in active {
            if self.tasks.get(&id).is_some_and(|r| r.state.is_active()) {
                let e = TaskError::new(FailureKind::Cancelled, self.tasks[&id].name(), format!("{client} left"));
                self.fail_for_good(id, e);
            }
        }
        for id in held {
            if let Some(r) = self.tasks.get_mut(&id) {
                r.client_refs = 0;
            }
            self.maybe_release(id);
        }
        self.out.clients.remove(&client);
    }

    fn cancel(&mut self, ids: Vec<TaskId>) {
        for id in ids {
            let Some(r) = self.tasks.get(&id) else { continue };
            if !r.state.is_active() {
                continue;
            }
            let e = TaskError::new(FailureKind::Cancelled, r.name(), "");
            self.fail_for_good(id, e);
        }
    }

    fn scattered(&mut self, client: ClientId, worker: WorkerId, objects: Vec<(TaskId, u64)>) {
        let alive = self.workers.contains_key(&worker);
        for (id, size) in objects {
            if let Some(r) = self.tasks.get_mut(&id) {
                if alive && r.state == State::Memory && !r.who_has.contains(&worker) {
                    r.who_has.push(worker);
                    self.workers.get_mut(&worker).expect("alive").has.insert(id);
                }
                continue;
            }
            let mut r = Record {
                spec: None,
                deps: Vec::new(),
                dependents: FxHashSet::default(),
                state: State::Memory,
                who_has: smallvec::smallvec![worker],
                size,
                inline: None,
                owner: client,
                client_refs: 1,
                waiters: 0,
                retries_left: 0,
                suspicious: 0,
                ready_seq: 0,
                order: Order::default(),
                instance: Instance::default(),
                group: self.obs.group("scattered data"),
            };
            if alive {
                self.workers.get_mut(&worker).expect("alive").has.insert(id);
                self.obs.moved(r.group, None, Slot::Memory);
                self.tasks.insert(id, r);
            } else {
                let e = TaskError::new(
                    FailureKind::DataLost,
                    "scatter",
                    format!("{worker} left before the scattered data was registered"),
                );
                r.state = State::Erred(Box::new(e.clone()));
                r.who_has.clear();
                self.obs.moved(r.group, None, Slot::Erred);
                self.tasks.insert(id, r);
                self.notify_erred(id, e);
            }
        }
    }

    fn finished(&mut self, worker: WorkerId, f: Finished) {
        let id = f.id;
        let Some(r) = self.tasks.get_mut(&id) else {
            self.delete_on(worker, id);
            return;
        };
        match r.state {
            State::Assigned(w) if w == worker => {}
            State::Assigned(other) => {
                // Stolen after it started, and finished here first: keep this result and
                // tell the other worker not to bother.
                self.unassign(id, other);
                self.out.other.push(Command::Cancel { worker: other, ids: vec![id] });
            }
            State::Memory => {
                if !r.who_has.contains(&worker) && self.workers.contains_key(&worker) {
                    r.who_has.push(worker);
                    self.workers.get_mut(&worker).expect("checked").has.insert(id);
                }
                return;
            }
            _ => {
                self.delete_on(worker, id);
                return;
            }
        }
        self.unassign(id, worker);
        self.avg_micros = 0.9 * self.avg_micros + 0.1 * (f.timing.micros as f64).max(1.0);
        let r = self.tasks.get_mut(&id).expect("present");
        self.obs.ran(r.group, id, worker, &f.timing, f.size, false);
        if let Some(TaskKind::Spmd { rank, coordinator, .. }) = r.spec.as_ref().map(|s| &s.kind) {
            self.obs.rank_ended(coordinator, *rank, None);
        }
        set_state(&mut self.obs, r, State::Memory);
        r.who_has = smallvec::smallvec![worker];
        r.size = f.size;
        r.inline = f.inline;
        let (client_refs, is_actor) =
            (r.client_refs, matches!(r.spec.as_ref().map(|s| &s.kind), Some(TaskKind::ActorNew { .. })));
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has.insert(id);
        }
        self.deactivate(id);
        let dependents: Vec<TaskId> = self.tasks[&id].dependents.iter().copied().collect();
        for d in dependents {
            let dr = self.tasks.get_mut(&d).expect("dependents are live records");
            if let State::Waiting { missing } = &mut dr.state {
                *missing -= 1;
                if *missing == 0 {
                    self.make_ready(d);
                }
            }
        }
        if client_refs > 0 {
            self.notify_done(id);
        }
        if is_actor {
            self.pump_actor(id);
        }
        self.maybe_release(id);
    }

    /// Whether `id` is in its `instance`-th assignment, on `worker`: reports about any
    /// other assignment are stale.
    fn is_current(&self, id: TaskId, worker: WorkerId, instance: Instance) -> bool {
        self.tasks.get(&id).is_some_and(|r| r.state == State::Assigned(worker) && r.instance == instance)
    }

    fn failed(&mut self, worker: WorkerId, f: Failed) {
        let Failed { id, instance, error, timing } = f;
        if !self.is_current(id, worker, instance) {
            return;
        }
        self.unassign(id, worker);
        let r = self.tasks.get_mut(&id).expect("present");
        self.obs.ran(r.group, id, worker, &timing, 0, true);
        let retryable = matches!(error.kind, FailureKind::Panic | FailureKind::Error);
        if retryable && r.retries_left > 0 {
            r.retries_left -= 1;
            self.make_ready(id);
        } else {
            self.fail_for_good(id, error);
        }
    }

    fn missing_inputs(&mut self, worker: WorkerId, id: TaskId, instance: Instance, missing: Vec<TaskId>) {
        if !self.is_current(id, worker, instance) {
            return;
        }
        self.unassign(id, worker);
        // The holders the worker tried do not have these: forget them as holders.
        for m in missing {
            let Some(r) = self.tasks.get_mut(&m) else { continue };
            if r.state != State::Memory || r.inline.is_some() {
                continue;
            }
            let holders = std::mem::take(&mut r.who_has);
            for h in holders {
                if let Some(w) = self.workers.get_mut(&h) {
                    w.has.remove(&m);
                }
            }
            self.data_lost(m, "the workers that held it no longer had it");
        }
        self.set_waiting_or_ready(id);
    }

    fn worker_lost(&mut self, worker: WorkerId, reason: &str, memory: bool) {
        let Some(ws) = self.workers.remove(&worker) else { return };
        self.obs.worker_left(&ws.info, reason);
        self.out.compute.remove(&worker);
        self.out.delete.remove(&worker);
        self.out.other.retain(|c| !matches!(c,
            Command::Steal { worker: w, .. } | Command::Cancel { worker: w, .. } | Command::Peers { worker: w, .. } if *w == worker));
        let who = format!("{} {reason}", ws.info.describe());
        for m in ws.has {
            let Some(r) = self.tasks.get_mut(&m) else { continue };
            r.who_has.retain(|w| *w != worker);
            let is_actor = matches!(r.spec.as_ref().map(|s| &s.kind), Some(TaskKind::ActorNew { .. }));
            // Small results live on here, with no holder; an actor dies with its worker.
            if r.who_has.is_empty() && r.state == State::Memory && (r.inline.is_none() || is_actor) {
                self.data_lost(m, &who);
            }
        }
        for t in ws.processing {
            let Some(r) = self.tasks.get_mut(&t) else { continue };
            if r.state != State::Assigned(worker) {
                continue;
            }
            r.suspicious += 1;
            let name = r.name().to_string();
            if r.bound_to_worker() {
                let e = TaskError::new(FailureKind::WorkerLost, name, who.clone());
                self.fail_for_good(t, e);
            } else if r.suspicious > self.config.allowed_failures {
                let (kind, advice) = if memory {
                    (FailureKind::MemoryLimit, ". Give the workers more memory (--memory-limit, LocalClusterBuilder::memory_limit) or make the task use less")
                } else {
                    (FailureKind::KilledWorker, "")
                };
                let message = format!(
                    "it was running on {} workers that died or were restarted, the last being {who}; the limit is {} (SchedulerConfig::allowed_failures){advice}",
                    r.suspicious, self.config.allowed_failures
                );
                self.fail_for_good(t, TaskError::new(kind, name, message));
            } else {
                self.set_waiting_or_ready(t);
            }
        }
        self.announce_workers();
    }

    // ---- transitions ---------------------------------------------------------------

    /// (Re)computes `root` and whatever of its lineage is not in memory.
    fn recompute(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(x) = stack.pop() {
            let r = &self.tasks[&x];
            if r.state != State::Released {
                continue;
            }
            if r.spec.is_none() {
                let e = TaskError::new(
                    FailureKind::DataLost,
                    "scattered data",
                    "it was released or lost and scattered data cannot be recomputed",
                );
                self.fail_for_good(x, e);
                continue;
            }
            let deps = r.deps.clone();
            if let Some(e) = deps.iter().find_map(|d| match &self.tasks[d].state {
                State::Erred(e) => Some((**e).clone()),
                _ => None,
            }) {
                let e = e.through_dependency(self.tasks[&x].name());
                self.fail_for_good(x, e);
                continue;
            }
            for d in &deps {
                let dr = self.tasks.get_mut(d).expect("deps are live records");
                dr.waiters += 1;
                if dr.state == State::Released {
                    stack.push(*d);
                }
            }
            self.set_waiting_or_ready(x);
        }
    }

    /// Puts an active task (or one entering activity) into `Waiting` or `Ready` by its
    /// inputs.
    fn set_waiting_or_ready(&mut self, id: TaskId) {
        // An input that failed for good (its error already passed to the dependents that
        // were waiting) fails this task too: it would otherwise wait for it forever. A
        // task running elsewhere when its input failed comes back here when its worker
        // reports the input missing.
        let erred = self.tasks[&id].deps.iter().find_map(|d| match &self.tasks[d].state {
            State::Erred(e) => Some((**e).clone()),
            _ => None,
        });
        if let Some(e) = erred {
            let e = e.through_dependency(self.tasks[&id].name());
            self.fail_for_good(id, e);
            return;
        }
        let missing = self.tasks[&id].deps.iter().filter(|d| self.tasks[d].state != State::Memory).count() as u32;
        if missing == 0 {
            self.make_ready(id);
        } else {
            let r = self.tasks.get_mut(&id).expect("present");
            set_state(&mut self.obs, r, State::Waiting { missing });
        }
    }

    fn make_ready(&mut self, id: TaskId) {
        self.seq += 1;
        let seq = self.seq;
        let r = self.tasks.get_mut(&id).expect("present");
        set_state(&mut self.obs, r, State::Ready);
        r.ready_seq = seq;
        let order = r.order;
        let spec = r.spec.clone().expect("only tasks become ready");
        match spec.kind {
            TaskKind::ActorCall { actor, .. } => self.pump_actor(actor),
            _ => match spec.options.pin {
                Some(w) if self.workers.contains_key(&w) => self.assign(id, w),
                Some(w) => {
                    let e = TaskError::new(
                        FailureKind::WorkerLost,
                        spec.kind.name(),
                        format!("it must run on {w}, which is not in the cluster"),
                    );
                    self.fail_for_good(id, e);
                }
                None => self.ready.push(ReadyEntry { priority: spec.options.priority, order, ready_seq: seq, id }),
            },
        }
    }

    /// Sends the ready calls at the head of an actor's queue to the actor's worker.
    fn pump_actor(&mut self, actor: TaskId) {
        let Some(ar) = self.tasks.get(&actor) else { return };
        if ar.state != State::Memory {
            return;
        }
        let Some(&worker) = ar.who_has.first() else { return };
        while let Some(&front) = self.actor_queues.get(&actor).and_then(|q| q.front()) {
            match self.tasks.get(&front).map(|r| &r.state) {
                Some(State::Ready) => {
                    self.actor_queues.get_mut(&actor).expect("present").pop_front();
                    self.assign(front, worker);
                }
                Some(State::Waiting { .. }) => break,
                _ => {
                    self.actor_queues.get_mut(&actor).expect("present").pop_front();
                }
            }
        }
        if self.actor_queues.get(&actor).is_some_and(|q| q.is_empty()) {
            self.actor_queues.remove(&actor);
        }
    }

    fn assign(&mut self, id: TaskId, worker: WorkerId) {
        let r = self.tasks.get_mut(&id).expect("present");
        set_state(&mut self.obs, r, State::Assigned(worker));
        if let Some(TaskKind::Spmd { rank, coordinator, .. }) = r.spec.as_ref().map(|s| &s.kind) {
            self.obs.rank_assigned(coordinator, *rank, worker);
        }
        r.instance.0 = r.instance.0.wrapping_add(1);
        let instance = r.instance;
        let spec = r.spec.clone().expect("only tasks are assigned");
        let actor = match spec.kind {
            TaskKind::ActorCall { actor, .. } => Some(actor),
            _ => None,
        };
        let deps: Vec<DepSource> = self.tasks[&id]
            .deps
            .iter()
            .filter(|d| Some(**d) != actor)
            .map(|d| {
                let dr = &self.tasks[d];
                DepSource {
                    id: *d,
                    inline: dr.inline.clone(),
                    holders: if dr.inline.is_some() { Vec::new() } else { dr.who_has.to_vec() },
                }
            })
            .collect();
        self.workers.get_mut(&worker).expect("assigned to a live worker").processing.insert(id);
        self.out.compute.entry(worker).or_default().push(ComputeTask { spec, instance, deps });
    }

    fn unassign(&mut self, id: TaskId, worker: WorkerId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&id);
        }
    }

    /// The task no longer needs its inputs.
    fn deactivate(&mut self, id: TaskId) {
        let deps = self.tasks[&id].deps.clone();
        for d in deps {
            if let Some(dr) = self.tasks.get_mut(&d) {
                dr.waiters = dr.waiters.saturating_sub(1);
                self.maybe_release(d);
            }
        }
    }

    /// Ends a task with an error, and every active task downstream of it.
    fn fail_for_good(&mut self, root: TaskId, error: TaskError) {
        let mut stack = vec![(root, error)];
        while let Some((id, e)) = stack.pop() {
            let r = self.tasks.get_mut(&id).expect("present");
            let was_active = r.state.is_active();
            if let State::Assigned(w) = r.state {
                self.unassign(id, w);
                self.out.other.push(Command::Cancel { worker: w, ids: vec![id] });
            }
            let r = self.tasks.get_mut(&id).expect("present");
            if let Some(TaskKind::Spmd { rank, coordinator, .. }) = r.spec.as_ref().map(|s| &s.kind) {
                self.obs.rank_ended(coordinator, *rank, Some(e.to_string()));
            }
            set_state(&mut self.obs, r, State::Erred(Box::new(e.clone())));
            let dependents: Vec<TaskId> = r.dependents.iter().copied().collect();
            let refs = r.client_refs;
            let actor = match r.spec.as_ref().map(|s| &s.kind) {
                Some(TaskKind::ActorCall { actor, .. }) => Some(*actor),
                _ => None,
            };
            if was_active {
                self.deactivate(id);
            }
            if refs > 0 {
                self.notify_erred(id, e.clone());
            }
            for d in dependents {
                let dr = &self.tasks[&d];
                if matches!(dr.state, State::Waiting { .. } | State::Ready) {
                    stack.push((d, e.through_dependency(dr.name())));
                }
            }
            if let Some(actor) = actor {
                self.pump_actor(actor);
            }
            self.maybe_forget(id);
        }
    }

    /// The last copy of `id` is gone.
    fn data_lost(&mut self, id: TaskId, why: &str) {
        let r = self.tasks.get_mut(&id).expect("present");
        r.who_has.clear();
        set_state(&mut self.obs, r, State::Released);
        let wanted = r.client_refs > 0 || r.waiters > 0;
        let is_actor = matches!(r.spec.as_ref().map(|s| &s.kind), Some(TaskKind::ActorNew { .. }));
        let dependents: Vec<TaskId> = r.dependents.iter().copied().collect();
        let name = r.name().to_string();
        for d in dependents {
            let dr = self.tasks.get_mut(&d).expect("live");
            if let State::Waiting { missing } = &mut dr.state {
                *missing += 1;
            } else if dr.state == State::Ready {
                set_state(&mut self.obs, dr, State::Waiting { missing: 1 });
            }
        }
        if !wanted {
            self.maybe_forget(id);
        } else if is_actor {
            let e = TaskError::new(FailureKind::WorkerLost, name, format!("the actor was lost with {why}"));
            self.fail_for_good(id, e);
        } else if self.tasks[&id].spec.is_none() {
            let e = TaskError::new(FailureKind::DataLost, name, format!("its only copy was on {why}"));
            self.fail_for_good(id, e);
        } else {
            self.recompute(id);
        }
    }

    fn maybe_release(&mut self, id: TaskId) {
        let Some(r) = self.tasks.get_mut(&id) else { return };
        if r.client_refs > 0 || r.waiters > 0 {
            return;
        }
        if r.state == State::Memory {
            set_state(&mut self.obs, r, State::Released);
            r.inline = None;
            let holders = std::mem::take(&mut r.who_has);
            for w in holders {
                self.delete_on(w, id);
            }
        }
        self.maybe_forget(id);
    }

    fn delete_on(&mut self, worker: WorkerId, id: TaskId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has.remove(&id);
            self.out.delete.entry(worker).or_default().push(id);
        }
    }

    /// Drops records nothing refers to any more, and then their lineage.
    fn maybe_forget(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(r) = self.tasks.get(&id) else { continue };
            if r.client_refs > 0 || !r.dependents.is_empty() || r.state.is_active() || r.state == State::Memory {
                continue;
            }
            let r = self.tasks.remove(&id).expect("present");
            self.obs.forgotten(r.group, r.state.slot());
            if r.spec.as_ref().is_some_and(|s| s.has_stored_args()) {
                // Its driver keeps large arguments for it until now.
                self.out.clients.entry(r.owner).or_default().push(Note::Forgotten(id));
            }
            for d in r.deps {
                if let Some(dr) = self.tasks.get_mut(&d) {
                    dr.dependents.remove(&id);
                    stack.push(d);
                }
            }
        }
    }

    fn notify_done(&mut self, id: TaskId) {
        let r = &self.tasks[&id];
        // A result that travels inline needs no holders: no allocation for them.
        let holders = if r.inline.is_some() { Vec::new() } else { r.who_has.to_vec() };
        let done = Done { id, inline: r.inline.clone(), holders };
        self.out.clients.entry(r.owner).or_default().push(Note::Done(done));
    }

    fn notify_erred(&mut self, id: TaskId, error: TaskError) {
        let owner = self.tasks[&id].owner;
        self.out.clients.entry(owner).or_default().push(Note::Erred { id, error });
    }
}
