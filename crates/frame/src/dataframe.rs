//! [`DataFrame`]: a query over distributed data, built with DataFusion's expressions and
//! run by every rank on its share.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::JoinType;
use datafusion::execution::SpillFile;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures_util::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use url::Url;

use crate::context::Context;
use crate::driver;
use crate::plan::ResultOn;
use crate::query::Backend;
use crate::storage::is_url;
use crate::{Error, Result};

/// A distributed query: a DataFusion logical plan and the [`Context`] that runs it.
///
/// Methods that build a query (`select`, `filter`, `aggregate`, `join`, `sort`, …) only
/// plan, and report an unknown column or a type mismatch at once. Methods that run it
/// (`collect`, `show`, `count`, `write_parquet`, …) are collective: every rank must call
/// them, in the same order.
#[derive(Debug, Clone)]
pub struct DataFrame {
    ctx: Context,
    df: datafusion::dataframe::DataFrame,
    /// What the dashboard calls it: its SQL, when it came from [`Context::sql`].
    label: Option<Arc<str>>,
}

type Df = datafusion::dataframe::DataFrame;

impl DataFrame {
    pub(crate) fn new(ctx: Context, df: Df) -> DataFrame {
        DataFrame { ctx, df, label: None }
    }

    pub(crate) fn with_label(mut self, label: &str) -> DataFrame {
        self.label = Some(label.trim().into());
        self
    }

    /// What the dashboard's Queries page calls it: its SQL, or the top of its plan.
    pub(crate) fn label(&self) -> String {
        match &self.label {
            Some(l) => l.to_string(),
            None => {
                let plan = self.df.logical_plan().display_indent().to_string();
                plan.lines().next().unwrap_or("DataFrame").trim().to_string()
            }
        }
    }

    fn then(&self, f: impl FnOnce(Df) -> datafusion::error::Result<Df>) -> Result<DataFrame> {
        Ok(DataFrame::new(self.ctx.clone(), f(self.df.clone()).map_err(Error::plan)?))
    }

    /// The DataFusion DataFrame underneath, for methods not wrapped here; turn the result
    /// back with [`Context::from_datafusion`](crate::Context::from_datafusion).
    pub fn inner(&self) -> &Df {
        &self.df
    }

    /// The columns of the result.
    pub fn schema(&self) -> SchemaRef {
        self.df.schema().inner().clone()
    }

    /// Names this DataFrame `name`, so that its columns can be qualified (`t.k`): needed
    /// to join two inputs that share column names.
    pub fn alias(&self, name: &str) -> Result<DataFrame> {
        self.then(|df| df.alias(name))
    }

    /// Keeps the named columns.
    pub fn select_columns(&self, columns: &[&str]) -> Result<DataFrame> {
        self.then(|df| df.select_columns(columns))
    }

    /// Computes one column per expression (`col("a")`, `col("a") * lit(2)`, …).
    pub fn select(&self, exprs: Vec<Expr>) -> Result<DataFrame> {
        self.then(|df| df.select(exprs))
    }

