//! Joins that emit the build rows no probe row matched, spread over the ranks.
//!
//! DataFusion's nested-loop join, and its broadcast hash join (`CollectLeft`), give every
//! probe partition the whole build side and record in one bitmap which build rows any
//! probe partition matched; the last partition to finish emits the others (left, left
//! semi, left anti and left mark joins, and the null-aware anti join of `NOT IN`, which
//! also needs to know whether any probe key is null). Across ranks that bitmap would have
//! to be shared, so these joins used to run on rank 0 with the whole probe side.
//!
//! [`SplitBuildJoinExec`] turns the work around: the build rows are dealt out among the
//! ranks (each row to exactly one rank, evenly), and every probe partition is sent to
//! every rank. Each rank's join then sees every probe row for its own build rows, so its
//! bitmap is complete and what it emits is exactly its share of the answer. The
//! comparisons (|build| × |probe| for a nested loop) are divided among the ranks; what
//! moves is the probe side, to each rank.
//!
//! A full join cannot be split this way (a probe row that one rank does not match may be
//! matched on another); it keeps the probe side in one place.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, JoinType};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures_util::stream;

type DfResult<T> = datafusion::common::Result<T>;

/// Whether `plan` is a join whose build side is shared by all probe partitions and which
/// emits build rows by what no probe partition matched, and that can run split: not a
/// full join (its unmatched probe rows would be emitted by every rank), a single build
/// partition, and no output order to keep (the probe side arrives interleaved).
pub(crate) fn can_split_build_side(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let join_type = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        if *join.partition_mode() != PartitionMode::CollectLeft {
            return false;
        }
        *join.join_type()
    } else if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
        *join.join_type()
    } else {
        return false;
    };
    let children = plan.children();
    matches!(join_type, JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark)
        && children.len() == 2
        && children[0].output_partitioning().partition_count() == 1
        && plan.output_ordering().is_none()
}

/// A join run as one join per rank over that rank's share of the build rows and all of
/// the probe side; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct SplitBuildJoinExec {
    /// DataFusion's join, as planned: how it shows, and what each rank's join is rebuilt from.
    join: Arc<dyn ExecutionPlan>,
    /// The build side dealt into one partition per rank (partition `r` on rank `r`).
    build: Arc<dyn ExecutionPlan>,
    /// The probe side, each of its partitions on every rank.
    probe: Arc<dyn ExecutionPlan>,
    rank: usize,
    ranks: usize,
    properties: Arc<PlanProperties>,
    /// This rank's join, built when its first partition runs.
    local: Mutex<Option<Arc<dyn ExecutionPlan>>>,
}

impl SplitBuildJoinExec {
    /// The join `join` over `build` (one partition per rank) and `probe` (every partition
    /// on every rank): output partition `p` runs on rank `p % ranks`.
    pub(crate) fn new(
        join: Arc<dyn ExecutionPlan>,
        build: Arc<dyn ExecutionPlan>,
        probe: Arc<dyn ExecutionPlan>,
        rank: usize,
        ranks: usize,
    ) -> Self {
        let outputs = probe.output_partitioning().partition_count();
        let mut eq = join.equivalence_properties().clone();
        eq.clear_orderings();
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(outputs),
            join.pipeline_behavior(),
            join.boundedness(),
        );
        SplitBuildJoinExec { join, build, probe, rank, ranks, properties: Arc::new(properties), local: Mutex::new(None) }
    }

    /// This rank's join: its build partition, and the probe partitions bundled into as
    /// many partitions as the rank has outputs.
    fn local(&self) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut local = self.local.lock().expect("local join lock");
        if let Some(join) = local.as_ref() {
            return Ok(Arc::clone(join));
        }
        let outputs = self.properties.partitioning.partition_count();
        let mine = (self.rank..outputs).step_by(self.ranks).count();
        let build: Arc<dyn ExecutionPlan> = Arc::new(OnePartitionExec::new(Arc::clone(&self.build), self.rank));
        let probe: Arc<dyn ExecutionPlan> = Arc::new(BundleExec::new(Arc::clone(&self.probe), mine.max(1)));
        let join = Arc::clone(&self.join)
            .replace_children(vec![build, probe], ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))?;
        *local = Some(Arc::clone(&join));
        Ok(join)
    }
}

impl DisplayAs for SplitBuildJoinExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SplitBuildJoinExec: ")?;
        self.join.fmt_as(t, f)
    }
}

impl ExecutionPlan for SplitBuildJoinExec {
    fn name(&self) -> &str {
        "SplitBuildJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.build, &self.probe]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        self.join.apply_expressions(f)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [build, probe]: [Arc<dyn ExecutionPlan>; 2] = match children.try_into() {
            Ok(both) => both,
            Err(_) => return internal_err!("SplitBuildJoinExec has two children"),
        };
        Ok(Arc::new(SplitBuildJoinExec::new(Arc::clone(&self.join), build, probe, self.rank, self.ranks)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition % self.ranks != self.rank {
            return internal_err!("partition {partition} of a split join runs on rank {}, not {}", partition % self.ranks, self.rank);
        }
        self.local()?.execute(partition / self.ranks, context)
    }
}

/// One partition of its input, as a plan of one partition.
#[derive(Debug)]
struct OnePartitionExec {
    input: Arc<dyn ExecutionPlan>,
    partition: usize,
    properties: Arc<PlanProperties>,
}

impl OnePartitionExec {
    fn new(input: Arc<dyn ExecutionPlan>, partition: usize) -> Self {
        let properties = PlanProperties::new(
            input.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        OnePartitionExec { input, partition, properties: Arc::new(properties) }
    }
}

impl DisplayAs for OnePartitionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnePartitionExec: partition={}", self.partition)
    }
}

impl ExecutionPlan for OnePartitionExec {
    fn name(&self) -> &str {
        "OnePartitionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(OnePartitionExec::new(input, self.partition))),
            _ => internal_err!("OnePartitionExec has one child"),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("OnePartitionExec has one partition, not {partition}");
        }
        self.input.execute(self.partition, context)
    }
}

/// Its input's partitions bundled into `bundles` partitions: bundle `j` holds input
/// partitions `j`, `j + bundles`, …, read concurrently.
#[derive(Debug)]
struct BundleExec {
    input: Arc<dyn ExecutionPlan>,
    bundles: usize,
    properties: Arc<PlanProperties>,
}

impl BundleExec {
    fn new(input: Arc<dyn ExecutionPlan>, bundles: usize) -> Self {
        let mut eq = input.equivalence_properties().clone();
        eq.clear_orderings();
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(bundles),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        BundleExec { input, bundles, properties: Arc::new(properties) }
    }
}

impl DisplayAs for BundleExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleExec: bundles={}", self.bundles)
    }
}

impl ExecutionPlan for BundleExec {
    fn name(&self) -> &str {
        "BundleExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(BundleExec::new(input, self.bundles))),
            _ => internal_err!("BundleExec has one child"),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let inputs = self.input.output_partitioning().partition_count();
        let streams = (partition..inputs)
            .step_by(self.bundles)
            .map(|q| self.input.execute(q, Arc::clone(&context)))
            .collect::<DfResult<Vec<_>>>()?;
        let merged = stream::select_all(streams);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), merged)))
    }
}
