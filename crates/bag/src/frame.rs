//! Bags and DataFrames (feature `frame`): a bag's partitions written as Parquet by the
//! workers and opened as a distributed [`DataFrame`], and a DataFrame's result read into a
//! bag the same way. The rows are the elements: structs (or tuples) whose fields map to
//! columns, through `serde_arrow`.

use std::fs::File;
use std::path::Path;

use chorus_frame::datafusion::arrow::datatypes::FieldRef;
use chorus_frame::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use chorus_frame::datafusion::parquet::arrow::ArrowWriter;
use chorus_frame::{Context, DataFrame};
use chorus_tasks::Client;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::bag::{registered, Bag};
use crate::element::{take, Element, Part};
use crate::graph::{Build, Kind, Node};
use crate::plan::{Sink, Source};
use crate::{Error, Result};

fn fields<T: Element>() -> std::result::Result<Vec<FieldRef>, String> {
    Vec::<FieldRef>::from_type::<T>(TracingOptions::default().allow_null_fields(true)).map_err(|e| {
        format!("`{}` does not map to columns (a DataFrame's rows are structs or tuples of columns): {e}", std::any::type_name::<T>())
    })
}

/// Writes a partition of `T` as one Parquet file.
pub(crate) fn to_parquet<T: Element>(part: Part, path: &Path) -> std::result::Result<(), String> {
    let rows = take::<T>(part)?;
    let batch = serde_arrow::to_record_batch(&fields::<T>()?, &rows).map_err(|e| format!("rows of `{}` to Arrow: {e}", std::any::type_name::<T>()))?;
    let file = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| format!("writing {}: {e}", path.display()))?;
    w.write(&batch).map_err(|e| format!("writing {}: {e}", path.display()))?;
    w.close().map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Reads a Parquet file into a partition of `T`.
pub(crate) fn from_parquet<T: Element>(path: &Path) -> std::result::Result<Part, String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut rows: Vec<T> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("reading {}: {e}", path.display()))?;
        let part: Vec<T> = serde_arrow::from_record_batch(&batch).map_err(|e| format!("the rows of {} as `{}`: {e}", path.display(), std::any::type_name::<T>()))?;
        rows.extend(part);
    }
    Ok(Box::new(rows))
}

impl<T: Element> Bag<T> {
    /// Writes every partition as `dir/part-NNNNN.parquet` on the worker that holds it
    /// and opens the files as a DataFrame of `ctx`: the elements are its rows, their
    /// fields its columns (structs or tuples of numbers, strings, options…).
    ///
    /// `dir` must be where the workers write and the DataFrame's ranks read (the same
    /// machine, or a shared file system).
    pub fn to_dataframe(&self, ctx: &Context, dir: impl AsRef<Path>) -> Result<DataFrame> {
        registered::<T>("to_dataframe")?;
        fields::<T>().map_err(Error::InvalidArgument)?;
        let dir = std::path::absolute(dir.as_ref()).map_err(|source| Error::File { path: dir.as_ref().to_path_buf(), source })?;
        let name = dir.to_str().ok_or_else(|| Error::InvalidArgument("to_dataframe: the directory is not UTF-8".into()))?.to_string();
        let build = Build::new(&self.client);
        let written = (0..self.node.parts).map(|i| build.leaf(&self.node, i, Sink::Parquet { dir: name.clone() })).collect::<Result<Vec<_>>>()?;
        let paths: Vec<String> = self.client.gather(&written)?.iter().map(|b| postcard::from_bytes::<String>(b).map_err(|e| Error::Decode(e.to_string()))).collect::<Result<_>>()?;
        Ok(ctx.read_parquet(paths)?)
    }
}

/// The rows of `df` as a bag of `T` (a struct or tuple whose fields are its columns):
/// the DataFrame's ranks write its result as Parquet into `dir`, and each file becomes
/// one partition, read by a worker.
pub fn from_dataframe<T: Element>(client: &Client, df: &DataFrame, dir: impl AsRef<Path>) -> Result<Bag<T>> {
    registered::<T>("from_dataframe")?;
    fields::<T>().map_err(Error::InvalidArgument)?;
    let mut files = df.write_parquet(dir)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidArgument("from_dataframe: the DataFrame wrote no files".into()));
    }
    let sources = files
        .into_iter()
        .map(|p| p.to_str().map(|s| Source::Parquet { path: s.to_string(), ty: std::any::type_name::<T>().to_string() }).ok_or_else(|| Error::InvalidArgument("from_dataframe: a path is not UTF-8".into())))
        .collect::<Result<Vec<_>>>()?;
    let n = sources.len();
    Ok(Bag::from_node(client, Node::new(Kind::Generate(sources), n, std::any::type_name::<T>())))
}
