//! The exchange operator: moves record batches between ranks over the job's [`World`](chorus_comm::World).
//!
//! An [`ExchangeExec`] replaces what DataFusion would do inside one process with a
//! `RepartitionExec` (hash, round-robin or range), and moves whole partitions where the
//! distributed planner needs them (to rank 0 before a merge, to every rank for the build
//! side of a broadcast join).
//!
//! Each rank runs the *sending* side of every exchange for the input partitions it holds
//! (started by [`QueryRun::start`], whether or not anything on this rank reads the
//! exchange), and the *receiving* side for the output partitions it owns. Batches to this
//! rank go through a channel; batches to another rank are encoded as Arrow IPC and sent
//! with [`World::send_slice`](chorus_comm::World::send_slice), under a per-stream window of bytes that the receiver
//! acknowledges once the consumer has taken the batch — so a shuffle of any size holds at
//! most a window per stream in memory, and a slow consumer slows its producers instead of
//! filling RAM.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::internal_datafusion_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{PhysicalExpr, RangePartitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

mod run;
mod wire;

use self::run::{Delivery, Inbox};
pub use self::run::ExchangeStats;
pub(crate) use self::run::QueryRun;

type DfResult<T> = datafusion::common::Result<T>;

/// Where one partition of an operator's output is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// On this rank only.
    Rank(usize),
    /// On every rank, identically.
    Everywhere,
}

impl Loc {
    /// The one rank that answers for partition `p` placed here: its rank, or for a
    /// partition computed everywhere, rank `p % ranks` (so that it is sent or kept once).
    pub(crate) fn rank_of(self, p: usize, ranks: usize) -> usize {
        match self {
            Loc::Rank(r) => r,
            Loc::Everywhere => p % ranks,
        }
    }
}

/// How an exchange routes its input.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Output partition `hash(keys) % n`, owned by rank `p % ranks`.
    Hash(Vec<Arc<dyn PhysicalExpr>>, usize),
    /// Input batches dealt in turn to `n` partitions, owned by rank `p % ranks`.
    RoundRobin(usize),
    /// Rows dealt evenly to `n` partitions, owned by rank `p % ranks`: each batch is cut
    /// into `n` slices, one for each partition.
    Rows(usize),
    /// Output partition `p` holds the `p`-th range of keys, owned by rank `p % ranks`.
    Range(RangePartitioning),
    /// Output partition `q` is input partition `q`, moved to where `targets[q]` says.
    Move(Vec<Loc>),
}

/// Moves batches between ranks; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct ExchangeExec {
    /// Set when the plan is final ([`QueryRun::register`]).
    id: AtomicUsize,
    input: Arc<dyn ExecutionPlan>,
    route: Route,
    input_locs: Vec<Loc>,
    ranks: usize,
    /// Weak: the run holds its exchanges.
    run: std::sync::Weak<QueryRun>,
    properties: Arc<PlanProperties>,
}

