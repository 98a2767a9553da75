//! chorus's CSV reader: large reads, and only the projected columns tokenized and parsed.
//!
//! DataFusion plans a CSV scan as byte ranges of the files (one range per partition,
//! ranks reading partition `p % ranks`); arrow-csv then splits every field of every line
//! into a buffer before parsing the projected ones. [`Scan`] reads the same ranges by the
//! same rule (a range owns the lines that start inside it), in reads of 8 MiB (local files
//! by `pread`, objects by ranged GETs of their pinned version), splitting records with
//! `memchr` and building only the projected columns ([`decode`]).
//!
//! [`CsvScanExec`] uses it where it applies and keeps DataFusion's reader for the rest:
//! compressed files, an escape character, comment lines, a record terminator other than
//! `\n`, values spanning lines (`newlines_in_values`), partition columns, computed
//! projections, and column types arrow-csv parses but [`Decoder`] does not build
//! (dictionaries, binary, intervals, durations).
//!
//! [`CsvScanExec`]: crate::scan::CsvScanExec

pub(crate) mod decode;

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::datasource::physical_plan::{CsvSource, FileScanConfig};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use self::decode::{DecodeError, Decoder, Dialect, Malformed};
use crate::scan::{file_name, first_line_of_range, is_local};

type DfResult<T> = datafusion::common::Result<T>;

/// Bytes read at a time within a range.
const READ: usize = 8 << 20;
/// Bytes read at a time past a range's end, to finish its last line.
const READ_PAST_END: usize = 64 << 10;

/// chorus's reading of a DataFusion CSV scan: what every partition's stream needs to know.
#[derive(Debug)]
pub(crate) struct Scan {
    store: ObjectStoreUrl,
    local: bool,
    /// Per partition, the files (or byte ranges of them) it reads in order.
    partitions: Vec<Vec<Piece>>,
    schema: SchemaRef,
    fields: usize,
    /// Per output column, its column of the file.
    projection: Vec<usize>,
    header: bool,
    dialect: Dialect,
    limit: Option<usize>,
}

/// One file of a partition, whole or a byte range of it.
#[derive(Debug, Clone)]
struct Piece {
    location: ObjectPath,
    size: u64,
    start: u64,
    end: u64,
}

impl Scan {
    /// How chorus reads `plan`, DataFusion's scan of `config` with `csv`, if its reader
    /// covers it (see the [module documentation](self)).
    pub(crate) fn try_new(plan: &Arc<dyn ExecutionPlan>, config: &FileScanConfig, csv: &CsvSource) -> Option<Scan> {
        let plain = !config.file_compression_type.is_compressed()
            && csv.escape().is_none()
            && csv.comment().is_none()
            && csv.terminator().is_none()
            && !csv.newlines_in_values()
            && config.table_partition_cols().is_empty()
            && ![b'\n', b'\r', csv.quote()].contains(&csv.delimiter())
            && ![b'\n', b'\r'].contains(&csv.quote());
        if !plain {
            return None;
        }
        let file_schema = config.file_schema();
        let projection: Vec<usize> = match config.file_source().projection() {
            Some(exprs) => exprs
                .iter()
                .map(|e| e.expr.downcast_ref::<Column>().map(Column::index))
                .collect::<Option<_>>()?,
            None => (0..file_schema.fields().len()).collect(),
        };
        let schema = plan.schema();
        let types: Vec<_> = projection.iter().map(|i| file_schema.fields().get(*i).map(|f| f.data_type().clone())).collect::<Option<_>>()?;
        let same_types = schema.fields().len() == types.len() && schema.fields().iter().zip(&types).all(|(f, t)| f.data_type() == t);
        let dialect = Dialect { delimiter: csv.delimiter(), quote: csv.quote(), truncated_rows: csv.truncate_rows() };
        // The decoder takes each column once, of a type it builds.
        if !same_types || Decoder::new(dialect, file_schema.fields().len(), &projection, &types, 1).is_none() {
            return None;
        }
        let partitions = config
            .file_groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|f| {
                        let size = f.object_meta.size;
                        let (start, end) = f.range.as_ref().map_or((0, size), |r| (r.start.max(0) as u64, (r.end.max(0) as u64).min(size)));
                        Piece { location: f.object_meta.location.clone(), size, start, end }
                    })
                    .collect()
            })
            .collect();
        Some(Scan {
            store: config.object_store_url.clone(),
            local: is_local(&config.object_store_url),
            partitions,
            schema,
            fields: file_schema.fields().len(),
            projection,
            header: csv.has_header(),
            dialect,
            limit: config.limit,
        })
    }

    /// How a file is named in errors: its path, or its object's URL.
    fn name(&self, piece: &Piece) -> String {
        file_name(&self.store, &piece.location)
    }

    /// The error for a malformed record on `line` (1-based, counted from the first line
    /// `piece`'s range reads, its header included).
    fn malformed(&self, piece: &Piece, error: DecodeError) -> DataFusionError {
        let name = self.name(piece);
        let column = |c: usize| self.schema.fields().get(c).map(|f| f.name().clone()).unwrap_or_default();
        let (column, what, advice) = match &error.malformed {
            Malformed::Fields { expected, found } => {
                (String::new(), format!(": {found} fields where the schema has {expected}"), "fix the row, or read with truncated rows allowed")
            }
            Malformed::Value { column: c, value, type_name } => {
                (format!(", column {:?}", column(*c)), format!(": cannot read {value:?} as {type_name}"), "fix the row, or declare the column as text")
            }
            Malformed::Utf8 { column: c } => {
                (format!(", column {:?}", column(*c)), ": not valid UTF-8".to_string(), "convert the file to UTF-8, or drop the column from the query")
            }
        };
        let place = match self.local.then(|| first_line_of_range(&name, piece.start).ok()).flatten() {
            Some(first) => format!("{name}:{}", first + error.line - 1),
            None if piece.start == 0 => format!("{name}: line {}", error.line),
            None => format!("{name}: line {} of the lines that start after byte {}", error.line, piece.start),
        };
        DataFusionError::Execution(format!("{place}{column}{what} (malformed CSV row; {advice})"))
    }

    /// The stream of partition `partition`.
    pub(crate) fn execute(self: &Arc<Self>, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let pieces: VecDeque<Piece> = self.partitions.get(partition).cloned().unwrap_or_default().into();
        let store = context.runtime_env().object_store(&self.store)?;
        let types: Vec<_> = self.schema.fields().iter().map(|f| f.data_type().clone()).collect();
        let batch_size = context.session_config().batch_size();
        let decoder = Decoder::new(self.dialect, self.fields, &self.projection, &types, batch_size)
            .ok_or_else(|| DataFusionError::Internal("a CSV column type the reader was checked to build".into()))?;
        let reading = Reading { scan: Arc::clone(self), store, pieces, open: None, decoder, emitted: 0 };
        let stream = futures_util::stream::try_unfold(reading, |mut reading| async move {
            Ok(reading.next_batch().await?.map(|batch| (batch, reading)))
        });
        // Local reads do not go through Tokio: give the other tasks of the runtime (the
        // partition beside it, the exchanges) their turn between batches.
        Ok(make_cooperative(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream))))
    }
}

