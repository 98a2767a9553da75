//! Starting and watching the processes of a job.
//!
//! Each rank's stdout and stderr are forwarded line by line (optionally prefixed `[rank] `),
//! and the last lines of its stderr are kept to explain a failure. The first rank to fail
//! — non-zero exit, panic, error from `main`, or a signal — stops the others (SIGTERM, then
//! SIGKILL after a grace period), and the job reports which rank failed and why.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long stopped ranks get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_millis(1000);
/// After the first failure, how long to wait for the others' exit statuses before choosing
/// which failure to report (a crash makes its peers fail too, a few milliseconds later).
const SETTLE: Duration = Duration::from_millis(300);
const TAIL_LINES: usize = 40;

/// What to start.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment added for every rank (rank-specific variables are added by [`Job`]).
    pub env: Vec<(String, String)>,
    /// The ranks to start (a self-spawning rank 0 starts `1..size`).
    pub ranks: std::ops::Range<usize>,
    /// The job's size.
    pub size: usize,
    /// Prefix forwarded lines with `[rank] `.
    pub prefix: bool,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every rank exited with status 0.
    Success,
    /// A rank failed; the others were stopped.
    Failed {
        /// The rank whose failure ended the job.
        rank: usize,
        /// Its panic message, error, signal or exit code.
        cause: String,
        /// The exit code the launcher should return.
        code: i32,
    },
}

impl Outcome {
    /// The line launchers print: `rank 2 failed: …`.
    pub fn report(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::Failed { rank, cause, .. } => Some(format!("rank {rank} failed: {cause}")),
        }
    }
}

/// A rank's exit: its rank, status and the last lines of its stderr.
type Event = (usize, ExitStatus, Vec<String>);

/// A running job.
pub struct Job {
    events: mpsc::Receiver<Event>,
    pids: Vec<(usize, u32)>,
}