impl ExchangeExec {
    /// Builds an exchange of `input`, whose partitions are where `input_locs` says.
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, input_locs: Vec<Loc>, route: Route, run: &Arc<QueryRun>) -> Arc<Self> {
        let mut eq = input.equivalence_properties().clone();
        let partitioning = match &route {
            Route::Hash(keys, n) => Partitioning::Hash(keys.clone(), *n),
            Route::RoundRobin(n) | Route::Rows(n) => Partitioning::UnknownPartitioning(*n),
            Route::Range(ranges) => Partitioning::Range(ranges.clone()),
            Route::Move(_) => input.output_partitioning().clone(),
        };
        if !matches!(route, Route::Move(_)) {
            eq.clear_orderings();
            eq.clear_per_partition_constants();
        }
        let properties = PlanProperties::new(eq, partitioning, EmissionType::Incremental, Boundedness::Bounded);
        Arc::new(ExchangeExec {
            id: AtomicUsize::new(usize::MAX),
            input,
            route,
            input_locs,
            ranks: run.ranks(),
            run: Arc::downgrade(run),
            properties: Arc::new(properties),
        })
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    pub(crate) fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    pub(crate) fn input_locs(&self) -> &[Loc] {
        &self.input_locs
    }

    fn id(&self) -> usize {
        self.id.load(Ordering::Relaxed)
    }

    fn input_partitions(&self) -> usize {
        self.input_locs.len()
    }

    fn output_partitions(&self) -> usize {
        match &self.route {
            Route::Hash(_, n) | Route::RoundRobin(n) | Route::Rows(n) => *n,
            Route::Range(ranges) => ranges.partition_count(),
            Route::Move(targets) => targets.len(),
        }
    }

    /// Where output partition `p` is.
    pub(crate) fn output_loc(&self, p: usize) -> Loc {
        match &self.route {
            Route::Hash(..) | Route::RoundRobin(_) | Route::Rows(_) | Route::Range(_) => Loc::Rank(self.owner_of(p)),
            Route::Move(targets) => targets[p],
        }
    }

    fn owner_of(&self, p: usize) -> usize {
        p % self.ranks
    }

    fn output_is_here(&self, p: usize, rank: usize) -> bool {
        match self.output_loc(p) {
            Loc::Rank(r) => r == rank,
            Loc::Everywhere => true,
        }
    }

    /// The one rank that sends input partition `q` (a partition computed everywhere is
    /// sent by one rank only, so that it is not duplicated).
    fn sender_of(&self, q: usize) -> usize {
        self.input_locs[q].rank_of(q, self.ranks)
    }

    /// The ranks that send (at least an end) to output partition `p`.
    fn sources_of(&self, p: usize) -> Vec<usize> {
        match &self.route {
            Route::Hash(..) | Route::RoundRobin(_) | Route::Rows(_) | Route::Range(_) => {
                (0..self.input_partitions()).map(|q| self.sender_of(q)).collect::<BTreeSet<_>>().into_iter().collect()
            }
            Route::Move(_) => vec![self.sender_of(p)],
        }
    }

    /// The output partitions that input partition `q` may send batches to.
    fn outputs_fed_by(&self, q: usize) -> std::ops::Range<usize> {
        match &self.route {
            Route::Hash(..) | Route::RoundRobin(_) | Route::Rows(_) | Route::Range(_) => 0..self.output_partitions(),
            Route::Move(_) => q..q + 1,
        }
    }

    /// The ranks that receive output partition `p`.
    fn destinations_of(&self, p: usize) -> std::ops::Range<usize> {
        match self.output_loc(p) {
            Loc::Rank(r) => r..r + 1,
            Loc::Everywhere => 0..self.ranks,
        }
    }

}

impl ExchangeExec {
    /// What it does, as plans show it: `ExchangeExec: shuffle into 4 partitions over 2 ranks`.
    pub(crate) fn describe(&self) -> String {
        let how = match &self.route {
            Route::Hash(_, n) => format!("shuffle into {n} partitions"),
            Route::RoundRobin(n) => format!("deal batches into {n} partitions"),
            Route::Rows(n) => format!("deal rows into {n} partitions"),
            Route::Range(ranges) => format!("split into {} ranges", ranges.partition_count()),
            Route::Move(targets) if targets.iter().all(|t| *t == Loc::Everywhere) => "broadcast to every rank".into(),
            Route::Move(targets) if targets.iter().all(|t| *t == Loc::Rank(0)) => "gather to rank 0".into(),
            Route::Move(_) => "move partitions".into(),
        };
        format!("ExchangeExec: {how} over {} ranks", self.ranks)
    }
}

impl DisplayAs for ExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ExecutionPlan for ExchangeExec {
    fn name(&self) -> &str {
        "ExchangeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        if let Route::Hash(keys, _) = &self.route {
            for k in keys {
                if f(k)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The distributed plan is final: its exchanges are registered with a running query.
        Err(internal_datafusion_err!("a distributed plan cannot be rewritten after it was planned"))
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let run = self.run.upgrade().ok_or_else(|| internal_datafusion_err!("the query of this exchange has ended"))?;
        let Inbox { receiver, sources } = run.take_inbox(self.id(), partition)?;
        let schema = self.schema();
        let stream = futures_util::stream::unfold((receiver, sources), |(mut rx, mut open)| async move {
            loop {
                if open == 0 {
                    return None;
                }
                match rx.recv().await {
                    Some(Delivery::Batch(b)) => return Some((Ok(b), (rx, open))),
                    Some(Delivery::End) => open -= 1,
                    Some(Delivery::Failed(e)) => return Some((Err(e), (rx, 0))),
                    None => {
                        return Some((Err(internal_datafusion_err!("an exchange stream ended without its end marker")), (rx, 0)))
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
