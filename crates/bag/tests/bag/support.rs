//! Clusters and scratch space for the tests.

use std::path::PathBuf;
use std::time::Duration;

use chorus_tasks::{LocalCluster, LocalClusterBuilder};

/// A builder of a local cluster of `workers` workers that are this test binary.
pub fn builder(workers: usize) -> LocalClusterBuilder {
    let exe = std::env::current_exe().expect("test binary path");
    let args = ["--exact", "worker_process", "--ignored", "--nocapture", "--test-threads=1", "-q"];
    LocalCluster::builder()
        .workers(workers)
        .threads_per_worker(1)
        .worker_program(exe, args.iter().map(Into::into).collect())
        .timeout(Duration::from_secs(60))
}

/// A local cluster of `workers` workers.
pub fn cluster(workers: usize) -> LocalCluster {
    builder(workers).start().expect("local cluster starts")
}

/// Cases per property and number of workers: each case runs tasks on the cluster.
pub fn cases() -> u32 {
    std::env::var("CHORUS_BAG_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

/// A fresh directory named `name` in this test process's scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-bag-tests-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
