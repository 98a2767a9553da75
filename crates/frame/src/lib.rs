//! # chorus-frame: distributed DataFrames and SQL
//!
//! Write a query once — with DataFusion's DataFrame API or in SQL — and run it on every
//! core and every machine of a chorus job. DataFusion plans the query and runs each
//! partition; chorus decides which rank computes which partition and moves data between
//! ranks where the query needs it:
//!
//! - **Scans are split.** A CSV file is cut into byte ranges aligned to line boundaries,
//!   Parquet files by row groups; each rank reads only its ranges. chorus's CSV reader
//!   reads them in 8 MiB blocks and splits and parses only the columns the query uses.
//!   The schema is inferred once, on rank 0, and shared. Paths may be local (on a file system every rank
//!   sees) or object storage URLs — `s3://`, `gs://`, `az://`, `http(s)://` — read by
//!   byte range and pinned to the version planned ([`StorageOptions`]).
//! - **Shuffles cross ranks.** A group-by runs as a partial aggregate per partition, a
//!   shuffle by key hash, and a final aggregate per key. Joins broadcast a small side or
//!   shuffle both. Exchanges stream Arrow IPC over the job's [`World`](chorus_comm::World)
//!   with a bounded window per stream, so a shuffle never holds all its data in memory.
//! - **Merges gather.** A global sort sorts each partition and merges on rank 0; `limit`,
//!   final aggregates without keys, and results for [`DataFrame::collect`] go to rank 0.
//!   A sorted result kept distributed ([`DataFrame::collect_distributed`]) is split by
//!   ranges of the keys instead, its input computed once.
//!
//! [`DataFrame::explain`] shows the distributed plan with each operator's distribution,
//! like Bodo's `distributed_diagnostics()`.
//!
//! ```no_run
//! use chorus_frame::{Context, CsvOptions, prelude::*};
//!
//! # fn main() -> chorus_frame::Result<()> {
//! // Every rank runs this; in a program the world comes from chorus::WorldBuilder.
//! let ctx = Context::new(chorus_comm::World::single())?;
//! let purchases = ctx.read_csv("data/purchases_1m.csv", CsvOptions::default())?;
//! let by_product = purchases.aggregate(
//!     vec![col("Product")],
//!     vec![avg(col("Purchase_Amount")).alias("mean"), stddev(col("Purchase_Amount")).alias("std")],
//! )?;
//! by_product.show()?; // prints on rank 0
//!
//! ctx.register("purchases", &purchases)?;
//! ctx.sql("SELECT Product, count(*) FROM purchases WHERE Age > 40 GROUP BY Product")?.show()?;
//! # Ok(())
//! # }
//! ```
//!
//! Queries are collective: every rank calls the same methods in the same order. A rank
//! that fails while reading or computing aborts the job, so every rank's call returns an
//! error naming it instead of waiting.

#![warn(missing_docs)]

mod context;
mod csv;
mod dataframe;
mod driver;
mod error;
mod exchange;
mod plan;
mod query;
mod scan;
mod sort;
mod split_join;
mod storage;

pub use context::{Context, CsvOptions, FrameOptions, Paths, DEFAULT_EXCHANGE_WINDOW};
pub use dataframe::DataFrame;
pub use error::{Error, Result, StorageFailure};
pub use storage::{is_url, StorageOptions};
pub use exchange::ExchangeStats;

/// DataFusion, for its types (`RecordBatch`, `JoinType`, expressions) and what this crate
/// does not wrap.
pub use datafusion;

/// Expressions and the names queries use: `col`, `lit`, aggregate and window functions,
/// `JoinType`, `RecordBatch`.
pub mod prelude {
    pub use datafusion::arrow::array::RecordBatch;
    pub use datafusion::common::JoinType;
    pub use datafusion::functions_aggregate::expr_fn::*;
    pub use datafusion::functions_window::expr_fn::{
        cume_dist, dense_rank, lag, lead, ntile, percent_rank, rank, row_number,
    };
    pub use super::col;
    pub use datafusion::logical_expr::{lit, Expr, ExprFunctionExt, SortExpr};
    pub use datafusion::prelude::{cast, coalesce, concat, when};
}

/// The column `name` (or `table.column`), matched as written: `col("Purchase_Amount")`.
/// Unlike DataFusion's `col`, unquoted names keep their case, as in pandas and in this
/// crate's SQL.
pub fn col(name: &str) -> datafusion::logical_expr::Expr {
    datafusion::logical_expr::Expr::Column(datafusion::common::Column::from_qualified_name_ignore_case(name))
}
