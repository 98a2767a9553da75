//! The nanny: the parent of a cluster's worker processes, which starts a new worker in
//! place of one that left because it exceeded its memory limit.
//!
//! A worker past 95% of its limit tells the scheduler why and exits with
//! [`MEMORY_EXIT_CODE`](crate::memory::MEMORY_EXIT_CODE) (see [`crate::memory`]); its
//! nanny, `chorus worker` or a [`LocalCluster`](crate::LocalCluster), starts a new one
//! with the same settings, which joins the scheduler as a new worker. A worker that
//! ends any other way (its scheduler gone, killed, a failure to start) is not replaced.
//!
//! A worker removes its spill directory as it ends; one that is killed cannot, so the
//! nanny removes the directory of every worker it sees end.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::memory::MEMORY_EXIT_CODE;

/// How often the nanny looks at its workers.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Starts worker `i` (again).
type Spawn = dyn Fn(usize) -> std::io::Result<Child> + Send + Sync;

/// One slot: the running worker, or how its last one ended for good.
enum Slot {
    Running(Child),
    Ended(ExitStatus),
}

struct Shared {
    slots: Mutex<Vec<Slot>>,
    /// Where the workers make their spill directories, if they spill.
    spill_base: Option<PathBuf>,
    stop: AtomicBool,
    restarts: AtomicU64,
}

/// Watches worker processes and restarts those that exceed their memory limit (see the
/// module documentation). Dropping it stops the watching, not the workers.
pub struct Nanny {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Nanny {
    /// Watches `children`; `spawn(i)` starts a replacement for the `i`-th. `spill_base`
    /// is where they make their spill directories ([`WorkerConfig::spill_base`]).
    ///
    /// [`WorkerConfig::spill_base`]: crate::WorkerConfig::spill_base
    pub fn start(
        children: Vec<Child>,
        spill_base: Option<PathBuf>,
        spawn: impl Fn(usize) -> std::io::Result<Child> + Send + Sync + 'static,
    ) -> Nanny {
        let shared = Arc::new(Shared {
            slots: Mutex::new(children.into_iter().map(Slot::Running).collect()),
            spill_base,
            stop: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        });
        let watched = shared.clone();
        let spawn: Box<Spawn> = Box::new(spawn);
        let thread = std::thread::Builder::new()
            .name("chorus-nanny".into())
            .spawn(move || watch(&watched, &*spawn))
            .ok();
        Nanny { shared, thread }
    }

    /// Process ids of the running workers.
    pub fn pids(&self) -> Vec<u32> {
        self.slots().iter().filter_map(|s| if let Slot::Running(c) = s { Some(c.id()) } else { None }).collect()
    }

    /// Workers started in place of ones that exceeded their memory limit.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Stops restarting workers, and runs `f` on the children still running (to wait
    /// for them or kill them); then removes the spill directories of those that ended.
    pub fn stop(&mut self, f: impl FnOnce(&mut [Child])) {
        self.halt();
        let mut slots = self.slots();
        let mut running: Vec<Child> = Vec::new();
        for slot in slots.iter_mut() {
            if let Slot::Running(c) = std::mem::replace(slot, Slot::Ended(ExitStatus::default())) {
                running.push(c);
            }
        }
        f(&mut running);
        for child in &mut running {
            if let Ok(Some(_)) = child.try_wait() {
                self.shared.ended(child.id());
            }
        }
    }

    /// Waits until every worker has ended for good; how each last one ended.
    pub fn wait(self) -> Vec<ExitStatus> {
        loop {
            {
                let slots = self.slots();
                if slots.iter().all(|s| matches!(s, Slot::Ended(_))) {
                    return slots.iter().filter_map(|s| if let Slot::Ended(e) = s { Some(*e) } else { None }).collect();
                }
            }
            std::thread::sleep(WATCH_EVERY);
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.shared.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Nanny {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Shared {
    /// Removes what worker `pid`, which has ended, left in its spill directory.
    fn ended(&self, pid: u32) {
        if let Some(base) = &self.spill_base {
            crate::store::remove_ended(base, pid);
        }
    }
}

fn watch(shared: &Shared, spawn: &Spawn) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_EVERY);
        let mut slots = shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (i, slot) in slots.iter_mut().enumerate() {
            let Slot::Running(child) = slot else { continue };
            let Ok(Some(status)) = child.try_wait() else { continue };
            shared.ended(child.id());
            if status.code() != Some(MEMORY_EXIT_CODE) || shared.stop.load(Ordering::Relaxed) {
                *slot = Slot::Ended(status);
                continue;
            }
            let pid = child.id();
            match spawn(i) {
                Ok(new) => {
                    chorus_comm::diag::warn(&format!(
                        "worker pid {pid} exceeded its memory limit; started pid {} in its place",
                        new.id()
                    ));
                    shared.restarts.fetch_add(1, Ordering::Relaxed);
                    *slot = Slot::Running(new);
                }
                Err(e) => {
                    chorus_comm::diag::error(&format!(
                        "worker pid {pid} exceeded its memory limit, and starting another failed: {e}"
                    ));
                    *slot = Slot::Ended(status);
                }
            }
        }
    }
}
