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
//! A full nested-loop join also emits the probe rows no build row matched, which no rank
//! of the split can tell alone. It runs in two halves on every rank: the split join above
//! as a left join (matched pairs and unmatched build rows), and a right anti join of the
//! whole build side (sent to every rank) with the rank's own share of a second reading of
//! the probe side, whose rows come out padded with nulls for the build columns.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, JoinType};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, NestedLoopJoinExecBuilder, PartitionMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use datafusion::arrow::array::{new_null_array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures_util::stream::{self, StreamExt};

type DfResult<T> = datafusion::common::Result<T>;

/// How a join can run with its build side split among the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Each rank's share of the build rows against every probe row is all it takes.
    BuildRows,
    /// A full nested-loop join: also each rank's share of the probe rows against every
    /// build row, for the probe rows nothing matched.
    AlsoUnmatchedProbeRows,
}

/// Whether `plan` is a join whose build side is shared by all probe partitions and which
/// emits build rows by what no probe partition matched, and how it can run split: it
/// needs a single build partition, and no output order to keep (the probe side arrives
/// interleaved).
pub(crate) fn split_of(plan: &Arc<dyn ExecutionPlan>) -> Option<Split> {
    let split = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        match (join.partition_mode(), join.join_type()) {
            (PartitionMode::CollectLeft, JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark) => Split::BuildRows,
            _ => return None,
        }
    } else if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
        match join.join_type() {
            JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark => Split::BuildRows,
            JoinType::Full => Split::AlsoUnmatchedProbeRows,
            _ => return None,
        }
    } else {
        return None;
    };
    let children = plan.children();
    let fits = children.len() == 2 && children[0].output_partitioning().partition_count() == 1 && plan.output_ordering().is_none();
    fits.then_some(split)
}

/// The second half of a split full join: the build side whole on every rank, and a
/// second reading of the probe side with partition `p` on rank `p % ranks`.
#[derive(Debug, Clone)]
pub(crate) struct UnmatchedProbe {
    /// The build side, its one partition on every rank.
    pub(crate) build: Arc<dyn ExecutionPlan>,
    /// The probe side again, partition `p` on rank `p % ranks`.
    pub(crate) probe: Arc<dyn ExecutionPlan>,
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
    /// For a full join, the half that finds the probe rows nothing matched.
    unmatched: Option<UnmatchedProbe>,
    rank: usize,
    ranks: usize,
    properties: Arc<PlanProperties>,
    /// This rank's joins, built when its first partition runs.
    local: Mutex<Option<Local>>,
}

/// The joins a rank runs: the split join, and for a full join the right anti join whose
/// rows are padded to the full join's columns.
#[derive(Debug, Clone)]
struct Local {
    join: Arc<dyn ExecutionPlan>,
    unmatched: Option<Arc<dyn ExecutionPlan>>,
}

impl SplitBuildJoinExec {
    /// The join `join` over `build` (one partition per rank) and `probe` (every partition
    /// on every rank): output partition `p` runs on rank `p % ranks`.
    pub(crate) fn new(
        join: Arc<dyn ExecutionPlan>,
        build: Arc<dyn ExecutionPlan>,
        probe: Arc<dyn ExecutionPlan>,
        unmatched: Option<UnmatchedProbe>,
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
        SplitBuildJoinExec { join, build, probe, unmatched, rank, ranks, properties: Arc::new(properties), local: Mutex::new(None) }
    }

