//! CSV scans: chorus's reader where it applies ([`crate::csv`]), DataFusion's otherwise,
//! with errors that say where a malformed row is either way.
//!
//! [`CsvScanExec`] takes the place of DataFusion's scan, keeping its properties and how it
//! shows in `explain` (with `reader=chorus` when chorus reads). chorus's reader names file,
//! line and column itself. Arrow's CSV reader numbers rows from the start of the byte
//! range it was given, and does not know the file: when one of its partitions fails to
//! parse, [`CsvScanExec`] finds the file of the partition and turns the row number into
//! the line of the file, and the column number into the column's name. For an object in
//! object storage it names the object and the line counted from the partition's first
//! byte, since counting the lines before that would mean fetching all of the object up to
//! there.

use std::any::Any;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::physical_plan::{CsvSource, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;

type DfResult<T> = datafusion::common::Result<T>;

/// One piece of a partition: a file and the byte range of it that the partition reads.
#[derive(Debug, Clone)]
struct Piece {
    /// A local path, or an object's URL.
    path: String,
    start: u64,
    /// Whether it is a local file, whose lines can be counted.
    local: bool,
}

/// A CSV scan whose parse errors name file, line and column.
#[derive(Debug)]
pub(crate) struct CsvScanExec {
    /// DataFusion's scan: its properties, how it shows, and (without chorus's reader)
    /// what runs.
    inner: Arc<dyn ExecutionPlan>,
    reader: Reader,
}

/// Who reads the scan's partitions.
#[derive(Debug)]
enum Reader {
    /// chorus's reader, which names file, line and column itself.
    Chorus(Arc<crate::csv::Scan>),
    /// DataFusion, its errors rewritten by the locator, which its streams share.
    DataFusion(Arc<Locator>),
}

/// What is needed to turn a row of a partition into a line of a file.
#[derive(Debug)]
struct Locator {
    partitions: Vec<Vec<Piece>>,
    header: bool,
    columns: Vec<String>,
}

impl CsvScanExec {
    /// Wraps `plan` if it is a CSV scan (of local files, or of objects).
    pub(crate) fn wrap(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        let scan = plan.downcast_ref::<DataSourceExec>()?;
        let config = scan.data_source().downcast_ref::<FileScanConfig>()?;
        let source: &dyn Any = config.file_source().as_ref();
        let csv = source.downcast_ref::<CsvSource>()?;
        let reader = match crate::csv::Scan::try_new(plan, config, csv) {
            Some(scan) => Reader::Chorus(Arc::new(scan)),
            None => Reader::DataFusion(Arc::new(Locator::new(config, csv))),
        };
        Some(Arc::new(CsvScanExec { inner: Arc::clone(plan), reader }))
    }
}

/// Whether a scan's files are local ones.
pub(crate) fn is_local(store: &ObjectStoreUrl) -> bool {
    store.as_str() == "file:///"
}

/// How a file of a scan is named in errors: its path, or its object's URL.
pub(crate) fn file_name(store: &ObjectStoreUrl, location: &ObjectPath) -> String {
    if is_local(store) {
        object_store::local::LocalFileSystem::new()
            .path_to_filesystem(location)
            .map_or_else(|_| format!("/{location}"), |p| p.display().to_string())
    } else {
        format!("{}/{location}", store.as_str().trim_end_matches('/'))
    }
}

impl Locator {
    /// The files and ranges of each partition of the scan of `config`.
    fn new(config: &FileScanConfig, csv: &CsvSource) -> Locator {
        let local = is_local(&config.object_store_url);
        let partitions = config
            .file_groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|f| Piece {
                        path: file_name(&config.object_store_url, &f.object_meta.location),
                        start: f.range.as_ref().map_or(0, |r| r.start.max(0) as u64),
                        local,
                    })
                    .collect()
            })
            .collect();
        let columns = config.file_schema().fields().iter().map(|f| f.name().clone()).collect();
        Locator { partitions, header: csv.has_header(), columns }
    }

    /// The 1-based line, among the lines `piece`'s range reads, of the row `found` names:
    /// Arrow counts parsed rows from 0, after the header it skipped, and records,
    /// header included, from 1.
    fn line_in_range(&self, found: &ArrowCsvError, piece: &Piece) -> u64 {
        match found.numbering {
            Numbering::RowFromZero => found.number + 1 + u64::from(self.header && piece.start == 0),
            Numbering::RecordFromOne => found.number,
        }
    }

    /// Rewrites a parse error of partition `p` with the file, line and column.
    fn locate(&self, p: usize, error: DataFusionError) -> DataFusionError {
        let text = error.strip_backtrace();
        let Some(found) = parse_arrow_csv_error(&text) else { return error };
        let pieces = self.partitions.get(p).map(Vec::as_slice).unwrap_or_default();
        let column = found.column.and_then(|c| self.columns.get(c)).map(|name| format!(", column {name:?}")).unwrap_or_default();
        let value = found.value.as_ref().map(|v| format!(": cannot read {v:?} as {}", found.type_name.clone().unwrap_or_default())).unwrap_or_default();
        if let [piece] = pieces {
            if !piece.local {
                // Counting the object's lines would mean fetching all of it before the
                // range: say where the range starts and which of its lines failed.
                let line = self.line_in_range(&found, piece);
                let range = if piece.start == 0 { String::new() } else { format!(" after byte {}", piece.start) };
                return DataFusionError::Execution(format!(
                    "{}: line {line} of the lines that start{range}{column}{value} (malformed CSV row; fix the row, or declare the column as text)\n  {text}",
                    piece.path
                ));
            }
        }
        let located: Vec<(String, u64)> = pieces
            .iter()
            .filter(|piece| piece.local)
            .filter_map(|piece| {
                let first_line = first_line_of_range(&piece.path, piece.start).ok()?;
                Some((piece.path.clone(), first_line + self.line_in_range(&found, piece) - 1))
            })
            .collect();
        let chosen = match located.as_slice() {
            [one] => Some(one.clone()),
            many => many
                .iter()
                .find(|(path, line)| {
                    found.value.as_ref().is_some_and(|v| line_text(path, *line).is_some_and(|l| l.contains(v.as_str())))
                })
                .cloned(),
        };
        match chosen {
            Some((path, line)) => DataFusionError::Execution(format!(
                "{path}:{line}{column}{value} (malformed CSV row; fix the row, or declare the column as text)\n  {text}"
            )),
            None => error,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Numbering {
    RowFromZero,
    RecordFromOne,
}

#[derive(Debug)]
struct ArrowCsvError {
    number: u64,
    numbering: Numbering,
    column: Option<usize>,
    value: Option<String>,
    type_name: Option<String>,
}

/// Reads the row number (and column and value) out of arrow-csv's error messages.
fn parse_arrow_csv_error(text: &str) -> Option<ArrowCsvError> {
    if let Some(rest) = text.split("Error while parsing value '").nth(1) {
        let (value, rest) = rest.split_once("' as type '")?;
        let (type_name, rest) = rest.split_once("' for column ")?;
        let (column, rest) = rest.split_once(" at line ")?;
        let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return Some(ArrowCsvError {
            number: number.parse().ok()?,
            numbering: Numbering::RowFromZero,
            column: column.trim().parse().ok(),
            value: Some(value.to_string()),
            type_name: Some(type_name.to_string()),
        });
    }
    let rest = text.split("incorrect number of fields for line ").nth(1)?;
    let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(ArrowCsvError { number: number.parse().ok()?, numbering: Numbering::RecordFromOne, column: None, value: None, type_name: None })
}

/// The 1-based line number of the first line a range starting at byte `start` reads:
/// like DataFusion's CSV reader, a range not at the start of the file begins after the
/// first newline at or after `start - 1`.
pub(crate) fn first_line_of_range(path: &str, start: u64) -> std::io::Result<u64> {
    if start == 0 {
        return Ok(1);
    }
    let mut file = std::fs::File::open(path)?;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut remaining = start - 1;
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        newlines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        remaining -= n as u64;
    }
    // The line that holds byte `start - 1` is skipped (it began in the previous range).
    Ok(newlines + 2)
}

fn line_text(path: &str, line: u64) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    BufReader::new(file).lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)?.ok()
}

