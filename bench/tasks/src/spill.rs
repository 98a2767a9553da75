//! `--spill`: results three times the workers' combined memory limit (2 workers of
//! 256 MiB, 1.5 GiB of 16 MiB blocks by default), then a pass that reads every block
//! back. Prints the workers' spill (write) and unspill (read back) throughput, as their
//! heartbeats measure it, beside `dd` writing and reading a file of the same size in the
//! same directory: through the page cache (what a spill does: no fsync) and with
//! `conv=fdatasync` (the disk's own), and each worker's peak RSS against its limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chorus::tasks::PodVec;
use chorus::LocalCluster;

use crate::emit;

const MB: u64 = 1 << 20;

/// `mb` MiB of u64s that depend on `seed`.
#[chorus::remote]
pub fn spill_block(seed: u64, mb: u64) -> PodVec<u64> {
    let n = (mb * MB / 8) as usize;
    PodVec((0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed).collect())
}

#[chorus::remote]
pub fn spill_checksum(v: PodVec<u64>) -> u64 {
    v.0.iter().fold(0u64, |a, x| a.wrapping_add(*x))
}

fn expected(seed: u64, mb: u64) -> u64 {
    (0..mb * MB / 8).fold(0u64, |a, i| a.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed))
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// Runs `dd` and returns its throughput in MB/s (10^6 bytes), from its own report.
fn dd(args: &[String]) -> Result<f64> {
    let out = Command::new("dd").args(args).output().context("running dd")?;
    let report = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("dd {args:?} failed: {report}");
    }
    // "... copied, 1.23 s, 456 MB/s" (or GB/s)
    let last = report.lines().last().unwrap_or_default();
    let mut words = last.rsplit(", ").next().unwrap_or_default().split_whitespace();
    let value: f64 = words.next().and_then(|v| v.replace(',', ".").parse().ok()).with_context(|| format!("dd's report: {last}"))?;
    Ok(match words.next() {
        Some("GB/s") => value * 1e3,
        Some("kB/s") => value / 1e3,
        _ => value,
    })
}

fn dd_figures(dir: &Path, bytes: u64) -> Result<()> {
    let file = dir.join("dd.tmp");
    let of = format!("of={}", file.display());
    let count = format!("count={}", bytes / (16 * MB));
    for (name, sync) in [("dd_write_cached", false), ("dd_write_fdatasync", true)] {
        let mut args = vec!["if=/dev/zero".to_string(), of.clone(), "bs=16M".into(), count.clone()];
        if sync {
            args.push("conv=fdatasync".into());
        }
        emit(name, vec![dd(&args)?], "MB/s");
    }
    emit("dd_read_cached", vec![dd(&[format!("if={}", file.display()), "of=/dev/null".into(), "bs=16M".into()])?], "MB/s");
    std::fs::remove_file(&file)?;
    Ok(())
}

pub fn run(total_mb: u64, limit_mb: u64, dir: Option<&str>) -> Result<()> {
    let dir = dir.map_or_else(|| std::env::temp_dir().join(format!("chorus-bench-spill-{}", std::process::id())), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let mb = 16u64;
    let blocks = total_mb / mb;
    let limit = limit_mb * MB;
    let cluster = LocalCluster::builder().workers(2).threads_per_worker(1).memory_limit(limit).spill_dir(&dir).start()?;
    let client = cluster.client();
    let t = Instant::now();
    let futures = client.map_args(spill_block, (0..blocks).map(|s| (s, mb)));
    let (done, _) = client.wait(&futures, chorus::tasks::WaitFor::AllCompleted, None);
    anyhow::ensure!(done.len() == futures.len(), "{} of {blocks} blocks were made", done.len());
    println!("# made {blocks} blocks of {mb} MiB on 2 workers of {limit_mb} MiB in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sums = client.gather(&client.map(spill_checksum, futures.iter().cloned()))?;
    println!("# read every block back in {:.1} s", t.elapsed().as_secs_f64());
    for (seed, sum) in sums.iter().enumerate() {
        anyhow::ensure!(*sum == expected(seed as u64, mb), "block {seed} came back wrong");
    }
    // Heartbeats carry the figures once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let snap = cluster.snapshot(Default::default())?;
    let (mut written, mut write_us, mut read, mut read_us) = (0, 0, 0, 0);
    for w in &snap.workers {
        written += w.spill_io.0;
        write_us += w.spill_io.1;
        read += w.unspill_io.0;
        read_us += w.unspill_io.1;
    }
    // Bytes per µs is MB/s; the workers' time is summed, so this is per worker.
    let rate = |bytes: u64, micros: u64| if micros == 0 { 0.0 } else { bytes as f64 / micros as f64 };
    println!("# spilled {} MiB, read back {} MiB (both workers)", written / MB, read / MB);
    emit("chorus_spill_write", vec![rate(written, write_us)], "MB/s");
    emit("chorus_spill_read", vec![rate(read, read_us)], "MB/s");
    for (i, pid) in cluster.worker_pids().into_iter().enumerate() {
        emit(&format!("chorus_spill_worker{i}_peak_rss"), vec![(peak_rss(pid) / MB) as f64], "MiB");
    }
    println!("# limit {limit_mb} MiB per worker; the aim is a peak under {} MiB (limit + 20%)", limit_mb + limit_mb / 5);
    drop(sums);
    drop(futures);
    drop(client);
    drop(cluster);
    dd_figures(&dir, blocks * mb * MB / 2)?;
    if !std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
        println!("# note: {} is not empty after the workers left", dir.display());
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
