//! The `chorus` command.
//!
//! `chorus run -n N [--no-prefix] [--] PROGRAM [ARGS…]` starts an SPMD job of N processes
//! on this machine, forwards their output line by line as `[rank] line`, and exits 0 only if
//! every rank does. When a rank fails, the others are stopped and `rank R failed: cause`
//! is printed.

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
        /// The program to run, then its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]...")]
        command: Vec<OsString>,
    },
}

fn main() -> ExitCode {
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
        Command::Run { procs, no_prefix, coordinator, command } => {
            let (program, args) = command.split_first().context("no program given")?;
            let options = chorus::launch::RunOptions {
                procs,
                program: resolve(program)?,
                args: args.to_vec(),
                prefix: !no_prefix,
                coordinator_bind: coordinator,
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
