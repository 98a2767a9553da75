//! The driver's side: [`Client`], [`Future`], [`Actor`].
//!
//! A client submits tasks and gets typed futures back. Results stay on the workers: a
//! future passed as an argument makes the task run where its input is (or fetch it from
//! there, worker to worker), and only [`Future::result`] or [`Client::gather`] bring bytes
//! to the driver, straight from the worker holding them. Dropping the last clone of a
//! future tells the scheduler the result may go.
//!
//! Arguments of any size work: one above [`STORE_ARGS_ABOVE`] stays in the driver's own
//! object store, served by a data server the client starts the first time it needs one,
//! and the worker that runs the task fetches it from there (Ray's object store does the
//! same); the scheduler sees only its size. The driver keeps it until the scheduler
//! forgets the task, lineage included. Submissions, however many tasks, go out in
//! batches of bounded size as they are built.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use chorus_comm::Secret;

use crate::args::{Arg, ArgValue, IntoArgs};
use crate::data::{self, Fetched};
use crate::settings::{Limits, STORE_ARGS_ABOVE};
use crate::error::{FailureKind, TaskError};
use crate::net;
use crate::proto::{
    self, kind, wire, ArgSlot, FromClient, TaskId, TaskKind, TaskOptions, TaskSpec, ToClient, WireError,
    WorkerId, WorkerInfo,
};
use crate::registry::{decode_value, encode_value, ActorClass, RemoteFunction, SpmdFunction};
use crate::server::ClientSink;
use crate::{Error, Result};

mod inner;
mod mailbox;
mod observe;
mod progress;

pub use observe::{write_dot, PerformanceReport};

pub use progress::progress;

use inner::{Inner, Link};
pub(crate) use mailbox::Mailbox;
use mailbox::Slot;

/// Tasks of a `map` sent per submission message, so that the first tasks run while
/// the rest are still being built.
const SUBMIT_BATCH: usize = 4096;
/// A `map` waits before sending more while this many of the client's tasks are
/// unfinished: the scheduler then holds a bounded number of them however large the
/// map, and its cost per task stays flat from thousands of tasks to tens of millions.
const MAX_IN_FLIGHT: usize = 1 << 17;
/// Released futures are told to the scheduler in batches: at this many, before any
/// other message, and at the latest after [`RELEASE_DELAY`].
const RELEASE_BATCH: usize = 4096;
/// See [`RELEASE_BATCH`].
const RELEASE_DELAY: Duration = Duration::from_millis(20);
/// A thread awaiting a result watches for it for [`Limits::spin`] before it sleeps when
/// at most this many of the client's futures are pending (see
/// [`Mailbox::spin_for_delivery`](mailbox::Mailbox::spin_for_delivery)).
const SPIN_PENDING_MAX: usize = 4;

pub(crate) struct Handle {
    pub(crate) id: TaskId,
    client: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut mail = self.client.mail.lock();
        if let Some(Slot::Pending) = mail.slots.remove(&self.id) {
            mail.pending -= 1;
        }
        drop(mail);
        self.client.release(self.id);
    }
}

/// The result of a task (or scattered data) that lives on the cluster.
///
/// Clones share the result; when the last clone is dropped, the cluster may free it.
/// Pass a future (or a reference to one) as an argument of another submit to use the
/// result where it is, without bringing it to the driver.
pub struct Future<T> {
    pub(crate) handle: Arc<Handle>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future { handle: self.handle.clone(), _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Future<{}>({})", std::any::type_name::<T>(), self.handle.id)
    }
}

impl<T> Future<T> {
    /// The task's id (also the key of its result on the cluster).
    pub fn id(&self) -> TaskId {
        self.handle.id
    }

    /// The same result, seen as a value of type `U`.
    ///
    /// For libraries that keep results as encoded bytes: a `Future<Vec<u8>>` whose bytes
    /// are the task encoding of a `Vec<T>` (as a task returning `Vec<T>` produces them)
    /// is a `Future<Vec<T>>`, and the other way round. Nothing is checked here; a type
    /// that does not match fails when the result is decoded.
    pub fn retype<U>(self) -> Future<U> {
        Future { handle: self.handle, _t: PhantomData }
    }

