//! The scheduler's I/O around the state machine.
//!
//! The [`Scheduler`] lives behind a lock with an inbox beside it. Connection threads (one
//! per worker, client or observer) read and decode messages and put them in the inbox;
//! whichever thread then finds the lock free handles everything waiting in the inbox and
//! hands one buffer per destination to that connection's [`Outgoing`] queue, which never
//! blocks, while threads that find it taken go back to reading, leaving their messages to
//! the holder. So a message reaches the state machine
//! without waking another thread, messages are batched whenever work arrives faster
//! than it is handled, and nothing waits for a timer. A driver in the same process (the
//! embedded default) goes through the same inbox, without sockets or serialization.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant};

use chorus_comm::fingerprint::Fingerprint;
use chorus_comm::handshake::{Hello, Role};
use chorus_comm::{Refusal, Secret};
use chorus_dashboard::model::{ClusterInfo, Snapshot, SnapshotQuery};
use chorus_dashboard::{Bind, Dashboard, Source};

use crate::settings::Limits;
use crate::error::{FailureKind, TaskError};
use crate::net::{self, Stream};
use crate::outgoing::Outgoing;
use crate::proto::{
    kind, wire, ClientId, FromClient, FromObserver, FromWorker, Message, Status, ToClient, ToObserver, ToWorker,
    WireError, WorkerId, WorkerInfo,
};
use crate::scheduler::{Command, Event, Note, Scheduler, SchedulerConfig};
use crate::Result;

/// Where scheduler messages for a client go.
pub(crate) trait ClientSink: Send + Sync {
    /// Messages for the client, in order; an error drops the client, and says why.
    fn deliver(&self, msgs: Vec<ToClient>) -> std::result::Result<(), String>;
}

/// A client in another process.
struct RemoteSink(Outgoing);

impl ClientSink for RemoteSink {
    fn deliver(&self, msgs: Vec<ToClient>) -> std::result::Result<(), String> {
        let mut buf = Vec::new();
        for m in &msgs {
            match m {
                ToClient::Done(done) => {
                    wire::encode_batched(done, ToClient::Done, &mut buf, wire::BATCH_BYTES);
                }
                other => wire::encode_into(other, &mut buf),
            }
        }
        self.0.send(buf)
    }
}

/// Answers a status request.
pub(crate) type StatusReply = Box<dyn FnOnce(Status) + Send>;
/// Answers a dashboard's request.
pub(crate) type SnapshotReply = Box<dyn FnOnce(Snapshot) + Send>;

pub(crate) enum Input {
    WorkerJoined(WorkerInfo, Outgoing),
    FromWorker(WorkerId, FromWorker),
    WorkerClosed(WorkerId, String),
    ClientJoined(ClientId, Arc<dyn ClientSink>),
    FromClient(ClientId, FromClient),
    ClientClosed(ClientId),
    Status(StatusReply),
    /// A snapshot for the dashboard, reports and progress bars.
    Observe(SnapshotQuery, SnapshotReply),
    /// The graph behind some tasks, for `visualize`.
    Graph(Vec<crate::proto::TaskId>, Box<dyn FnOnce(Vec<crate::proto::GraphNode>) + Send>),
    /// Once a second: time to look for silent workers.
    Tick,
    Shutdown,
}

/// The state machine and its inbox; see the module documentation.
pub(crate) struct CoreHandle {
    inbox: Mutex<Vec<Input>>,
    core: Mutex<Core>,
    stopped: AtomicBool,
    /// The send budget of each connection.
    budget: usize,
    /// How long a worker's connection polls after a single report ([`Limits::spin`]).
    spin: Duration,
}

impl CoreHandle {
    /// Hands `input` to the scheduler; `false` once it has stopped.
    pub(crate) fn send(&self, input: Input) -> bool {
        self.send_all([input])
    }

    /// Hands several inputs over at once: they are handled in one batch, so what they
    /// make the scheduler send leaves as one write per connection.
    pub(crate) fn send_all(&self, inputs: impl IntoIterator<Item = Input>) -> bool {
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        self.inbox.lock().expect("inbox lock").extend(inputs);
        self.drain();
        true
    }

