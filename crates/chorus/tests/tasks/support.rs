//! Clusters for the tests, and the functions they run.

use std::time::Duration;

use chorus::{LocalCluster, LocalClusterBuilder};

/// A builder whose workers are this test binary.
pub fn builder(workers: usize) -> LocalClusterBuilder {
    let exe = std::env::current_exe().expect("test binary path");
    let args = ["--exact", "worker_process", "--ignored", "--nocapture", "--test-threads=1"];
    LocalCluster::builder()
        .workers(workers)
        .worker_program(exe, args.iter().map(Into::into).collect())
        .timeout(Duration::from_secs(60))
}

pub fn cluster(workers: usize) -> LocalCluster {
    builder(workers).start().expect("local cluster starts")
}

#[chorus::remote]
pub fn inc(x: i64) -> i64 {
    x + 1
}

#[chorus::remote]
pub fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[chorus::remote]
pub fn pid() -> u32 {
    std::process::id()
}

/// Sleeps `ms` and returns the worker's pid.
#[chorus::remote]
pub fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Spins for `us` microseconds (a task that keeps a thread busy without sleeping).
#[chorus::remote]
pub fn busy_us(us: u64) -> u64 {
    let until = std::time::Instant::now() + Duration::from_micros(us);
    let mut n = 0u64;
    while std::time::Instant::now() < until {
        n = n.wrapping_add(1);
    }
    n
}

/// Peak resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