    /// Whether the task has ended (well or not).
    pub fn done(&self) -> bool {
        !matches!(self.handle.client.mail.lock().slots.get(&self.handle.id), Some(Slot::Pending))
    }

    /// Asks the cluster not to run the task; its result (and dependents') become a
    /// "cancelled" error. A task already running finishes, but its result is dropped.
    pub fn cancel(&self) {
        self.handle.client.send(FromClient::Cancel(vec![self.handle.id]));
    }

    fn wait_slot(&self, timeout: Option<Duration>) -> Result<Slot> {
        let c = &self.handle.client;
        let deadline = timeout.map(|t| Instant::now() + t);
        // Set on the first wait, so that a result already there costs no clock read.
        let mut spin_until: Option<Instant> = None;
        let mut spin = true;
        let mut s = c.mail.lock();
        loop {
            match s.slots.get(&self.handle.id) {
                Some(Slot::Pending) | None => {}
                Some(other) => return Ok(other.clone()),
            }
            if let Some(why) = &s.closed {
                return Err(Error::Disconnected { doing: "waiting for a result".into(), reason: why.clone() });
            }
            // Few results outstanding: this is a round trip, not a batch whose workers
            // need every core.
            let until = *spin_until.get_or_insert_with(|| Instant::now() + c.limits.spin);
            if spin && !c.limits.spin.is_zero() && s.pending <= SPIN_PENDING_MAX && deadline.is_none_or(|d| until < d) {
                let seen = c.mail.deliveries();
                drop(s);
                let delivered = c.mail.spin_for_delivery(seen, until);
                s = c.mail.lock();
                spin = delivered;
                continue;
            }
            s = match deadline {
                None => c.mail.cv.wait(s).expect("client state lock"),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout(format!(
                            "the result of task {} was not ready after {:?}",
                            self.handle.id,
                            timeout.unwrap_or_default()
                        )));
                    }
                    c.mail.cv.wait_timeout(s, d - now).expect("client state lock").0
                }
            };
        }
    }
}

impl<T: DeserializeOwned + 'static> Future<T> {
    /// Waits for the result and brings it to the driver.
    pub fn result(&self) -> Result<T> {
        self.result_within(None)
    }

    /// Like [`result`](Future::result), giving up with [`Error::Timeout`] after `timeout`.
    pub fn result_timeout(&self, timeout: Duration) -> Result<T> {
        self.result_within(Some(timeout))
    }

    fn result_within(&self, timeout: Option<Duration>) -> Result<T> {
        loop {
            let slot = self.wait_slot(timeout)?;
            if let Some(bytes) = self.handle.client.materialize(self.handle.id, slot)? {
                return decode_value(bytes, "a task's result").map_err(Error::Serialization);
            }
        }
    }

    /// Waits without blocking the thread (for async code); the result's bytes are then
    /// read from the worker that holds them.
    pub async fn result_async(&self) -> Result<T> {
        std::future::poll_fn(|cx| {
            let c = &self.handle.client;
            let mut s = c.mail.lock();
            if s.closed.is_some() || !matches!(s.slots.get(&self.handle.id), Some(Slot::Pending)) {
                return Poll::Ready(());
            }
            s.wakers.entry(self.handle.id).or_default().push(cx.waker().clone());
            Poll::Pending
        })
        .await;
        self.result()
    }
}

/// The error of a result larger than this driver accepts.
fn too_large_result(why: String) -> Error {
    Error::Task(Box::new(TaskError::new(FailureKind::TooLarge, "result", format!("bringing it to the driver: {why}"))))
}

/// What [`Client::wait`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Until one future has ended.
    FirstCompleted,
    /// Until all have ended.
    AllCompleted,
}

/// A stateful object living on one worker, made with [`Client::actor`]. The trait
/// `#[chorus::actor]` generates (`<Type>Actor`) gives it the type's methods, each
/// returning a [`Future`]; calls to one actor run one at a time, in the order made.
pub struct Actor<A> {
    created: Future<()>,
    _a: PhantomData<fn() -> A>,
}

impl<A> Clone for Actor<A> {
    fn clone(&self) -> Self {
        Actor { created: self.created.clone(), _a: PhantomData }
    }
}

