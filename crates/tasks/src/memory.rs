//! A worker's memory model: its limit and what happens at each threshold.
//!
//! The limit is `--memory-limit` / [`LocalClusterBuilder::memory_limit`], by default the
//! machine's memory divided among the workers started together. With the fractions
//! Dask users know:
//!
//! | at | of | the worker |
//! |---|---|---|
//! | 60% | stored results in memory | spills the least recently used ones to its spill directory |
//! | 70% | process RSS | spills until RSS is back under 60% |
//! | 80% | process RSS | starts no new task until RSS drops while others run (running ones go on; with none running it runs one at a time, so results it cannot spill never stop it) |
//! | 95% | process RSS | tells the scheduler it exceeded its limit and exits with [`MEMORY_EXIT_CODE`]; its parent (the nanny: `chorus worker` or the local cluster) starts a new one, and the tasks it ran are retried elsewhere, failing with [`FailureKind::MemoryLimit`] after `allowed_failures` |
//!
//! The monitor reads RSS every 100 ms. After a spill it asks glibc to return freed
//! memory to the system (`malloc_trim`), since freed blocks below glibc's mmap threshold
//! otherwise stay in the process's RSS.
//!
//! [`LocalClusterBuilder::memory_limit`]: crate::LocalClusterBuilder::memory_limit
//! [`FailureKind::MemoryLimit`]: crate::FailureKind::MemoryLimit

use std::time::Duration;

/// Stored results in memory above this percentage of the limit are spilled.
pub const TARGET: u64 = 60;
/// Process RSS above this percentage makes the worker spill down to [`TARGET`].
pub const SPILL: u64 = 70;
/// Process RSS above this percentage pauses new tasks.
pub const PAUSE: u64 = 80;
/// Process RSS above this percentage restarts the worker.
pub const TERMINATE: u64 = 95;

/// The exit status of a worker that went past [`TERMINATE`]: its nanny restarts it.
pub const MEMORY_EXIT_CODE: i32 = 86;

/// How often the monitor reads the process's memory.
pub(crate) const MONITOR_EVERY: Duration = Duration::from_millis(100);

fn share(limit: u64, percent: u64) -> u64 {
    (limit as u128 * percent as u128 / 100) as u64
}

/// What the monitor does at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Bytes of stored results to spill (0: none).
    pub(crate) spill: u64,
    /// Whether new tasks wait.
    pub(crate) pause: bool,
    /// Whether the worker must leave.
    pub(crate) terminate: bool,
}

/// The step for a process of `rss` bytes under `limit` (0: no limit).
pub(crate) fn assess(limit: u64, rss: u64) -> Step {
    if limit == 0 {
        return Step { spill: 0, pause: false, terminate: false };
    }
    let spill = if rss > share(limit, SPILL) { rss - share(limit, TARGET) } else { 0 };
    Step { spill, pause: rss > share(limit, PAUSE), terminate: rss > share(limit, TERMINATE) }
}

/// The stored-results target of a worker with `limit` (see [`TARGET`]).
pub(crate) fn target(limit: u64) -> u64 {
    share(limit, TARGET)
}

/// The default limit of each of `workers` workers started together on this machine.
pub fn default_limit(workers: usize) -> u64 {
    crate::settings::total_memory() / workers.max(1) as u64
}

/// Hands memory glibc holds free back to the system.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_does_what_the_table_says() {
        let mb = 1 << 20;
        let limit = 1000 * mb;
        let at = |rss: u64| assess(limit, rss * mb);
        assert_eq!(at(500), Step { spill: 0, pause: false, terminate: false });
        assert_eq!(at(700), Step { spill: 0, pause: false, terminate: false }, "70% exactly does not spill yet");
        assert_eq!(at(750).spill, 150 * mb, "spills back to 60%");
        assert!(!at(750).pause);
        assert!(at(810).pause && !at(810).terminate);
        assert!(at(960).terminate && at(960).pause);
        assert_eq!(assess(0, u64::MAX), Step { spill: 0, pause: false, terminate: false }, "no limit, no action");
        assert_eq!(target(limit), 600 * mb);
    }
}