    /// Handles the inbox unless another thread already is. The holder looks at the inbox
    /// again after letting go of the lock, so an input left by a thread that found the
    /// lock taken is never stranded.
    fn drain(&self) {
        loop {
            let mut core = match self.core.try_lock() {
                Ok(core) => core,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            loop {
                let batch = std::mem::take(&mut *self.inbox.lock().expect("inbox lock"));
                if batch.is_empty() {
                    break;
                }
                for input in batch {
                    if !self.stopped.load(Ordering::Relaxed) && !core.apply(input) {
                        self.stopped.store(true, Ordering::Release);
                        core.stop();
                    }
                }
                core.flush();
            }
            drop(core);
            if self.inbox.lock().expect("inbox lock").is_empty() {
                return;
            }
        }
    }
}

/// Which builds may join: the scheduler's own (embedded in the driver), or whichever
/// program joins first (a standing `chorus scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramPolicy {
    /// Workers and clients must be this process's build.
    ThisBinary,
    /// The first worker or client fixes the build; others must match it while any of
    /// them is connected.
    FirstToJoin,
}

/// How a scheduler is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address to listen on (`127.0.0.1:0` for an ephemeral local port).
    pub listen: String,
    /// Also listen on a Unix socket, for processes on this host.
    pub unix: bool,
    /// The cluster secret.
    pub secret: Secret,
    /// Which builds may join.
    pub program: ProgramPolicy,
    /// A worker silent for this long is considered lost.
    pub heartbeat_timeout: Duration,
    /// Scheduling tunables.
    pub scheduler: SchedulerConfig,
    /// Size limits (the send budget of each connection among them).
    pub limits: Limits,
    /// Where to serve the dashboard; `None` serves none.
    pub dashboard: Option<Bind>,
}

/// A running scheduler.
pub struct SchedulerServer {
    core: Arc<CoreHandle>,
    _socket_dir: Option<chorus_comm::link::SocketDir>,
    bytes_in: Arc<AtomicU64>,
    tcp: String,
    unix: Option<String>,
    next_client: Arc<AtomicU16>,
    workers: Arc<(Mutex<Vec<WorkerInfo>>, Condvar)>,
    dashboard: Option<Dashboard>,
}