impl<A: ActorClass> Actor<A> {
    /// Waits until the actor exists, returning its constructor's error if it failed.
    pub fn ready(&self) -> Result<()> {
        self.created.result()
    }

    /// Calls a method by its registered name (used by the generated trait).
    #[doc(hidden)]
    pub fn call_method<T>(&self, method: &'static str, args: Vec<ArgValue>) -> Future<T> {
        let client = &self.created.handle.client;
        let kind = TaskKind::ActorCall { actor: self.created.handle.id, method: method.to_string() };
        Client::submit_kind(client, kind, args, TaskOptions::default())
    }
}

/// A connection to a cluster's scheduler: submits tasks and collects results.
///
/// Made by [`LocalCluster::client`](crate::LocalCluster::client) (scheduler in this
/// process) or [`Client::connect`] (a standing `chorus scheduler`). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.inner.id)
    }
}

impl Client {
    pub(crate) fn local(server: &crate::server::SchedulerServer, secret: Secret, limits: Limits) -> Client {
        let mail = Arc::new(Mailbox::default());
        let (id, core) = server.local_client(mail.clone());
        let inner = Arc::new(Inner::new(id, Link::Local(core), mail, secret, "127.0.0.1".into(), limits, String::new()));
        // The welcome brings the worker list; the local id is known already.
        let _ = inner.mail.wait_welcome();
        // Without the thread releases wait for the next message, which is still correct.
        let _ = Inner::start_release_timer(&inner);
        Client { inner }
    }

    /// Connects to a standing scheduler at `address` (`host:port`, or `unix:/path`).
    ///
    /// The secret comes from `CHORUS_SECRET` or `CHORUS_SECRET_FILE`, else from the
    /// file `chorus scheduler` wrote (`~/.chorus/cluster`).
    pub fn connect(address: &str) -> Result<Client> {
        let secret = match Secret::from_env()? {
            Some(s) => s,
            None => crate::ClusterFile::read_default()?.secret,
        };
        Client::connect_with_secret(address, secret)
    }

    /// Connects with an explicit secret.
    pub fn connect_with_secret(address: &str, secret: Secret) -> Result<Client> {
        // A standing scheduler is another program (`chorus scheduler`); it checks builds itself.
        let check = net::same_build_check(false, |_| false);
        let (stream, _) = net::connect(address, &secret, kind::CLIENT, &check, Duration::from_secs(10))?;
        let bind_ip = stream.local_ip();
        let reader = stream.try_clone().map_err(|source| Error::Io { context: "socket".into(), source })?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
        let limits = Limits::get()?;
        let mail = Arc::new(Mailbox::default());
        let mut writer = stream;
        std::io::Write::write_all(&mut writer, &wire::encode(&FromClient::Register))
            .map_err(|source| Error::Io { context: format!("registering with the scheduler at {address}"), source })?;
        {
            let mail = mail.clone();
            let address = address.to_string();
            net::spawn("chorus-client-reader", move || {
                let mut buf = Vec::new();
                loop {
                    match wire::read::<ToClient>(&mut reader, &mut buf) {
                        Ok(m) => {
                            let _ = mail.deliver(vec![m]);
                        }
                        Err(WireError::Closed) => return mail.close("the scheduler closed the connection".into()),
                        Err(e) => {
                            let why = format!("the connection to the scheduler at {address} was lost ({e})");
                            return mail.close(why);
                        }
                    }
                }
            })?;
        }
        // Task ids carry the client's number, which arrives with the welcome.
        let id = mail.wait_welcome()?;
        let inner = Arc::new(Inner::new(id, Link::Remote(Mutex::new(writer)), mail, secret, bind_ip, limits, address.to_string()));
        Inner::start_release_timer(&inner)?;
        Ok(Client { inner })
    }

    /// Bytes of results and data this client has read from workers.
    pub fn bytes_received(&self) -> u64 {
        self.inner.pool.received.load(Ordering::Relaxed)
    }

    /// Large arguments this driver keeps for tasks the scheduler still knows (see the
    /// module documentation): they go when the tasks, lineage included, are forgotten.
    pub fn stored_arguments(&self) -> usize {
        self.inner.mail.args.held()
    }

