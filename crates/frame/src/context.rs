//! [`Context`]: where DataFrames come from — files, SQL, registered tables.

use std::path::Path;
use std::sync::Arc;

use chorus_comm::World;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{cast, ident, lit, when, Expr};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig};

use chorus_tasks::Client;

use crate::query::{Backend, Engine};
use crate::storage::{is_url, Listing, StorageOptions, Stores};
use crate::{DataFrame, Error, Result, StorageFailure};

/// Bytes each stream of an exchange may have in flight before its sender waits.
pub const DEFAULT_EXCHANGE_WINDOW: usize = 8 << 20;

/// How a [`Context`] runs queries.
#[derive(Debug, Clone)]
pub struct FrameOptions {
    /// Partitions (and threads) per rank. Default: the cores of this host divided among
    /// the ranks, at least 1; `CHORUS_FRAME_THREADS` overrides it.
    pub threads_per_rank: Option<usize>,
    /// Bytes of Arrow data each stream of a shuffle may have sent and not yet seen
    /// consumed; a slower consumer makes its producers wait, so a shuffle larger than
    /// memory streams through. Default [`DEFAULT_EXCHANGE_WINDOW`].
    pub exchange_window: usize,
    /// Rows per batch inside DataFusion (default 8192).
    pub batch_size: usize,
    /// Bytes of memory each rank's query operators may hold (DataFusion's memory
    /// pool). Sorts and aggregates past it spill to [`spill_dir`](Self::spill_dir); an
    /// operator that cannot spill (the build side of a hash join) fails with an error
    /// naming it and the limit. Default (`None`): half the rank's share of memory — half
    /// the worker's memory limit on a cluster, half of the machine's memory divided
    /// among the ranks otherwise; `CHORUS_FRAME_MEMORY_LIMIT` (a size, or `none` for no
    /// limit) overrides that default.
    pub memory_limit: Option<u64>,
    /// Where queries spill (default: the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// How queries reach `s3://`, `gs://`, `az://` and `http(s)://` URLs: credentials,
    /// anonymous access, an endpoint, retries (see [`StorageOptions`]).
    pub storage: StorageOptions,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions {
            threads_per_rank: None,
            exchange_window: DEFAULT_EXCHANGE_WINDOW,
            batch_size: 8192,
            memory_limit: None,
            spill_dir: None,
            storage: StorageOptions::default(),
        }
    }
}

/// A rank's memory pool when [`FrameOptions::memory_limit`] is not given.
fn default_pool(ranks: usize) -> Result<u64> {
    let settings = chorus_comm::settings::settings().map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if let Some(limit) = settings.frame_memory_limit {
        return Ok(limit);
    }
    let share = match settings.worker.memory_limit {
        Some(limit) if limit > 0 => limit,
        _ => chorus_tasks::memory::default_limit(ranks),
    };
    Ok(share / 2)
}

/// DataFusion's runtime for a rank: a fair, spilling memory pool of `limit` bytes that
/// names its largest consumers when it is exhausted, temporary files in `dir`, and the
/// rank's object stores.
fn runtime_env(
    limit: u64,
    dir: Option<&std::path::Path>,
    stores: Arc<Stores>,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    let pool = TrackConsumersPool::new(FairSpillPool::new(limit as usize), std::num::NonZeroUsize::new(5).expect("5 > 0"));
    let mut builder = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_object_store_registry(stores);
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::InvalidArgument(format!("cannot create the query spill directory {}: {e}", dir.display()))
        })?;
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc().map_err(Error::plan)
}

/// Options for [`Context::read_csv`].
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The first line names the columns (default true).
    pub header: bool,
    /// The field separator (default `,`).
    pub delimiter: u8,
    /// The columns' names and types; inferred from the first rows (on rank 0, then
    /// shared) when `None`.
    pub schema: Option<SchemaRef>,
    /// Strings that mean null (besides an empty field); default none.
    pub null_values: Vec<String>,
    /// Rows read to infer the schema (default 1000).
    pub infer_rows: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { header: true, delimiter: b',', schema: None, null_values: Vec::new(), infer_rows: 1000 }
    }
}

impl CsvOptions {
    /// Sets whether the first line names the columns.
    pub fn header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }

    /// Sets the field separator.
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Gives the schema instead of inferring it.
    pub fn schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Adds a string that reads as null.
    pub fn null_value(mut self, value: impl Into<String>) -> Self {
        self.null_values.push(value.into());
        self
    }
}

