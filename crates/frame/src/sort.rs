//! Global sorts whose result stays distributed: rank `r` holds the `r`-th range of keys.
//!
//! DataFusion sorts each partition and merges them in one place, which is right when the
//! result goes to rank 0. When each rank keeps its block
//! ([`collect_distributed`](crate::DataFrame::collect_distributed), `write_parquet`), the
//! sort is instead done by range: every rank samples the sort keys of its partitions,
//! the samples are shared, every rank picks the same `ranks - 1` boundaries from them,
//! and a range exchange sends each row to the rank of its range, which sorts what it
//! receives. The input is computed twice (once to sample), as in Spark.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, lexsort_to_indices, take, SortColumn};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{ScalarValue, SplitPoint};
use datafusion::physical_expr::{LexOrdering, RangePartitioning};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning, SendableRecordBatchStream};
use futures_util::StreamExt;

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

/// A reservoir sample of the sort keys of one partition.
pub(crate) async fn sample_keys(mut stream: SendableRecordBatchStream, ordering: LexOrdering, seed: u64) -> DfResult<Option<RecordBatch>> {
    let mut kept: Vec<RecordBatch> = Vec::new();
    let (mut seen, mut state) = (0u64, seed | 1);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let keys = key_batch(&batch, &ordering)?;
        // Keep each row with probability SAMPLES / seen (Algorithm R, one row at a time
        // would be slow: take a strided subset per batch instead).
        let n = keys.num_rows() as u64;
        seen += n;
        let want = ((SAMPLES_PER_PARTITION as u64 * n).div_ceil(seen.max(1))).min(n) as usize;
        if want == 0 {
            continue;
        }
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let offset = (state >> 33) as usize % (n as usize / want).max(1);
        let step = (n as usize / want).max(1);
        let indices: UInt32Array = (0..want).map(|i| (offset + i * step).min(n as usize - 1) as u32).collect();
        let columns = keys.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
        kept.push(RecordBatch::try_new(keys.schema(), columns)?);
    }
    let Some(first) = kept.first() else { return Ok(None) };
    Ok(Some(concat_batches(&first.schema(), &kept)?))
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
