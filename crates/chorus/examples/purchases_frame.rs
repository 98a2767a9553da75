//! The seed's DataFrame workload — Bodo's `pd.read_csv(path).Purchase_Amount.mean()`,
//! Dask's `df.groupby(...).std()` — with chorus's distributed DataFrame and SQL: the CSV
//! file is split among the ranks by byte ranges, each rank parses only its share, and
//! group-bys shuffle partial aggregates between ranks by key.
//!
//!     cargo run --release --features frame --example purchases_frame   # one rank per core
//!     chorus run -n 4 target/release/examples/purchases_frame
//!     purchases_frame --driver       # planned here, run by a LocalCluster's 2 workers
//!     purchases_frame [--path FILE] [--rows N] [--explain]
//!
//! The file (by default `data/purchases_1m.csv`) is generated on first use.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chorus::frame::prelude::*;
use chorus::frame::{Context, CsvOptions};

struct Args {
    path: PathBuf,
    rows: u64,
    driver: bool,
    explain: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { path: "data/purchases_1m.csv".into(), rows: 1_000_000, driver: false, explain: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--path" => a.path = value()?.into(),
            "--rows" => a.rows = value()?.parse().context("--rows takes a whole number")?,
            "--driver" => a.driver = true,
            "--explain" => a.explain = true,
            other => bail!("unknown argument {other:?}; usage: purchases_frame [--path FILE] [--rows N] [--driver] [--explain]"),
        }
    }
    Ok(a)
}

#[chorus::main]
fn main() -> anyhow::Result<()> {
    let args = args()?;
    if args.driver {
        generate(&args)?;
        let cluster = chorus::LocalCluster::builder().workers(2).start()?;
        let ctx = Context::on_cluster(&cluster.client())?;
        return queries(&ctx, &args);
    }
    let world = chorus::WorldBuilder::new().procs_per_core().init()?;
    if world.rank() == 0 {
        generate(&args)?;
    }
    world.barrier()?;
    let ctx = Context::new(world)?;
    queries(&ctx, &args)
}

fn generate(args: &Args) -> anyhow::Result<()> {
    if !args.path.exists() {
        eprintln!("generating {} rows into {}", args.rows, args.path.display());
        if let Some(dir) = args.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        chorus_datagen::write_purchases(&args.path, args.rows, 42)
            .with_context(|| format!("writing {}", args.path.display()))?;
    }
    Ok(())
}

fn queries(ctx: &Context, args: &Args) -> anyhow::Result<()> {
    let rank0 = ctx.rank() == 0;
    let df = ctx.read_csv(&args.path, CsvOptions::default())?;

    // Bodo's compute_mean: the mean purchase, every rank reading its own share.
    let mean = df.aggregate(vec![], vec![avg(col("Purchase_Amount")).alias("mean")])?;
    if args.explain && rank0 {
        println!("{}", mean.explain()?);
    }
    mean.show()?;

    // Dask's groupby: mean and sample standard deviation per product.
    let by_product = df
        .aggregate(
            vec![col("Product")],
            vec![avg(col("Purchase_Amount")).alias("mean"), stddev(col("Purchase_Amount")).alias("std")],
        )?
        .sort(vec![col("Product").sort(true, true)])?;
    if args.explain && rank0 {
        println!("{}", by_product.explain()?);
    }
    by_product.show()?;

    // The filtered count: buyers over 40 per product.
    df.filter(col("Age").gt(lit(40)))?
        .aggregate(vec![col("Product")], vec![count(lit(1)).alias("buyers_over_40")])?
        .sort(vec![col("Product").sort(true, true)])?
        .show()?;

    // The same three questions in SQL.
    ctx.register("purchases", &df)?;
    ctx.sql("SELECT avg(Purchase_Amount) AS mean FROM purchases")?.show()?;
    ctx.sql(
        "SELECT Product, avg(Purchase_Amount) AS mean, stddev(Purchase_Amount) AS std \
         FROM purchases GROUP BY Product ORDER BY Product",
    )?
    .show()?;
    ctx.sql(
        "SELECT Product, count(*) AS buyers_over_40 FROM purchases WHERE Age > 40 GROUP BY Product ORDER BY Product",
    )?
    .show()?;
    if rank0 {
        println!("({} ranks)", ctx.size());
    }
    Ok(())
}
