//! DataFrame benchmarks: the three purchases queries (CSV read included) for 1 and 2
//! ranks with peak memory, and TPC-H's 22 queries, each run in a fresh job.
//!
//!     bench-frame [--sizes 1m,10m] [--ranks 1,2] [--reps 3] [--queries mean,groupby,age40]
//!     bench-frame --tpch SF [--ranks 1,2]      # CHORUS_TPCH_QUERY=N: only query N
//!
//! Prints `RESULT name=median unit` lines (the format of shared/peers' scripts): for each
//! cell `frame_chorus<R>_<size>_<query>` in seconds and `..._rss` (peak resident memory
//! summed over the ranks) in MB; for TPC-H `tpch_sf<SF>_chorus<R>_q<N>` in seconds.
//! Inputs go to `data/` (generated when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};
use chorus::frame::prelude::*;
use chorus::frame::{Context, CsvOptions, DataFrame};
use chorus_datagen::tpch;

#[derive(Debug)]
struct Args {
    sizes: Vec<String>,
    ranks: Vec<usize>,
    reps: usize,
    queries: Vec<String>,
    tpch: Option<f64>,
    /// Child mode: run one query in this job and report.
    one: Option<(PathBuf, String)>,
    tpch_dir: Option<PathBuf>,
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        sizes: list("1m,10m"),
        ranks: vec![1, 2],
        reps: 3,
        queries: list("mean,groupby,age40"),
        tpch: None,
        one: None,
        tpch_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => a.sizes = list(&value()?),
            "--ranks" => a.ranks = list(&value()?).iter().map(|r| r.parse()).collect::<Result<_, _>>()?,
            "--reps" => a.reps = value()?.parse()?,
            "--queries" => a.queries = list(&value()?),
            "--tpch" => a.tpch = Some(value()?.parse()?),
            "--one" => {
                let path = value()?.into();
                a.one = Some((path, value()?));
            }
            "--tpch-run" => a.tpch_dir = Some(value()?.into()),
            other => bail!("unknown argument {other:?} (see the comment at the top of bench/frame/src/main.rs)"),
        }
    }
    Ok(a)
}

#[chorus::main]
fn main() -> anyhow::Result<()> {
    let args = args()?;
    if let Some((path, query)) = &args.one {
        return run_one(path, query);
    }
    if let Some(dir) = &args.tpch_dir {
        return run_tpch(dir);
    }
    if let Some(sf) = args.tpch {
        let dir = PathBuf::from(format!("data/tpch-sf{sf}"));
        if !dir.join("lineitem").exists() {
            eprintln!("generating TPC-H SF {sf} into {}", dir.display());
            tpch::write_tables(&dir, sf, 4)?;
        }
        for &ranks in &args.ranks {
            let out = child(ranks, &["--tpch-run", &dir.display().to_string()])?;
            for line in out.lines().filter(|l| l.starts_with("RESULT ")) {
                println!("{}", line.replace("RESULT tpch_", &format!("RESULT tpch_sf{sf}_chorus{ranks}_")));
            }
        }
        return Ok(());
    }
    for size in &args.sizes {
        let rows: u64 = match size.as_str() {
            "1m" => 1_000_000,
            "10m" => 10_000_000,
            other => bail!("unknown size {other}: 1m or 10m"),
        };
        let path = PathBuf::from(format!("data/purchases_{size}.csv"));
        if !path.exists() {
            eprintln!("generating {rows} rows into {}", path.display());
            std::fs::create_dir_all("data")?;
            chorus_datagen::write_purchases(&path, rows, 42)?;
        }
        for query in &args.queries {
            for &ranks in &args.ranks {
                let mut seconds = Vec::new();
                let mut rss = Vec::new();
                let mut answer = String::new();
                for _ in 0..args.reps {
                    let out = child(ranks, &["--one", &path.display().to_string(), query])?;
                    let field = |name: &str| -> anyhow::Result<f64> {
                        let line = out.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} in:\n{out}"))?;
                        Ok(line[name.len()..].trim().parse()?)
                    };
                    seconds.push(field("seconds=")?);
                    rss.push(field("rss_mb=")?);
                    answer = out.lines().find_map(|l| l.strip_prefix("answer=")).unwrap_or_default().to_string();
                }
                let name = format!("frame_chorus{ranks}_{size}_{query}");
                println!("# {name}: {seconds:.3?} s, {rss:.0?} MB; answer {answer}");
                println!("RESULT {name}={:.4} s", median(&mut seconds));
                println!("RESULT {name}_rss={:.0} MB", median(&mut rss));
            }
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs this program as a job of `ranks` processes; returns rank 0's output.
fn child(ranks: usize, args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).env("CHORUS_PROCS", ranks.to_string()).output()?;
    if !out.status.success() {
        bail!("{args:?} on {ranks} ranks failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn join() -> anyhow::Result<Context> {
    let world = chorus::WorldBuilder::new().prefix_output(false).init()?;
    Ok(Context::new(world)?)
}

/// Peak resident memory of this process, in MB.
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn run_one(path: &Path, query: &str) -> anyhow::Result<()> {
    let ctx = join()?;
    let world = ctx.world().context("an SPMD job")?;
    world.barrier()?;
    let started = Instant::now();
    let df = ctx.read_csv(path, CsvOptions::default())?;
    let q: DataFrame = match query {
        "mean" => df.aggregate(vec![], vec![avg(col("Purchase_Amount"))])?,
        "groupby" => df.aggregate(
            vec![col("Product")],
            vec![avg(col("Purchase_Amount")).alias("mean"), stddev(col("Purchase_Amount")).alias("std")],
        )?,
        "age40" => df.filter(col("Age").gt(lit(40)))?.aggregate(vec![col("Product")], vec![count(lit(1)).alias("n")])?,
        other => bail!("unknown query {other}: mean, groupby or age40"),
    };
    let batches = q.collect()?;
    let seconds = started.elapsed().as_secs_f64();
    let rss: f64 = world.gatherv(0, &peak_rss_mb())?.map(|all| all.iter().sum()).unwrap_or_default();
    if ctx.rank() == 0 {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        println!("seconds={seconds}\nrss_mb={rss}\nanswer={rows} rows");
    }
    Ok(())
}

fn run_tpch(dir: &Path) -> anyhow::Result<()> {
    let only: Option<usize> = std::env::var("CHORUS_TPCH_QUERY").ok().and_then(|q| q.parse().ok());
    let ctx = join()?;
    for table in tpch::TABLES {
        ctx.register_parquet(table, dir.join(table))?;
    }
    let world = ctx.world().context("an SPMD job")?;
    for n in (1..=22).filter(|n| only.is_none_or(|o| o == *n)) {
        let mut times = Vec::new();
        for _ in 0..3 {
            world.barrier()?;
            let started = Instant::now();
            ctx.sql(tpch::query(n).context("22 queries")?)?.collect()?;
            times.push(started.elapsed().as_secs_f64());
            if only.is_some() && ctx.rank() == 0 {
                eprintln!("q{n}: {:.3} s, {:?}", times[times.len() - 1], ctx.last_exchange_stats());
            }
        }
        if ctx.rank() == 0 {
            println!("RESULT tpch_q{n}={:.4} s", median(&mut times));
        }
    }
    Ok(())
}
