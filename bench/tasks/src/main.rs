//! Task-layer benchmarks, the workloads of shared/peers' Dask and Ray scripts:
//!
//! - `map`: map of N no-op `inc` tasks + gather (tasks/s), for each N of `--map`
//!   (default 10,000, 100,000 and 1,000,000; add 10,000,000 for the scaling check);
//! - `rtt`: sequential submit → result round trips (µs each);
//! - `tree`: tree reduction over 8192 leaves (16,383 tasks, s);
//! - `scatter`: scatter then gather of 100 MB as `Vec<u8>` (GB/s, bytes moved both ways
//!   over the time of both; and each half alone);
//! - `start`: local cluster start until every worker joined, for 2 and 4 workers (ms).
//!
//! Prints `RESULT name=value unit` lines (median of the repetitions), like the peers.
//! `--only start,map,rtt,tree,scatter` runs only the workloads named (all by default),
//! for profiling one of them.
//!
//!     cargo run --release -p bench-tasks -- [--workers 2] [--reps 3] [--map 10000,100000,1000000]
//!
//! With `--spill TOTAL_MB` it instead runs the spill benchmark of [`spill`]
//! (`--memory-limit-mb 256`, `--spill-dir DIR`, default under the system's temporary
//! directory):
//!
//!     cargo run --release -p bench-tasks -- --spill 1536
//!
//! With `--rounds N` it instead runs N rounds of a 4-task map + gather and prints the
//! resident memory of the driver (which embeds the scheduler) and of each worker ten
//! times along the way: the check that memory stays flat over a million rounds.

use std::time::{Duration, Instant};

use anyhow::Result;
use chorus::{Client, LocalCluster};

mod spill;

#[chorus::remote]
fn inc(x: i64) -> i64 {
    x + 1
}

#[chorus::remote]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn emit(name: &str, values: Vec<f64>, unit: &str) {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
    println!("# {name}: values={shown:?}");
    println!("RESULT {name}={:.6} {unit}", median(values));
}

fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn arg(name: &str, default: usize) -> usize {
    arg_text(name).map(|v| v.parse().expect("a number")).unwrap_or(default)
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn rounds(cluster: &LocalCluster, n: usize) -> Result<()> {
    let client = cluster.client();
    let t = Instant::now();
    for r in 1..=n {
        let futs = client.map(inc, 0..4i64);
        assert_eq!(client.gather(&futs)?, vec![1, 2, 3, 4]);
        if r % (n / 10).max(1) == 0 {
            // Heartbeats carry the workers' memory; the status is the scheduler's view.
            let status = cluster.status()?;
            let workers: Vec<String> = status.workers.iter().map(|w| format!("{:.1}", w.rss as f64 / 1048576.0)).collect();
            println!(
                "# round {r}: {:.0} rounds/s, driver+scheduler RSS {:.1} MiB, worker RSS {} MiB, scheduler holds {} tasks",
                r as f64 / t.elapsed().as_secs_f64(),
                rss_bytes() as f64 / 1048576.0,
                workers.join(" / "),
                status.tasks
            );
        }
    }
    Ok(())
}

/// Waits until the scheduler has forgotten every task of the last workload, so that its
/// clean-up is not counted in the next one.
///
/// A scheduler forgetting millions of tasks may take longer than a status request's
/// 10 s to answer; that is waited out too.
fn settle(cluster: &LocalCluster) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(300) {
        match cluster.status() {
            Ok(s) if s.tasks == 0 => break,
            Ok(_) => {}
            Err(e) if e.kind() == chorus::tasks::ErrorKind::Timeout => println!("# settling: {e}"),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn tree(client: &Client, leaves: i64) -> Result<i64> {
    let mut level = client.map(inc, 0..leaves);
    while level.len() > 1 {
        level = client.map_args(add, level.chunks(2).map(|p| (p[0].clone(), p[1].clone())));
    }
    Ok(level[0].result()?)
}

#[chorus::main]
fn main() -> Result<()> {
    let workers = arg("--workers", 2);
    let reps = arg("--reps", 3);
    let sizes: Vec<i64> = arg_text("--map")
        .unwrap_or_else(|| "10000,100000,1000000".into())
        .split(',')
        .map(|v| v.trim().parse().expect("--map takes numbers separated by commas"))
        .collect();
    let rtt_n = arg("--rtt", 10_000);
    let leaves = arg("--leaves", 8192) as i64;
    let mb = arg("--scatter-mb", 100);
    let only = arg_text("--only");
    let runs = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|w| w == name));

    let spill_mb = arg("--spill", 0);
    if spill_mb > 0 {
        return spill::run(spill_mb as u64, arg("--memory-limit-mb", 256) as u64, arg_text("--spill-dir").as_deref());
    }
    let n_rounds = arg("--rounds", 0);
    if n_rounds > 0 {
        let cluster = LocalCluster::builder().workers(workers).threads_per_worker(1).start()?;
        return rounds(&cluster, n_rounds);
    }

    for w in [2, 4].into_iter().filter(|_| runs("start")) {
        let mut starts = Vec::new();
        for _ in 0..reps {
            let c = LocalCluster::builder().workers(w).threads_per_worker(1).start()?;
            starts.push(c.startup_time().as_secs_f64() * 1e3);
        }
        emit(&format!("chorus_start_{w}w"), starts, "ms");
    }

    let cluster = LocalCluster::builder().workers(workers).threads_per_worker(1).start()?;
    let client = cluster.client();
    client.gather(&client.map(inc, 0..1000i64))?;

    for &n in sizes.iter().filter(|_| runs("map")) {
        let mut v = Vec::new();
        // Maps of millions of tasks take seconds each: fewer repetitions.
        let reps = if n >= 1_000_000 { reps.min(2) } else { reps };
        for r in 0..reps {
            let t = Instant::now();
            let futs = client.map(inc, 0..n);
            let res = client.gather(&futs)?;
            let dt = t.elapsed().as_secs_f64();
            assert_eq!(res.len() as i64, n);
            assert_eq!(res.iter().sum::<i64>(), n * (n + 1) / 2);
            drop((futs, res));
            println!("#   map N={n} rep={r} {dt:.3}s, driver+scheduler RSS {:.0} MiB", rss_bytes() as f64 / 1048576.0);
            v.push(n as f64 / dt);
            settle(&cluster)?;
        }
        emit(&format!("chorus_map_tput_{n}"), v, "tasks/s");
    }

    if runs("rtt") {
        let mut v = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            for i in 0..rtt_n as i64 {
                assert_eq!(client.submit(inc, (i,)).result()?, i + 1);
            }
            v.push(t.elapsed().as_secs_f64() / rtt_n as f64 * 1e6);
        }
        emit("chorus_rtt", v, "us");
    }

    if runs("tree") {
        let mut v = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let total = tree(&client, leaves)?;
            v.push(t.elapsed().as_secs_f64());
            assert_eq!(total, (1..=leaves).sum::<i64>());
        }
        emit(&format!("chorus_tree_{leaves}"), v, "s");
    }
    if !runs("scatter") {
        return Ok(());
    }

    let data: Vec<u8> = (0..mb << 20).map(|i| i as u8).collect();
    let chunk = data.len() / workers;
    let (mut v, mut scatter, mut gather) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let parts: Vec<Vec<u8>> = data.chunks(chunk).map(<[u8]>::to_vec).collect();
        let t = Instant::now();
        let futs = client.scatter(parts)?;
        let half = t.elapsed().as_secs_f64();
        let back: Vec<Vec<u8>> = client.gather(&futs)?;
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(back.concat(), data);
        v.push(2.0 * data.len() as f64 / dt / 1e9);
        scatter.push(data.len() as f64 / half / 1e9);
        gather.push(data.len() as f64 / (dt - half) / 1e9);
    }
    emit(&format!("chorus_scatter_{mb}MB"), scatter, "GB/s");
    emit(&format!("chorus_gather_{mb}MB"), gather, "GB/s");
    emit(&format!("chorus_scatter_gather_{mb}MB"), v, "GB/s");
    drop(client);
    drop(cluster);
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
