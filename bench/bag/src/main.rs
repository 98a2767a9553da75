//! Bag and MapReduce workloads of chorus beside Python, multiprocessing and dask.bag on
//! the same data in the same run (`bench/bag/peers.py`, which uses the peers'
//! `bench_wordcount.py`):
//!
//!     target/release/bench-bag [--reps 3] [--peer-reps 3] [--workers 2] [--only wordcount,sequence,groupby]
//!         [--peers ~/.cache/chorus-peers] [--python PEERS/venv-array/bin/python] [--no-peers]
//!         [--words PEERS/data/words_300mb.txt] [--n 5000000] [--pairs 10000000] [--keys 100000]
//!
//! - **wordcount**: the 304.6 MB text of `gen_text.py` (made first when missing), read in
//!   16 MB blocks: `read_text → split_whitespace → frequencies` (the fused path) and
//!   `read_text → flat_map(func!(split)) → frequencies` (a closure that makes a `String`
//!   per word), beside Python's Counter, `multiprocessing` on 2 processes and dask.bag.
//!   Every table is checked against Python's, word for word.
//! - **sequence**: the seed's `db.from_sequence(nums).map(chr).compute()` on 5,000,000
//!   integers below 100, 100 partitions as Dask makes them. (dask.bag takes minutes per
//!   repetition: `--peer-reps 1`.)
//! - **groupby**: 10,000,000 `(i % 100000, i)` pairs made on the workers, grouped by key
//!   through the shuffle, and the size of every group brought back, beside dask.bag's
//!   `groupby(shuffle="tasks")` (one repetition: it takes minutes).
//!
//! chorus runs on a local cluster of `--workers` workers with one thread each, like the
//! peers' dask LocalCluster; a fresh cluster per workload, so that the peak resident
//! memory (VmHWM) printed for every process is that workload's.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chorus::bag::{self as db, ReadText};
use chorus::{func, LocalCluster};

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

/// Starts the peak of `pid` again from its current size.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// The peers' figures of one mode: (name, median seconds) and (name, peak bytes).
struct Peers {
    times: Vec<(String, f64)>,
    peaks: Vec<(String, u64)>,
}

fn peers(python: &str, dir: &str, args: &[&str]) -> Result<Peers> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers.py");
    let out = Command::new(python).arg(script).args(args).args(["--peers", dir]).current_dir(dir).output().with_context(|| format!("running {python} {script}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{script} {args:?} failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    }
    let mut p = Peers { times: Vec::new(), peaks: Vec::new() };
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("RESULT ") {
            if let Some((name, rest)) = r.split_once('=') {
                p.times.push((name.to_string(), rest.split_whitespace().next().unwrap_or("nan").parse().unwrap_or(f64::NAN)));
            }
        } else if let Some(r) = line.strip_prefix("PEAK ") {
            if let Some((name, v)) = r.split_once('=') {
                p.peaks.push((name.to_string(), v.trim().parse().unwrap_or(0)));
            }
        } else if line.starts_with('#') {
            println!("  peers {line}");
        }
    }
    Ok(p)
}

/// A cluster for one workload, and its processes' peaks printed at the end.
struct Run {
    cluster: LocalCluster,
}

impl Run {
    fn start(workers: usize) -> Result<Run> {
        let cluster = LocalCluster::builder().workers(workers).threads_per_worker(1).start()?;
        reset_peak(std::process::id());
        Ok(Run { cluster })
    }

    /// The peak of the driver and of each worker, and their sum.
    fn peaks(&self) -> (Vec<u64>, u64) {
        let mut all = vec![peak_rss(std::process::id())];
        all.extend(self.cluster.worker_pids().into_iter().map(peak_rss));
        let sum = all.iter().sum();
        (all, sum)
    }
}

struct Row {
    workload: String,
    chorus: f64,
    peer: String,
    peer_s: f64,
}

fn time_reps<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Vec<f64>, T)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((times, last.expect("at least one repetition")))
}

