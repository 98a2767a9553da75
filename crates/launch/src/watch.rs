//! What `chorus run --dashboard` and `--progress`, and a self-spawned job's start-up
//! bar, show of a job that has no scheduler.
//!
//! Each rank writes its state (the collective it is in, for whom it waits) to a file
//! in a directory of the launcher's (`CHORUS_RANK_STATE_DIR`, see
//! [`chorus_comm::probe::publish`]); the launcher reads those files for its dashboard's
//! SPMD page. The start-up bar (`--progress`, or `CHORUS_PROGRESS=1` for a self-spawned
//! job) counts the ranks the job's rendezvous has registered.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_comm::diag::{hostname, unix_micros};
use chorus_comm::probe::{read_state_file, state_file};
use chorus_dashboard::model::{ClusterInfo, RankRow, Snapshot, SnapshotQuery, SpmdJob};
use chorus_dashboard::Source;

use crate::job::Outcome;

/// A job as the launcher sees it.
pub(crate) struct JobView {
    pub(crate) dir: PathBuf,
    pub(crate) job: String,
    pub(crate) name: String,
    pub(crate) size: usize,
    pub(crate) pids: Mutex<Vec<(usize, u32)>>,
    pub(crate) started_us: u64,
    pub(crate) outcome: Mutex<Option<Outcome>>,
}

impl JobView {
    fn job(&self) -> SpmdJob {
        let outcome = self.outcome.lock().expect("outcome lock").clone();
        let host = hostname();
        let ranks = (0..self.size)
            .map(|rank| {
                let probe = read_state_file(&state_file(&self.dir, rank));
                let state = match &outcome {
                    None if probe.is_some() || self.size == 1 => "running",
                    None => "waiting",
                    Some(Outcome::Failed { rank: r, .. }) if *r == rank => "failed",
                    Some(_) => "finished",
                };
                RankRow {
                    rank: rank as u32,
                    worker: 0,
                    host: host.clone(),
                    pid: self.pids.lock().expect("pids lock").iter().find(|(r, _)| *r == rank).map_or(0, |(_, p)| *p),
                    state: state.to_string(),
                    collectives: probe.as_ref().map_or(0, |p| p.collectives),
                    wait: if outcome.is_none() { probe.and_then(|p| p.wait) } else { None },
                }
            })
            .collect();
        let (state, error) = match &outcome {
            None => ("running", None),
            Some(Outcome::Success) => ("finished", None),
            Some(failed) => ("failed", failed.report()),
        };
        SpmdJob {
            job: self.job.clone(),
            name: self.name.clone(),
            size: self.size as u32,
            started_us: self.started_us,
            ranks,
            state: state.to_string(),
            error,
        }
    }

    pub(crate) fn new(dir: PathBuf, job: String, name: String, size: usize) -> JobView {
        JobView { dir, job, name, size, pids: Mutex::new(Vec::new()), started_us: unix_micros(), outcome: Mutex::new(None) }
    }
}

impl Source for JobView {
    fn snapshot(&self, _query: SnapshotQuery) -> Option<Snapshot> {
        Some(Snapshot {
            now_us: unix_micros(),
            cluster: ClusterInfo { kind: "launcher".into(), address: String::new(), started_us: self.started_us, clients: 0 },
            spmd: vec![self.job()],
            ..Snapshot::default()
        })
    }
}

/// The start-up bar of a job: `ranks started: N/M` on stderr while the rendezvous waits
/// for its ranks. It stops when every rank has joined or when it is dropped.
pub(crate) struct StartupBar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StartupBar {
    /// Starts drawing, counting ranks in `joined` (the rendezvous's count); `None` when
    /// stderr is not a terminal or the job has one rank.
    pub(crate) fn start(size: usize, joined: Arc<AtomicUsize>) -> Option<StartupBar> {
        if !std::io::stderr().is_terminal() || size < 2 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("chorus-startup-bar".into())
            .spawn(move || {
                let target = indicatif::ProgressDrawTarget::stderr_with_hz(10);
                let bar = indicatif::ProgressBar::with_draw_target(Some(size as u64), target);
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("ranks started: {percent:>3}%|{wide_bar}| {pos}/{len} ranks [{elapsed}]")
                {
                    bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
                }
                loop {
                    let n = joined.load(Ordering::Relaxed).min(size);
                    bar.set_position(n as u64);
                    if n == size || stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                bar.finish();
                eprintln!();
            })
            .ok()?;
        Some(StartupBar { stop, thread: Some(thread) })
    }
}

impl Drop for StartupBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
