//! `chorus scheduler`, `chorus worker` and `chorus status`: a standing task cluster.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chorus::tasks::{
    parse_resources, remote_status, ClusterFile, ProgramPolicy, SchedulerConfig, SchedulerServer, ServerConfig,
    WorkerConfig,
};
use chorus::Secret;

/// The secret from the environment, else from the cluster file.
fn secret(cluster_file: Option<&PathBuf>) -> anyhow::Result<Secret> {
    if let Some(s) = Secret::from_env()? {
        return Ok(s);
    }
    let path = match cluster_file {
        Some(p) => p.clone(),
        None => ClusterFile::default_path()?,
    };
    Ok(ClusterFile::read(&path)?.secret)
}

pub fn scheduler(
    listen: &str,
    cluster_file: Option<PathBuf>,
    heartbeat_timeout: u64,
    allowed_failures: u32,
    dashboard: Option<chorus::dashboard::Bind>,
    trace: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    chorus::comm::diag::set_process_tag("scheduler");
    // Before any thread starts, so that every thread inherits the mask: SIGINT and
    // SIGTERM are then taken only by `sigtimedwait` below, which writes the trace.
    let stop_signals = trace.as_ref().map(|_| block_stop_signals()).transpose()?;
    let secret = match Secret::from_env()? {
        Some(s) => s,
        None => Secret::generate()?,
    };
    let server = SchedulerServer::start(ServerConfig {
        listen: listen.to_string(),
        unix: false,
        secret: secret.clone(),
        program: ProgramPolicy::FirstToJoin,
        heartbeat_timeout: Duration::from_secs(heartbeat_timeout),
        scheduler: SchedulerConfig { allowed_failures, ..SchedulerConfig::default() },
        limits: chorus::settings::Limits::get()?,
        dashboard,
    })?;
    let path = match cluster_file {
        Some(p) => p,
        None => ClusterFile::default_path()?,
    };
    ClusterFile { address: server.address().to_string(), secret }.write(&path)?;
    // Whoever started the scheduler may stop reading its output; it keeps running.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "chorus scheduler at {}", server.address());
    let _ = writeln!(out, "cluster file (address and secret, owner-only): {}", path.display());
    let _ = writeln!(out, "start workers with: chorus worker --scheduler {} PROGRAM", server.address());
    if let Some(d) = server.dashboard() {
        if let Some(port) = d.displaced() {
            let _ = writeln!(out, "port {port} is in use: the dashboard took the next free one");
        }
        let _ = writeln!(out, "Dashboard: {}", d.link());
    }
    if let Some(path) = &trace {
        let _ = writeln!(out, "task stream trace (Chrome trace-event JSON, every {} s and at exit): {}", TRACE_EVERY.as_secs(), path.display());
    }
    let _ = out.flush();
    drop(out);
    let (Some(path), Some(signals)) = (trace, stop_signals) else {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    };
    let mut written = None;
    loop {
        let signal = wait_for_signal(&signals, TRACE_EVERY);
        // Only when tasks have run since the last write.
        let next = server.snapshot(chorus::dashboard::model::SnapshotQuery { events_since: u64::MAX, memory_since_us: None })?.next_event;
        if written != Some(next) || signal.is_some() {
            let snap = server.snapshot(chorus::dashboard::model::SnapshotQuery::default())?;
            chorus::dashboard::report::write_chrome_trace(&snap, &path).with_context(|| format!("writing the trace {}", path.display()))?;
            written = Some(next);
        }
        if let Some(signal) = signal {
            eprintln!("chorus scheduler: stopped by signal {signal}; trace written to {}", path.display());
            return Ok(ExitCode::from(128 + signal as u8));
        }
    }
}

/// How often `chorus scheduler --trace` rewrites its trace file.
const TRACE_EVERY: Duration = Duration::from_secs(5);

/// Blocks SIGINT and SIGTERM in this thread (and every thread it starts from now on).
fn block_stop_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        anyhow::ensure!(rc == 0, "blocking SIGINT and SIGTERM: {}", std::io::Error::from_raw_os_error(rc));
        Ok(set)
    }
}

/// Waits up to `timeout` for one of `signals` (blocked beforehand); the signal's number.
fn wait_for_signal(signals: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: `signals` is a valid set and the info pointer may be null.
    let n = unsafe { libc::sigtimedwait(signals, std::ptr::null_mut(), &ts) };
    (n > 0).then_some(n)
}

/// `chorus worker`'s memory flags.
pub struct MemoryFlags {
    /// Bytes per worker (0: none).
    pub limit: u64,
    /// Where workers spill.
    pub spill_dir: Option<PathBuf>,
    /// Bytes each may spill at most.
    pub max_spill: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
pub fn worker(
    scheduler: &str,
    nworkers: usize,
    nthreads: u32,
    memory: MemoryFlags,
    resources: &str,
    cluster_file: Option<PathBuf>,
    program: PathBuf,
    args: &[OsString],
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(nworkers > 0, "--nworkers must be at least 1");
    let secret = secret(cluster_file.as_ref()).context("finding the cluster secret")?;
    let config = WorkerConfig {
        scheduler: scheduler.to_string(),
        secret,
        nthreads,
        resources: parse_resources(resources)?,
        memory_limit: memory.limit,
        listen: None,
        spill_dir: memory.spill_dir,
        max_spill: memory.max_spill,
    };
    let mut children = Vec::new();
    for i in 0..nworkers {
        let child = config
            .command(&program, args)
            .spawn()
            .with_context(|| format!("starting worker {i} ({})", program.display()))?;
        children.push(child);
    }
    eprintln!("chorus: {nworkers} worker(s) of {} joining {scheduler}", program.display());
    // This process is the workers' nanny: one that exceeds its memory limit is replaced.
    let args = args.to_vec();
    let spill_base = config.spill_base();
    let nanny = chorus::tasks::Nanny::start(children, spill_base, move |_| config.command(&program, &args).spawn());
    let mut worst = 0u8;
    for status in nanny.wait() {
        if !status.success() {
            eprintln!("chorus: a worker ended: {status}");
            worst = worst.max(status.code().unwrap_or(1).clamp(1, 255) as u8);
        }
    }
    Ok(ExitCode::from(worst))
}

pub fn status(address: &str, cluster_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let secret = secret(cluster_file.as_ref())?;
    let st = remote_status(address, &secret)?;
    println!("scheduler {address}: {} workers, {} clients, {} tasks ({} waiting)", st.workers.len(), st.clients, st.tasks, st.waiting);
    println!(
        "{:>6} {:>8} {:<16} {:>7} {:>10} {:>8} {:>10} {:>10} {:>11} {:>7}",
        "worker", "pid", "host", "threads", "processing", "objects", "stored MB", "rss MB", "spilled MB", "spills"
    );
    for w in &st.workers {
        println!(
            "{:>6} {:>8} {:<16} {:>7} {:>10} {:>8} {:>10.1} {:>10.1} {:>11.1} {:>7}",
            w.info.id,
            w.info.pid,
            w.info.host,
            w.info.nthreads,
            w.processing,
            w.objects,
            w.stored as f64 / 1e6,
            w.rss as f64 / 1e6,
            w.spilled as f64 / 1e6,
            w.spills
        );
    }
    Ok(ExitCode::SUCCESS)
}