/// The entry point of distributed DataFrames and SQL in an SPMD program: every rank
/// creates one over the job's [`World`] and calls the same methods in the same order;
/// each query is split among the ranks.
///
/// ```no_run
/// use chorus_frame::{Context, CsvOptions, prelude::*};
///
/// let world = chorus_comm::World::single(); // in a program: chorus::WorldBuilder::new().init()?
/// let ctx = Context::new(world)?;
/// let df = ctx.read_csv("data/purchases_1m.csv", CsvOptions::default())?;
/// let mean = df.aggregate(vec![], vec![avg(col("Purchase_Amount"))])?.collect()?;
/// # Ok::<(), chorus_frame::Error>(())
/// ```
#[derive(Clone)]
pub struct Context {
    session: SessionContext,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

impl Context {
    /// A context over `world` with default [`FrameOptions`].
    pub fn new(world: impl Into<Arc<World>>) -> Result<Context> {
        Context::with_options(world, FrameOptions::default())
    }

    /// A context over `world`: this process is one of the ranks that run each query.
    pub fn with_options(world: impl Into<Arc<World>>, options: FrameOptions) -> Result<Context> {
        let world = world.into();
        let size = world.size();
        Context::build(Backend::Ranks(world), size, options)
    }

    /// A context on a driver: queries are planned here and run by the workers of
    /// `client`'s cluster as SPMD jobs, and only results come back. The same API and the
    /// same answers as in an SPMD program; every `collect` returns the whole result here.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
    /// let ctx = chorus_frame::Context::on_cluster(&cluster.client())?;
    /// let n = ctx.sql("SELECT count(*) FROM 'data/purchases_1m.csv'")?.collect()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_cluster(client: &Client) -> Result<Context> {
        Context::on_cluster_with_options(client, FrameOptions::default())
    }

    /// [`on_cluster`](Self::on_cluster) with options.
    pub fn on_cluster_with_options(client: &Client, options: FrameOptions) -> Result<Context> {
        let workers = client.workers().len();
        if workers == 0 {
            return Err(Error::Cluster(chorus_tasks::Error::NoWorkers { operation: "run queries".into() }));
        }
        Context::build(Backend::Driver { client: client.clone(), workers }, workers, options)
    }

    fn build(backend: Backend, size: usize, options: FrameOptions) -> Result<Context> {
        let threads = match options.threads_per_rank {
            Some(n) => n.max(1),
            None => match chorus_comm::settings::settings().map_err(|e| Error::InvalidArgument(e.to_string()))?.frame_threads {
                Some(n) => n,
                None => {
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    (cores / size).max(1)
                }
            },
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("chorus-frame")
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start the query runtime: {e}")))?;
        let mut config = SessionConfig::new()
            .with_target_partitions(size * threads)
            .with_batch_size(options.batch_size.max(1))
            .with_repartition_file_scans(true)
            .with_repartition_file_min_size(0)
            .with_information_schema(true);
        // Column names are matched as written (`Purchase_Amount`), as in pandas and Bodo,
        // rather than folded to lower case as SQL would.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        if size > 1 {
            // Each rank reads only the byte ranges and row groups of its own partitions; a
            // partition must not take over the files of one that runs on another rank.
            config.options_mut().execution.enable_file_stream_work_stealing = false;
            // Dynamic filters share state between all partitions of an operator, which only
            // works when one process runs them all (as one rank does).
            let optimizer = &mut config.options_mut().optimizer;
            optimizer.enable_dynamic_filter_pushdown = false;
            optimizer.enable_join_dynamic_filter_pushdown = false;
            optimizer.enable_topk_dynamic_filter_pushdown = false;
            optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        }
        let pool = match options.memory_limit {
            Some(limit) => limit,
            None => default_pool(size)?,
        };
        // What each sort keeps back for merging its spill files (DataFusion's 10 MB by
        // default) must leave room for every partition's sorts in a small pool.
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes = execution.sort_spill_reservation_bytes.min((pool / (8 * threads as u64)) as usize);
        let stores = Arc::new(Stores::new(options.storage.clone()));
        let session = SessionContext::new_with_config_rt(config, runtime_env(pool, options.spill_dir.as_deref(), stores)?);
        let options = FrameOptions { threads_per_rank: Some(threads), exchange_window: options.exchange_window.max(1), ..options };
        let engine = Arc::new(Engine::new(backend, runtime, options, threads));
        Ok(Context { session, engine })
    }

    /// This rank (0 on a driver).
    pub fn rank(&self) -> usize {
        self.engine.rank()
    }

