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
) -> anyhow::Result<ExitCode> {
    chorus::comm::diag::set_process_tag("scheduler");
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
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[allow(clippy::too_many_arguments)]
pub fn worker(
    scheduler: &str,
    nworkers: usize,
    nthreads: u32,
    memory_limit: u64,
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
        memory_limit,
        listen: None,
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
    let mut worst = 0u8;
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            eprintln!("chorus: worker pid {} ended: {status}", c.id());
            worst = worst.max(status.code().unwrap_or(1).clamp(1, 255) as u8);
        }
    }
    Ok(ExitCode::from(worst))
}

pub fn status(address: &str, cluster_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let secret = secret(cluster_file.as_ref())?;
    let st = remote_status(address, &secret)?;
    println!("scheduler {address}: {} workers, {} clients, {} tasks ({} waiting)", st.workers.len(), st.clients, st.tasks, st.waiting);
    println!("{:>6} {:>8} {:<16} {:>7} {:>10} {:>8} {:>10} {:>10}", "worker", "pid", "host", "threads", "processing", "objects", "stored MB", "rss MB");
    for w in &st.workers {
        println!(
            "{:>6} {:>8} {:<16} {:>7} {:>10} {:>8} {:>10.1} {:>10.1}",
            w.info.id,
            w.info.pid,
            w.info.host,
            w.info.nthreads,
            w.processing,
            w.objects,
            w.stored as f64 / 1e6,
            w.rss as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
