//! DataFrame benchmarks: the three purchases queries (CSV read included) for 1 and 2
//! ranks with peak memory, and TPC-H's 22 queries, each run in a fresh job.
//!
//!     bench-frame [--sizes 1m,10m] [--ranks 1,2] [--reps 3] [--queries mean,groupby,age40]
//!     bench-frame --tpch SF [--ranks 1,2] [--reps 3] [--memory default,2GiB,none]
//!                 [--reference] [--duckdb PYTHON] [--timeout SECS]
//!                 # CHORUS_TPCH_QUERY=N: only query N; 23 and 24 are
//!                 # nested-loop joins over the same tables (see `query_sql`)
//!
//! Prints `RESULT name=median unit` lines (the format of shared/peers' scripts): for each
//! cell `frame_chorus<R>_<size>_<query>` in seconds and `..._rss` (peak resident memory
//! summed over the ranks) in MB; for TPC-H `tpch_sf<SF>_chorus<R>[_mem<M>]_q<N>` in
//! seconds and `..._rss` (the largest rank's peak) in MB, then a table per query.
//!
//! `--memory` runs the TPC-H queries once per setting of `CHORUS_FRAME_MEMORY_LIMIT`
//! (each rank's query memory pool; `default` leaves it unset, `none` removes the limit).
//! `--reference` also runs every query in single-process DataFusion (no memory limit,
//! a partition per core) and checks that chorus's answer is the same; `--duckdb` runs
//! every query in DuckDB too (`tpch_duckdb.py` with that Python, over the same Parquet
//! files, time only: its answers are not compared). Every query runs
//! in a job of its own, so its peak memory is its own; one that fails or passes
//! `--timeout` (default 1800 s) is reported and the others still run.
//! Inputs go to `data/` (generated when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
    /// `CHORUS_FRAME_MEMORY_LIMIT` values the TPC-H queries run with (`default`: unset).
    memory: Vec<String>,
    reference: bool,
    /// A Python with `duckdb`, to run the TPC-H queries in DuckDB beside.
    duckdb: Option<PathBuf>,
    timeout: Duration,
    /// Child mode: run one query in this job and report.
    one: Option<(PathBuf, String)>,
    /// Child mode: run TPC-H over this directory (chorus, or DataFusion alone).
    tpch_dir: Option<PathBuf>,
    datafusion: bool,
    /// Child mode: where the answer of the TPC-H query goes.
    answer: Option<PathBuf>,
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
        memory: list("default"),
        reference: false,
        duckdb: None,
        timeout: Duration::from_secs(1800),
        one: None,
        tpch_dir: None,
        datafusion: false,
        answer: None,
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
            "--memory" => a.memory = list(&value()?),
            "--reference" => a.reference = true,
            "--duckdb" => a.duckdb = Some(value()?.into()),
            "--timeout" => a.timeout = Duration::from_secs(value()?.parse()?),
            "--tpch-run" => a.tpch_dir = Some(value()?.into()),
            "--datafusion" => a.datafusion = true,
            "--answer" => a.answer = Some(value()?.into()),
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
        return run_tpch(dir, args.datafusion, args.reps, args.answer.as_deref());
    }
    if let Some(sf) = args.tpch {
        return tpch_bench(sf, &args);
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

/// Peak resident memory of this process, in MB: `VmHWM`, which starts afresh at exec
/// (`getrusage`'s maximum carries the parent's over, and the parent generated the data).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
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

/// The 22 TPC-H queries, or the one asked for.
fn queries(only: Option<usize>) -> Vec<usize> {
    only.map_or_else(|| (1..=22).collect(), |n| vec![n])
}

/// Query `n`: TPC-H's 1–22, and beyond them joins on inequalities, which DataFusion runs
/// as nested loops: 23 a left join and 24 a `NOT EXISTS` (a left anti join), each
/// supplier against the small parts whose price is within 1 of its account balance
/// (10 000 × 36 000 comparisons at SF 1), most suppliers matching none.
fn query_sql(n: usize) -> anyhow::Result<String> {
    const SMALL_PARTS: &str = "(SELECT p_partkey, p_retailprice FROM part WHERE p_size < 10)";
    Ok(match n {
        23 => format!(
            "SELECT count(*) AS pairs, count(p.p_partkey) AS matched FROM supplier \
             LEFT JOIN {SMALL_PARTS} p ON p.p_retailprice BETWEEN s_acctbal - 1 AND s_acctbal"
        ),
        24 => format!(
            "SELECT count(*) AS unmatched FROM supplier WHERE NOT EXISTS \
             (SELECT 1 FROM {SMALL_PARTS} p WHERE p.p_retailprice BETWEEN s_acctbal - 1 AND s_acctbal)"
        ),
        n => tpch::query(n).with_context(|| format!("no query {n}: 1-22 are TPC-H's, 23 and 24 nested-loop joins"))?.to_string(),
    })
}

/// Runs the TPC-H queries (all, or `CHORUS_TPCH_QUERY`) in jobs of their own for each
/// rank count and memory setting, and in DataFusion alone with `--reference`; prints
/// the figures and a table.
fn tpch_bench(sf: f64, args: &Args) -> anyhow::Result<()> {
    let dir = PathBuf::from(format!("data/tpch-sf{sf}"));
    if !dir.join("lineitem").exists() {
        eprintln!("generating TPC-H SF {sf} into {}", dir.display());
        let started = Instant::now();
        tpch::write_tables(&dir, sf, 4)?;
        eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
    }
    let answers = dir.join("answers");
    std::fs::create_dir_all(&answers)?;
    let only: Option<usize> = std::env::var("CHORUS_TPCH_QUERY").ok().map(|q| q.parse()).transpose()?;
    let queries = queries(only);
    let reps = args.reps.to_string();
    let dir_arg = dir.display().to_string();
    // (column name, per query: outcome)
    let mut columns: Vec<(String, Vec<Outcome>)> = Vec::new();
    if args.reference {
        let mut outcomes = Vec::new();
        for &n in &queries {
            let answer = answers.join(format!("datafusion-q{n}.txt"));
            let run = Job::new(1, n).arg("--datafusion");
            outcomes.push(run.run(&dir_arg, &reps, &answer, args.timeout));
            report(&format!("tpch_sf{sf}_datafusion_q{n}"), &outcomes[outcomes.len() - 1]);
        }
        columns.push(("DataFusion, 1 process".into(), outcomes));
    }
    if let Some(python) = &args.duckdb {
        let sql = dir.join("queries");
        std::fs::create_dir_all(&sql)?;
        let mut outcomes = Vec::new();
        for &n in &queries {
            std::fs::write(sql.join(format!("q{n}.sql")), query_sql(n)?)?;
            let mut command = Command::new(python);
            command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch_duckdb.py")).arg(&dir).arg(n.to_string()).arg(&reps);
            let outcome = Job { command }.outcome(args.timeout);
            report(&format!("tpch_sf{sf}_duckdb_q{n}"), &outcome);
            outcomes.push(outcome);
        }
        columns.push(("DuckDB, 1 process".into(), outcomes));
    }
    for memory in &args.memory {
        for &ranks in &args.ranks {
            let (label, tag) = match memory.as_str() {
                "default" => (format!("chorus {ranks} ranks"), String::new()),
                m => (format!("chorus {ranks} ranks, pool {m}"), format!("_mem{m}")),
            };
            let mut outcomes = Vec::new();
            for &n in &queries {
                let answer = answers.join(format!("chorus{ranks}{tag}-q{n}.txt"));
                let mut run = Job::new(ranks, n);
                if memory != "default" {
                    run = run.env("CHORUS_FRAME_MEMORY_LIMIT", memory);
                }
                let mut outcome = run.run(&dir_arg, &reps, &answer, args.timeout);
                if args.reference && outcome.failure.is_none() {
                    let reference = answers.join(format!("datafusion-q{n}.txt"));
                    outcome.matches = Some(std::fs::read(&reference).ok() == std::fs::read(&answer).ok());
                }
                report(&format!("tpch_sf{sf}_chorus{ranks}{tag}_q{n}"), &outcome);
                outcomes.push(outcome);
            }
            columns.push((label, outcomes));
        }
    }
    print_table(sf, &queries, &columns);
    Ok(())
}

/// What one query's job gave.
#[derive(Debug, Default)]
struct Outcome {
    seconds: Option<f64>,
    /// Peak resident memory of the largest process, in MB.
    rss_mb: Option<f64>,
    /// The same answer as DataFusion's (with `--reference`).
    matches: Option<bool>,
    failure: Option<String>,
}

fn report(name: &str, outcome: &Outcome) {
    match (&outcome.failure, outcome.seconds, outcome.rss_mb) {
        (Some(failure), ..) => println!("# {name}: FAILED: {failure}"),
        (None, Some(seconds), Some(rss)) => {
            println!("RESULT {name}={seconds:.4} s");
            println!("RESULT {name}_rss={rss:.0} MB");
            if outcome.matches == Some(false) {
                println!("# {name}: the answer differs from DataFusion's");
            }
        }
        _ => println!("# {name}: no figures"),
    }
}

fn print_table(sf: f64, queries: &[usize], columns: &[(String, Vec<Outcome>)]) {
    println!("\nTPC-H SF {sf}: seconds (median) / peak MB of the largest process; ✓ = same answer as DataFusion\n");
    println!("| query | {} |", columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    let cell = |o: &Outcome| match (&o.failure, o.seconds, o.rss_mb) {
        (Some(f), ..) => format!("failed: {}", f.chars().take(100).collect::<String>()),
        (None, Some(s), Some(m)) => {
            format!("{s:.2} s / {m:.0} MB{}", match o.matches { Some(true) => " ✓", Some(false) => " ✗ differs", None => "" })
        }
        _ => "–".into(),
    };
    for (i, n) in queries.iter().enumerate() {
        println!("| q{n} | {} |", columns.iter().map(|(_, o)| cell(&o[i])).collect::<Vec<_>>().join(" | "));
    }
    let totals: Vec<String> = columns
        .iter()
        .map(|(_, o)| {
            let done = o.iter().filter(|o| o.failure.is_none()).count();
            let seconds: f64 = o.iter().filter_map(|o| o.seconds).sum();
            let peak = o.iter().filter_map(|o| o.rss_mb).fold(0.0, f64::max);
            format!("{done}/{} ran, {seconds:.1} s, peak {peak:.0} MB", o.len())
        })
        .collect();
    println!("| all | {} |", totals.join(" | "));
}

/// One TPC-H query in a process (DataFusion) or job (chorus) of its own.
struct Job {
    command: Command,
}

impl Job {
    fn new(ranks: usize, query: usize) -> Job {
        let mut command = Command::new(std::env::current_exe().expect("this program's path"));
        command.env("CHORUS_PROCS", ranks.to_string()).env("CHORUS_TPCH_QUERY", query.to_string());
        Job { command }
    }

    fn arg(mut self, arg: &str) -> Job {
        self.command.arg(arg);
        self
    }

    fn env(mut self, name: &str, value: &str) -> Job {
        self.command.env(name, value);
        self
    }

    fn run(mut self, dir: &str, reps: &str, answer: &Path, timeout: Duration) -> Outcome {
        let _ = std::fs::remove_file(answer);
        self.command.args(["--tpch-run", dir, "--reps", reps, "--answer"]).arg(answer);
        self.outcome(timeout)
    }

    /// Runs the job's command and reads the `seconds=` and `rss_max_mb=` it prints.
    fn outcome(mut self, timeout: Duration) -> Outcome {
        let out = match output_within(&mut self.command, timeout) {
            Ok(out) => out,
            Err(e) => return Outcome { failure: Some(format!("{e:#}")), ..Outcome::default() },
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The first line of the error the program returned (a backtrace may follow).
            let why = stderr.lines().find_map(|l| l.strip_prefix("Error: ")).unwrap_or(stderr.trim()).to_string();
            return Outcome { failure: Some(format!("{}: {why}", out.status)), ..Outcome::default() };
        }
        let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok());
        Outcome { seconds: field("seconds="), rss_mb: field("rss_max_mb="), ..Outcome::default() }
    }
}

/// Runs `command` to its end, or kills it after `timeout` (its ranks see rank 0 go and
/// end too).
fn output_within(command: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {} s; killed", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Child mode: runs the TPC-H queries (all, or `CHORUS_TPCH_QUERY`) `reps` times, in this
/// chorus job or in DataFusion alone; prints the median time of each and this job's peak
/// memory, and writes the last answer to `answer`.
fn run_tpch(dir: &Path, datafusion: bool, reps: usize, answer: Option<&Path>) -> anyhow::Result<()> {
    let only: Option<usize> = std::env::var("CHORUS_TPCH_QUERY").ok().and_then(|q| q.parse().ok());
    let queries = queries(only);
    let reps = reps.max(1);
    let mut last = Vec::new();
    let mut times = Vec::new();
    let rank0;
    let rss_max;
    if datafusion {
        use chorus::frame::datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;
        runtime.block_on(async {
            for table in tpch::TABLES {
                let path = dir.join(table).display().to_string();
                ctx.register_parquet(table, &path, ParquetReadOptions::default()).await?;
            }
            for &n in &queries {
                for _ in 0..reps {
                    let started = Instant::now();
                    last = ctx.sql(&query_sql(n)?).await?.collect().await?;
                    times.push((n, started.elapsed().as_secs_f64()));
                }
            }
            anyhow::Ok(())
        })?;
        rank0 = true;
        rss_max = peak_rss_mb();
    } else {
        let ctx = join()?;
        for table in tpch::TABLES {
            ctx.register_parquet(table, dir.join(table))?;
        }
        let world = ctx.world().context("an SPMD job")?;
        for &n in &queries {
            for _ in 0..reps {
                world.barrier()?;
                let started = Instant::now();
                last = ctx.sql(&query_sql(n)?)?.collect()?;
                times.push((n, started.elapsed().as_secs_f64()));
                if only.is_some() && ctx.rank() == 0 {
                    eprintln!("q{n}: {:.3} s, {:?}", times[times.len() - 1].1, ctx.last_exchange_stats());
                }
            }
        }
        rank0 = ctx.rank() == 0;
        rss_max = world.gatherv(0, &peak_rss_mb())?.map(|all| all.iter().copied().fold(0.0, f64::max)).unwrap_or_default();
    }
    if rank0 {
        for &n in &queries {
            let mut t: Vec<f64> = times.iter().filter(|(q, _)| *q == n).map(|(_, s)| *s).collect();
            println!("RESULT tpch_q{n}={:.4} s", median(&mut t));
        }
        if let [n] = queries[..] {
            let mut t: Vec<f64> = times.iter().map(|(_, s)| *s).collect();
            println!("seconds={}\nrss_max_mb={rss_max}", median(&mut t));
            if let Some(path) = answer {
                std::fs::write(path, tpch::answer(&last, tpch::is_ordered(n)).join("\n"))?;
            }
        }
    }
    Ok(())
}