fn report(name: &str, times: &[f64], run: &Run) -> f64 {
    let (each, sum) = run.peaks();
    let m = median(times.to_vec());
    println!("RESULT {name}={m:.4} s   (reps {:?})", times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>());
    println!("  peak RSS: driver {}, workers {}; all {}", mb(each[0]), each[1..].iter().map(|&b| mb(b)).collect::<Vec<_>>().join(", "), mb(sum));
    m
}

#[chorus::main]
fn main() -> Result<()> {
    let reps = arg("--reps", 3);
    let peer_reps = arg("--peer-reps", reps).to_string();
    let workers = arg("--workers", 2);
    let dir = arg_text("--peers").unwrap_or_else(|| format!("{}/.cache/chorus-peers", std::env::var("HOME").unwrap_or_default()));
    let python = arg_text("--python").unwrap_or_else(|| format!("{dir}/venv-array/bin/python"));
    let with_peers = !std::env::args().any(|a| a == "--no-peers");
    let only = arg_text("--only").unwrap_or_else(|| "wordcount,sequence,groupby".into());
    let mut rows: Vec<Row> = Vec::new();
    let mut peaks: Vec<(String, u64)> = Vec::new();

    if only.contains("wordcount") {
        let path = arg_text("--words").unwrap_or_else(|| format!("{dir}/data/words_300mb.txt"));
        if !std::path::Path::new(&path).exists() {
            println!("making {path} with gen_text.py");
            let ok = Command::new(&python).arg(format!("{dir}/gen_text.py")).arg(&path).status()?.success();
            if !ok {
                bail!("gen_text.py failed");
            }
        }
        let size = std::fs::metadata(&path)?.len();
        println!("\n== word count of {path} ({:.1} MB), {workers} workers", size as f64 / 1e6);
        let reference: Option<HashMap<String, u64>> = if with_peers {
            let dump = std::env::temp_dir().join(format!("bench-bag-words-{}.json", std::process::id()));
            let p = peers(&python, &dir, &["wordcount", "--path", &path, "--reps", &peer_reps, "--dump", dump.to_str().unwrap_or_default()])?;
            let table: HashMap<String, u64> = serde_json::from_slice(&std::fs::read(&dump)?)?;
            let _ = std::fs::remove_file(&dump);
            for (name, t) in &p.times {
                println!("  {name}: {t:.3} s");
            }
            peaks.extend(p.peaks);
            let mp = p.times.iter().find(|t| t.0 == "wordcount_mp_pool").map_or(f64::NAN, |t| t.1);
            let dask = p.times.iter().find(|t| t.0 == "wordcount_dask_bag").map_or(f64::NAN, |t| t.1);
            let py = p.times.iter().find(|t| t.0 == "wordcount_python").map_or(f64::NAN, |t| t.1);
            rows.push(Row { workload: "word count (fused split_whitespace)".into(), chorus: f64::NAN, peer: "python Counter".into(), peer_s: py });
            rows.push(Row { workload: "word count (fused split_whitespace)".into(), chorus: f64::NAN, peer: "multiprocessing(2)".into(), peer_s: mp });
            rows.push(Row { workload: "word count (fused split_whitespace)".into(), chorus: f64::NAN, peer: "dask.bag".into(), peer_s: dask });
            rows.push(Row { workload: "word count (flat_map closure)".into(), chorus: f64::NAN, peer: "dask.bag".into(), peer_s: dask });
            Some(table)
        } else {
            None
        };
        let run = Run::start(workers)?;
        let client = run.cluster.client();
        let lines = ReadText::new(&path).blocksize(16 << 20).open(&client)?;
        let (times, table) = time_reps(reps, || Ok(lines.split_whitespace().frequencies()?.compute()?))?;
        let fused = report("wordcount_chorus_fused", &times, &run);
        let (times2, table2) = time_reps(reps, || Ok(lines.flat_map(func!(|l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())).frequencies()?.compute()?))?;
        let generic = report("wordcount_chorus_flat_map", &times2, &run);
        let total: u64 = table.iter().map(|w| w.1).sum();
        println!("  {total} words, {} distinct", table.len());
        let a: HashMap<String, u64> = table.into_iter().collect();
        let b: HashMap<String, u64> = table2.into_iter().collect();
        if a != b {
            bail!("the fused and the flat_map word counts differ");
        }
        if let Some(r) = &reference {
            if &a != r {
                bail!("chorus's word count differs from Python's");
            }
            println!("  the full word -> count tables of chorus (both ways), Python, multiprocessing and dask.bag are identical");
        }
        for r in rows.iter_mut() {
            r.chorus = if r.workload.contains("fused") { fused } else { generic };
        }
        if rows.is_empty() {
            rows.push(Row { workload: "word count (fused split_whitespace)".into(), chorus: fused, peer: "-".into(), peer_s: f64::NAN });
        }
    }

    if only.contains("sequence") {
        let n = arg("--n", 5_000_000);
        println!("\n== the seed: from_sequence({n} integers).map(to_char).compute(), {workers} workers");
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let nums: Vec<u32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 100) as u32
            })
            .collect();
        let expect: Vec<char> = nums.iter().map(|&x| char::from_u32(x).unwrap_or('?')).collect();
        let run = Run::start(workers)?;
        let client = run.cluster.client();
        let (times, chars) = time_reps(reps, || Ok(db::from_sequence(&client, nums.iter().copied(), 100)?.map(func!(|x: u32| char::from_u32(x).unwrap_or('?'))).compute()?))?;
        if chars != expect {
            bail!("the characters differ");
        }
        let t = report("sequence_chorus", &times, &run);
        if with_peers {
            let p = peers(&python, &dir, &["sequence", "--n", &n.to_string(), "--reps", &peer_reps])?;
            peaks.extend(p.peaks);
            for (name, v) in p.times {
                rows.push(Row { workload: "from_sequence(5M).map(to_char)".into(), chorus: t, peer: name.trim_start_matches("sequence_").into(), peer_s: v });
            }
        } else {
            rows.push(Row { workload: "from_sequence(5M).map(to_char)".into(), chorus: t, peer: "-".into(), peer_s: f64::NAN });
        }
    }

    if only.contains("groupby") {
        let n = arg("--pairs", 10_000_000) as u64;
        let keys = arg("--keys", 100_000) as u64;
        println!("\n== group_by of {n} (u64, u64) pairs into {keys} keys, 20 partitions, {workers} workers");
        let run = Run::start(workers)?;
        let client = run.cluster.client();
        let pairs = db::range(&client, n, 20)?.map(func!(|i: u64| (i % 100_000, i)));
        if keys != 100_000 {
            bail!("--keys is fixed at 100000: the key function is registered code");
        }
        let (times, sizes) = time_reps(reps, || {
            Ok(pairs.group_by(func!(|p: &(u64, u64)| p.0)).map(func!(|(k, v): (u64, Vec<(u64, u64)>)| (k, v.len() as u64))).compute()?)
        })?;
        if sizes.len() as u64 != keys || sizes.iter().any(|s| s.1 != n / keys) {
            bail!("the groups are wrong");
        }
        let t = report("groupby_chorus", &times, &run);
        if with_peers {
            let p = peers(&python, &dir, &["groupby", "--n", &n.to_string(), "--keys", &keys.to_string(), "--reps", "1"])?;
            peaks.extend(p.peaks);
            for (name, v) in p.times {
                rows.push(Row { workload: "group_by 10M pairs / 100k keys".into(), chorus: t, peer: name.trim_start_matches("groupby_").into(), peer_s: v });
            }
        } else {
            rows.push(Row { workload: "group_by 10M pairs / 100k keys".into(), chorus: t, peer: "-".into(), peer_s: f64::NAN });
        }
    }

    println!("\n| workload | chorus | peer | peer time | peer / chorus |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("| {} | {:.3} s | {} | {:.3} s | {:.1}× |", r.workload, r.chorus, r.peer, r.peer_s, r.peer_s / r.chorus);
    }
    if !peaks.is_empty() {
        println!("\npeers' peak RSS (all processes of the method):");
        for (name, b) in peaks {
            println!("  {name}: {}", mb(b));
        }
    }
    Ok(())
}