impl SchedulerServer {
    /// Starts listening and scheduling on background threads.
    pub fn start(config: ServerConfig) -> Result<SchedulerServer> {
        let listeners = net::Listeners::bind(&config.listen, config.unix)?;
        let (tcp, unix) = (listeners.tcp_addr(), listeners.unix_path());
        let workers = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let members = Arc::new(AtomicU32::new(0));
        let program = Arc::new(Mutex::new(match config.program {
            ProgramPolicy::ThisBinary => Some(Fingerprint::current()),
            ProgramPolicy::FirstToJoin => None,
        }));
        let core = Arc::new(CoreHandle {
            inbox: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            core: Mutex::new(Core {
                sched: Scheduler::new(config.scheduler.clone()),
                workers: HashMap::new(),
                clients: HashMap::new(),
                heartbeat_timeout: config.heartbeat_timeout,
                published: workers.clone(),
                members: members.clone(),
                program: program.clone(),
                policy: config.program,
                started_us: chorus_comm::diag::unix_micros(),
                address: String::new(),
            }),
            budget: config.limits.send_budget,
            spin: config.limits.spin,
        });
        {
            let core = core.clone();
            net::spawn("chorus-scheduler-clock", move || {
                while core.send(Input::Tick) {
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
        }
        let next_client = Arc::new(AtomicU16::new(2));
        let next_worker = Arc::new(AtomicU32::new(1));
        let check = {
            let program = program.clone();
            move |h: &Hello| match h.role {
                Role::Member { kind: kind::WORKER | kind::CLIENT, .. } => {
                    let mut p = program.lock().expect("program lock");
                    match *p {
                        Some(fp) if fp != h.fingerprint => Err(Refusal::BinaryMismatch { local: fp.short(), peer: h.fingerprint.short() }),
                        Some(_) => Ok(()),
                        None => {
                            *p = Some(h.fingerprint);
                            Ok(())
                        }
                    }
                }
                Role::Member { kind: kind::OBSERVER, .. } => Ok(()),
                other => Err(Refusal::Unexpected(format!("expected a worker, client or observer, found {other:?}"))),
            }
        };
        let conn_core = core.clone();
        let next_client2 = next_client.clone();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let counter = bytes_in.clone();
        let socket_dir = listeners.serve(config.secret.clone(), kind::SCHEDULER, check, move |stream, hello| {
            let Role::Member { kind, .. } = hello.role else { return };
            let ids = Ids { client: &next_client2, worker: &next_worker, members: &members, bytes_in: &counter };
            serve_conn(stream, kind, &conn_core, ids);
        })?;
        core.core.lock().expect("core lock").address = tcp.clone();
        let dashboard = match config.dashboard {
            Some(bind) => {
                let token = chorus_dashboard::token(&config.secret);
                let source = Arc::new(CoreSource(Arc::downgrade(&core)));
                Some(Dashboard::serve(bind, token, source).map_err(crate::Error::Dashboard)?)
            }
            None => None,
        };
        Ok(SchedulerServer { core, _socket_dir: socket_dir, bytes_in, tcp, unix, next_client, workers, dashboard })
    }

    /// The dashboard's link (with its token when it listens beyond loopback), if one
    /// is served.
    pub fn dashboard_link(&self) -> Option<&str> {
        self.dashboard.as_ref().map(Dashboard::link)
    }

    /// The dashboard, if one is served.
    pub fn dashboard(&self) -> Option<&Dashboard> {
        self.dashboard.as_ref()
    }

    /// What the dashboard shows now, with the task events from `query.events_since`
    /// on: what progress bars, performance reports and traces read.
    pub fn snapshot(&self, query: SnapshotQuery) -> Result<Snapshot> {
        CoreSource(Arc::downgrade(&self.core))
            .snapshot(query)
            .ok_or_else(|| crate::Error::Timeout("the scheduler did not answer a snapshot request within 10 s".into()))
    }

    /// The TCP address (`ip:port`).
    pub fn address(&self) -> &str {
        &self.tcp
    }

    /// The Unix-socket address (`unix:/path`), for processes on this host.
    pub fn local_address(&self) -> Option<String> {
        self.unix.as_ref().map(|p| format!("unix:{p}"))
    }

    /// The workers connected now.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers.0.lock().expect("workers lock").clone()
    }

    /// Waits until at least `n` workers are connected; `alive` is asked between waits
    /// whether it is worth waiting on (for instance, whether worker processes still run).
    pub fn wait_for_workers(&self, n: usize, timeout: Duration, mut alive: impl FnMut() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.workers;
        let mut w = lock.lock().expect("workers lock");
        while w.len() < n {
            drop(w);
            alive()?;
            w = lock.lock().expect("workers lock");
            if w.len() >= n {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(crate::Error::WorkersDidNotJoin(format!(
                    "only {} of {n} workers joined the scheduler within {timeout:?}",
                    w.len()
                )));
            }
            w = cv.wait_timeout(w, (deadline - now).min(Duration::from_millis(20))).expect("workers lock").0;
        }
        Ok(())
    }

    /// Connects a client living in this process.
    pub(crate) fn local_client(&self, sink: Arc<dyn ClientSink>) -> (ClientId, Arc<CoreHandle>) {
        let id = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        self.core.send(Input::ClientJoined(id, sink));
        (id, self.core.clone())
    }

    /// Bytes the scheduler has received over its connections (message frames): a
    /// measure that task data does not pass through it.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// The cluster's state: workers, their tasks and memory.
    pub fn status(&self) -> Result<Status> {
        let (tx, rx) = mpsc::channel();
        self.core.send(Input::Status(Box::new(move |s| {
            let _ = tx.send(s);
        })));
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| crate::Error::Timeout("the scheduler did not answer a status request within 10 s".into()))
    }

    /// Asks every worker to leave and stops scheduling.
    pub fn shutdown(&self) {
        self.core.send(Input::Shutdown);
    }
}

impl Drop for SchedulerServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The most tasks a graph answer carries (`visualize` of more draws the first these).
pub const GRAPH_LIMIT: usize = 200_000;

/// The dashboard's view of the scheduler: requests go through the inbox like any other
/// input, and are answered between batches.
struct CoreSource(std::sync::Weak<CoreHandle>);

impl Source for CoreSource {
    fn snapshot(&self, query: SnapshotQuery) -> Option<Snapshot> {
        let core = self.0.upgrade()?;
        let (tx, rx) = mpsc::channel();
        let sent = core.send(Input::Observe(
            query,
            Box::new(move |s| {
                let _ = tx.send(s);
            }),
        ));
        drop(core);
        if !sent {
            return None;
        }
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }
}

struct Ids<'a> {
    client: &'a AtomicU16,
    worker: &'a AtomicU32,
    members: &'a AtomicU32,
    bytes_in: &'a AtomicU64,
}

/// Reads messages of one connection, counting their bytes.
struct Reader<R> {
    inner: std::io::BufReader<R>,
    buf: Vec<u8>,
}

