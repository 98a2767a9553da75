//! One rank's side of a running query: the threads that send and receive over the
//! `World`, the per-stream windows, and the tasks that produce each exchange's input.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chorus_comm::World;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{internal_datafusion_err, DataFusionError};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use futures_util::StreamExt;
use tokio::sync::{mpsc, Semaphore};

use super::wire::{ack_tag, compact_views, data_tag, encode_batch, end_message, parse_message};
use super::{ExchangeExec, Route};

type DfResult<T> = datafusion::common::Result<T>;

/// Batches smaller than this are held back and sent together to a remote rank.
const SEND_ROWS: usize = 8192;

/// Acknowledgement kinds, the third word of an acknowledgement: a batch was taken by the
/// consumer (its cost reopens the window)...
const ACK_TAKEN: u64 = 0;
/// ...the stream's end was received...
const ACK_END: u64 = 1;
/// ...or the consumer has gone (a limit has its rows): the sender stops sending to it,
/// and stops producing once nothing it feeds is read any more.
const ACK_STOP: u64 = 2;

/// What a partition's inbox carries.
pub(super) enum Delivery {
    Batch(RecordBatch),
    End,
    Failed(DataFusionError),
}

/// Figures of one query's exchanges on this rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Bytes of Arrow IPC this rank sent to other ranks.
    pub bytes_sent: usize,
    /// Batches this rank sent to other ranks.
    pub batches_sent: usize,
    /// The most bytes this rank's outgoing streams had sent and not yet seen consumed.
    pub peak_in_flight_bytes: usize,
}

/// The state one rank keeps while it runs one distributed query.
pub(crate) struct QueryRun {
    /// `None` when the plan is only shown (a driver's `explain`).
    world: Option<Arc<World>>,
    rank: usize,
    ranks: usize,
    seq: u64,
    window: usize,
    exchanges: Mutex<Vec<Arc<ExchangeExec>>>,
    /// Per exchange, per output partition this rank owns: the receiving end.
    inboxes: Mutex<Vec<Vec<Option<Inbox>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    comm_failure: Mutex<Option<chorus_comm::Error>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    bytes_sent: AtomicUsize,
    batches_sent: AtomicUsize,
    /// Per exchange: rows and bytes this rank sent to other ranks.
    moved: Mutex<Vec<(u64, u64)>>,
}

pub(super) struct Inbox {
    pub(super) receiver: mpsc::Receiver<Delivery>,
    pub(super) sources: usize,
}

impl fmt::Debug for QueryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryRun").field("rank", &self.rank).field("seq", &self.seq).finish()
    }
}

