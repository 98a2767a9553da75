//! The distributed planner: turns DataFusion's physical plan for `ranks × threads`
//! partitions into one that every rank runs its share of.
//!
//! DataFusion plans a query as if one process held every partition. This pass decides,
//! bottom-up, where each partition of each operator is computed ([`Loc`]) and rewrites
//! the plan where data has to move:
//!
//! - a file scan's partition `p` (its `p`-th byte range or group of row groups) is read
//!   by rank `p % ranks` (`1D_Block`); inputs that every rank can build alike (`VALUES`,
//!   an empty relation) are computed everywhere (`Replicated`);
//! - a `RepartitionExec` becomes an [`ExchangeExec`]: a hash shuffle between ranks
//!   (`Hash(keys)`, partition `p` on rank `p % ranks`) or a round-robin deal (on one rank
//!   it stays DataFusion's, which moves batches between the process's partitions);
//! - an operator that merges all partitions into one (`CoalescePartitionsExec`,
//!   `SortPreservingMergeExec`, a final aggregate over one partition) gets its input
//!   gathered to rank 0 first (`Single`);
//! - the build side of a broadcast join (DataFusion's `CollectLeft`), and any other
//!   single-partition input read by every partition of its parent, is sent to every rank
//!   (`Replicated`); a broadcast join that emits unmatched build rows (left, full, semi,
//!   anti, mark) is made a partitioned one instead, both sides shuffled by key, since each rank
//!   would otherwise need the whole probe side to know which build rows matched nowhere;
//!   those that cannot be shuffled by key (nested-loop joins, a `NOT IN`'s null-aware
//!   anti join) deal their build rows among the ranks and send the probe side to every
//!   rank ([`SplitBuildJoinExec`]; a full nested-loop join also joins the whole build side
//!   with each rank's share of the probe rows, for those nothing matched); the few joins
//!   that fit neither run on rank 0, and `explain` says so;
//! - operators that process partition `p` of their inputs run where partition `p` is;
//!   where two inputs disagree, one is moved.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{not_impl_err, JoinType};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::{
    displayable, ExecutionPlan, ExecutionPlanProperties, Partitioning, ReplaceChildrenOptions,
};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;

use crate::exchange::{ExchangeExec, Loc, QueryRun, Route};
use crate::scan::CsvScanExec;
use crate::sort::HeldExec;
use crate::split_join::{split_of, Split, SplitBuildJoinExec, UnmatchedProbe};

type DfResult<T> = datafusion::common::Result<T>;

/// Where the result of a query should end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultOn {
    /// All of it on rank 0.
    Root,
    /// All of it on every rank.
    EveryRank,
    /// Each rank keeps the partitions it computed.
    Distributed,
}

/// A plan ready to run: which root partitions this rank executes, and how to show it.
#[derive(Debug)]
pub(crate) struct DistributedPlan {
    pub(crate) root: Arc<dyn ExecutionPlan>,
    pub(crate) root_locs: Vec<Loc>,
    labels: HashMap<usize, String>,
}

/// One operator after placement: the (rewritten) plan, where each of its partitions is,
/// and the distribution to show in `explain`.
struct Placed {
    plan: Arc<dyn ExecutionPlan>,
    locs: Vec<Loc>,
    label: String,
}

struct Planner<'a> {
    run: &'a Arc<QueryRun>,
    ranks: usize,
    labels: HashMap<usize, String>,
    /// Every exchange built, including any replaced before the plan was final.
    created: Vec<Arc<ExchangeExec>>,
}

