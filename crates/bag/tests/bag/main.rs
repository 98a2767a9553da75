//! Tests of bags on real local clusters, against the same operations on a `Vec` in this
//! process. The workers are this test binary, started with `--exact worker_process
//! --ignored`.

mod bag_errors;
mod bag_failures;
#[cfg(feature = "frame")]
mod bag_frame;
mod bag_keyed;
mod bag_ops;
mod bag_text;
mod support;

/// Not a test: the entry point of the worker processes the tests start.
#[test]
#[ignore = "run by the tests as their worker processes"]
fn worker_process() {
    chorus_tasks::worker_entry();
    panic!("worker_process runs only as a worker started by a test cluster");
}
