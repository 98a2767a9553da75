//! The exchange streams on the wire: their tags, and the messages they carry.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::internal_datafusion_err;

type DfResult<T> = datafusion::common::Result<T>;

/// Tags of the exchange streams: the top bit keeps them apart from user tags.
pub(super) fn data_tag(seq: u64, exchange: usize, partition: usize) -> u64 {
    (1 << 63) | ((seq & 0x7fff_ffff) << 32) | ((exchange as u64 & 0xfff) << 20) | (partition as u64 & 0x7ffff)
}

pub(super) fn ack_tag(seq: u64, exchange: usize) -> u64 {
    data_tag(seq, exchange, 0) | (1 << 19)
}

const KIND_BATCH: u8 = 0;
const KIND_END: u8 = 1;

/// Copies string and binary view columns into buffers of their own: a view array cut
/// out of a larger one (by the hash partitioner, a filter, a slice) still points into
/// all of the larger one's data, which Arrow IPC would send whole.
pub(super) fn compact_views(batch: RecordBatch) -> DfResult<RecordBatch> {
    let views = |dt: &DataType| matches!(dt, DataType::Utf8View | DataType::BinaryView);
    if !batch.schema().fields().iter().any(|f| views(f.data_type())) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            if let Some(strings) = c.as_string_view_opt() {
                Arc::new(strings.gc())
            } else if let Some(bytes) = c.as_binary_view_opt() {
                Arc::new(bytes.gc())
            } else {
                Arc::clone(c)
            }
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A message is a kind byte, the window bytes the sender took for it (returned in the
/// acknowledgement), then for a batch its Arrow IPC stream.
const HEADER: usize = 9;

pub(super) fn end_message() -> Vec<u8> {
    let mut m = vec![KIND_END];
    m.extend_from_slice(&0u64.to_le_bytes());
    m
}

pub(super) fn encode_batch(batch: &RecordBatch, cost: usize) -> DfResult<Vec<u8>> {
    let mut buf = vec![KIND_BATCH];
    buf.extend_from_slice(&(cost as u64).to_le_bytes());
    let mut writer = StreamWriter::try_new(&mut buf, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(buf)
}

/// The window cost and batch of a message (no batch: the end of the stream).
pub(super) fn parse_message(message: &[u8], schema: &SchemaRef) -> DfResult<(u64, Option<RecordBatch>)> {
    if message.len() < HEADER {
        return Err(internal_datafusion_err!("an exchange message of {} bytes is too short", message.len()));
    }
    let cost = u64::from_le_bytes(message[1..HEADER].try_into().expect("eight bytes"));
    match message[0] {
        KIND_END => Ok((cost, None)),
        KIND_BATCH => Ok((cost, Some(decode_batch(&message[HEADER..], schema)?))),
        other => Err(internal_datafusion_err!("an exchange message has unknown kind {other}")),
    }
}

fn decode_batch(body: &[u8], schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(body), None)?;
    let batch = reader.next().ok_or_else(|| internal_datafusion_err!("an exchange message held no batch"))??;
    // Field names and nullability come from this rank's plan, which all ranks share. The
    // row count is kept explicitly: a batch may have rows and no columns (`count(*)`).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), batch.columns().to_vec(), &options)?)
}
