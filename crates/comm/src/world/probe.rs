//! What the ranks of this process are doing now, for dashboards and launchers.
//!
//! Every connected [`World`](super::World) of the process is listed here (weakly: a
//! finished world drops out). [`ranks`] reads, for each, the collective it is in, how
//! long it has waited, for which peer, and what that peer's answers to this rank's
//! probes say of it: the same facts the "rank 0 has waited 60 s" warning prints, but
//! on request. A wait is only recorded once a call stops spinning and sleeps, so the
//! fast path of a collective does not touch this.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::shared::{Calls, Shared};

/// A rank's state as a dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankState {
    /// The job, by its coordinator's address (the same for every rank of one job).
    pub job: String,
    /// This rank.
    pub rank: u32,
    /// Ranks in the job.
    pub size: u32,
    /// Collectives this rank has started so far.
    pub collectives: u64,
    /// The wait this rank is in, if it is blocked in a chorus call.
    pub wait: Option<RankWait>,
}

/// A call that is blocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankWait {
    /// The call, e.g. `barrier(root 0) as collective #0`.
    pub call: String,
    /// The rank it waits for.
    pub peer: u32,
    /// How long it has waited, in milliseconds.
    pub waited_ms: u64,
    /// What the peer's answers to probes say, e.g. "which has not arrived there yet".
    pub peer_state: String,
}

/// The wait a rank is in, as `Core::next_chunk` records it.
pub(crate) struct Waiting {
    pub(crate) since: Instant,
    pub(crate) peer: usize,
    pub(crate) call: String,
    /// The collective's number; `None` for a tagged receive.
    pub(crate) seq: Option<u64>,
}

struct Entry {
    job: String,
    shared: Weak<Shared>,
}

static WORLDS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Lists a newly connected world.
pub(crate) fn register(job: &str, shared: &Arc<Shared>) {
    let mut worlds = WORLDS.lock().unwrap_or_else(|p| p.into_inner());
    worlds.retain(|e| e.shared.strong_count() > 0);
    worlds.push(Entry { job: job.to_string(), shared: Arc::downgrade(shared) });
}

/// How often a rank rewrites its state file.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The state file of `rank` in `dir`.
pub fn state_file(dir: &std::path::Path, rank: usize) -> std::path::PathBuf {
    dir.join(format!("rank-{rank}.state"))
}

/// Reads a state file that [`publish`] wrote; `None` while there is none (or it is
/// being replaced).
pub fn read_state_file(path: &std::path::Path) -> Option<RankState> {
    let bytes = std::fs::read(path).ok()?;
    postcard::from_bytes(&bytes).ok()
}

/// Writes this rank's state to its file in `dir` now and every 250 ms while the world
/// lives, for a launcher that has no other way to ask (`chorus run --dashboard`).
pub(crate) fn publish(dir: std::path::PathBuf, job: String, shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let path = state_file(&dir, shared.rank);
    let tmp = dir.join(format!(".rank-{}.tmp", shared.rank));
    let write = move |shared: &Shared| {
        let state = state_of(job.clone(), shared);
        if let Ok(bytes) = postcard::to_allocvec(&state) {
            // Renamed into place, so a reader never sees half a file.
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    };
    write(shared);
    let spawned = std::thread::Builder::new().name("chorus-rank-state".into()).spawn(move || loop {
        std::thread::sleep(PUBLISH_EVERY);
        match weak.upgrade() {
            Some(shared) => write(&shared),
            None => return,
        }
    });
    if let Err(e) = spawned {
        crate::diag::warn(&format!("not publishing this rank's state for the launcher: {e}"));
    }
}

fn state_of(job: String, shared: &Shared) -> RankState {
    let calls = shared.calls.lock().expect("calls lock");
    let collectives = calls.history.back().map_or(0, |c| c.seq + 1);
    let wait = shared.waiting.lock().expect("waiting lock").as_ref().map(|w| RankWait {
        call: w.call.clone(),
        peer: w.peer as u32,
        waited_ms: w.since.elapsed().as_millis() as u64,
        peer_state: whereabouts(&calls, w.peer, w.seq),
    });
    RankState { job, rank: shared.rank as u32, size: shared.size as u32, collectives, wait }
}

/// The state of every rank of this process that is in a live job.
pub fn ranks() -> Vec<RankState> {
    let worlds: Vec<(String, Arc<Shared>)> = {
        let mut worlds = WORLDS.lock().unwrap_or_else(|p| p.into_inner());
        worlds.retain(|e| e.shared.strong_count() > 0);
        worlds.iter().filter_map(|e| Some((e.job.clone(), e.shared.upgrade()?))).collect()
    };
    worlds.into_iter().map(|(job, shared)| state_of(job, &shared)).collect()
}

/// Where `peer` is, as far as its answers to this rank's probes tell, for a wait in
/// collective `seq` (`None`: a tagged receive).
pub(crate) fn whereabouts(calls: &Calls, peer: usize, seq: Option<u64>) -> String {
    match (seq, calls.peers.get(&peer)) {
        (Some(seq), Some(reply)) if reply.probed == seq => match reply.latest {
            Some(latest) if latest >= seq => "which is in it too, waiting for other ranks".into(),
            Some(latest) => format!("which has not arrived there yet (it is at collective #{latest})"),
            None => "which has not arrived there yet (it has not called any collective)".into(),
        },
        (Some(_), _) => "which has not arrived there yet (it does not answer: busy outside chorus calls, or stuck)".into(),
        (None, _) => "which has not sent that message yet".into(),
    }
}
