//! Times `(x + x.T).sum()` on a random `n × n` f64 array, the seed's array workload, in
//! chorus beside numpy and dask.array (`shared/peers/bench_array.py`) in the same run:
//!
//!     target/release/bench-array [--n 20000] [--chunk 2000] [--reps 3] [--workers 2]
//!         [--peers ~/.cache/chorus-peers] [--python PEERS/venv/bin/python]
//!         [--peer-modes numpy,dask_threads,dask_cluster] [--no-peers]
//!
//! Then `--dot 8000` (0 skips it) times the product of two random `--dot`² arrays in
//! `--dot-chunk` blocks, made and persisted first, summed, with the block products on
//! OpenBLAS (loaded when the machine has it) and on ndarray's matrixmultiply
//! (`CHORUS_BLAS=off`), beside numpy (its BLAS on every core) and dask.array
//! (`bench/array/dot_peers.py`, same modes).
//!
//! The seed's own size is `--n 50000 --chunk 5000 --peer-modes dask_threads,dask_cluster`
//! (numpy would need twice the 18.6 GiB array).
//!
//! chorus runs on a local cluster of `--workers` workers with one thread each, like the
//! peers' `dask_cluster` mode; each repetition builds and computes the whole thing,
//! random generation included. It prints `RESULT` lines (medians), the peak resident
//! memory of every chorus process, and the peers' figures with the ratio to chorus.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chorus::array as da;
use chorus::LocalCluster;

fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn arg(name: &str, default: usize) -> usize {
    arg_text(name).map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number"))).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The peak resident memory of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs the peers' script in `mode` and returns its RESULT figures by name.
fn peer(python: &str, dir: &str, mode: &str, n: usize, chunk: usize, reps: usize) -> Result<Vec<(String, f64)>> {
    let out = Command::new(python)
        .arg(format!("{dir}/bench_array.py"))
        .args(["--mode", mode, "--n", &n.to_string(), "--chunk", &chunk.to_string(), "--reps", &reps.to_string()])
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {python} {dir}/bench_array.py"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("bench_array.py --mode {mode} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| {
            let (name, rest) = l.split_once('=')?;
            Some((name.to_string(), rest.split_whitespace().next()?.parse().ok()?))
        })
        .collect())
}

#[chorus::main]
fn main() -> Result<()> {
    let n = arg("--n", 20_000);
    let chunk = arg("--chunk", 2_000);
    let reps = arg("--reps", 3);
    let workers = arg("--workers", 2);
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = arg_text("--peers").unwrap_or_else(|| format!("{home}/.cache/chorus-peers"));
    let python = arg_text("--python").unwrap_or_else(|| format!("{dir}/venv/bin/python"));

    let cluster = LocalCluster::builder().workers(workers).threads_per_worker(1).start()?;
    let client = cluster.client();
    let mut times = Vec::new();
    let mut total = 0.0;
    for r in 0..reps {
        let t = Instant::now();
        let x = da::random::uniform(&client, &[n, n], &[chunk, chunk], r as u64)?;
        total = (&x + &x.t()).sum()?.compute_scalar()?;
        times.push(t.elapsed().as_secs_f64());
        println!("#   rep={r} {:.3}s sum={total:.6e}", times[r]);
    }
    let chorus_time = median(times);
    let peaks: Vec<u64> = std::iter::once(std::process::id()).chain(cluster.worker_pids()).map(peak_rss).collect();
    println!("RESULT chorus_array_{workers}w_{n}={chorus_time:.3} s");
    println!(
        "RESULT chorus_array_{workers}w_{n}_peak_rss={:.0} MB (driver {:.0} MB, workers {})",
        peaks.iter().sum::<u64>() as f64 / 1e6,
        peaks[0] as f64 / 1e6,
        peaks[1..].iter().map(|p| format!("{:.0} MB", *p as f64 / 1e6)).collect::<Vec<_>>().join(", ")
    );
    let expected = n as f64 * n as f64;
    if (total - expected).abs() > 0.01 * expected {
        bail!("the sum {total} is far from its expectation {expected}");
    }
    drop(client);
    drop(cluster);
    let dot_n = arg("--dot", 8_000);
    let dot_chunk = arg("--dot-chunk", 2_000);
    let mut dot_time = None;
    if dot_n > 0 {
        // The block products on OpenBLAS (when the machine has it) and on ndarray's
        // matrixmultiply, each on a cluster of its own.
        let mut kernels = Vec::new();
        for (kernel, setting) in [("blas_auto", "auto"), ("matrixmultiply", "off")] {
            let cluster = LocalCluster::builder().workers(workers).threads_per_worker(1).env("CHORUS_BLAS", setting).start()?;
            let client = cluster.client();
            let x = da::random::uniform(&client, &[dot_n, dot_n], &[dot_chunk, dot_chunk], 1)?.persist()?;
            let y = da::random::uniform(&client, &[dot_n, dot_n], &[dot_chunk, dot_chunk], 2)?.persist()?;
            x.sum()?.compute_scalar()?;
            y.sum()?.compute_scalar()?;
            let mut times = Vec::new();
            for r in 0..reps {
                let t = Instant::now();
                let s = x.dot(&y)?.sum()?.compute_scalar()?;
                times.push(t.elapsed().as_secs_f64());
                println!("#   dot ({kernel}) rep={r} {:.3}s sum={s:.6e}", times[r]);
            }
            let t = median(times);
            println!("RESULT chorus_dot_{kernel}_{workers}w_{dot_n}={t:.3} s");
            kernels.push(t);
        }
        println!("# OpenBLAS (CHORUS_BLAS=auto) against matrixmultiply: {:.2}x faster", kernels[1] / kernels[0]);
        dot_time = Some(kernels[0]);
    }

    if std::env::args().any(|a| a == "--no-peers") {
        return Ok(());
    }
    if !std::path::Path::new(&python).exists() {
        println!("# no peers: {python} does not exist (bash shared/peers/setup.sh makes it, or pass --python)");
        return Ok(());
    }
    let modes = arg_text("--peer-modes").unwrap_or_else(|| "numpy,dask_threads,dask_cluster".into());
    for mode in modes.split(',') {
        for (name, value) in peer(&python, &dir, mode, n, chunk, reps)? {
            if name.ends_with("_peak_rss") {
                println!("RESULT {name}={value:.0} MB");
            } else if name == format!("array_{mode}_{n}") || name.starts_with("array_numpy_") {
                println!("RESULT {name}={value:.3} s  ({:.2}x chorus's time)", value / chorus_time);
            }
        }
    }
    if let Some(chorus_dot) = dot_time {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dot_peers.py");
        for mode in modes.split(',') {
            let out = Command::new(&python)
                .args([script, "--mode", mode, "--n", &dot_n.to_string(), "--chunk", &dot_chunk.to_string(), "--reps", &reps.to_string()])
                .output()
                .with_context(|| format!("running {script}"))?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                bail!("dot_peers.py --mode {mode} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
            }
            for line in text.lines().filter_map(|l| l.strip_prefix("RESULT ")) {
                let value: f64 = line.split('=').nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                println!("RESULT {line}  ({:.2}x chorus's time)", value / chorus_dot);
            }
        }
    }
    Ok(())
}