    /// Adds (or replaces) column `name`.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<DataFrame> {
        self.then(|df| df.with_column(name, expr))
    }

    /// Renames a column.
    pub fn with_column_renamed(&self, old: &str, new: &str) -> Result<DataFrame> {
        self.then(|df| df.with_column_renamed(old, new))
    }

    /// Drops the named columns.
    pub fn drop_columns(&self, columns: &[&str]) -> Result<DataFrame> {
        self.then(|df| df.drop_columns(columns))
    }

    /// Keeps the rows where `predicate` is true.
    pub fn filter(&self, predicate: Expr) -> Result<DataFrame> {
        self.then(|df| df.filter(predicate))
    }

    /// Groups by `group` and computes `aggregates` per group (`count`, `sum`, `avg`,
    /// `min`, `max`, `stddev`, `var_sample`, `count_distinct`, …). Runs in two phases:
    /// partial per partition, a shuffle by group key, final per key.
    pub fn aggregate(&self, group: Vec<Expr>, aggregates: Vec<Expr>) -> Result<DataFrame> {
        self.then(|df| df.aggregate(group, aggregates))
    }

    /// Joins with `right` on equal columns (`left_on[i] = right_on[i]`), plus an optional
    /// extra condition. The smaller side is broadcast, or both are shuffled by key.
    pub fn join(
        &self,
        right: &DataFrame,
        how: JoinType,
        left_on: &[&str],
        right_on: &[&str],
        filter: Option<Expr>,
    ) -> Result<DataFrame> {
        let right = right.df.clone();
        self.then(|df| df.join(right, how, left_on, right_on, filter))
    }

    /// Joins with `right` on arbitrary conditions.
    pub fn join_on(&self, right: &DataFrame, how: JoinType, on: Vec<Expr>) -> Result<DataFrame> {
        let right = right.df.clone();
        self.then(|df| df.join_on(right, how, on))
    }

    /// Orders the rows globally (`col("a").sort(true, false)` for ascending, nulls last).
    pub fn sort(&self, by: Vec<SortExpr>) -> Result<DataFrame> {
        self.then(|df| df.sort(by))
    }

    /// Skips `skip` rows and keeps at most `fetch`.
    pub fn limit(&self, skip: usize, fetch: Option<usize>) -> Result<DataFrame> {
        self.then(|df| df.limit(skip, fetch))
    }

    /// Removes duplicate rows.
    pub fn distinct(&self) -> Result<DataFrame> {
        self.then(|df| df.distinct())
    }

    /// Appends the rows of `other` (same columns), keeping duplicates.
    pub fn union(&self, other: &DataFrame) -> Result<DataFrame> {
        let other = other.df.clone();
        self.then(|df| df.union(other))
    }

    /// Appends the rows of `other` and removes duplicates.
    pub fn union_distinct(&self, other: &DataFrame) -> Result<DataFrame> {
        let other = other.df.clone();
        self.then(|df| df.union_distinct(other))
    }

    /// Adds window function columns (`row_number()`, `sum(x).over(...)`, …); rows are
    /// shuffled by the windows' partition keys.
    pub fn window(&self, exprs: Vec<Expr>) -> Result<DataFrame> {
        self.then(|df| df.window(exprs))
    }

    /// The whole result, on rank 0; other ranks get an empty vector.
    pub fn collect(&self) -> Result<Vec<RecordBatch>> {
        self.collect_on(ResultOn::Root)
    }

    /// The whole result, on every rank.
    pub fn collect_on_every_rank(&self) -> Result<Vec<RecordBatch>> {
        self.collect_on(ResultOn::EveryRank)
    }

    /// This rank's block of the result, left where it was computed (Bodo's
    /// `distributed=`): the concatenation over ranks, in rank order, is the whole result.
    /// A sorted result is split by ranges of the sort keys, rank `r` holding the `r`-th,
    /// so that concatenation is in order too.
    pub fn collect_distributed(&self) -> Result<Vec<RecordBatch>> {
        self.collect_on(ResultOn::Distributed)
    }

    /// The number of rows, on every rank.
    pub fn count(&self) -> Result<usize> {
        let counted = self.then(|df| {
            df.aggregate(vec![], vec![datafusion::functions_aggregate::expr_fn::count(datafusion::logical_expr::lit(1))])
        })?;
        let batches = counted.collect_on_every_rank()?;
        let column = batches.first().map(|b| b.column(0).clone());
        let count = column
            .as_ref()
            .and_then(|c| c.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>())
            .map_or(0, |a| a.value(0));
        Ok(count as usize)
    }

    /// The result as a table, on rank 0 (other ranks get an empty string).
    pub fn to_pretty_string(&self) -> Result<String> {
        let batches = self.collect()?;
        if self.ctx.rank() != 0 {
            return Ok(String::new());
        }
        Ok(pretty_format_batches(&batches).map_err(|e| Error::Execution { rank: 0, message: e.to_string() })?.to_string())
    }

    /// Prints the result as a table on rank 0.
    pub fn show(&self) -> Result<()> {
        let table = self.to_pretty_string()?;
        if self.ctx.rank() == 0 {
            println!("{table}");
        }
        Ok(())
    }

    /// The distributed physical plan, each operator with where its rows are: `1D_Block`
    /// (each rank its share of a scan), `Hash(keys)` (shuffled by key), `Replicated`
    /// (the same on every rank), `Single` (on rank 0), `1D_Var` (dealt in batches).
    /// Runs nothing and is not collective: any rank may call it alone.
    pub fn explain(&self) -> Result<String> {
        let plan = self.physical_plan()?;
        let (_, placed) = self.ctx.engine().place(plan, ResultOn::Root, false)?;
        Ok(placed.display())
    }

    /// Writes the result as Parquet into directory `dir` (created if missing), one file
    /// `part-<n>.parquet` per partition, each written by the rank that computed it.
    /// Returns the files this rank wrote.
    ///
    /// `dir` may be an object storage URL (`s3://bucket/out/`, see
    /// [`StorageOptions`](crate::StorageOptions)): each part is written to a local
    /// temporary file (in [`FrameOptions::spill_dir`](crate::FrameOptions::spill_dir)) and
    /// uploaded in parts by its rank.
    pub fn write_parquet(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        self.write_parts(dir.as_ref(), "parquet", |file, schema| {
            let writer = ArrowWriter::try_new(file, schema, None)?;
            Ok(PartWriter::Parquet(writer))
        })
    }

    /// Writes the result as CSV (with a header line) into directory `dir`, one file
    /// `part-<n>.csv` per partition. Returns the files this rank wrote. `dir` may be an
    /// object storage URL, as for [`write_parquet`](Self::write_parquet).
    pub fn write_csv(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        self.write_parts(dir.as_ref(), "csv", |file, _schema| {
            Ok(PartWriter::Csv(CsvWriterBuilder::new().with_header(true).build(file)))
        })
    }

    fn write_parts(
        &self,
        dir: &Path,
        extension: &'static str,
        open: fn(File, SchemaRef) -> datafusion::error::Result<PartWriter>,
    ) -> Result<Vec<PathBuf>> {
        let failed = |source| Error::Write { path: dir.display().to_string(), source };
        let url = dir.to_str().filter(|d| is_url(d)).map(|d| d.trim_end_matches('/').to_string());
        let engine = self.ctx.engine();
        if let Backend::Driver { client, .. } = &engine.backend {
            // The workers create the directory, as SPMD ranks do.
            let dir = match &url {
                Some(url) => url.clone(),
                None => std::path::absolute(dir).map_err(failed)?.display().to_string(),
            };
            let action = if extension == "csv" { driver::Action::WriteCsv(dir) } else { driver::Action::WriteParquet(dir) };
            return driver::write(client, &engine.options, engine.threads, self, action);
        }
        let plan = self.physical_plan()?;
        let context = Arc::new(self.df.task_ctx());
        let Some(url) = url else {
            std::fs::create_dir_all(dir).map_err(failed)?;
            let dir = dir.to_path_buf();
            let written = self.ctx.engine().run(plan, context, ResultOn::Distributed, move |p, stream| {
                let path = dir.join(format!("part-{p}.{extension}"));
                write_stream(path, stream, open)
            })?;
            return Ok(written.into_iter().map(|(_, path)| path).collect());
        };
        // Each part is written to a temporary file of DataFusion's disk manager first
        // (Parquet seeks back to write its footer), then uploaded in parts of 10 MB.
        let parsed = Url::parse(&url).map_err(|e| Error::InvalidArgument(format!("{url} is not a valid URL: {e}")))?;
        let store = context.runtime_env().object_store_registry.get_store(&parsed).map_err(Error::plan)?;
        let base = object_store::path::Path::from_url_path(parsed.path())
            .map_err(|e| Error::InvalidArgument(format!("{url} is not a valid object path: {e}")))?;
        let disk = Arc::clone(&context.runtime_env().disk_manager);
        let written = self.ctx.engine().run(plan, context, ResultOn::Distributed, move |p, stream| {
            let name = format!("part-{p}.{extension}");
            let (location, target) = (base.clone().join(name.as_str()), format!("{url}/{name}"));
            let (store, disk) = (Arc::clone(&store), Arc::clone(&disk));
            async move {
                let part = disk.create_tmp_file("writing a part for object storage")?;
                let local = part.path().ok_or_else(|| {
                    datafusion::error::DataFusionError::Execution("the disk manager's temporary files are not local files".into())
                })?;
                write_stream(local.to_path_buf(), stream, open).await?;
                upload(part.as_ref(), store, location, &target).await?;
                Ok(PathBuf::from(target))
            }
        })?;
        Ok(written.into_iter().map(|(_, path)| path).collect())
    }

    fn physical_plan(&self) -> Result<Arc<dyn ExecutionPlan>> {
        self.ctx.engine().runtime.block_on(self.df.create_physical_plan()).map_err(Error::plan)
    }

    fn collect_on(&self, result_on: ResultOn) -> Result<Vec<RecordBatch>> {
        let engine = self.ctx.engine();
        if let Backend::Driver { client, .. } = &engine.backend {
            return driver::collect(client, &engine.options, engine.threads, self, result_on);
        }
        let plan = self.physical_plan()?;
        let context = Arc::new(self.df.task_ctx());
        let parts = self.ctx.engine().run(plan, context, result_on, |_, stream| collect(stream))?;
        Ok(parts.into_iter().flat_map(|(_, batches)| batches).collect())
    }
}