impl DisplayAs for CsvScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(t, f)?;
        match (&self.reader, t) {
            (Reader::Chorus(_), DisplayFormatType::Default | DisplayFormatType::Verbose) => write!(f, ", reader=chorus"),
            _ => Ok(()),
        }
    }
}

impl ExecutionPlan for CsvScanExec {
    fn name(&self) -> &str {
        "CsvScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        match &self.reader {
            Reader::Chorus(scan) => scan.execute(partition, context),
            Reader::DataFusion(locator) => {
                let stream = self.inner.execute(partition, context)?;
                let schema = stream.schema();
                let locator = Arc::clone(locator);
                let located = stream.map(move |batch| batch.map_err(|e| locator.locate(partition, e)));
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, located)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arrow_csv_errors() {
        let e = parse_arrow_csv_error(
            "Arrow error: Parser error: Error while parsing value 'twelve' as type 'Float64' for column 1 at line 812. Row data: '[2500,twelve,row2500]'",
        )
        .unwrap();
        assert_eq!((e.number, e.column, e.value.as_deref()), (812, Some(1), Some("twelve")));
        let e = parse_arrow_csv_error("Csv error: incorrect number of fields for line 3, expected 2 got 1").unwrap();
        assert_eq!((e.number, e.numbering), (3, Numbering::RecordFromOne));
        assert!(parse_arrow_csv_error("Division by zero").is_none());
    }

    #[test]
    fn first_line_of_a_range_skips_the_partial_line() {
        let dir = std::env::temp_dir().join(format!("chorus-frame-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines.csv");
        std::fs::write(&path, "h\naaa\nbbb\nccc\n").unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(first_line_of_range(p, 0).unwrap(), 1);
        assert_eq!(first_line_of_range(p, 2).unwrap(), 2, "byte 1 is the newline ending line 1");
        assert_eq!(first_line_of_range(p, 3).unwrap(), 3, "line 2 began before the range");
        assert_eq!(line_text(p, 3).as_deref(), Some("bbb"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
