//! Global sorts whose result stays distributed: rank `r` holds the `r`-th range of keys.
//!
//! DataFusion sorts each partition and merges them in one place, which is right when the
//! result goes to rank 0. When each rank keeps its block
//! ([`collect_distributed`](crate::DataFrame::collect_distributed), `write_parquet`), the
//! sort is instead done by range: every rank samples the sort keys of its partitions,
//! the samples are shared, every rank picks the same `ranks - 1` boundaries from them,
//! and a range exchange sends each row to the rank of its range, which sorts what it
//! receives.
//!
//! The input is computed once. While it is sampled, each rank holds its partitions of it
//! ([`Held`]): in memory while the query's memory pool allows, in spill files beyond
//! that, as DataFusion's own sort does. The range exchange then reads them back
//! ([`HeldExec`]) instead of computing the input again, as Spark does.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, lexsort_to_indices, take, SortColumn};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_datafusion_err, DataFusionError, ScalarValue, SplitPoint};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SpillFile, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr, RangePartitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::{get_record_batch_memory_size, SpillManager};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures_util::{StreamExt, TryStreamExt};

use crate::{Error, Result};

type DfResult<T> = datafusion::common::Result<T>;

/// Sampled key rows kept per partition.
const SAMPLES_PER_PARTITION: usize = 1000;

/// The input and ordering of a plan that ends in a global sort (a merge of sorted
/// partitions without a limit), or `None`.
pub(crate) fn global_sort(plan: &Arc<dyn ExecutionPlan>) -> Option<(Arc<dyn ExecutionPlan>, LexOrdering)> {
    let merge = plan.downcast_ref::<SortPreservingMergeExec>()?;
    if merge.fetch().is_some() {
        return None;
    }
    let input = match merge.input().downcast_ref::<SortExec>() {
        Some(sort) if sort.preserve_partitioning() && sort.fetch().is_none() => Arc::clone(sort.input()),
        _ => Arc::clone(merge.input()),
    };
    Some((input, merge.expr().clone()))
}

/// A strided sample of the sort keys of one partition, about [`SAMPLES_PER_PARTITION`]
/// rows spread over all of it.
struct Sampler {
    ordering: LexOrdering,
    kept: Vec<RecordBatch>,
    seen: u64,
    state: u64,
}

impl Sampler {
    fn new(ordering: LexOrdering, seed: u64) -> Sampler {
        Sampler { ordering, kept: Vec::new(), seen: 0, state: seed | 1 }
    }

    fn add(&mut self, batch: &RecordBatch) -> DfResult<()> {
        // Keep each row with probability SAMPLES / seen: Algorithm R one row at a time
        // would be slow, so a strided subset of each batch instead.
        let n = batch.num_rows() as u64;
        self.seen += n;
        let want = ((SAMPLES_PER_PARTITION as u64 * n).div_ceil(self.seen.max(1))).min(n) as usize;
        if want == 0 {
            return Ok(());
        }
        let keys = key_batch(batch, &self.ordering)?;
        self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let step = (n as usize / want).max(1);
        let offset = (self.state >> 33) as usize % step;
        let indices: UInt32Array = (0..want).map(|i| (offset + i * step).min(n as usize - 1) as u32).collect();
        let columns = keys.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
        self.kept.push(RecordBatch::try_new(keys.schema(), columns)?);
        Ok(())
    }

    fn finish(self) -> DfResult<Option<RecordBatch>> {
        let Some(first) = self.kept.first() else { return Ok(None) };
        Ok(Some(concat_batches(&first.schema(), &self.kept)?))
    }
}

/// Reads one partition of a sort's input, sampling its keys and holding its rows for
/// the range exchange (see [`Held`]).
pub(crate) async fn hold_and_sample(
    mut stream: SendableRecordBatchStream,
    ordering: LexOrdering,
    partition: usize,
    context: Arc<TaskContext>,
) -> DfResult<(Option<RecordBatch>, Held)> {
    let mut sampler = Sampler::new(ordering, partition as u64);
    let mut held = Held::new(stream.schema(), partition, &context);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        sampler.add(&batch)?;
        held.push(batch)?;
    }
    Ok((sampler.finish()?, held))
}

fn key_batch(batch: &RecordBatch, ordering: &LexOrdering) -> DfResult<RecordBatch> {
    let mut fields = Vec::with_capacity(ordering.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(ordering.len());
    for (i, sort) in ordering.iter().enumerate() {
        let column = sort.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        fields.push(Field::new(format!("k{i}"), column.data_type().clone(), true));
        columns.push(column);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Encodes this rank's samples for the exchange of samples.
pub(crate) fn encode_samples(samples: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = samples.first() else { return Ok(Vec::new()) };
    let failed = |e: datafusion::arrow::error::ArrowError| Error::Execution { rank: 0, message: format!("encoding sort samples: {e}") };
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &first.schema()).map_err(failed)?;
    for s in samples {
        writer.write(s).map_err(failed)?;
    }
    writer.finish().map_err(failed)?;
    drop(writer);
    Ok(out)
}

/// The `ranks - 1` boundaries (fewer if the samples have fewer distinct keys), the same
/// on every rank given the same samples.
pub(crate) fn split_points(all: &[Vec<u8>], ordering: &LexOrdering, ranks: usize) -> Result<Vec<SplitPoint>> {
    let failed = |e: datafusion::arrow::error::ArrowError| Error::Execution { rank: 0, message: format!("reading sort samples: {e}") };
    let mut batches = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    for bytes in all.iter().filter(|b| !b.is_empty()) {
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(failed)?;
        schema.get_or_insert_with(|| reader.schema());
        for b in reader {
            batches.push(b.map_err(failed)?);
        }
    }
    let Some(schema) = schema else { return Ok(Vec::new()) };
    let samples = concat_batches(&schema, &batches).map_err(failed)?;
    if samples.num_rows() == 0 || ranks < 2 {
        return Ok(Vec::new());
    }
    let sort_columns: Vec<SortColumn> = samples
        .columns()
        .iter()
        .zip(ordering.iter())
        .map(|(c, s)| SortColumn { values: Arc::clone(c), options: Some(s.options) })
        .collect();
    let order = lexsort_to_indices(&sort_columns, None).map_err(failed)?;
    let n = order.len();
    let mut points: Vec<SplitPoint> = Vec::new();
    for r in 1..ranks {
        let row = order.value(r * n / ranks) as usize;
        let values = samples
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, row))
            .collect::<DfResult<Vec<_>>>()
            .map_err(Error::plan)?;
        let point = SplitPoint::new(values);
        // Boundaries must increase strictly: a key so frequent that it spans several
        // ranges goes to one rank.
        if points.last() != Some(&point) {
            points.push(point);
        }
    }
    Ok(points)
}

