//! Running one distributed query on this rank: plan, place, start the exchanges, execute
//! this rank's share of the result, and make a failure end the query on every rank.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chorus_comm::World;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::{ExecutionPlan, ReplaceChildrenOptions, SendableRecordBatchStream};
use tokio::task::JoinSet;

use crate::exchange::{ExchangeStats, Loc, QueryRun};
use crate::plan::{distribute, DistributedPlan, ResultOn};
use crate::sort;
use crate::{Error, FrameOptions, Result};
use chorus_tasks::Client;

type DfResult<T> = datafusion::common::Result<T>;

/// What each root partition this rank ran gave, by partition, and where every root
/// partition was placed.
type Placed<T> = (Vec<(usize, T)>, Vec<Loc>);

/// Who runs the queries.
pub(crate) enum Backend {
    /// The ranks of an SPMD job, this process among them.
    Ranks(Arc<World>),
    /// The workers of a task cluster, each query as an SPMD job; this process plans.
    Driver { client: Client, workers: usize },
}

/// What every DataFrame of one context shares: who runs the queries, the runtime they
/// run on here, and the query counter that keeps ranks' exchanges apart.
pub(crate) struct Engine {
    pub(crate) backend: Backend,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// The options, with the threads per rank resolved.
    pub(crate) options: FrameOptions,
    pub(crate) threads: usize,
    queries: AtomicU64,
    last_stats: Mutex<ExchangeStats>,
    last_exchanges: Mutex<Vec<chorus_dashboard::model::ExchangeRecord>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

impl Engine {
    pub(crate) fn new(backend: Backend, runtime: tokio::runtime::Runtime, options: FrameOptions, threads: usize) -> Engine {
        Engine { backend, runtime, options, threads, queries: AtomicU64::new(0), last_stats: Mutex::default(), last_exchanges: Mutex::default() }
    }

    /// This process's rank (0 for a driver).
    pub(crate) fn rank(&self) -> usize {
        match &self.backend {
            Backend::Ranks(world) => world.rank(),
            Backend::Driver { .. } => 0,
        }
    }

    /// The ranks that run queries.
    pub(crate) fn size(&self) -> usize {
        match &self.backend {
            Backend::Ranks(world) => world.size(),
            Backend::Driver { workers, .. } => *workers,
        }
    }

    pub(crate) fn world(&self) -> Option<&Arc<World>> {
        match &self.backend {
            Backend::Ranks(world) => Some(world),
            Backend::Driver { .. } => None,
        }
    }

    pub(crate) fn last_stats(&self) -> ExchangeStats {
        *self.last_stats.lock().expect("stats lock")
    }

    /// The last query's exchanges on this rank, with what this rank sent through each.
    pub(crate) fn last_exchanges(&self) -> Vec<chorus_dashboard::model::ExchangeRecord> {
        self.last_exchanges.lock().expect("stats lock").clone()
    }

    /// Places `plan` on the ranks. Only a plan that runs takes a query number, so that
    /// [`explain`](crate::DataFrame::explain) may be called on some ranks only.
    pub(crate) fn place(&self, plan: Arc<dyn ExecutionPlan>, result_on: ResultOn, to_run: bool) -> Result<(Arc<QueryRun>, DistributedPlan)> {
        let seq = if to_run { self.queries.fetch_add(1, Ordering::Relaxed) } else { u64::MAX };
        let run = QueryRun::new(self.world().cloned(), self.size(), seq, self.options.exchange_window);
        let placed = distribute(plan, &run, result_on).map_err(Error::plan)?;
        Ok((run, placed))
    }

