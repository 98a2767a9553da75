//! What `chorus run --dashboard` and `--progress` show of a job that has no scheduler.
//!
//! Each rank writes its state (the collective it is in, for whom it waits) to a file
//! in a directory of the launcher's (`CHORUS_RANK_STATE_DIR`, see
//! [`chorus_comm::probe::publish`]); the launcher reads those files for its dashboard's
//! SPMD page and counts them for the start-up bar.

use std::io::IsTerminal;
use std::path::PathBuf;
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
    /// Ranks that have joined the job (written their first state).
    fn joined(&self) -> usize {
        (0..self.size).filter(|r| state_file(&self.dir, *r).exists()).count()
    }

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

/// Draws `ranks started: N/M` on stderr (a terminal only) until every rank joined or
/// the job ended.
pub(crate) fn startup_bar(view: Arc<JobView>) {
    if !std::io::stderr().is_terminal() || view.size < 2 {
        return;
    }
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::with_draw_target(Some(view.size as u64), indicatif::ProgressDrawTarget::stderr_with_hz(10));
        if let Ok(style) = indicatif::ProgressStyle::with_template("ranks started: {percent:>3}%|{wide_bar}| {pos}/{len} ranks [{elapsed}]") {
            bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
        }
        loop {
            let joined = view.joined();
            bar.set_position(joined as u64);
            if joined == view.size || view.outcome.lock().expect("outcome lock").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish();
        eprintln!();
    });
}
