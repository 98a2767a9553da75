//! Process-level tests: real ranks on loopback, started by `chorus run`, by self-spawn, by
//! Open MPI's `mpiexec`, and in network namespaces.
//!
//! The rank program of most tests is this test binary itself: the tests start it with
//! `rank_program --exact --ignored`, and `rank_program` runs the scenario named by
//! `CHORUS_TEST_SCENARIO`. In an ordinary test run it is listed as ignored.

mod dashboard_token;
mod frame_hosts;
mod scenarios;
mod spmd_collectives;
mod spmd_dashboard;
mod spmd_examples;
mod spmd_failures;
mod spmd_launchers;
mod spmd_progress;
mod spmd_security;
mod support;
mod tasks_progress;
mod tasks_protocol;
mod tasks_scale;
mod tasks_standing;
mod tasks_tls;

/// The entry point of rank processes.
#[test]
#[ignore = "the rank program that the other tests start; not a test of its own"]
fn rank_program() {
    let name = std::env::var("CHORUS_TEST_SCENARIO").expect("rank_program runs with CHORUS_TEST_SCENARIO set");
    scenarios::run(&name);
}

/// The entry point of task workers started by `chorus worker` in the tests.
#[test]
#[ignore = "the worker program that the standing-cluster tests start; not a test of its own"]
fn worker_program() {
    // As `#[chorus::main]` does.
    chorus::__private::init_logging("driver");
    chorus::tasks::worker_entry();
    panic!("worker_program runs only as a worker started by `chorus worker`");
}

/// The entry point of driver processes of the standing-cluster tests: the one they stop,
/// or one that runs on another host (`CHORUS_TEST_DRIVER_JOB=tls`, or `frame:TABLES` for
/// DataFrame queries over the TPC-H tables in `TABLES`).
#[test]
#[ignore = "the driver program that the standing-cluster tests start; not a test of its own"]
fn driver_program() {
    chorus::__private::init_logging("driver");
    let address = std::env::var("CHORUS_TEST_DRIVER").expect("driver_program runs with CHORUS_TEST_DRIVER set");
    let job = std::env::var("CHORUS_TEST_DRIVER_JOB").unwrap_or_default();
    match job.split_once(':') {
        _ if job == "tls" => tasks_tls::tls_driver(&address),
        Some(("frame", tables)) => frame_hosts::frame_driver(&address, std::path::Path::new(tables)),
        _ => tasks_scale::stopped_driver(&address),
    }
}