/// Places `plan` on the ranks of `run` and registers its exchanges.
pub(crate) fn distribute(plan: Arc<dyn ExecutionPlan>, run: &Arc<QueryRun>, result_on: ResultOn) -> DfResult<DistributedPlan> {
    let mut planner = Planner { run, ranks: run.ranks(), labels: HashMap::new(), created: Vec::new() };
    let placed = planner.place(&plan)?;
    let placed = match result_on {
        ResultOn::Root if !placed.locs.iter().all(|l| *l == Loc::Everywhere || *l == Loc::Rank(0)) => {
            planner.moved(placed, Loc::Rank(0), "Single")
        }
        ResultOn::EveryRank if !placed.locs.iter().all(|l| *l == Loc::Everywhere) => {
            planner.moved(placed, Loc::Everywhere, "Replicated")
        }
        _ => placed,
    };
    let mut exchanges = Vec::new();
    collect_exchanges(&placed.plan, &planner.created, &mut exchanges);
    run.register(exchanges);
    Ok(DistributedPlan { root: placed.plan, root_locs: placed.locs, labels: planner.labels })
}

/// The exchanges of the final plan, children first (the same order on every rank).
fn collect_exchanges(plan: &Arc<dyn ExecutionPlan>, created: &[Arc<ExchangeExec>], out: &mut Vec<Arc<ExchangeExec>>) {
    for child in plan.children() {
        collect_exchanges(child, created, out);
    }
    if let Some(exchange) = created.iter().find(|e| Arc::as_ptr(e) as *const () as usize == key(plan)) {
        out.push(Arc::clone(exchange));
    }
}

fn key(plan: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(plan) as *const () as usize
}

/// A broadcast hash join that tracks unmatched build rows (left, full, semi, anti, mark:
/// see [`tracks_unmatched_build_rows`]) rebuilt as a partitioned one: both sides shuffled
/// by key, so that each key's build and probe rows meet in one partition and no rank
/// needs the whole probe side. `None` where that would change the answer or the order: a
/// null-aware anti join (`NOT IN`: one NULL probe key anywhere empties the result), a
/// join whose output order a parent relies on, a probe side of one partition.
fn partitioned_join(plan: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(join) = plan.downcast_ref::<HashJoinExec>() else { return Ok(None) };
    if join.mode != PartitionMode::CollectLeft
        || !tracks_unmatched_build_rows(join.join_type)
        || join.null_aware
        || plan.output_ordering().is_some()
    {
        return Ok(None);
    }
    let n = join.right.output_partitioning().partition_count();
    if n < 2 {
        return Ok(None);
    }
    let (left_keys, right_keys): (Vec<_>, Vec<_>) = join.on.iter().map(|(l, r)| (Arc::clone(l), Arc::clone(r))).unzip();
    let shuffled = |side: &Arc<dyn ExecutionPlan>, keys: Vec<_>| -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted = Partitioning::Hash(keys, n);
        if side.output_partitioning() == &wanted {
            return Ok(Arc::clone(side));
        }
        // The single partition of a broadcast build side, or a round-robin deal, is
        // replaced by the shuffle rather than followed by it.
        let input = match (side.downcast_ref::<CoalescePartitionsExec>(), side.downcast_ref::<RepartitionExec>()) {
            (Some(coalesce), _) if coalesce.fetch().is_none() => Arc::clone(coalesce.input()),
            (_, Some(deal)) if matches!(deal.partitioning(), Partitioning::RoundRobinBatch(_)) && !deal.preserve_order() => {
                Arc::clone(deal.input())
            }
            _ => Arc::clone(side),
        };
        Ok(Arc::new(RepartitionExec::try_new(input, wanted)?))
    };
    let children = vec![shuffled(&join.left, left_keys)?, shuffled(&join.right, right_keys)?];
    join.builder().with_partition_mode(PartitionMode::Partitioned).with_new_children(children)?.build_exec().map(Some)
}

/// Joins whose build side is shared by all probe partitions and which emit build rows
/// that no probe partition matched: they need every probe partition in one process.
fn tracks_unmatched_build_rows(join_type: JoinType) -> bool {
    matches!(join_type, JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark | JoinType::Full)
}