    /// The workers of the cluster now.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.mail.lock().workers.clone()
    }

    /// Waits until at least `n` workers are connected.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut s = self.inner.mail.lock();
        while s.workers.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!("{} of {n} workers after {timeout:?}", s.workers.len())));
            }
            s = self.inner.mail.cv.wait_timeout(s, deadline - now).expect("client state lock").0;
        }
        Ok(())
    }

    fn submit_kind<T>(inner: &Arc<Inner>, kind: TaskKind, args: Vec<ArgValue>, options: TaskOptions) -> Future<T> {
        let (spec, keep, fut) = Client::prepare(inner, kind, args, options);
        if let Some(spec) = spec {
            inner.send(FromClient::Submit(vec![spec]));
        }
        drop(keep);
        fut
    }

    /// Builds a task and its future; `None` for the spec when an argument failed to
    /// encode or is too large (the future then carries that error).
    fn prepare<T>(
        inner: &Arc<Inner>,
        kind: TaskKind,
        args: Vec<ArgValue>,
        options: TaskOptions,
    ) -> (Option<TaskSpec>, Vec<Arc<Handle>>, Future<T>) {
        let id = inner.next_id();
        let name = kind.name().to_string();
        let mut slots = Vec::with_capacity(args.len());
        let mut keep = Vec::new();
        let mut failure = None;
        for (index, a) in args.into_iter().enumerate() {
            keep.extend(a.keep);
            match a.slot {
                Ok(s) if failure.is_none() => match inner.place_arg(s, &name, index) {
                    Ok(s) => slots.push(s),
                    Err(e) => failure = Some(*e),
                },
                Ok(_) => {}
                Err(e) => failure = Some(TaskError::new(FailureKind::Serialization, &name, e)),
            }
        }
        let spec = TaskSpec { id, kind, args: slots, options };
        Client::finish_prepare(inner, spec, failure, keep)
    }

    /// Registers the future of `spec` (failed with `failure`, if any) and the stored
    /// arguments it uses.
    fn finish_prepare<T>(
        inner: &Arc<Inner>,
        spec: TaskSpec,
        failure: Option<TaskError>,
        keep: Vec<Arc<Handle>>,
    ) -> (Option<TaskSpec>, Vec<Arc<Handle>>, Future<T>) {
        let id = spec.id;
        let failure = failure.or_else(|| {
            // Stored arguments leave a spec of names and small values; one that is still
            // too large for a frame (many arguments just under the threshold) fails here
            // instead of breaking the connection.
            let inline: usize = spec.args.iter().map(|a| if let ArgSlot::Value(v) = a { v.len() } else { 0 }).sum();
            if inline <= STORE_ARGS_ABOVE {
                return None;
            }
            let size = postcard::experimental::serialized_size(&spec).unwrap_or(usize::MAX);
            (size > proto::MAX_FRAME / 2).then(|| {
                let why = format!("its description takes {size} bytes, more than half the frame limit of {} bytes", proto::MAX_FRAME);
                TaskError::new(FailureKind::TooLarge, spec.kind.name(), why)
            })
        });
        let slot = match &failure {
            Some(e) => Slot::Erred(Box::new(e.clone())),
            None => Slot::Pending,
        };
        let mut mail = inner.mail.lock();
        if matches!(slot, Slot::Pending) {
            mail.pending += 1;
        }
        mail.slots.insert(id, slot);
        drop(mail);
        let stored: Vec<TaskId> = spec
            .args
            .iter()
            .filter_map(|a| match a {
                ArgSlot::Stored { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        if !stored.is_empty() {
            inner.mail.args.hold(id, stored);
            if failure.is_some() {
                inner.mail.args.release(&[id]);
            }
        }
        let fut = Future { handle: Arc::new(Handle { id, client: inner.clone() }), _t: PhantomData };
        (failure.is_none().then_some(spec), keep, fut)
    }

    /// Runs `f(args)` on a worker. `args` is a tuple of values or futures matching
    /// `f`'s parameters; futures make the task wait for, and run near, their results.
    ///
    /// ```ignore
    /// #[chorus::remote]
    /// fn inc(x: i64) -> i64 { x + 1 }
    /// let a = client.submit(inc, (1,));
    /// let b = client.submit(inc, (&a,));
    /// assert_eq!(b.result()?, 3);
    /// ```
    pub fn submit<F: RemoteFunction, A: IntoArgs<F::Args>>(&self, f: F, args: A) -> Future<F::Output> {
        self.submit_with(f, args, TaskOptions::default())
    }

    /// [`submit`](Client::submit) with priority, retries, resources or a pinned worker.
    pub fn submit_with<F: RemoteFunction, A: IntoArgs<F::Args>>(
        &self,
        _f: F,
        args: A,
        options: TaskOptions,
    ) -> Future<F::Output> {
        Client::submit_kind(&self.inner, TaskKind::Call { func: F::NAME.to_string() }, args.into_values(), options)
    }

    /// Submits `f` with an argument list built at run time, of any length.
    ///
    /// This is for functions that take a variable number of arguments, which
    /// `#[chorus::remote]` cannot declare: a library registers a
    /// [`FunctionEntry`](crate::registry::FunctionEntry) whose `call` decodes every
    /// argument it is given (chorus-array's block kernels take one argument per input
    /// block). `F::Args` is not checked against `args`; the entry must check what it
    /// receives, and a mismatch fails the future with a serialization error.
    ///
    /// Arguments are made with [`Arg::into_slot`]: `(&future).into_slot()` for a result,
    /// `Arg::<T>::into_slot(value)` for a value.
    pub fn submit_variadic<F: RemoteFunction>(&self, _f: F, args: Vec<ArgValue>, options: TaskOptions) -> Future<F::Output> {
        Client::submit_kind(&self.inner, TaskKind::Call { func: F::NAME.to_string() }, args, options)
    }

    /// Runs a one-parameter function on each item (values or futures), as one batch.
    pub fn map<F, P, A, I>(&self, f: F, items: I) -> Vec<Future<F::Output>>
    where
        F: RemoteFunction<Args = (P,)>,
        A: Arg<P>,
        I: IntoIterator<Item = A>,
    {
        self.map_args(f, items.into_iter().map(|a| (a,)))
    }

    /// Runs a function on each tuple of arguments, as one batch.
    pub fn map_args<F, A, I>(&self, _f: F, items: I) -> Vec<Future<F::Output>>
    where
        F: RemoteFunction,
        A: IntoArgs<F::Args>,
        I: IntoIterator<Item = A>,
    {
        let mut specs = Vec::new();
        let mut keep = Vec::new();
        let futs: Vec<Future<F::Output>> = items
            .into_iter()
            .map(|a| {
                let kind = TaskKind::Call { func: F::NAME.to_string() };
                let (spec, k, fut) = Client::prepare(&self.inner, kind, a.into_values(), TaskOptions::default());
                specs.extend(spec);
                keep.extend(k);
                if specs.len() >= SUBMIT_BATCH {
                    self.inner.wait_for_room();
                    self.inner.send(FromClient::Submit(std::mem::take(&mut specs)));
                    keep.clear();
                }
                fut
            })
            .collect();
        if !specs.is_empty() {
            self.inner.send(FromClient::Submit(specs));
        }
        drop(keep);
        futs
    }

    /// [`gather`](Self::gather) with a progress bar on stderr while the tasks run (none
    /// when stderr is not a terminal): `progress: 42%|████      | 4200/10000 tasks [..]`.
    pub fn gather_with_progress<T: DeserializeOwned + 'static>(&self, futures: &[Future<T>]) -> Result<Vec<T>> {
        progress(futures);
        self.gather(futures)
    }

    /// Waits for all futures and brings their results to the driver, fetching from each
    /// worker in one request. The first failed task's error is returned.
    pub fn gather<T: DeserializeOwned + 'static>(&self, futures: &[Future<T>]) -> Result<Vec<T>> {
        loop {
            let slots: Vec<Slot> = futures.iter().map(|f| f.wait_slot(None)).collect::<Result<_>>()?;
            let mut bytes: Vec<Option<Arc<Vec<u8>>>> = vec![None; futures.len()];
            let mut by_holder: HashMap<WorkerId, Vec<usize>> = HashMap::new();
            for (i, slot) in slots.into_iter().enumerate() {
                match slot {
                    Slot::Erred(e) => return Err(Error::Task(e)),
                    Slot::Done { inline: Some(b), .. } => bytes[i] = Some(b),
                    Slot::Done { inline: None, holders } => {
                        by_holder.entry(holders.first().copied().unwrap_or(WorkerId(0))).or_default().push(i)
                    }
                    Slot::Pending => unreachable!("waited for"),
                }
            }
            // One request per holder, all at once; a holder that is gone leaves its
            // results missing, to be recomputed.
            let mut idxs = Vec::new();
            let mut requests = Vec::new();
            for (h, idx) in by_holder {
                if let Some(a) = self.inner.address_of(h) {
                    requests.push((a, idx.iter().map(|i| futures[*i].handle.id).collect::<Vec<TaskId>>()));
                    idxs.push(idx);
                }
            }
            for (idx, got) in idxs.iter().zip(self.inner.pool.fetch_from_each(&requests)) {
                for (i, fetched) in idx.iter().zip(got.into_iter().flatten()) {
                    match fetched {
                        Fetched::Object(b) => bytes[*i] = Some(b),
                        Fetched::TooLarge(why) => return Err(too_large_result(why)),
                        Fetched::Missing => {}
                    }
                }
            }
            if bytes.iter().all(Option::is_some) {
                return bytes
                    .into_iter()
                    .map(|b| decode_value(b.expect("checked"), "a task's result").map_err(Error::Serialization))
                    .collect();
            }
            let lost = futures.iter().zip(&bytes).filter(|(_, b)| b.is_none()).map(|(f, _)| f.handle.id);
            self.inner.expect_recompute(lost);
        }
    }

    /// Async [`gather`](Client::gather).
    pub async fn gather_async<T: DeserializeOwned + 'static>(&self, futures: &[Future<T>]) -> Result<Vec<T>> {
        for f in futures {
            // Waiting only; the values are read below in one batch per worker.
            let _ = std::future::poll_fn(|cx| {
                let mut s = self.inner.mail.lock();
                if s.closed.is_some() || !matches!(s.slots.get(&f.handle.id), Some(Slot::Pending)) {
                    return Poll::Ready(());
                }
                s.wakers.entry(f.handle.id).or_default().push(cx.waker().clone());
                Poll::Pending
            })
            .await;
        }
        self.gather(futures)
    }

    /// Puts values on the workers (spread over them) and returns futures for them, to
    /// pass to tasks without sending the data again with each one.
    ///
    /// `Vec<u8>` and vectors of plain numbers travel as their bytes. A value larger than
    /// the limit (`CHORUS_MAX_OBJECT`) fails its own future; an unreachable worker or an
    /// empty cluster fails the call.
    pub fn scatter<T: Serialize + 'static>(&self, values: Vec<T>) -> Result<Vec<Future<T>>> {
        self.scatter_to(values, false)
    }

    /// Puts each value on every worker (for data every task needs).
    pub fn scatter_broadcast<T: Serialize + 'static>(&self, values: Vec<T>) -> Result<Vec<Future<T>>> {
        self.scatter_to(values, true)
    }

    fn scatter_to<T: Serialize + 'static>(&self, values: Vec<T>, broadcast: bool) -> Result<Vec<Future<T>>> {
        let workers = self.workers();
        if workers.is_empty() {
            return Err(Error::NoWorkers { operation: "scatter".into() });
        }
        let encoded: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| encode_value(v, "a scattered value").map_err(Error::Serialization))
            .collect::<Result<_>>()?;
        let ids: Vec<TaskId> = encoded.iter().map(|_| self.inner.next_id()).collect();
        let mut refused: HashMap<usize, String> = HashMap::new();
        let mut per_worker: HashMap<WorkerId, Vec<usize>> = HashMap::new();
        for (i, bytes) in encoded.iter().enumerate() {
            if bytes.len() as u64 > self.inner.limits.max_object {
                refused.insert(i, self.inner.limits.too_large(bytes.len() as u64));
            } else if broadcast {
                for w in &workers {
                    per_worker.entry(w.id).or_default().push(i);
                }
            } else {
                let turn = self.inner.scatter_turn.fetch_add(1, Ordering::Relaxed);
                per_worker.entry(workers[turn % workers.len()].id).or_default().push(i);
            }
        }
        let mut holders: HashMap<usize, Vec<WorkerId>> = HashMap::new();
        let per_worker: Vec<(&WorkerInfo, Vec<usize>)> = per_worker
            .into_iter()
            .map(|(w, idx)| (workers.iter().find(|i| i.id == w).expect("listed"), idx))
            .collect();
        let requests: Vec<data::PutRequest<'_>> = per_worker
            .iter()
            .map(|(info, idx)| (info.data.clone(), idx.iter().map(|i| (ids[*i], encoded[*i].as_slice())).collect()))
            .collect();
        let answers = self.inner.pool.put_to_each(&requests);
        let mut failure = None;
        for ((info, idx), answers) in per_worker.iter().zip(answers) {
            let w = &info.id;
            let answers = match answers {
                Ok(a) => a,
                Err(e) => {
                    // Registered below all the same, so that what other workers stored
                    // is released with the futures rather than left behind.
                    failure.get_or_insert(e);
                    continue;
                }
            };
            let mut stored = Vec::new();
            for (i, answer) in idx.iter().zip(answers) {
                match answer {
                    Ok(()) => {
                        stored.push((ids[*i], encoded[*i].len() as u64));
                        holders.entry(*i).or_default().push(*w);
                    }
                    Err(why) => {
                        refused.insert(*i, format!("{} refused it: {why}", info.describe()));
                    }
                }
            }
            self.inner.send(FromClient::Scattered { worker: *w, objects: stored });
        }
        let mut s = self.inner.mail.lock();
        let futs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let slot = match (holders.remove(&i), refused.remove(&i)) {
                    (Some(holders), _) => {
                        let inline = (encoded[i].len() <= proto::INLINE_MAX).then(|| Arc::new(encoded[i].clone()));
                        Slot::Done { inline, holders }
                    }
                    (None, why) => Slot::Erred(Box::new(TaskError::new(
                        FailureKind::TooLarge,
                        "scatter",
                        why.unwrap_or_else(|| "no worker stored it".into()),
                    ))),
                };
                s.slots.insert(*id, slot);
                Future { handle: Arc::new(Handle { id: *id, client: self.inner.clone() }), _t: PhantomData }
            })
            .collect();
        drop(s);
        match failure {
            Some(e) => Err(e),
            None => Ok(futs),
        }
    }

    /// Waits until the first, or all, of `futures` have ended, or `timeout` passes.
    /// Returns the indexes of those that ended and of those that did not.
    pub fn wait<T>(&self, futures: &[Future<T>], mode: WaitFor, timeout: Option<Duration>) -> (Vec<usize>, Vec<usize>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.inner.mail.lock();
        loop {
            let (done, pending): (Vec<usize>, Vec<usize>) = (0..futures.len())
                .partition(|i| !matches!(s.slots.get(&futures[*i].handle.id), Some(Slot::Pending)));
            let enough = match mode {
                WaitFor::FirstCompleted => !done.is_empty() || futures.is_empty(),
                WaitFor::AllCompleted => pending.is_empty(),
            };
            if enough || s.closed.is_some() {
                return (done, pending);
            }
            s = match deadline {
                None => self.inner.mail.cv.wait(s).expect("client state lock"),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return (done, pending);
                    }
                    self.inner.mail.cv.wait_timeout(s, d - now).expect("client state lock").0
                }
            };
        }
    }

    /// The futures in the order they end (blocking iterator).
    pub fn as_completed<T>(&self, futures: Vec<Future<T>>) -> AsCompleted<T> {
        AsCompleted { client: self.clone(), pending: futures }
    }

    /// Cancels these tasks (see [`Future::cancel`]).
    pub fn cancel<T>(&self, futures: &[Future<T>]) {
        self.inner.send(FromClient::Cancel(futures.iter().map(|f| f.handle.id).collect()));
    }

    /// Runs `f(args)` once on every worker (Dask's `client.run`, ipyparallel's `%px`)
    /// and returns each worker's result beside its description.
    pub fn run_on_all<F, A>(&self, _f: F, args: A) -> Result<Vec<(WorkerInfo, F::Output)>>
    where
        F: RemoteFunction,
        F::Output: DeserializeOwned + 'static,
        A: IntoArgs<F::Args>,
    {
        let workers = self.workers();
        let futs = self.submit_on_each(&workers, args.into_values(), |_| TaskKind::Call { func: F::NAME.into() })?;
        ranks_progress(&futs);
        let results = self.gather(&futs)?;
        Ok(workers.into_iter().zip(results).collect())
    }

    /// Runs an SPMD function on all workers at once, rank `i` on the `i`-th worker, with
    /// a [`World`](chorus_comm::World) among them (Bodo's spawn mode), and returns each
    /// rank's result in rank order.
    pub fn spmd<F, A>(&self, _f: F, args: A) -> Result<Vec<F::Output>>
    where
        F: SpmdFunction,
        F::Output: DeserializeOwned + 'static,
        A: IntoArgs<F::Args>,
    {
        let workers = self.workers();
        if workers.is_empty() {
            return Err(Error::NoWorkers { operation: "start an SPMD job".into() });
        }
        let size = workers.len();
        let coordinator = chorus_launch::serve_rendezvous_in_background(
            &format!("{}:0", self.inner.bind_ip),
            size,
            self.inner.secret.clone(),
            Duration::from_secs(120),
        )?
        .to_string();
        let futs = self.submit_on_each(&workers, args.into_values(), |rank| TaskKind::Spmd {
            func: F::NAME.into(),
            rank: rank as u32,
            size: size as u32,
            coordinator: coordinator.clone(),
        })?;
        ranks_progress(&futs);
        self.gather(&futs)
    }

    /// Submits one task per worker, bound to it, with the same arguments (encoded once).
    fn submit_on_each<T>(
        &self,
        workers: &[WorkerInfo],
        args: Vec<ArgValue>,
        kind: impl Fn(usize) -> TaskKind,
    ) -> Result<Vec<Future<T>>> {
        let name = kind(0).name().to_string();
        let mut slots = Vec::new();
        let mut keep = Vec::new();
        for (index, v) in args.into_iter().enumerate() {
            keep.extend(v.keep);
            // Encoded, and stored when large, once for all the workers.
            let slot = v.slot.map_err(Error::Serialization)?;
            slots.push(self.inner.place_arg(slot, &name, index).map_err(Error::Task)?);
        }
        let mut specs = Vec::new();
        let futs = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let options = TaskOptions { pin: Some(w.id), ..TaskOptions::default() };
                let spec = TaskSpec { id: self.inner.next_id(), kind: kind(i), args: slots.clone(), options };
                let (spec, _, fut) = Client::finish_prepare(&self.inner, spec, None, Vec::new());
                specs.extend(spec);
                fut
            })
            .collect();
        self.inner.send(FromClient::Submit(specs));
        drop(keep);
        Ok(futs)
    }

    /// Creates an actor of type `A` on a worker with `A::new(args)`.
    pub fn actor<A: ActorClass>(&self, args: impl IntoArgs<A::Args>) -> Actor<A> {
        let kind = TaskKind::ActorNew { class: A::CLASS.to_string() };
        let created = Client::submit_kind(&self.inner, kind, args.into_values(), TaskOptions::default());
        Actor { created, _a: PhantomData }
    }
}

/// Iterator of [`Client::as_completed`].
pub struct AsCompleted<T> {
    client: Client,
    pending: Vec<Future<T>>,
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Future<T>;
    fn next(&mut self) -> Option<Future<T>> {
        if self.pending.is_empty() {
            return None;
        }
        let (done, _) = self.client.wait(&self.pending, WaitFor::FirstCompleted, None);
        let i = *done.first()?;
        Some(self.pending.swap_remove(i))
    }
}

/// `%px: 50%|█████     | 1/2 ranks [..]` while one task per worker runs (on a terminal).
fn ranks_progress<T>(futures: &[Future<T>]) {
    if !progress::enabled() {
        return;
    }
    let bar = progress::bar(futures.len() as u64, "%px", "ranks");
    progress::follow(&bar, futures, "ranks");
}