    /// The number of ranks that run queries (on a driver: the workers).
    pub fn size(&self) -> usize {
        self.engine.size()
    }

    /// The job's world, for collectives beside the queries (`None` on a driver).
    pub fn world(&self) -> Option<&World> {
        self.engine.world().map(|w| w.as_ref())
    }

    /// DataFusion's session, for what this API does not wrap (registering functions,
    /// configuration). Tables registered through it must be the same on every rank.
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Reads CSV files: a file, a directory of `.csv` files, a glob (`data/*.csv`), or
    /// several of these. Each rank parses its own byte ranges, cut at line boundaries.
    ///
    /// Paths may be object storage URLs: `s3://bucket/purchases/*.csv`, a prefix ending
    /// in `/` (`gs://bucket/purchases/`), `az://container/p.csv` or
    /// `https://host/p.csv`. [`FrameOptions::storage`] says how to reach them
    /// (credentials, anonymous access, an endpoint). On a driver's cluster the workers
    /// read them, with the driver's options.
    ///
    /// ```no_run
    /// use chorus_frame::{Context, CsvOptions, FrameOptions, StorageOptions};
    ///
    /// # fn main() -> chorus_frame::Result<()> {
    /// let public = StorageOptions { anonymous: true, ..StorageOptions::default() };
    /// let options = FrameOptions { storage: public, ..FrameOptions::default() };
    /// let ctx = Context::with_options(chorus_comm::World::single(), options)?;
    /// let path = "s3://bodo-examples-data/bodo-training-fundamentals/DATA/CSV/samples_001.csv";
    /// let samples = ctx.read_csv(path, CsvOptions::default())?;
    /// samples.show()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_csv(&self, paths: impl Paths, options: CsvOptions) -> Result<DataFrame> {
        let paths = paths.into_paths();
        let extension = csv_extension(&paths);
        let schema = match &options.schema {
            Some(schema) => Arc::clone(schema),
            None => self.shared_schema(|| {
                let read = csv_read_options(&options, None, &extension);
                self.engine.runtime.block_on(self.session.read_csv(Listing(paths.clone()), read)).map(|df| df.schema().inner().clone())
            })?,
        };
        // DataFusion's CSV reader applies null strings only while inferring, so with null
        // strings every column is read as text, and cast once the null strings are nulls.
        let read_schema = if options.null_values.is_empty() {
            Arc::clone(&schema)
        } else {
            Arc::new(Schema::new(schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>()))
        };
        let read = csv_read_options(&options, Some(&read_schema), &extension);
        let df = self.engine.runtime.block_on(self.session.read_csv(Listing(paths), read)).map_err(Error::plan)?;
        if options.null_values.is_empty() {
            return Ok(DataFrame::new(self.clone(), df));
        }
        let markers: Vec<Expr> = options.null_values.iter().map(|v| lit(v.as_str())).collect();
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let text = ident(f.name());
                let cleaned = when(text.clone().in_list(markers.clone(), false), lit(ScalarValue::Utf8(None))).otherwise(text)?;
                Ok(cast(cleaned, f.data_type().clone()).alias(f.name()))
            })
            .collect::<datafusion::error::Result<Vec<_>>>()
            .map_err(Error::plan)?;
        Ok(DataFrame::new(self.clone(), df.select(columns).map_err(Error::plan)?))
    }

    /// Reads Parquet files (a file, a directory, a glob, or several); the row groups are
    /// divided among the ranks. Paths may be object storage URLs, as for
    /// [`read_csv`](Self::read_csv).
    pub fn read_parquet(&self, paths: impl Paths) -> Result<DataFrame> {
        let df = self
            .engine
            .runtime
            .block_on(self.session.read_parquet(Listing(paths.into_paths()), ParquetReadOptions::default()))
            .map_err(Error::plan)?;
        Ok(DataFrame::new(self.clone(), df))
    }

    /// Makes CSV files a table for [`sql`](Self::sql).
    pub fn register_csv(&self, name: &str, paths: impl Paths, options: CsvOptions) -> Result<()> {
        let df = self.read_csv(paths, options)?;
        self.register(name, &df)
    }

    /// Makes Parquet files a table for [`sql`](Self::sql).
    pub fn register_parquet(&self, name: &str, paths: impl Paths) -> Result<()> {
        let df = self.read_parquet(paths)?;
        self.register(name, &df)
    }

    /// Makes a DataFrame a table (a view: it is computed when a query reads it).
    pub fn register(&self, name: &str, df: &DataFrame) -> Result<()> {
        self.session.register_table(name, df.inner().clone().into_view()).map_err(Error::plan)?;
        Ok(())
    }

    /// Plans a SQL query. Statements that create or drop tables take effect at once.
    pub fn sql(&self, sql: &str) -> Result<DataFrame> {
        let df = self.engine.runtime.block_on(self.session.sql(sql)).map_err(Error::plan)?;
        Ok(DataFrame::new(self.clone(), df).with_label(sql))
    }

    /// Figures of the last query's exchanges on this rank.
    pub fn last_exchange_stats(&self) -> crate::ExchangeStats {
        self.engine.last_stats()
    }

    /// Infers a schema on rank 0 and shares it, so that every rank plans the same query.
    fn shared_schema(&self, infer: impl FnOnce() -> datafusion::error::Result<SchemaRef>) -> Result<SchemaRef> {
        let Some(world) = self.engine.world() else {
            return infer().map_err(Error::plan);
        };
        // An error goes to every rank as it is, a storage error with its URL and kind.
        type Shared = std::result::Result<Vec<u8>, (String, Option<(String, StorageFailure)>)>;
        let inferred: Option<Shared> = (world.rank() == 0).then(|| {
            infer().map(|schema| encode_schema(&schema)).map_err(|e| match Error::plan(e) {
                Error::Storage { url, kind, message } => (message, Some((url, kind))),
                Error::Plan(message) => (message, None),
                other => (other.to_string(), None),
            })
        });
        let shared: Shared = world.bcast(0, inferred)?;
        let bytes = shared.map_err(|(message, storage)| match storage {
            Some((url, kind)) => Error::Storage { url, kind, message },
            None => Error::Plan(message),
        })?;
        decode_schema(&bytes)
    }
}