    /// This rank's joins: its build partition against the probe partitions bundled into
    /// as many partitions as the rank has outputs; for a full join, that as a left join,
    /// and the whole build side against the rank's own probe partitions.
    fn local(&self) -> DfResult<Local> {
        let mut local = self.local.lock().expect("local join lock");
        if let Some(built) = local.as_ref() {
            return Ok(built.clone());
        }
        let outputs = self.properties.partitioning.partition_count();
        let mine: Vec<usize> = (self.rank..outputs).step_by(self.ranks).collect();
        let build: Arc<dyn ExecutionPlan> = Arc::new(RegroupExec::each(Arc::clone(&self.build), vec![self.rank]));
        let probe: Arc<dyn ExecutionPlan> = Arc::new(RegroupExec::bundled(Arc::clone(&self.probe), mine.len().max(1)));
        let built = match (&self.unmatched, self.join.downcast_ref::<NestedLoopJoinExec>()) {
            (Some(unmatched), Some(full)) => {
                let filter = full.filter().cloned();
                let join = NestedLoopJoinExecBuilder::new(build, probe, JoinType::Left)
                    .with_filter(filter.clone())
                    .with_projection_ref(full.projection().clone())
                    .build()?;
                let own: Arc<dyn ExecutionPlan> = Arc::new(RegroupExec::each(Arc::clone(&unmatched.probe), mine));
                let anti = NestedLoopJoinExecBuilder::new(Arc::clone(&unmatched.build), own, JoinType::RightAnti)
                    .with_filter(filter)
                    .build()?;
                Local { join: Arc::new(join), unmatched: Some(Arc::new(anti)) }
            }
            (Some(_), None) => return internal_err!("only a nested-loop full join runs split"),
            (None, _) => {
                let join = Arc::clone(&self.join)
                    .replace_children(vec![build, probe], ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))?;
                Local { join, unmatched: None }
            }
        };
        *local = Some(built.clone());
        Ok(built)
    }

    /// Partition `j` of the rank's right anti join, each row given null build columns
    /// and then the full join's projection.
    fn unmatched_rows(&self, anti: &Arc<dyn ExecutionPlan>, j: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema();
        let build_types: Vec<DataType> = self.join.children()[0].schema().fields().iter().map(|f| f.data_type().clone()).collect();
        let projection = self.join.downcast_ref::<NestedLoopJoinExec>().and_then(|j| j.projection().clone());
        let out = Arc::clone(&schema);
        let rows = anti.execute(j, context)?.map(move |batch| {
            let batch = batch?;
            let n = batch.num_rows();
            let mut columns: Vec<ArrayRef> = build_types.iter().map(|t| new_null_array(t, n)).collect();
            columns.extend(batch.columns().iter().cloned());
            if let Some(projection) = &projection {
                columns = projection.iter().map(|i| Arc::clone(&columns[*i])).collect();
            }
            Ok(RecordBatch::try_new_with_options(Arc::clone(&out), columns, &RecordBatchOptions::new().with_row_count(Some(n)))?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
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
        let mut children = vec![&self.build, &self.probe];
        if let Some(unmatched) = &self.unmatched {
            children.extend([&unmatched.build, &unmatched.probe]);
        }
        children
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        self.join.apply_expressions(f)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut children = children.into_iter();
        let (build, probe, unmatched) = match (children.next(), children.next(), children.next(), children.next(), children.next()) {
            (Some(build), Some(probe), None, None, None) if self.unmatched.is_none() => (build, probe, None),
            (Some(build), Some(probe), Some(all), Some(own), None) if self.unmatched.is_some() => {
                (build, probe, Some(UnmatchedProbe { build: all, probe: own }))
            }
            _ => return internal_err!("SplitBuildJoinExec takes the children it has"),
        };
        Ok(Arc::new(SplitBuildJoinExec::new(Arc::clone(&self.join), build, probe, unmatched, self.rank, self.ranks)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition % self.ranks != self.rank {
            return internal_err!("partition {partition} of a split join runs on rank {}, not {}", partition % self.ranks, self.rank);
        }
        let j = partition / self.ranks;
        let local = self.local()?;
        let Some(anti) = &local.unmatched else { return local.join.execute(j, context) };
        // The left join's rows under the full join's schema (its build columns nullable).
        let schema = self.schema();
        let out = Arc::clone(&schema);
        let pairs = local.join.execute(j, Arc::clone(&context))?.map(move |batch| {
            let batch = batch?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(Arc::clone(&out), batch.columns().to_vec(), &options)?)
        });
        let unmatched = self.unmatched_rows(anti, j, context)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream::select(pairs, unmatched))))
    }
}

/// Its input's partitions regrouped: output partition `j` reads the input partitions
/// `groups[j]` (concurrently, when there are several).
#[derive(Debug)]
struct RegroupExec {
    input: Arc<dyn ExecutionPlan>,
    groups: Vec<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl RegroupExec {
    /// Input partitions `partitions`, one output partition each.
    fn each(input: Arc<dyn ExecutionPlan>, partitions: Vec<usize>) -> Self {
        Self::new(input, partitions.into_iter().map(|p| vec![p]).collect())
    }

    /// All the input partitions in `bundles` outputs: bundle `j` holds partitions `j`,
    /// `j + bundles`, ….
    fn bundled(input: Arc<dyn ExecutionPlan>, bundles: usize) -> Self {
        let inputs = input.output_partitioning().partition_count();
        Self::new(input, (0..bundles).map(|j| (j..inputs).step_by(bundles).collect()).collect())
    }

    fn new(input: Arc<dyn ExecutionPlan>, groups: Vec<Vec<usize>>) -> Self {
        let mut eq = input.equivalence_properties().clone();
        if groups.iter().any(|g| g.len() > 1) {
            // Partitions read concurrently interleave.
            eq.clear_orderings();
        }
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(groups.len()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        RegroupExec { input, groups, properties: Arc::new(properties) }
    }
}

impl DisplayAs for RegroupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegroupExec: groups={:?}", self.groups)
    }
}

impl ExecutionPlan for RegroupExec {
    fn name(&self) -> &str {
        "RegroupExec"
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
            Some(input) if children.is_empty() => Ok(Arc::new(RegroupExec::new(input, self.groups.clone()))),
            _ => internal_err!("RegroupExec has one child"),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let Some(group) = self.groups.get(partition) else {
            return internal_err!("RegroupExec has {} partitions, not {partition}", self.groups.len());
        };
        if let [one] = group.as_slice() {
            return self.input.execute(*one, context);
        }
        let streams = group.iter().map(|q| self.input.execute(*q, Arc::clone(&context))).collect::<DfResult<Vec<_>>>()?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), stream::select_all(streams))))
    }
}