    /// Runs `plan` with its result where `result_on` says, handing each result partition
    /// this rank executes to `consume`; returns what `consume` returned, by partition.
    pub(crate) fn run<T, F, Fut>(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
        result_on: ResultOn,
        consume: F,
    ) -> Result<Vec<(usize, T)>>
    where
        T: Send + 'static,
        F: Fn(usize, SendableRecordBatchStream) -> Fut,
        Fut: Future<Output = DfResult<T>> + Send + 'static,
    {
        let world = self.ranks_world()?;
        let mut plan = self.run_scalar_subqueries(plan, &context)?;
        if result_on == ResultOn::Distributed && world.size() > 1 {
            if let Some((input, ordering)) = sort::global_sort(&plan) {
                // The input runs once: sampled and held where it is computed, then read
                // back by the range exchange.
                let (order, held_context) = (ordering.clone(), Arc::clone(&context));
                let (parts, locs) = self.run_placed(&world, Arc::clone(&input), Arc::clone(&context), ResultOn::Distributed, move |p, stream| {
                    sort::hold_and_sample(stream, order.clone(), p, Arc::clone(&held_context))
                })?;
                let (mut samples, mut held) = (Vec::new(), Vec::new());
                for (p, (sample, part)) in parts {
                    samples.extend(sample);
                    held.push((p, part));
                }
                let all = world.allgatherv_slice::<u8>(&sort::encode_samples(&samples)?)?;
                let points = sort::split_points(&all, &ordering, world.size())?;
                let owners = locs.iter().enumerate().map(|(p, loc)| loc.rank_of(p, world.size())).collect();
                plan = sort::range_sorted(sort::HeldExec::new(input.schema(), owners, held), ordering, points)?;
            }
        }
        Ok(self.run_placed(&world, plan, context, result_on, consume)?.0)
    }

    /// The world of the ranks; a driver has none and runs nothing itself.
    fn ranks_world(&self) -> Result<Arc<World>> {
        self.world().cloned().ok_or_else(|| Error::InvalidArgument("a driver does not run query partitions itself".into()))
    }

    /// [`run`](Self::run) for a plan whose scalar subqueries have run; also returns where
    /// each root partition was placed.
    fn run_placed<T, F, Fut>(
        &self,
        world: &World,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
        result_on: ResultOn,
        consume: F,
    ) -> Result<Placed<T>>
    where
        T: Send + 'static,
        F: Fn(usize, SendableRecordBatchStream) -> Fut,
        Fut: Future<Output = DfResult<T>> + Send + 'static,
    {
        let versions = file_versions(&plan);
        let (run, placed) = self.place(plan, result_on, true)?;
        let root_locs = placed.root_locs.clone();
        let (rank, ranks) = (world.rank(), world.size());
        check_same_plan(world, &placed, versions)?;
        let mine: Vec<usize> = placed
            .root_locs
            .iter()
            .enumerate()
            .filter(|(p, loc)| match result_on {
                ResultOn::Root => rank == 0,
                ResultOn::EveryRank => true,
                ResultOn::Distributed => loc.rank_of(*p, ranks) == rank,
            })
            .map(|(p, _)| p)
            .collect();
        let root = placed.root;
        let outcome = self.runtime.block_on(async {
            let mut exchanges = JoinSet::new();
            run.start(&context, &mut exchanges)?;
            let mut parts = JoinSet::new();
            for p in mine {
                let stream = root.execute(p, Arc::clone(&context))?;
                let work = consume(p, stream);
                parts.spawn(async move { work.await.map(|out| (p, out)) });
            }
            let mut results = Vec::new();
            while let Some(done) = parts.join_next().await {
                results.push(flatten(done)?);
            }
            while let Some(done) = exchanges.join_next().await {
                flatten(done)?;
            }
            results.sort_by_key(|(p, _)| *p);
            Ok::<_, datafusion::error::DataFusionError>(results)
        });
        let outcome = outcome.map_err(|e| {
            let error = match run.take_comm_failure() {
                Some(comm) => Error::Comm(comm),
                None => Error::execution(rank, &e),
            };
            if matches!(error, Error::Execution { .. } | Error::MemoryLimit { .. } | Error::Storage { .. }) {
                // The other ranks may be waiting for this one: end the job everywhere.
                let _ = world.abort(&error.to_string());
            }
            error
        });
        run.close_inboxes();
        run.join_threads();
        *self.last_stats.lock().expect("stats lock") = run.stats();
        *self.last_exchanges.lock().expect("stats lock") = run.exchange_figures();
        let results = outcome?;
        // A rank that finished its share may not have heard of another's failure yet:
        // agree that the query succeeded everywhere (a failed rank aborts instead).
        world.barrier()?;
        Ok((results, root_locs))
    }
}

impl Engine {
    /// Runs the uncorrelated scalar subqueries of `plan` (`… > (SELECT avg(x) FROM t)`),
    /// innermost first, each as a distributed query whose one value every rank receives,
    /// and returns the plan without them: the ranks that evaluate the comparison need
    /// the value, wherever DataFusion put the operator that computes it.
    fn run_scalar_subqueries(&self, plan: Arc<dyn ExecutionPlan>, context: &Arc<TaskContext>) -> Result<Arc<dyn ExecutionPlan>> {
        let children = plan
            .children()
            .into_iter()
            .map(|c| self.run_scalar_subqueries(Arc::clone(c), context))
            .collect::<Result<Vec<_>>>()?;
        if let Some(node) = plan.downcast_ref::<ScalarSubqueryExec>() {
            for (link, subquery) in node.subqueries().iter().zip(&children[1..]) {
                let value = self.scalar(Arc::clone(subquery), context)?;
                node.results().set(link.index, value).map_err(Error::plan)?;
            }
            return Ok(Arc::clone(&children[0]));
        }
        let unchanged = plan.children().into_iter().zip(&children).all(|(old, new)| Arc::ptr_eq(old, new));
        if unchanged {
            return Ok(plan);
        }
        plan.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)).map_err(Error::plan)
    }

    /// The one value of a scalar subquery: NULL without rows, an error with several.
    fn scalar(&self, plan: Arc<dyn ExecutionPlan>, context: &Arc<TaskContext>) -> Result<ScalarValue> {
        let data_type = plan.schema().field(0).data_type().clone();
        // Its own scalar subqueries ran first: the recursion visits children before parents.
        let world = self.ranks_world()?;
        let (parts, _) = self.run_placed(&world, plan, Arc::clone(context), ResultOn::EveryRank, |_, stream| collect(stream))?;
        let rows: Vec<_> = parts.into_iter().flat_map(|(_, b)| b).filter(|b| b.num_rows() > 0).collect();
        let invalid = |m: &str| Error::Execution { rank: self.rank(), message: m.to_string() };
        match rows.as_slice() {
            [] => ScalarValue::try_from(&data_type).map_err(Error::plan),
            [one] if one.num_rows() == 1 => {
                ScalarValue::try_from_array(one.column(0), 0).map_err(|e| invalid(&e.strip_backtrace()))
            }
            _ => Err(invalid("a scalar subquery returned more than one row")),
        }
    }
}