fn encode_schema(schema: &SchemaRef) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(mut writer) = StreamWriter::try_new(&mut out, schema) {
        let _ = writer.finish();
    }
    out
}

fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map(|r| r.schema())
        .map_err(|e| Error::Plan(format!("rank 0 sent a schema this rank cannot read: {e}")))
}

/// The file extension a listing keeps: that of the named files or glob patterns
/// (`data/*.tsv` keeps `.tsv`), `.csv` for directories, every file if they disagree.
fn csv_extension(paths: &[String]) -> String {
    let extension_of = |p: &String| {
        let path = Path::new(p);
        let directory = if is_url(p) { p.ends_with('/') } else { path.is_dir() };
        if directory {
            ".csv".to_string()
        } else {
            path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default()
        }
    };
    let mut extensions = paths.iter().map(extension_of);
    let first = extensions.next().unwrap_or_default();
    if extensions.all(|e| e == first) {
        first
    } else {
        String::new()
    }
}

fn csv_read_options<'a>(options: &CsvOptions, schema: Option<&'a Schema>, extension: &'a str) -> CsvReadOptions<'a> {
    let mut read = CsvReadOptions::new()
        .has_header(options.header)
        .delimiter(options.delimiter)
        .file_extension(extension)
        .schema_infer_max_records(options.infer_rows.max(1));
    read.schema = schema;
    // Used while inferring the schema (reading ignores it; see `read_csv`).
    if !options.null_values.is_empty() {
        let alternatives: Vec<String> = options.null_values.iter().map(|v| regex_escape(v)).collect();
        read.null_regex = Some(format!("^(?:{})$", alternatives.join("|")));
    }
    read
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One path or several: `&str`, `String`, `&Path`, or a `Vec`/slice of them.
pub trait Paths {
    /// The paths as strings.
    fn into_paths(self) -> Vec<String>;
}

impl Paths for &str {
    fn into_paths(self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl Paths for String {
    fn into_paths(self) -> Vec<String> {
        vec![self]
    }
}

impl Paths for &String {
    fn into_paths(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl Paths for &Path {
    fn into_paths(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}

impl Paths for std::path::PathBuf {
    fn into_paths(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}

impl Paths for &std::path::PathBuf {
    fn into_paths(self) -> Vec<String> {
        vec![self.to_string_lossy().into_owned()]
    }
}

impl<P: AsRef<Path>> Paths for Vec<P> {
    fn into_paths(self) -> Vec<String> {
        self.iter().map(|p| p.as_ref().to_string_lossy().into_owned()).collect()
    }
}

impl<P: AsRef<Path>> Paths for &[P] {
    fn into_paths(self) -> Vec<String> {
        self.iter().map(|p| p.as_ref().to_string_lossy().into_owned()).collect()
    }
}