/// Reports up to this size are single ones, after which a worker's connection looks for
/// the next for [`Limits::spin`] (see `net::SpinRead`): on a round trip of single tasks
/// it comes within that;
/// batches of reports come from workers busy with many tasks, whose next batch takes
/// longer than a spin.
const SINGLE_REPORT_BYTES: usize = 128;

impl<R: std::io::Read> Reader<R> {
    fn next<M: Message>(&mut self, count: &AtomicU64) -> std::result::Result<M, WireError> {
        let m = wire::read::<M>(&mut self.inner, &mut self.buf);
        count.fetch_add(self.buf.len() as u64 + 4, Ordering::Relaxed);
        m
    }
}

/// Why a connection's reader stopped, as the scheduler reports it; a broken protocol
/// is also logged, naming `who`.
fn closed_reason(who: &str, e: &WireError) -> String {
    match e {
        WireError::Closed => "closed its connection".into(),
        WireError::Io(e) => format!("connection failed: {e}"),
        protocol => {
            let why = format!("broke the protocol ({protocol}); its connection was closed");
            protocol_warning(who, &why);
            why
        }
    }
}

fn serve_conn(stream: Stream, kind: u8, core: &CoreHandle, ids: Ids<'_>) {
    let Ids { client: next_client, worker: next_worker, members, bytes_in } = ids;
    let Ok(reader) = stream.try_clone() else { return };
    let spin = kind == kind::WORKER;
    let reader = net::SpinRead::new(reader, core.spin, move |last| spin && last > 0 && last <= SINGLE_REPORT_BYTES);
    // Buffered: a batch of messages costs one read, not two per message.
    let mut reader = Reader { inner: std::io::BufReader::with_capacity(1 << 16, reader), buf: Vec::new() };
    let out = Outgoing::new(stream, core.budget);
    match kind {
        kind::WORKER => {
            let mut info = match reader.next::<FromWorker>(bytes_in) {
                Ok(FromWorker::Register(info)) => info,
                Ok(other) => return protocol_warning("a worker", &format!("began with {other:?} instead of registering")),
                Err(e) => {
                    closed_reason("a worker", &e);
                    return;
                }
            };
            let id = WorkerId(next_worker.fetch_add(1, Ordering::Relaxed));
            info.id = id;
            if out.send(wire::encode(&ToWorker::Welcome(id))).is_err() {
                return;
            }
            members.fetch_add(1, Ordering::Relaxed);
            core.send(Input::WorkerJoined(info, out));
            let reason = loop {
                match reader.next::<FromWorker>(bytes_in) {
                    Ok(FromWorker::Register(_)) => {
                        let why = "registered twice; its connection was closed".to_string();
                        protocol_warning(&id.to_string(), &why);
                        break why;
                    }
                    Ok(m) => {
                        if !core.send(Input::FromWorker(id, m)) {
                            return;
                        }
                    }
                    Err(e) => break closed_reason(&id.to_string(), &e),
                }
            };
            core.send(Input::WorkerClosed(id, reason));
        }
        kind::CLIENT => {
            match reader.next::<FromClient>(bytes_in) {
                Ok(FromClient::Register) => {}
                Ok(other) => return protocol_warning("a client", &format!("began with {other:?} instead of registering")),
                Err(e) => {
                    closed_reason("a client", &e);
                    return;
                }
            }
            let id = ClientId(next_client.fetch_add(1, Ordering::Relaxed));
            members.fetch_add(1, Ordering::Relaxed);
            core.send(Input::ClientJoined(id, Arc::new(RemoteSink(out.clone()))));
            let reason = loop {
                match reader.next::<FromClient>(bytes_in) {
                    Ok(FromClient::Register) => {
                        let why = "registered twice".to_string();
                        protocol_warning(&id.to_string(), &why);
                        break why;
                    }
                    Ok(m) => {
                        if !core.send(Input::FromClient(id, m)) {
                            return;
                        }
                    }
                    Err(e) => break closed_reason(&id.to_string(), &e),
                }
            };
            out.close(&reason);
            core.send(Input::ClientClosed(id));
        }
        kind::OBSERVER => loop {
            match reader.next::<FromObserver>(bytes_in) {
                Ok(FromObserver::Register) => {}
                Ok(FromObserver::Status) => {
                    let out = out.clone();
                    let reply = Box::new(move |s: Status| {
                        let _ = out.send(wire::encode(&ToObserver::Status(s)));
                    });
                    if !core.send(Input::Status(reply)) {
                        return;
                    }
                }
                Ok(FromObserver::Snapshot(query)) => {
                    let out = out.clone();
                    let reply = Box::new(move |s: Snapshot| {
                        let _ = out.send(wire::encode(&ToObserver::Snapshot(Box::new(s))));
                    });
                    if !core.send(Input::Observe(query, reply)) {
                        return;
                    }
                }
                Ok(FromObserver::Graph(roots)) => {
                    let out = out.clone();
                    let reply = Box::new(move |g| {
                        let _ = out.send(wire::encode(&ToObserver::Graph(g)));
                    });
                    if !core.send(Input::Graph(roots, reply)) {
                        return;
                    }
                }
                Err(e) => {
                    closed_reason("an observer", &e);
                    return;
                }
            }
        },
        _ => {}
    }
}