/// Fails on every rank, before any data moves, if the ranks planned different queries
/// (they listed different files, or were given different settings): their exchanges
/// would not match.
/// A digest of the files `plan` scans as its planning listed them: store, path, size and
/// ETag (the version object storage pins reads to).
fn file_versions(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(plan: &Arc<dyn ExecutionPlan>, hasher: &mut std::collections::hash_map::DefaultHasher) {
        let scan = plan.downcast_ref::<DataSourceExec>().and_then(|s| s.data_source().downcast_ref::<FileScanConfig>());
        if let Some(config) = scan {
            for file in config.file_groups.iter().flat_map(|g| g.iter()) {
                let meta = &file.object_meta;
                (config.object_store_url.as_str(), meta.location.as_ref(), meta.size, &meta.e_tag).hash(hasher);
            }
        }
        for child in plan.children() {
            walk(child, hasher);
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    walk(plan, &mut hasher);
    hasher.finish()
}

/// Checks that every rank planned the same query over the same versions of the files it
/// reads (`versions`, see [`file_versions`]).
fn check_same_plan(world: &World, placed: &DistributedPlan, versions: u64) -> Result<()> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    placed.display().hash(&mut hasher);
    let plans = world.allgatherv(&(hasher.finish(), versions))?;
    if let Some(other) = plans.iter().position(|p| p.0 != plans[0].0) {
        return Err(Error::Plan(format!(
            "rank {other} planned this query differently from rank 0: every rank must read the same files \
             (on a shared file system) and use the same settings"
        )));
    }
    match plans.iter().position(|p| p.1 != plans[0].1) {
        None => Ok(()),
        Some(other) => Err(Error::Plan(format!(
            "rank {other} listed other versions of the query's objects than rank 0: an object changed while the \
             ranks planned; run the query again"
        ))),
    }
}

fn flatten<T>(joined: Result<DfResult<T>, tokio::task::JoinError>) -> DfResult<T> {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let message = chorus_tasks::panic_message(e.into_panic().as_ref());
            Err(datafusion::error::DataFusionError::Execution(format!("a query task panicked: {message}")))
        }
        Err(e) => Err(datafusion::error::DataFusionError::External(Box::new(e))),
    }
}
