//! The `chorus` command.
//!
//! `chorus run -n N [--no-prefix] [--] PROGRAM [ARGS…]` starts an SPMD job of N processes
//! on this machine, forwards their output line by line as `[rank] line`, and exits 0 only if
//! every rank does. When a rank fails, the others are stopped and `rank R failed: cause`
//! is printed.
//!
//! `chorus scheduler`, `chorus worker` and `chorus status` run a standing task cluster
//! that drivers join with `Client::connect`.

mod cluster;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chorus", version, about = "Parallel and distributed computing for Rust programs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROGRAM as an SPMD job of N processes on this machine.
    ///
    /// Each rank's output is forwarded line by line as `[rank] line`. The job succeeds only
    /// if every rank exits with status 0. When a rank panics, returns an error from `main`
    /// or dies, the other ranks are stopped, `rank N failed: cause` is printed, and chorus
    /// exits with that rank's status.
    Run {
        /// Number of processes (ranks).
        #[arg(short = 'n', long = "procs", value_name = "N")]
        procs: usize,
        /// Do not prefix output lines with `[rank] `.
        #[arg(long)]
        no_prefix: bool,
        /// Address the rendezvous listens on (ranks connect to it once, at start-up).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
        coordinator: String,
        /// Serve a dashboard of the job's ranks (the collective each is in, whom it waits
        /// for) while it runs: at ADDR, or 127.0.0.1:8787 / the next free port.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "auto")]
        dashboard: Option<String>,
        /// Draw a bar of the ranks as they start and join (on a terminal).
        #[arg(long)]
        progress: bool,
        /// The program to run, then its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]...")]
        command: Vec<OsString>,
    },
    /// Run a task scheduler that workers and drivers (`Client::connect`) join.
    ///
    /// Prints its address and writes it with a fresh cluster secret (or CHORUS_SECRET) to
    /// an owner-only cluster file, which `chorus worker`, `chorus status` and clients read.
    Scheduler {
        /// Address to listen on.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8786")]
        listen: String,
        /// Where to write the address and secret (default ~/.chorus/cluster).
        #[arg(long, value_name = "PATH")]
        cluster_file: Option<PathBuf>,
        /// Seconds a worker may stay silent before it is considered lost.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        heartbeat_timeout: u64,
        /// Times a task may be on a worker that dies before it fails with "killed worker".
        #[arg(long, value_name = "N", default_value_t = 3)]
        allowed_failures: u32,
        /// Where to serve the dashboard: HOST:PORT, :PORT or PORT (default 127.0.0.1:8787,
        /// or the next free port). On an address other than loopback it asks for the
        /// cluster's token: open the link printed at start.
        #[arg(long, value_name = "ADDR", conflicts_with = "no_dashboard")]
        dashboard: Option<String>,
        /// Serve no dashboard.
        #[arg(long)]
        no_dashboard: bool,
        /// Write the task stream to FILE as a Chrome trace-event JSON file (Perfetto opens
        /// it): rewritten every 5 s while tasks run, and a last time when the scheduler is
        /// stopped with SIGINT or SIGTERM.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Start worker processes of PROGRAM (whose main has #[chorus::main]) for a scheduler.
    ///
    /// The secret comes from CHORUS_SECRET / CHORUS_SECRET_FILE or the cluster file.
    Worker {
        /// The scheduler's address.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: String,
        /// Worker processes to start.
        #[arg(long, default_value_t = 1)]
        nworkers: usize,
        /// Threads per worker.
        #[arg(long, default_value_t = 1)]
        nthreads: u32,
        /// Memory limit of each worker: a size (4GiB, 512MB, 1e9), 0 for none, or auto
        /// (the machine's memory divided among the workers). At 60% of it in stored
        /// results a worker spills to disk, at 80% of process memory it starts no new
        /// task, at 95% it is restarted.
        #[arg(long, value_name = "SIZE", default_value = "auto")]
        memory_limit: String,
        /// Where workers spill results to disk (a `worker-PID` directory each, removed
        /// when it exits; default: chorus-spill in the system's temporary directory).
        #[arg(long, value_name = "DIR")]
        spill_dir: Option<PathBuf>,
        /// Bytes each worker may spill at most, a size (default: no cap but the disk's).
        #[arg(long, value_name = "SIZE")]
        max_spill: Option<String>,
        /// Custom resources each worker offers, e.g. GPU=1,MEM=4.
        #[arg(long, default_value = "")]
        resources: String,
        /// The cluster file to read the secret from (default ~/.chorus/cluster).
        #[arg(long, value_name = "PATH")]
        cluster_file: Option<PathBuf>,
        /// The program, then its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]...")]
        command: Vec<OsString>,
    },
    /// Print the workers of a cluster, their tasks and memory.
    Status {
        /// The scheduler's address.
        address: String,
        /// The cluster file to read the secret from (default ~/.chorus/cluster).
        #[arg(long, value_name = "PATH")]
        cluster_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    chorus::comm::diag::init_logging("chorus");
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chorus: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run { procs, no_prefix, coordinator, dashboard, progress, command } => {
            let (program, args) = command.split_first().context("no program given")?;
            let dashboard = match dashboard {
                Some(addr) => chorus::dashboard::Bind::from_setting(chorus::comm::settings::DashboardSetting::parse("--dashboard", &addr)?),
                None => None,
            };
            let options = chorus::launch::RunOptions {
                procs,
                program: resolve(program)?,
                args: args.to_vec(),
                prefix: !no_prefix,
                coordinator_bind: coordinator,
                dashboard,
                progress,
            };
            let outcome = chorus::launch::run_job(&options)?;
            Ok(match outcome {
                chorus::launch::Outcome::Success => ExitCode::SUCCESS,
                failed @ chorus::launch::Outcome::Failed { code, .. } => {
                    eprintln!("{}", failed.report().expect("failures have a report"));
                    ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))
                }
            })
        }
        Command::Scheduler { listen, cluster_file, heartbeat_timeout, allowed_failures, dashboard, no_dashboard, trace } => {
            let dashboard = match (dashboard, no_dashboard) {
                (_, true) => None,
                (Some(addr), false) => chorus::dashboard::Bind::from_setting(
                    chorus::comm::settings::DashboardSetting::parse("--dashboard", &addr)?,
                ),
                (None, false) => Some(chorus::dashboard::Bind::Default),
            };
            cluster::scheduler(&listen, cluster_file, heartbeat_timeout, allowed_failures, dashboard, trace)
        }
        Command::Worker { scheduler, nworkers, nthreads, memory_limit, spill_dir, max_spill, resources, cluster_file, command } => {
            let (program, args) = command.split_first().context("no program given")?;
            let memory = cluster::MemoryFlags {
                limit: match memory_limit.trim() {
                    "auto" => chorus::tasks::memory::default_limit(nworkers),
                    size => chorus::comm::settings::parse_size("--memory-limit", size)?,
                },
                spill_dir,
                max_spill: max_spill.map(|s| chorus::comm::settings::parse_size("--max-spill", &s)).transpose()?,
            };
            cluster::worker(&scheduler, nworkers, nthreads, memory, &resources, cluster_file, resolve(program)?, args)
        }
        Command::Status { address, cluster_file } => cluster::status(&address, cluster_file),
    }
}

/// Finds PROGRAM as a shell would: a path if it has a slash, else on PATH.
fn resolve(program: &OsString) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(program);
    if p.components().count() > 1 {
        anyhow::ensure!(p.exists(), "{} does not exist", p.display());
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(&p))
        .find(|c| c.is_file())
        .with_context(|| format!("{} was not found on PATH", p.display()))
}
