//! Process-level tests of the task layer: a local cluster whose workers are this test
//! binary, started with `--exact worker_process --ignored` so they run the worker loop.

mod dashboard_api;
mod dashboard_browser;
mod support;
mod tasks_actors;
mod tasks_api;
mod tasks_bulk;
mod tasks_failures;
mod tasks_memory;
mod tasks_scheduling;
mod tasks_visualize;
mod web;

/// Not a test: the entry point of the worker processes the tests start.
#[test]
#[ignore = "run by the tests as their worker processes"]
fn worker_process() {
    chorus::tasks::worker_entry();
    panic!("worker_process runs only as a worker started by a test cluster");
}
