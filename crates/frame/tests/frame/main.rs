//! Integration tests of chorus-frame: ranks run as threads joined over loopback, and a
//! local cluster whose workers are this test binary for driver mode.

mod frame_driver;
mod frame_errors;
mod frame_exchange;
mod frame_memory;
mod frame_ops;
mod frame_purchases;
mod frame_scan;
mod frame_storage;
mod frame_tpch;
mod support;

/// Not a test: the entry point of the worker processes the driver-mode tests start.
#[test]
#[ignore = "run by the tests as their worker processes"]
fn worker_process() {
    chorus_tasks::worker_entry();
    panic!("worker_process runs only as a worker started by a test cluster");
}