/// Logs why the scheduler closed a connection.
fn protocol_warning(who: &str, why: &str) {
    chorus_comm::diag::warn(&format!("{who} {why}"));
}

struct Core {
    sched: Scheduler,
    workers: HashMap<WorkerId, (Outgoing, Instant)>,
    clients: HashMap<ClientId, Arc<dyn ClientSink>>,
    heartbeat_timeout: Duration,
    published: Arc<(Mutex<Vec<WorkerInfo>>, Condvar)>,
    members: Arc<AtomicU32>,
    program: Arc<Mutex<Option<Fingerprint>>>,
    policy: ProgramPolicy,
    started_us: u64,
    address: String,
}

impl Core {
    fn stop(&mut self) {
        for (out, _) in self.workers.values() {
            let _ = out.send(wire::encode(&ToWorker::Shutdown));
        }
    }

    /// Handles one input; `false` to stop.
    fn apply(&mut self, input: Input) -> bool {
        match input {
            Input::WorkerJoined(info, out) => {
                self.workers.insert(info.id, (out, Instant::now()));
                self.sched.handle(Event::Clock { now_us: chorus_comm::diag::unix_micros() });
                self.sched.handle(Event::WorkerJoined(info));
                self.publish_workers();
            }
            Input::FromWorker(worker, msg) => {
                let Some(entry) = self.workers.get_mut(&worker) else { return true };
                entry.1 = Instant::now();
                let event = match msg {
                    FromWorker::Finished(results) => Event::Finished { worker, results },
                    FromWorker::Failed(failures) => Event::Failed { worker, failures },
                    FromWorker::MissingInputs { id, instance, missing } => {
                        Event::MissingInputs { worker, id, instance, missing }
                    }
                    FromWorker::Stolen(ids) => Event::Stolen { worker, ids },
                    FromWorker::Heartbeat(beat) => Event::Heartbeat { worker, beat, at_us: chorus_comm::diag::unix_micros() },
                    FromWorker::Register(_) => return true,
                    FromWorker::Leaving(reason) => {
                        // Its tasks go elsewhere now, not when its connection closes.
                        self.sched.handle(Event::Clock { now_us: chorus_comm::diag::unix_micros() });
                        self.lose_worker(worker, reason, true);
                        return true;
                    }
                };
                self.sched.handle(event);
            }
            Input::WorkerClosed(w, reason) => {
                self.sched.handle(Event::Clock { now_us: chorus_comm::diag::unix_micros() });
                self.lose_worker(w, reason, false);
            }
            Input::ClientJoined(id, sink) => {
                let welcome = vec![ToClient::Welcome { client: id, workers: self.sched.worker_infos() }];
                if sink.deliver(welcome).is_ok() {
                    self.clients.insert(id, sink);
                    self.sched.handle(Event::ClientJoined(id));
                }
            }
            Input::FromClient(client, msg) => {
                if !self.clients.contains_key(&client) {
                    return true;
                }
                let event = match msg {
                    FromClient::Submit(tasks) => Event::Submit { client, tasks },
                    FromClient::Release(ids) => Event::Release { client, ids },
                    FromClient::Cancel(ids) => Event::Cancel { client, ids },
                    FromClient::Scattered { worker, objects } => Event::Scattered { client, worker, objects },
                    FromClient::Query(record) => Event::Query(record),
                    FromClient::Register => return true,
                };
                self.sched.handle(event);
            }
            Input::ClientClosed(id) => self.drop_client(id),
            Input::Status(reply) => reply(self.sched.status(self.clients.len() as u64)),
            Input::Observe(query, reply) => {
                let mut snap = self.sched.observe(query);
                snap.now_us = chorus_comm::diag::unix_micros();
                snap.cluster = ClusterInfo {
                    kind: "scheduler".into(),
                    address: self.address.clone(),
                    started_us: self.started_us,
                    clients: self.clients.len() as u64,
                };
                reply(snap);
            }
            Input::Graph(roots, reply) => reply(self.sched.graph(&roots, GRAPH_LIMIT)),
            Input::Tick => {
                self.sched.handle(Event::Clock { now_us: chorus_comm::diag::unix_micros() });
                self.check_heartbeats();
            }
            Input::Shutdown => return false,
        }
        true
    }