enum PartWriter {
    Parquet(ArrowWriter<File>),
    Csv(datafusion::arrow::csv::Writer<File>),
}

async fn write_stream(
    path: PathBuf,
    mut stream: SendableRecordBatchStream,
    open: fn(File, SchemaRef) -> datafusion::error::Result<PartWriter>,
) -> datafusion::error::Result<PathBuf> {
    let io = |e: std::io::Error| datafusion::error::DataFusionError::Execution(format!("writing {}: {e}", path.display()));
    let file = File::create(&path).map_err(io)?;
    let mut writer = open(file, stream.schema())?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        match &mut writer {
            PartWriter::Parquet(w) => w.write(&batch)?,
            PartWriter::Csv(w) => w.write(&batch)?,
        }
    }
    match writer {
        PartWriter::Parquet(w) => {
            w.close()?;
        }
        PartWriter::Csv(w) => drop(w.into_inner()),
    }
    Ok(path)
}

/// Uploads `part` to `location` (at `url`) through `store`, in parts.
async fn upload(part: &dyn SpillFile, store: Arc<dyn ObjectStore>, location: object_store::path::Path, url: &str) -> datafusion::error::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut writer = object_store::buffered::BufWriter::new(store, location);
    let mut chunks = part.read_stream()?;
    while let Some(chunk) = chunks.next().await {
        writer.put(chunk?).await?;
    }
    writer
        .shutdown()
        .await
        .map_err(|e| datafusion::error::DataFusionError::Execution(format!("uploading {url}: {e}")))
}

impl Context {
    /// Wraps a DataFusion DataFrame built from this context's [`session`](Self::session).
    pub fn from_datafusion(&self, df: Df) -> DataFrame {
        DataFrame::new(self.clone(), df)
    }
}
