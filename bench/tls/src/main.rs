//! What TLS costs beside plain TCP, between two hosts.
//!
//! The hosts are two network namespaces joined by a veth pair (10.124.0.1 and
//! 10.124.0.2), so this needs root and iproute2:
//!
//!     target/release/bench-tls [--reps 5] [--rtt 5000]
//!
//! For `CHORUS_TLS=off` and then the default (TLS between hosts), it runs
//!
//! - a job of two ranks, one per host, timing `bcast_slice` of 100 MB;
//! - a scheduler and a driver on the first host and a worker on the second, timing task
//!   round trips (submit one no-op task, wait for its result) and scatter + gather of
//!   100 MB through the worker;
//!
//! and prints `RESULT` lines (medians of `--reps`) and the ratio of each figure with TLS
//! to the one without. The veth link runs at memory speed, so the ratios show the CPU cost
//! of encryption itself; on a real network the link takes a larger share.
//!
//! The program plays every part: the processes it starts are itself, told their role by
//! `BENCH_TLS_ROLE`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chorus::tasks::{ProgramPolicy, SchedulerConfig, SchedulerServer, ServerConfig};
use chorus::{Client, Secret};

const HOSTS: [&str; 2] = ["10.124.0.1", "10.124.0.2"];
const BCAST_BYTES: usize = 100_000_000;
const SCHEDULER_PORT: u16 = 47210;
const COORDINATOR_PORT: u16 = 47211;