impl Planner<'_> {
    fn placed(&mut self, plan: Arc<dyn ExecutionPlan>, locs: Vec<Loc>, label: impl Into<String>) -> Placed {
        let label = label.into();
        self.labels.insert(key(&plan), label.clone());
        Placed { plan, locs, label }
    }

    fn exchange(&mut self, input: Arc<dyn ExecutionPlan>, locs: Vec<Loc>, route: Route) -> Arc<ExchangeExec> {
        let exchange = ExchangeExec::new(input, locs, route, self.run);
        self.created.push(Arc::clone(&exchange));
        exchange
    }

    /// Moves every partition of `input` to `to`.
    fn moved(&mut self, input: Placed, to: Loc, label: &str) -> Placed {
        let targets = vec![to; input.locs.len()];
        let exchange: Arc<dyn ExecutionPlan> = self.exchange(input.plan, input.locs, Route::Move(targets.clone()));
        self.placed(exchange, targets, label)
    }

    fn place(&mut self, plan: &Arc<dyn ExecutionPlan>) -> DfResult<Placed> {
        if plan.children().is_empty() {
            return Ok(self.place_leaf(plan));
        }
        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            return self.place_repartition(plan, repartition);
        }
        if self.ranks > 1 {
            if let Some(partitioned) = partitioned_join(plan)? {
                return self.place(&partitioned);
            }
            if let Some(split) = split_of(plan) {
                if plan.output_partitioning().partition_count() >= self.ranks {
                    return self.place_split_build_join(plan, split);
                }
            }
        }
        let children =
            plan.children().into_iter().map(|c| self.place(c)).collect::<DfResult<Vec<_>>>()?;
        if plan.is::<UnionExec>() {
            let locs = children.iter().flat_map(|c| c.locs.iter().copied()).collect();
            let label = common_label(&children).unwrap_or_else(|| "1D_Var".into());
            let plan = with_children(plan, children.into_iter().map(|c| c.plan).collect())?;
            return Ok(self.placed(plan, locs, label));
        }
        let outputs = plan.output_partitioning().partition_count();
        let whole_probe = match plan.downcast_ref::<HashJoinExec>() {
            Some(join) => *join.partition_mode() == PartitionMode::CollectLeft && tracks_unmatched_build_rows(*join.join_type()),
            None => plan.downcast_ref::<NestedLoopJoinExec>().is_some_and(|j| tracks_unmatched_build_rows(*j.join_type())),
        };

        // An operator that reads every partition of its input into one output partition.
        if outputs == 1 && children.len() == 1 && children[0].locs.len() > 1 {
            let child = children.into_iter().next().expect("one child");
            let child = self.in_one_place(child);
            let (loc, label) = (child.locs[0], if child.locs[0] == Loc::Everywhere { "Replicated" } else { "Single" });
            let plan = with_children(plan, vec![child.plan])?;
            return Ok(self.placed(plan, vec![loc], label));
        }

        // Partition `p` of the output reads partition `p` of the children with as many
        // partitions, and the whole of the children with one.
        let reference = children
            .iter()
            .find(|c| c.locs.len() == outputs && c.locs.iter().any(|l| *l != Loc::Everywhere))
            .or_else(|| children.iter().find(|c| c.locs.len() == outputs));
        let Some(reference) = reference else {
            return not_impl_err!(
                "chorus cannot distribute {}: none of its inputs has its {outputs} partitions",
                plan.name()
            );
        };
        let (mut target, mut label) = (reference.locs.clone(), reference.label.clone());
        let everywhere = target.iter().all(|l| *l == Loc::Everywhere);
        if whole_probe && !everywhere && single_rank(&target).is_none() {
            target = vec![Loc::Rank(0); outputs];
            label = "Single: needs every probe row in one place".into();
        }
        let one_rank = single_rank(&target);
        let mut new_children = Vec::with_capacity(children.len());
        for child in children {
            let child = if child.locs.len() == outputs {
                self.partition_wise(child, &target)
            } else if child.locs.len() == 1 {
                self.shared(child, one_rank)
            } else {
                return not_impl_err!(
                    "chorus cannot distribute {}: an input has {} partitions where it has {outputs}",
                    plan.name(),
                    child.locs.len()
                );
            };
            new_children.push(child.plan);
        }
        let plan = with_children(plan, new_children)?;
        Ok(self.placed(plan, target, label))
    }

    /// A join that emits unmatched build rows and cannot be shuffled by key (a nested
    /// loop, a `NOT IN`): each rank joins its share of the build rows with all of the
    /// probe side ([`SplitBuildJoinExec`]).
    fn place_split_build_join(&mut self, plan: &Arc<dyn ExecutionPlan>, split: Split) -> DfResult<Placed> {
        let children = plan.children();
        let build = self.place(children[0])?;
        let probe = self.place(children[1])?;
        let outputs = probe.locs.len();
        let locs: Vec<Loc> = (0..outputs).map(|p| Loc::Rank(p % self.ranks)).collect();
        // A full join reads both sides a second time: the build side whole on every
        // rank, the probe side where its partitions are joined.
        let unmatched = match split {
            Split::BuildRows => None,
            Split::AlsoUnmatchedProbeRows => {
                let build = self.place(children[0])?;
                let build = self.shared(build, None).plan;
                let probe = self.place(children[1])?;
                let probe = self.partition_wise(probe, &locs).plan;
                Some(UnmatchedProbe { build, probe })
            }
        };
        let dealt: Arc<dyn ExecutionPlan> = self.exchange(build.plan, build.locs, Route::Rows(self.ranks));
        self.labels.insert(key(&dealt), "1D_Var: build rows dealt among the ranks".into());
        let probe = if probe.locs.iter().all(|l| *l == Loc::Everywhere) {
            probe.plan
        } else {
            let everywhere = vec![Loc::Everywhere; outputs];
            let broadcast: Arc<dyn ExecutionPlan> = self.exchange(probe.plan, probe.locs, Route::Move(everywhere));
            self.labels.insert(key(&broadcast), "Replicated".into());
            broadcast
        };
        let join = SplitBuildJoinExec::new(Arc::clone(plan), dealt, probe, unmatched, self.run.rank(), self.ranks);
        Ok(self.placed(Arc::new(join), locs, "1D_Var: each rank joins its build rows with every probe row"))
    }

    fn place_leaf(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Placed {
        let partitions = plan.output_partitioning().partition_count();
        let is_file_scan = plan
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|scan| scan.data_source().downcast_ref::<FileScanConfig>().is_some());
        if let Some(held) = plan.downcast_ref::<HeldExec>() {
            let locs = held.owners().iter().map(|r| Loc::Rank(*r)).collect();
            return self.placed(Arc::clone(plan), locs, "1D_Block");
        }
        if is_file_scan {
            let locs = (0..partitions).map(|p| Loc::Rank(p % self.ranks)).collect();
            let plan = CsvScanExec::wrap(plan).unwrap_or_else(|| Arc::clone(plan));
            self.placed(plan, locs, "1D_Block")
        } else {
            self.placed(Arc::clone(plan), vec![Loc::Everywhere; partitions], "Replicated")
        }
    }

    fn place_repartition(&mut self, plan: &Arc<dyn ExecutionPlan>, repartition: &RepartitionExec) -> DfResult<Placed> {
        let input = self.place(repartition.input())?;
        let (route, label) = match repartition.partitioning() {
            Partitioning::Hash(keys, n) => {
                let label = format!("Hash({})", keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "));
                (Route::Hash(keys.clone(), *n), label)
            }
            Partitioning::RoundRobinBatch(n) => (Route::RoundRobin(*n), "1D_Var".to_string()),
            Partitioning::Range(ranges) => {
                let keys = ranges.ordering().iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
                (Route::Range(ranges.clone()), format!("Range({keys})"))
            }
            other => return not_impl_err!("chorus cannot distribute a repartition by {other}"),
        };
        if self.ranks == 1 {
            // Nothing crosses ranks: DataFusion's own repartition moves the batches
            // between this process's partitions.
            let outputs = repartition.partitioning().partition_count();
            let plan = with_children(plan, vec![input.plan])?;
            return Ok(self.placed(plan, vec![Loc::Rank(0); outputs], label));
        }
        let exchange = self.exchange(input.plan, input.locs, route);
        let locs = (0..exchange.properties().partitioning.partition_count()).map(|p| exchange.output_loc(p)).collect();
        let mut plan: Arc<dyn ExecutionPlan> = exchange;
        if repartition.preserve_order() {
            // Batches from several ranks interleave; restore the order DataFusion expects.
            if let Some(ordering) = repartition.input().output_ordering() {
                self.labels.insert(key(&plan), label.clone());
                plan = Arc::new(SortExec::new(ordering.clone(), plan).with_preserve_partitioning(true));
            }
        }
        Ok(self.placed(plan, locs, label))
    }

    /// Makes every partition of `child` available in one place (rank 0 unless it already
    /// is on a single rank or everywhere).
    fn in_one_place(&mut self, child: Placed) -> Placed {
        let first = child.locs[0];
        if child.locs.iter().all(|l| *l == first) {
            return child;
        }
        self.moved(child, Loc::Rank(0), "Single")
    }

    /// Moves the partitions of `child` that are not where `target` needs them.
    fn partition_wise(&mut self, child: Placed, target: &[Loc]) -> Placed {
        let fits = child.locs.iter().zip(target).all(|(have, want)| *have == Loc::Everywhere || have == want);
        if fits {
            return child;
        }
        let exchange: Arc<dyn ExecutionPlan> = self.exchange(child.plan, child.locs, Route::Move(target.to_vec()));
        let label = child.label;
        self.placed(exchange, target.to_vec(), label)
    }

    /// Makes a one-partition input available wherever the output partitions are: on
    /// rank `r` if they all are, else on every rank. A merge whose input is gathered to
    /// rank 0 is changed to receive its input on every rank instead.
    fn shared(&mut self, child: Placed, one_rank: Option<usize>) -> Placed {
        match (child.locs[0], one_rank) {
            (Loc::Everywhere, _) => return child,
            (Loc::Rank(r), Some(want)) if r == want => return child,
            _ => {}
        }
        if one_rank.is_none() {
            if let Some(rebuilt) = self.broadcast_below_merge(&child.plan) {
                return self.placed(rebuilt, vec![Loc::Everywhere], "Replicated");
            }
        }
        let to = one_rank.map_or(Loc::Everywhere, Loc::Rank);
        self.moved(child, to, if to == Loc::Everywhere { "Replicated" } else { "Single" })
    }

    fn broadcast_below_merge(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        if !(plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>()) {
            return None;
        }
        let gather = plan.children()[0].downcast_ref::<ExchangeExec>()?;
        let Route::Move(_) = gather.route() else { return None };
        let targets = vec![Loc::Everywhere; gather.input_locs().len()];
        let (input, locs) = (Arc::clone(gather.input()), gather.input_locs().to_vec());
        let broadcast: Arc<dyn ExecutionPlan> = self.exchange(input, locs, Route::Move(targets));
        self.labels.insert(key(&broadcast), "Replicated".into());
        with_children(plan, vec![broadcast]).ok()
    }
}

/// The rank that holds every partition, if one does.
fn single_rank(locs: &[Loc]) -> Option<usize> {
    match locs.first() {
        Some(Loc::Rank(r)) if locs.iter().all(|l| *l == Loc::Rank(*r)) => Some(*r),
        _ => None,
    }
}

fn with_children(plan: &Arc<dyn ExecutionPlan>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
    Arc::clone(plan).replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
}

fn common_label(children: &[Placed]) -> Option<String> {
    let first = &children.first()?.label;
    children.iter().all(|c| &c.label == first).then(|| first.clone())
}

impl DistributedPlan {
    /// The plan as an indented tree, each operator with its distribution.
    pub(crate) fn display(&self) -> String {
        let mut out = String::new();
        self.display_node(&self.root, 0, &mut out);
        out
    }

    fn display_node(&self, plan: &Arc<dyn ExecutionPlan>, depth: usize, out: &mut String) {
        let line = displayable(plan.as_ref()).one_line().to_string();
        let label = self.labels.get(&key(plan)).map_or("", String::as_str);
        out.push_str(&format!("{:indent$}{}  [{label}]\n", "", line.trim_end(), indent = depth * 2));
        for child in plan.children() {
            self.display_node(child, depth + 1, out);
        }
    }
}