impl QueryRun {
    pub(crate) fn new(world: Option<Arc<World>>, ranks: usize, seq: u64, window: usize) -> Arc<QueryRun> {
        let rank = world.as_ref().map_or(0, |w| w.rank());
        Arc::new(QueryRun {
            world,
            rank,
            ranks,
            seq,
            window: window.max(1),
            exchanges: Mutex::new(Vec::new()),
            inboxes: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            comm_failure: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            bytes_sent: AtomicUsize::new(0),
            batches_sent: AtomicUsize::new(0),
            moved: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn ranks(&self) -> usize {
        self.ranks
    }

    /// This process's rank.
    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> &World {
        self.world.as_deref().expect("only a query with a world is started")
    }

    /// Numbers the exchanges of the final plan, in the same order on every rank.
    pub(crate) fn register(&self, exchanges: Vec<Arc<ExchangeExec>>) {
        for (id, exchange) in exchanges.iter().enumerate() {
            exchange.id.store(id, Ordering::Relaxed);
        }
        *self.moved.lock().expect("moved lock") = vec![(0, 0); exchanges.len()];
        *self.exchanges.lock().expect("exchanges lock") = exchanges;
    }

    /// Each exchange of the plan with the rows and bytes this rank sent through it to
    /// other ranks.
    pub(crate) fn exchange_figures(&self) -> Vec<chorus_dashboard::model::ExchangeRecord> {
        let moved = self.moved.lock().expect("moved lock");
        self.exchanges
            .lock()
            .expect("exchanges lock")
            .iter()
            .zip(moved.iter())
            .map(|(e, (rows, bytes))| chorus_dashboard::model::ExchangeRecord { name: e.describe(), rows: *rows, bytes: *bytes })
            .collect()
    }

    pub(crate) fn stats(&self) -> ExchangeStats {
        ExchangeStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            peak_in_flight_bytes: self.peak_in_flight.load(Ordering::Relaxed),
        }
    }

    /// The communication error that ended this query, if another rank's failure did.
    pub(crate) fn take_comm_failure(&self) -> Option<chorus_comm::Error> {
        self.comm_failure.lock().expect("failure lock").take()
    }

    fn failed_comm(&self) -> bool {
        self.comm_failure.lock().expect("failure lock").is_some()
    }

    /// Keeps the first communication error; returns it as a DataFusion error.
    fn record_comm_failure(&self, e: chorus_comm::Error) -> DataFusionError {
        let text = e.to_string();
        self.comm_failure.lock().expect("failure lock").get_or_insert(e);
        DataFusionError::Execution(text)
    }

    fn spawn_thread(&self, name: String, body: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new().name(name).spawn(body).expect("spawning an exchange thread");
        self.threads.lock().expect("threads lock").push(handle);
    }

    /// Opens every inbox this rank owns and starts its receiving threads, then starts the
    /// sending side of every exchange. Returns the sending tasks, which end when this
    /// rank's input to every exchange has been delivered.
    pub(crate) fn start(
        self: &Arc<Self>,
        context: &Arc<TaskContext>,
        tasks: &mut tokio::task::JoinSet<DfResult<()>>,
    ) -> DfResult<()> {
        let exchanges = self.exchanges.lock().expect("exchanges lock").clone();
        let mut inboxes = Vec::with_capacity(exchanges.len());
        let mut local = Vec::with_capacity(exchanges.len());
        for exchange in &exchanges {
            let outputs = exchange.output_partitions();
            let mut ex_inboxes: Vec<Option<Inbox>> = (0..outputs).map(|_| None).collect();
            let mut ex_local: Vec<Option<mpsc::Sender<Delivery>>> = vec![None; outputs];
            for (p, (inbox, local_sender)) in ex_inboxes.iter_mut().zip(ex_local.iter_mut()).enumerate() {
                if !exchange.output_is_here(p, self.rank) {
                    continue;
                }
                let sources = exchange.sources_of(p);
                let (tx, rx) = mpsc::channel(sources.len() + 2);
                for &source in &sources {
                    if source == self.rank {
                        *local_sender = Some(tx.clone());
                    } else {
                        let run = Arc::clone(self);
                        let (tx, id, schema) = (tx.clone(), exchange.id(), exchange.schema());
                        self.spawn_thread(format!("chorus-exchange-{id}-recv"), move || {
                            run.receive(id, p, source, schema, tx);
                        });
                    }
                }
                *inbox = Some(Inbox { receiver: rx, sources: sources.len() });
            }
            inboxes.push(ex_inboxes);
            local.push(ex_local);
        }
        *self.inboxes.lock().expect("inboxes lock") = inboxes;
        for (exchange, local) in exchanges.into_iter().zip(local) {
            let run = Arc::clone(self);
            let context = Arc::clone(context);
            tasks.spawn(async move { run.send_all(exchange, local, context).await });
        }
        Ok(())
    }

    /// Drops the inboxes nobody took, so that their receiving threads drain and
    /// acknowledge instead of waiting for a reader.
    pub(crate) fn close_inboxes(&self) {
        self.inboxes.lock().expect("inboxes lock").clear();
    }

    /// Waits for the exchange threads to end; call after every task has ended or been
    /// dropped (and after aborting the world on failure), so that none is blocked.
    pub(crate) fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Takes the stream of output partition `p` of exchange `id` (once).
    pub(super) fn take_inbox(&self, id: usize, p: usize) -> DfResult<Inbox> {
        let mut inboxes = self.inboxes.lock().expect("inboxes lock");
        inboxes
            .get_mut(id)
            .and_then(|e| e.get_mut(p))
            .and_then(Option::take)
            .ok_or_else(|| internal_datafusion_err!("exchange {id}: partition {p} is not on rank {} or was read twice", self.rank))
    }

    /// Receives output partition `p` of exchange `id` from `source` until its end,
    /// acknowledging each batch once the consumer has it. If the consumer has gone (a
    /// limit was reached), says so in the acknowledgement ([`ACK_STOP`]), so that the
    /// sender stops producing for it, and drains what is still on its way until the end.
    fn receive(&self, id: usize, p: usize, source: usize, schema: SchemaRef, tx: mpsc::Sender<Delivery>) {
        let tag = data_tag(self.seq, id, p);
        let mut consumer_open = true;
        let mut stop_sent = false;
        loop {
            let message = match self.world().recv_slice::<u8>(source, tag) {
                Ok(m) => m,
                Err(e) => {
                    let _ = tx.blocking_send(Delivery::Failed(self.record_comm_failure(e)));
                    return;
                }
            };
            let (done, cost, delivery) = match parse_message(&message, &schema) {
                Ok((cost, Some(batch))) => (false, cost, Delivery::Batch(batch)),
                Ok((_, None)) => (true, 0, Delivery::End),
                Err(e) => (true, 0, Delivery::Failed(e)),
            };
            if consumer_open && tx.blocking_send(delivery).is_err() {
                consumer_open = false;
            }
            let kind = if done {
                ACK_END
            } else if !consumer_open && !stop_sent {
                stop_sent = true;
                ACK_STOP
            } else {
                ACK_TAKEN
            };
            let ack = [p as u64, cost, kind];
            if let Err(e) = self.world().send_slice(source, ack_tag(self.seq, id), &ack) {
                self.record_comm_failure(e);
                return;
            }
            if done {
                return;
            }
        }
    }

    /// The sending side of one exchange on this rank: runs every input partition this
    /// rank is the sender of, routes its batches, then ends every stream it feeds.
    async fn send_all(
        self: Arc<Self>,
        exchange: Arc<ExchangeExec>,
        local: Vec<Option<mpsc::Sender<Delivery>>>,
        context: Arc<TaskContext>,
    ) -> DfResult<()> {
        let mine: Vec<usize> =
            (0..exchange.input_partitions()).filter(|&q| exchange.sender_of(q) == self.rank).collect();
        if mine.is_empty() {
            return Ok(());
        }
        let failed_to = local.clone();
        let outlets = Arc::new(Outlets::open(&self, &exchange, &mine, local));
        let mut producers = tokio::task::JoinSet::new();
        for q in mine {
            let (exchange, outlets, context) = (Arc::clone(&exchange), Arc::clone(&outlets), Arc::clone(&context));
            producers.spawn(async move {
                produce(&exchange, q, &outlets, context).await?;
                outlets.input_done(&exchange, q).await
            });
        }
        while let Some(done) = producers.join_next().await {
            if let Err(e) = done.map_err(|e| DataFusionError::External(Box::new(e))).and_then(|r| r) {
                // The readers here would otherwise see their stream end without its end
                // marker. Told without waiting: a full inbox's reader may be waiting for
                // this very exchange, and the query ends on the error returned anyway.
                let shared = Arc::new(e);
                for tx in failed_to.iter().flatten() {
                    let _ = tx.try_send(Delivery::Failed(DataFusionError::Shared(Arc::clone(&shared))));
                }
                return Err(DataFusionError::Shared(shared));
            }
        }
        Ok(())
    }
}

/// Where one rank's producers of one exchange put their batches.
struct Outlets {
    rank: usize,
    /// Per output partition: the local inbox, if the partition is owned here.
    local: Vec<Option<mpsc::Sender<Delivery>>>,
    /// Per destination rank: the queue of its sending thread and the window of each of
    /// its partitions.
    remote: Vec<Option<RemoteOutlet>>,
    run: Arc<QueryRun>,
    /// Small batches held back per (destination, partition).
    pending: Mutex<Vec<Vec<Vec<RecordBatch>>>>,
    /// Per output partition: how many of this rank's input partitions still feed it.
    /// The last to end flushes what is held back for it and ends its streams, so that a
    /// partition whose input is done is not held open by its siblings (a merge of
    /// several moved partitions reads them one after another).
    feeding: Vec<AtomicUsize>,
}

struct RemoteOutlet {
    queue: std::sync::mpsc::Sender<(usize, Option<RecordBatch>, usize)>,
    windows: Vec<Arc<Semaphore>>,
    /// Per output partition: the destination's consumer has gone ([`ACK_STOP`]).
    stopped: Arc<Vec<AtomicBool>>,
}

impl Outlets {
    fn open(
        run: &Arc<QueryRun>,
        exchange: &Arc<ExchangeExec>,
        mine: &[usize],
        local: Vec<Option<mpsc::Sender<Delivery>>>,
    ) -> Outlets {
        let outputs = exchange.output_partitions();
        let feeding: Vec<AtomicUsize> = (0..outputs).map(|_| AtomicUsize::new(0)).collect();
        for &q in mine {
            for p in exchange.outputs_fed_by(q) {
                feeding[p].fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut remote: Vec<Option<RemoteOutlet>> = (0..run.ranks).map(|_| None).collect();
        for (dest, slot) in remote.iter_mut().enumerate() {
            // The partitions `dest` receives from this rank, each acknowledged to its end.
            let expected =
                (0..outputs).filter(|&p| exchange.output_is_here(p, dest) && exchange.sources_of(p).contains(&run.rank)).count();
            if dest == run.rank || expected == 0 {
                continue;
            }
            let windows: Vec<Arc<Semaphore>> = (0..outputs).map(|_| Arc::new(Semaphore::new(run.window))).collect();
            let stopped: Arc<Vec<AtomicBool>> = Arc::new((0..outputs).map(|_| AtomicBool::new(false)).collect());
            let (queue, items) = std::sync::mpsc::channel::<(usize, Option<RecordBatch>, usize)>();
            let id = exchange.id();
            let sender_run = Arc::clone(run);
            run.spawn_thread(format!("chorus-exchange-{id}-send"), move || sender_run.send_to(id, dest, items));
            let ack_run = Arc::clone(run);
            let (ack_windows, ack_stopped) = (windows.clone(), Arc::clone(&stopped));
            run.spawn_thread(format!("chorus-exchange-{id}-ack"), move || {
                ack_run.read_acks(id, dest, ack_windows, &ack_stopped, expected)
            });
            *slot = Some(RemoteOutlet { queue, windows, stopped });
        }
        let pending = (0..run.ranks).map(|_| (0..outputs).map(|_| Vec::new()).collect()).collect();
        Outlets { rank: run.rank, local, remote, run: Arc::clone(run), pending: Mutex::new(pending), feeding }
    }

    /// Delivers `batch` as part of output partition `p` to `dest`.
    async fn deliver(&self, dest: usize, p: usize, batch: RecordBatch) -> DfResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if dest == self.rank {
            if let Some(tx) = &self.local[p] {
                // A closed inbox means its consumer stopped early (a limit); drop the batch.
                let _ = tx.send(Delivery::Batch(batch)).await;
            }
            return Ok(());
        }
        if self.is_stopped(dest, p) {
            return Ok(());
        }
        let ready = {
            let mut pending = self.pending.lock().expect("pending lock");
            let held = &mut pending[dest][p];
            held.push(batch);
            if held.iter().map(RecordBatch::num_rows).sum::<usize>() >= SEND_ROWS {
                Some(std::mem::take(held))
            } else {
                None
            }
        };
        match ready {
            Some(batches) => self.send_remote(dest, p, batches).await,
            None => Ok(()),
        }
    }

    /// Whether nobody reads output partition `p` on `dest` any more.
    fn is_stopped(&self, dest: usize, p: usize) -> bool {
        if dest == self.rank {
            return self.local[p].as_ref().is_none_or(mpsc::Sender::is_closed);
        }
        self.remote[dest].as_ref().is_some_and(|o| o.stopped[p].load(Ordering::Acquire))
    }

    /// Whether nothing input partition `q` feeds is read any more, anywhere: its producer
    /// may stop (dropping its input, which cancels the work upstream).
    fn unread(&self, exchange: &ExchangeExec, q: usize) -> bool {
        exchange.outputs_fed_by(q).all(|p| exchange.destinations_of(p).all(|dest| self.is_stopped(dest, p)))
    }

    async fn send_remote(&self, dest: usize, p: usize, batches: Vec<RecordBatch>) -> DfResult<()> {
        let Some(first) = batches.first() else { return Ok(()) };
        if self.is_stopped(dest, p) {
            return Ok(());
        }
        let batch = if batches.len() == 1 { first.clone() } else { concat_batches(&first.schema(), &batches)? };
        let batch = compact_views(batch)?;
        let outlet = self.remote[dest].as_ref().ok_or_else(|| internal_datafusion_err!("no outlet to rank {dest}"))?;
        let cost = batch.get_array_memory_size().clamp(1, self.run.window);
        let permits = outlet.windows[p]
            .acquire_many(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| self.stopped(dest))?;
        permits.forget();
        let now = self.run.in_flight.fetch_add(cost, Ordering::Relaxed) + cost;
        self.run.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        outlet
            .queue
            .send((p, Some(batch), cost))
            .map_err(|_| self.stopped(dest))
    }

    /// Called when input partition `q` has delivered its last batch: ends the output
    /// partitions no other input partition of this rank still feeds.
    async fn input_done(&self, exchange: &ExchangeExec, q: usize) -> DfResult<()> {
        for p in exchange.outputs_fed_by(q) {
            if self.feeding[p].fetch_sub(1, Ordering::AcqRel) == 1 {
                self.end_partition(exchange, p).await?;
            }
        }
        Ok(())
    }

    /// Flushes what is held back for output partition `p` and ends its stream to every
    /// rank that receives it.
    async fn end_partition(&self, exchange: &ExchangeExec, p: usize) -> DfResult<()> {
        for dest in exchange.destinations_of(p) {
            if dest == self.rank {
                if let Some(tx) = &self.local[p] {
                    let _ = tx.send(Delivery::End).await;
                }
            } else if let Some(outlet) = &self.remote[dest] {
                let held = std::mem::take(&mut self.pending.lock().expect("pending lock")[dest][p]);
                self.send_remote(dest, p, held).await?;
                outlet.queue.send((p, None, 0)).map_err(|_| self.stopped(dest))?;
            }
        }
        Ok(())
    }

    /// The error of a send to `dest` that found the sending thread gone.
    fn stopped(&self, dest: usize) -> DataFusionError {
        if self.run.failed_comm() {
            DataFusionError::Execution(format!("the job's communication with rank {dest} failed"))
        } else {
            internal_datafusion_err!("the exchange sender to rank {dest} stopped")
        }
    }
}

impl QueryRun {
    /// The thread that sends one exchange's batches to `dest`, in the order produced.
    fn send_to(&self, id: usize, dest: usize, items: std::sync::mpsc::Receiver<(usize, Option<RecordBatch>, usize)>) {
        for (p, batch, cost) in items {
            let message = match &batch {
                Some(batch) => match encode_batch(batch, cost) {
                    Ok(m) => m,
                    Err(_) => return, // cannot happen for batches DataFusion produced; the query fails on the missing end
                },
                None => end_message(),
            };
            if let Err(e) = self.world().send_slice(dest, data_tag(self.seq, id, p), &message) {
                self.record_comm_failure(e);
                return;
            }
            if let Some(batch) = &batch {
                self.bytes_sent.fetch_add(message.len(), Ordering::Relaxed);
                self.batches_sent.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.moved.lock().expect("moved lock").get_mut(id) {
                    m.0 += batch.num_rows() as u64;
                    m.1 += message.len() as u64;
                }
            }
        }
    }

    /// Reads `dest`'s acknowledgements and reopens the windows, until every partition
    /// `dest` owns has acknowledged its end.
    fn read_acks(&self, id: usize, dest: usize, windows: Vec<Arc<Semaphore>>, stopped: &[AtomicBool], mut expected_ends: usize) {
        while expected_ends > 0 {
            let ack = match self.world().recv_slice::<u64>(dest, ack_tag(self.seq, id)) {
                Ok(a) => a,
                Err(e) => {
                    self.record_comm_failure(e);
                    for w in &windows {
                        w.close();
                    }
                    return;
                }
            };
            let [p, cost, kind] = ack[..] else { return };
            if kind == ACK_END {
                expected_ends -= 1;
            } else if let Some(w) = windows.get(p as usize) {
                if kind == ACK_STOP {
                    stopped[p as usize].store(true, Ordering::Release);
                }
                self.in_flight.fetch_sub(cost as usize, Ordering::Relaxed);
                w.add_permits(cost as usize);
            }
        }
    }
}

/// Runs input partition `q` of `exchange` and routes its batches.
async fn produce(exchange: &ExchangeExec, q: usize, outlets: &Outlets, context: Arc<TaskContext>) -> DfResult<()> {
    let mut stream = exchange.input.execute(q, context)?;
    let mut partitioner = match &exchange.route {
        Route::Hash(keys, n) => Some(BatchPartitioner::try_new(
            Partitioning::Hash(keys.clone(), *n),
            metrics::Time::new(),
            q,
            exchange.input_partitions(),
        )?),
        Route::RoundRobin(n) => Some(BatchPartitioner::try_new(
            Partitioning::RoundRobinBatch(*n),
            metrics::Time::new(),
            q,
            exchange.input_partitions(),
        )?),
        Route::Range(ranges) => Some(BatchPartitioner::new_range_partitioner(ranges, metrics::Time::new())),
        Route::Rows(_) | Route::Move(_) => None,
    };
    // For `Rows`: which partition the first slice of the next batch goes to, turned each
    // batch so that batches of fewer rows than partitions do not all feed the last ones.
    let mut turn = q;
    while let Some(batch) = stream.next().await {
        if outlets.unread(exchange, q) {
            // A limit downstream has its rows: dropping the stream cancels the rest.
            break;
        }
        let batch = batch?;
        if let Route::Rows(n) = exchange.route {
            let rows = batch.num_rows();
            for slice in 0..n {
                let (start, end) = (rows * slice / n, rows * (slice + 1) / n);
                if end > start {
                    let p = (slice + turn) % n;
                    outlets.deliver(exchange.owner_of(p), p, batch.slice(start, end - start)).await?;
                }
            }
            turn += 1;
            continue;
        }
        match partitioner.as_mut() {
            Some(partitioner) => {
                let mut routed = Vec::new();
                for piece in partitioner.partition_iter(batch)? {
                    routed.push(piece?);
                }
                for (p, piece) in routed {
                    outlets.deliver(exchange.owner_of(p), p, piece).await?;
                }
            }
            None => {
                for dest in exchange.destinations_of(q) {
                    outlets.deliver(dest, q, batch.clone()).await?;
                }
            }
        }
    }
    Ok(())
}