    fn drop_client(&mut self, id: ClientId) {
        if self.clients.remove(&id).is_some() {
            self.members.fetch_sub(1, Ordering::Relaxed);
            self.sched.handle(Event::ClientLeft(id));
            self.maybe_forget_program();
        }
    }

    fn lose_worker(&mut self, w: WorkerId, reason: String, memory: bool) {
        if let Some((out, _)) = self.workers.remove(&w) {
            out.close(&reason);
            self.members.fetch_sub(1, Ordering::Relaxed);
            self.sched.handle(Event::WorkerLost { worker: w, reason, memory });
            self.publish_workers();
            self.maybe_forget_program();
        }
    }

    fn maybe_forget_program(&mut self) {
        if self.policy == ProgramPolicy::FirstToJoin && self.members.load(Ordering::Relaxed) == 0 {
            *self.program.lock().expect("program lock") = None;
        }
    }

    fn publish_workers(&self) {
        let (lock, cv) = &*self.published;
        *lock.lock().expect("workers lock") = self.sched.worker_infos();
        cv.notify_all();
    }

    fn check_heartbeats(&mut self) {
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() > self.heartbeat_timeout)
            .map(|(w, _)| *w)
            .collect();
        for w in silent {
            let reason = format!("sent nothing for {:?} (heartbeat timeout)", self.heartbeat_timeout);
            self.lose_worker(w, reason, false);
        }
    }

    /// Hands the scheduler's commands to the connections' queues, until it has none.
    fn flush(&mut self) {
        while self.sched.has_commands() {
            let mut bufs: HashMap<WorkerId, Vec<u8>> = HashMap::new();
            let mut unsendable = Vec::new();
            let mut dropped_clients = Vec::new();
            for cmd in self.sched.drain() {
                // The scheduler's decisions, in the wire messages of each role.
                let (w, msg) = match cmd {
                    Command::Assign { worker, tasks } => {
                        let buf = bufs.entry(worker).or_default();
                        for i in wire::encode_batched(&tasks, ToWorker::Compute, buf, wire::BATCH_BYTES) {
                            unsendable.push((worker, too_large_to_send(&tasks[i])));
                        }
                        continue;
                    }
                    Command::Release { worker, ids } => (worker, ToWorker::Delete(ids)),
                    Command::Steal { worker, ids } => (worker, ToWorker::Steal(ids)),
                    Command::Cancel { worker, ids } => (worker, ToWorker::Cancel(ids)),
                    Command::Peers { worker, peers } => (worker, ToWorker::Peers(peers)),
                    Command::Notify { client, notes } => {
                        if let Some(sink) = self.clients.get(&client) {
                            if let Err(why) = sink.deliver(Note::into_messages(notes)) {
                                dropped_clients.push((client, why));
                            }
                        }
                        continue;
                    }
                };
                wire::encode_into(&msg, bufs.entry(w).or_default());
            }
            let mut failed = Vec::new();
            for (w, buf) in bufs {
                if let Some((out, _)) = self.workers.get(&w) {
                    if let Err(why) = out.send(buf) {
                        failed.push((w, why));
                    }
                }
            }
            for (w, reason) in failed {
                self.lose_worker(w, reason, false);
            }
            for (c, why) in dropped_clients {
                protocol_warning(&format!("dropped {c}, which"), &why);
                self.drop_client(c);
            }
            for (worker, failures) in unsendable {
                self.sched.handle(Event::Failed { worker, failures: vec![failures] });
            }
        }
    }
}

/// The failure of a task whose compute message alone is larger than a frame: it fails
/// instead of taking its worker's connection down.
fn too_large_to_send(t: &crate::proto::ComputeTask) -> crate::proto::Failed {
    let error = TaskError::new(
        FailureKind::TooLarge,
        t.spec.kind.name(),
        format!("its description is larger than the protocol's frame limit of {} bytes", wire::MAX_FRAME),
    );
    crate::proto::Failed { id: t.spec.id, instance: t.instance, error, timing: Default::default() }
}
