//! Clusters and reference data for the tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chorus_tasks::LocalCluster;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// A local cluster of `workers` workers that are this test binary.
pub fn cluster(workers: usize) -> LocalCluster {
    let exe = std::env::current_exe().expect("test binary path");
    let args = ["--exact", "worker_process", "--ignored", "--nocapture", "--test-threads=1", "-q"];
    LocalCluster::builder()
        .workers(workers)
        .threads_per_worker(1)
        .worker_program(exe, args.iter().map(Into::into).collect())
        .timeout(Duration::from_secs(60))
        .start()
        .expect("local cluster starts")
}

/// Deterministic values from a seed: small integers as f64, so sums are exact in any order.
pub fn values(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 41) as f64 - 20.0
    })
}

/// A shape of 1 to 4 axes of 1 to 7 elements, and chunks for it.
pub fn shape_and_chunks() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..=7, 1..=4).prop_flat_map(|shape| {
        let chunks: Vec<_> = shape.iter().map(|&n| 1usize..=n).collect();
        (Just(shape), chunks)
    })
}

/// Whether two f64 arrays are equal within a relative tolerance.
pub fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())) || (x.is_nan() && y.is_nan()))
}

/// Cases per property: each case runs tasks on the cluster.
pub fn cases() -> u32 {
    std::env::var("CHORUS_ARRAY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

/// A path named `name` in this test process's scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-array-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A Python that has `module` (numpy, zarr): `CHORUS_TEST_PYTHON` (set by `.ci/run`),
/// or else `python3` if it has it. `None` skips the test unless
/// `CHORUS_REQUIRE_PYTHON=1`, which CI sets.
pub fn test_python(module: &str) -> Option<String> {
    let python = std::env::var("CHORUS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python).args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why = format!("{python} has no {module} (set CHORUS_TEST_PYTHON to a Python with numpy and zarr)");
    if std::env::var("CHORUS_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("{why} (CHORUS_REQUIRE_PYTHON=1, so this is a failure)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs a Python script and gives its standard output, failing the test with its
/// standard error if it fails.
pub fn run_python(python: &str, script: &str) -> String {
    let out = Command::new(python).args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