impl Job {
    /// Starts every rank of `spec`.
    ///
    /// Ranks die with the thread that starts them (`PR_SET_PDEATHSIG`), so call this from a
    /// thread that lives as long as the job.
    pub fn spawn(spec: &JobSpec) -> Result<Job> {
        let (tx, events) = mpsc::channel();
        let mut pids = Vec::new();
        for rank in spec.ranks.clone() {
            let mut cmd = Command::new(&spec.program);
            cmd.args(&spec.args)
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .env(super::env::RANK_ENV, rank.to_string())
                .env(super::env::SIZE_ENV, spec.size.to_string())
                .env_remove(super::env::PROCS_ENV)
                .stdin(if rank == 0 { Stdio::inherit() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork
            // and exec.
            unsafe {
                let parent = libc::getpid();
                cmd.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != parent {
                        libc::_exit(137);
                    }
                    Ok(())
                });
            }
            let mut child = cmd.spawn().map_err(|source| Error::Spawn {
                rank,
                program: spec.program.display().to_string(),
                source,
            })?;
            pids.push((rank, child.id()));
            let prefix = if spec.prefix { format!("[{rank}] ") } else { String::new() };
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let (drained_tx, drained) = mpsc::channel();
            forward(child.stdout.take().expect("piped"), prefix.clone(), false, None, drained_tx.clone());
            forward(child.stderr.take().expect("piped"), prefix, true, Some(tail.clone()), drained_tx);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let status = child.wait().expect("waiting for a child we started");
                // The stderr tail explains the failure: let the forwarders drain, but do not
                // wait forever on pipes a grandchild may hold open.
                let deadline = Instant::now() + Duration::from_millis(500);
                for _ in 0..2 {
                    let _ = drained.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                }
                let tail = tail.lock().expect("tail lock").iter().cloned().collect();
                let _ = tx.send((rank, status, tail));
            });
        }
        Ok(Job { events, pids })
    }

    /// Each rank's process id.
    pub fn pids(&self) -> &[(usize, u32)] {
        &self.pids
    }

    /// Waits for every rank. On the first failure the others are stopped and the failure
    /// that caused the others is reported.
    pub fn wait(self) -> Outcome {
        let mut running: Vec<(usize, u32)> = self.pids.clone();
        // Failures seen before the job was stopped; later ones are our own doing.
        let mut failures: Vec<Outcome> = Vec::new();
        let note = |running: &mut Vec<(usize, u32)>, failures: &mut Vec<Outcome>, (rank, status, tail): Event| {
            running.retain(|(r, _)| *r != rank);
            if !status.success() {
                failures.push(Outcome::Failed { rank, cause: failure_cause(&tail, status), code: exit_code(status) });
            }
        };
        // Until a rank fails.
        while !running.is_empty() && failures.is_empty() {
            match self.events.recv() {
                Ok(event) => note(&mut running, &mut failures, event),
                Err(_) => break,
            }
        }
        if !running.is_empty() {
            // Give the ranks that fail because of the first one a moment to report, so the
            // original failure can be told from its consequences; then stop the rest.
            let settle_until = Instant::now() + SETTLE;
            while let Ok(event) = self.events.recv_timeout(settle_until.saturating_duration_since(Instant::now())) {
                note(&mut running, &mut failures, event);
            }
            signal_all(&running, libc::SIGTERM);
            let kill_at = Instant::now() + GRACE;
            while !running.is_empty() {
                match self.events.recv_timeout(kill_at.saturating_duration_since(Instant::now())) {
                    Ok((rank, _, _)) => running.retain(|(r, _)| *r != rank),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        signal_all(&running, libc::SIGKILL);
                        while !running.is_empty() {
                            let Ok((rank, _, _)) = self.events.recv() else { break };
                            running.retain(|(r, _)| *r != rank);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        failures
            .into_iter()
            .min_by_key(|f| matches!(f, Outcome::Failed { cause, .. } if is_consequence(cause)))
            .unwrap_or(Outcome::Success)
    }
}

fn signal_all(running: &[(usize, u32)], signal: i32) {
    for &(_, pid) in running {
        // SAFETY: kill has no memory-safety preconditions; the pid is a child we have not
        // reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A failure caused by another rank's failure rather than by this rank itself.
fn is_consequence(cause: &str) -> bool {
    ["lost connection to rank", "job aborted by rank", "has already finalized"].iter().any(|s| cause.contains(s))
}

/// Copies `stream` line by line to our stdout or stderr; says so on `drained` at its end.
fn forward(
    stream: impl Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    drained: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = drained.send(());
                    return;
                }
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            let mut out = Vec::with_capacity(prefix.len() + line.len());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(&line);
            // A closed stdout (say, `| head`) must not stop draining the rank's pipe.
            let _ = if to_stderr { std::io::stderr().lock().write_all(&out) } else { std::io::stdout().lock().write_all(&out) };
            if let Some(tail) = &tail {
                let mut t = tail.lock().expect("tail lock");
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
            }
        }
    });
}

/// Explains a failed rank from the end of its stderr and its exit status.
pub fn failure_cause(tail: &[String], status: ExitStatus) -> String {
    let signal = status.signal().map(|s| format!("killed by signal {s} ({})", signal_name(s)));
    if let Some(at) = tail.iter().rposition(|l| l.contains("panicked at ")) {
        let location = tail[at].split("panicked at ").nth(1).unwrap_or("").trim_end_matches(':');
        let message: Vec<&str> = tail[at + 1..]
            .iter()
            .map(|l| l.as_str())
            .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:"))
            .collect();
        let mut cause = format!("panicked at {location}: {}", message.join(" / "));
        if let Some(signal) = signal {
            cause.push_str(&format!(" ({signal})"));
        }
        return cause;
    }
    if let Some(line) = tail.iter().rev().find(|l| l.starts_with("Error: ")) {
        return format!("error: {}", &line["Error: ".len()..]);
    }
    match (signal, status.code()) {
        (Some(signal), _) => signal,
        (None, Some(code)) => format!("exited with status {code}"),
        (None, None) => "ended for an unknown reason".into(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