/// One partition of a sort's input, held on the rank that computed it until the range
/// boundaries are known. Its batches stay in memory, counted in the query's memory pool
/// as a consumer that can spill; when the pool refuses more, those held so far are
/// written to a spill file of DataFusion's disk manager and memory is freed.
pub(crate) struct Held {
    batches: Vec<RecordBatch>,
    reservation: MemoryReservation,
    spill: SpillManager,
    files: Vec<Arc<dyn SpillFile>>,
}

impl Held {
    fn new(schema: SchemaRef, partition: usize, context: &TaskContext) -> Held {
        let reservation = MemoryConsumer::new(format!("chorus sort input held for the range exchange[{partition}]"))
            .with_can_spill(true)
            .register(context.memory_pool());
        let metrics = SpillMetrics::new(&ExecutionPlanMetricsSet::new(), partition);
        Held { batches: Vec::new(), reservation, spill: SpillManager::new(context.runtime_env(), metrics, schema), files: Vec::new() }
    }

    fn push(&mut self, batch: RecordBatch) -> DfResult<()> {
        let size = get_record_batch_memory_size(&batch);
        if self.reservation.try_grow(size).is_err() {
            self.spill_held()?;
            if self.reservation.try_grow(size).is_err() {
                // Not even one batch fits beside the other consumers: it goes to disk
                // on its own.
                self.files.extend(self.spill.spill_record_batch_and_finish(&[batch], "chorus sort input")?);
                return Ok(());
            }
        }
        self.batches.push(batch);
        Ok(())
    }

    /// Writes the batches in memory to a spill file and frees their memory.
    fn spill_held(&mut self) -> DfResult<()> {
        if self.batches.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.batches);
        self.files.extend(self.spill.spill_record_batch_and_finish(&batches, "chorus sort input")?);
        self.reservation.free();
        Ok(())
    }

    /// The held rows as a stream: those in memory (freed as they are read), then the
    /// spill files'.
    fn into_stream(self) -> SendableRecordBatchStream {
        let Held { batches, reservation, spill, files } = self;
        let schema = Arc::clone(spill.schema());
        let in_memory = futures_util::stream::iter(batches.into_iter().map(move |batch| {
            reservation.shrink(get_record_batch_memory_size(&batch).min(reservation.size()));
            Ok::<_, DataFusionError>(batch)
        }));
        let on_disk = futures_util::stream::iter(files)
            .map(move |file| spill.read_spill_as_stream(file, None))
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, in_memory.chain(on_disk)))
    }
}

/// A leaf that yields the partitions of a sort's input held by [`hold_and_sample`],
/// each on the rank that computed it (`owners[p]`): the input of the range exchange.
pub(crate) struct HeldExec {
    owners: Vec<usize>,
    parts: Mutex<Vec<Option<Held>>>,
    properties: Arc<PlanProperties>,
}

impl HeldExec {
    /// `held` are this rank's partitions; `owners[p]` is the rank that holds partition `p`.
    pub(crate) fn new(schema: SchemaRef, owners: Vec<usize>, held: Vec<(usize, Held)>) -> Arc<HeldExec> {
        let mut parts: Vec<Option<Held>> = (0..owners.len()).map(|_| None).collect();
        for (p, h) in held {
            parts[p] = Some(h);
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(owners.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Arc::new(HeldExec { owners, parts: Mutex::new(parts), properties: Arc::new(properties) })
    }

    /// The rank that holds each partition.
    pub(crate) fn owners(&self) -> &[usize] {
        &self.owners
    }
}

impl std::fmt::Debug for HeldExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldExec").field("owners", &self.owners).finish()
    }
}

impl DisplayAs for HeldExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldExec: the sort's input, {} partitions held where they were computed", self.owners.len())
    }
}

impl ExecutionPlan for HeldExec {
    fn name(&self) -> &str {
        "HeldExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let held = self.parts.lock().expect("held lock").get_mut(partition).and_then(Option::take);
        held.map(Held::into_stream).ok_or_else(|| {
            internal_datafusion_err!("partition {partition} of the sort's input is not held here, or was read already")
        })
    }
}

/// `input` range-partitioned by `split_points` and sorted within each range.
pub(crate) fn range_sorted(
    input: Arc<dyn ExecutionPlan>,
    ordering: LexOrdering,
    split_points: Vec<SplitPoint>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let ranges = RangePartitioning::try_new(ordering.clone(), split_points).map_err(Error::plan)?;
    let exchanged = RepartitionExec::try_new(input, Partitioning::Range(ranges)).map_err(Error::plan)?;
    Ok(Arc::new(SortExec::new(ordering, Arc::new(exchanged)).with_preserve_partitioning(true)))
}