/// The state of one partition's stream.
struct Reading {
    scan: Arc<Scan>,
    store: Arc<dyn ObjectStore>,
    pieces: VecDeque<Piece>,
    open: Option<Open>,
    decoder: Decoder,
    /// Rows returned so far, for the scan's limit.
    emitted: usize,
}

/// The file being read: a window of its bytes.
struct Open {
    piece: Piece,
    file: Option<std::fs::File>,
    /// A window of the file: `buf[..filled]` holds bytes from `base` on (the rest is room
    /// kept from earlier reads, so that reads do not zero memory again).
    buf: Vec<u8>,
    filled: usize,
    /// Where `buf` starts in the file, and how much of it is decoded.
    base: u64,
    pos: usize,
    /// Whether the header, or the end of a line the previous range owns, is skipped.
    started: bool,
    /// The decoder's line count when this file began.
    lines_before: u64,
}

impl Open {
    fn read_to(&self) -> u64 {
        self.base + self.filled as u64
    }

    fn eof(&self) -> bool {
        self.read_to() >= self.piece.size
    }
}

impl Reading {
    async fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.scan.limit.is_some_and(|limit| self.emitted >= limit) {
                return Ok(None);
            }
            if self.open.is_none() {
                match self.pieces.pop_front() {
                    Some(piece) => self.open = Some(self.open_piece(piece)?),
                    None if self.decoder.rows() > 0 => return self.flush().map(Some),
                    None => return Ok(None),
                }
            }
            let open = self.open.as_mut().expect("opened above");
            let eof = open.eof();
            if !open.started {
                let skipping = open.piece.start > 0 || self.scan.header;
                if skipping {
                    match decode::line_end(&open.buf[open.pos..open.filled], eof) {
                        Some(n) => {
                            open.pos += n;
                            if open.piece.start == 0 {
                                self.decoder.count_line();
                            }
                        }
                        None => {
                            self.fill().await?;
                            continue;
                        }
                    }
                }
                open.started = true;
            }
            let stop = open.piece.end.saturating_sub(open.base + open.pos as u64);
            let stop = usize::try_from(stop).unwrap_or(usize::MAX);
            let decoded = self.decoder.decode(&open.buf[open.pos..open.filled], stop, eof).map_err(|e| {
                let line = e.line - open.lines_before;
                self.scan.malformed(&open.piece, DecodeError { line, ..e })
            })?;
            open.pos += decoded.consumed;
            if decoded.full {
                return self.flush().map(Some);
            }
            let at = open.base + open.pos as u64;
            if at >= open.piece.end || (eof && open.pos >= open.filled) {
                self.open = None;
            } else {
                self.fill().await?;
            }
        }
    }

    /// Opens a file; its reads start at the byte before its range, to see whether the
    /// range starts on a line of its own.
    fn open_piece(&mut self, piece: Piece) -> DfResult<Open> {
        let file = if self.scan.local {
            let path = self.scan.name(&piece);
            Some(std::fs::File::open(&path).map_err(|e| DataFusionError::Execution(format!("{path}: cannot open: {e}")))?)
        } else {
            None
        };
        let base = piece.start.saturating_sub(1);
        Ok(Open { piece, file, buf: Vec::new(), filled: 0, base, pos: 0, started: false, lines_before: self.decoder.lines() })
    }

    /// Reads the next bytes of the open file after what is buffered, dropping what is
    /// decoded.
    async fn fill(&mut self) -> DfResult<()> {
        let open = self.open.as_mut().expect("a file is open");
        open.buf.copy_within(open.pos..open.filled, 0);
        open.filled -= open.pos;
        open.base += open.pos as u64;
        open.pos = 0;
        let from = open.read_to();
        // What is left is one incomplete record: reading at least as much again keeps a
        // long record from being split again and again.
        let want = if from < open.piece.end { READ } else { READ_PAST_END }.max(open.filled) as u64;
        let to = (from + want).min(open.piece.size);
        if to <= from {
            return Ok(());
        }
        let len = (to - from) as usize;
        let old = open.filled;
        if open.buf.len() < old + len {
            open.buf.resize(old + len, 0);
        }
        match &open.file {
            Some(file) => {
                use std::os::unix::fs::FileExt;
                let mut done = 0;
                while done < len {
                    let n = file.read_at(&mut open.buf[old + done..old + len], from + done as u64).map_err(|e| {
                        DataFusionError::Execution(format!("{}: cannot read at byte {}: {e}", self.scan.name(&open.piece), from + done as u64))
                    })?;
                    if n == 0 {
                        // The file is shorter than when the query was planned.
                        return Err(DataFusionError::Execution(format!(
                            "{}: ended at byte {} where the query planned {} bytes (the file changed while the query ran; run it again)",
                            self.scan.name(&open.piece),
                            from + done as u64,
                            open.piece.size
                        )));
                    }
                    done += n;
                }
            }
            None => {
                let bytes = self.store.get_range(&open.piece.location, from..to).await?;
                if bytes.len() != len {
                    return Err(DataFusionError::Execution(format!(
                        "{}: asked for bytes {from}..{to}, got {} (the object changed while the query ran; run it again)",
                        self.scan.name(&open.piece),
                        bytes.len()
                    )));
                }
                open.buf[old..old + len].copy_from_slice(&bytes);
            }
        }
        open.filled += len;
        Ok(())
    }

    fn flush(&mut self) -> DfResult<RecordBatch> {
        let rows = self.decoder.rows();
        let columns = self.decoder.flush();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let mut batch = RecordBatch::try_new_with_options(Arc::clone(&self.scan.schema), columns, &options)?;
        if let Some(limit) = self.scan.limit {
            batch = batch.slice(0, batch.num_rows().min(limit - self.emitted));
        }
        self.emitted += batch.num_rows();
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A bug fixed: the scan read local files without ever yielding to the runtime, so
    /// a long scan kept the other tasks of its worker thread (the partition beside it,
    /// the exchanges) waiting until it ended; two sorts of one rank then merged at once
    /// and ran out of their pool (frame_memory's collected sort, 1 run in 6).
    #[test]
    fn a_long_scan_lets_other_tasks_of_its_thread_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let text: String = std::iter::once("a,b\n".to_string()).chain((0..4000).map(|i| format!("{i},x{i}\n"))).collect();
        std::fs::write(&path, text).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(8).with_target_partitions(1));
            let df = ctx.read_csv(path.to_str().unwrap(), CsvReadOptions::new()).await.unwrap();
            let plan = df.create_physical_plan().await.unwrap();
            let scan = plan
                .downcast_ref::<DataSourceExec>()
                .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
                .and_then(|config| Scan::try_new(&plan, config, config.file_source().downcast_ref::<CsvSource>()?))
                .map(Arc::new)
                .expect("a plain CSV scan");
            let ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ran);
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            let (mut batches, mut other_task_ran_after) = (0, None);
            let mut stream = scan.execute(0, ctx.task_ctx()).unwrap();
            while let Some(batch) = stream.next().await {
                batch.unwrap();
                batches += 1;
                if ran.load(Ordering::SeqCst) && other_task_ran_after.is_none() {
                    other_task_ran_after = Some(batches);
                }
            }
            assert_eq!(batches, 500);
            assert!(other_task_ran_after.is_some_and(|n| n < batches), "the other task ran only after all {batches} batches");
        });
    }
}