#[chorus::remote]
fn noop(x: u64) -> u64 {
    x
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .map(|i| args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A worker never gets here: `#[chorus::main]` runs the worker loop first when
/// `CHORUS_WORKER_SCHEDULER` is set.
#[chorus::main]
fn main() -> Result<()> {
    let reps = arg("--reps", 5);
    match std::env::var("BENCH_TLS_ROLE").as_deref() {
        Ok("rank") => rank(reps),
        Ok("scheduler") => scheduler(),
        Ok("driver") => driver(reps, arg("--rtt", 5000)),
        Ok(other) => bail!("unknown BENCH_TLS_ROLE {other}"),
        Err(_) => orchestrate(),
    }
}

/// A rank of the two-rank job: rank 0 prints the median bandwidth of `bcast_slice`.
fn rank(reps: usize) -> Result<()> {
    let world = chorus::init()?;
    let mut buf = vec![if world.rank() == 0 { 7u8 } else { 0 }; BCAST_BYTES];
    let iters = 5;
    let mut rates = Vec::new();
    for rep in 0..=reps {
        world.barrier()?;
        let t = Instant::now();
        for _ in 0..iters {
            world.bcast_slice(0, &mut buf)?;
        }
        world.barrier()?;
        if rep > 0 {
            rates.push((BCAST_BYTES * iters) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    assert_eq!(buf[BCAST_BYTES - 1], 7);
    if world.rank() == 0 {
        println!("bcast {:.3}", median(rates));
    }
    world.finalize()?;
    Ok(())
}

/// A scheduler on the first host, serving until it is killed.
fn scheduler() -> Result<()> {
    let secret = Secret::from_env()?.context("the scheduler needs CHORUS_SECRET")?;
    let server = SchedulerServer::start(ServerConfig {
        listen: format!("{}:{SCHEDULER_PORT}", HOSTS[0]),
        unix: false,
        secret,
        program: ProgramPolicy::FirstToJoin,
        heartbeat_timeout: Duration::from_secs(60),
        scheduler: SchedulerConfig::default(),
        limits: chorus::settings::Limits::get()?,
        dashboard: None,
    })?;
    println!("ready {}", server.address());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The driver: task round trips, then scatter + gather of 100 MB through the worker.
fn driver(reps: usize, n: usize) -> Result<()> {
    let secret = Secret::from_env()?.context("the driver needs CHORUS_SECRET")?;
    let client = Client::connect_with_secret(&format!("{}:{SCHEDULER_PORT}", HOSTS[0]), secret)?;
    client.wait_for_workers(1, Duration::from_secs(30))?;
    for i in 0..500 {
        client.submit(noop, (i,)).result()?;
    }
    let mut rtts = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for i in 0..n as u64 {
            assert_eq!(client.submit(noop, (i,)).result()?, i);
        }
        rtts.push(t.elapsed().as_secs_f64() / n as f64 * 1e6);
    }
    println!("rtt {:.1}", median(rtts));
    let data = vec![3u8; BCAST_BYTES];
    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let f = client.scatter(vec![data.clone()])?;
        let back = client.gather(&f)?;
        rates.push(2.0 * BCAST_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9);
        assert_eq!(back[0].len(), BCAST_BYTES);
    }
    println!("scatter_gather {:.3}", median(rates));
    Ok(())
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct Hosts {
    names: [String; 2],
}

impl Hosts {
    fn create() -> Result<Hosts> {
        let tag = std::process::id() % 100_000;
        let hosts = Hosts { names: [format!("chorus-bt{tag}-a"), format!("chorus-bt{tag}-b")] };
        let (a, b) = (format!("bt{tag}a"), format!("bt{tag}b"));
        for name in &hosts.names {
            ip(&["netns", "add", name])?;
        }
        ip(&["link", "add", &a, "netns", &hosts.names[0], "type", "veth", "peer", "name", &b, "netns", &hosts.names[1]])?;
        for (i, (name, dev)) in hosts.names.iter().zip([&a, &b]).enumerate() {
            ip(&["-n", name, "addr", "add", &format!("{}/24", HOSTS[i]), "dev", dev])?;
            ip(&["-n", name, "link", "set", dev, "up"])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// This program on host `i` in `role`, with `CHORUS_TLS=tls`.
    fn start(&self, i: usize, role: &str, tls: &str, secret: &Secret, extra: &[(&str, String)]) -> Result<Child> {
        let me = std::env::current_exe()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[i]])
            .arg(me)
            .args(std::env::args().skip(1))
            .env("BENCH_TLS_ROLE", role)
            .env("CHORUS_TLS", tls)
            .env("CHORUS_SECRET", secret.to_hex())
            .stdout(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Ok(cmd.spawn()?)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("`ip {}` failed: {} (this benchmark needs root)", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Waits for `child` and returns the value of its output line `key value`.
fn figure(child: Child, key: &str) -> Result<f64> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("a benchmark process failed ({}); it printed:\n{text}", out.status);
    }
    read_figure(&text, key)
}

fn read_figure(text: &str, key: &str) -> Result<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .with_context(|| format!("no `{key}` line in:\n{text}"))
}

fn orchestrate() -> Result<()> {
    let hosts = Hosts::create()?;
    let secret = Secret::generate()?;
    let mut table = Vec::new();
    for tls in ["off", "auto"] {
        let coordinator = ("CHORUS_COORDINATOR", format!("{}:{COORDINATOR_PORT}", HOSTS[0]));
        let ranks: Vec<Child> = (0..2)
            .map(|r| hosts.start(r, "rank", tls, &secret, &[coordinator.clone(), ("PMI_RANK", r.to_string()), ("PMI_SIZE", "2".into())]))
            .collect::<Result<_>>()?;
        let mut ranks = ranks.into_iter();
        let bcast = figure(ranks.next().expect("rank 0"), "bcast")?;
        ranks.next().expect("rank 1").wait()?;

        let mut scheduler = hosts.start(0, "scheduler", tls, &secret, &[])?;
        let mut ready = String::new();
        BufReader::new(scheduler.stdout.as_mut().expect("piped")).read_line(&mut ready)?;
        if !ready.starts_with("ready") {
            bail!("the scheduler did not start");
        }
        let worker_env = [("CHORUS_WORKER_SCHEDULER", format!("{}:{SCHEDULER_PORT}", HOSTS[0]))];
        let mut worker = hosts.start(1, "worker", tls, &secret, &worker_env)?;
        let driver = hosts.start(0, "driver", tls, &secret, &[])?.wait_with_output()?;
        let _ = worker.kill();
        let _ = scheduler.kill();
        let _ = (worker.wait(), scheduler.wait());
        let text = String::from_utf8_lossy(&driver.stdout).into_owned();
        if !driver.status.success() {
            bail!("the driver failed ({}); it printed:\n{text}", driver.status);
        }
        let (rtt, sg) = (read_figure(&text, "rtt")?, read_figure(&text, "scatter_gather")?);
        let name = if tls == "off" { "plain" } else { "tls" };
        println!("RESULT chorus_2hosts_{name}_bcast_100MB={bcast:.3} GB/s");
        println!("RESULT chorus_2hosts_{name}_task_rtt={rtt:.1} us");
        println!("RESULT chorus_2hosts_{name}_scatter_gather_100MB={sg:.3} GB/s");
        table.push((bcast, rtt, sg));
    }
    let ((pb, pr, ps), (tb, tr, ts)) = (table[0], table[1]);
    println!("# TLS / plain: bcast 100 MB {:.2}x the bandwidth, task round trip {:.2}x the time, scatter+gather {:.2}x the bandwidth", tb / pb, tr / pr, ts / ps);
    Ok(())
}
