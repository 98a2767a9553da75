//! Process-level tests: real ranks on loopback, started by `chorus run`, by self-spawn, by
//! Open MPI's `mpiexec`, and in network namespaces.
//!
//! The rank program of most tests is this test binary itself: `rank_program` below does
//! nothing in a normal test run, and runs the scenario named by `CHORUS_TEST_SCENARIO`
//! when a test starts the binary as a rank.

mod scenarios;
mod spmd_collectives;
mod spmd_examples;
mod spmd_failures;
mod spmd_launchers;
mod spmd_security;
mod support;

/// The entry point of rank processes (a no-op unless `CHORUS_TEST_SCENARIO` is set).
#[test]
fn rank_program() {
    if let Ok(name) = std::env::var("CHORUS_TEST_SCENARIO") {
        scenarios::run(&name);
    }
}
