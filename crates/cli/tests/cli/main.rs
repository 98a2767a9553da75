//! Process-level tests: real ranks on loopback, started by `chorus run`, by self-spawn, by
//! Open MPI's `mpiexec`, and in network namespaces.
//!
//! The rank program of most tests is this test binary itself: the tests start it with
//! `rank_program --exact --ignored`, and `rank_program` runs the scenario named by
//! `CHORUS_TEST_SCENARIO`. In an ordinary test run it is listed as ignored.

mod scenarios;
mod spmd_collectives;
mod spmd_examples;
mod spmd_failures;
mod spmd_launchers;
mod spmd_security;
mod support;
mod tasks_protocol;
mod tasks_scale;
mod tasks_standing;

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
    chorus::tasks::worker_entry();
    panic!("worker_program runs only as a worker started by `chorus worker`");
}

/// The entry point of the driver process that the standing-cluster tests stop.
#[test]
#[ignore = "the driver program that the standing-cluster tests start; not a test of its own"]
fn driver_program() {
    let address = std::env::var("CHORUS_TEST_DRIVER").expect("driver_program runs with CHORUS_TEST_DRIVER set");
    tasks_scale::stopped_driver(&address);
}
