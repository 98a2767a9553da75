//! Tests of chunked arrays on real local clusters, against plain ndarray computed in this
//! process. The workers are this test binary, started with `--exact worker_process
//! --ignored`.

mod array_create;
mod array_elementwise;
mod array_errors;
mod array_files;
#[cfg(feature = "hdf5")]
mod array_hdf5;
mod array_join;
mod array_pod;
mod array_reductions;
mod array_serde;
mod array_zarr;
mod support;

/// Not a test: the entry point of the worker processes the tests start.
#[test]
#[ignore = "run by the tests as their worker processes"]
fn worker_process() {
    chorus_tasks::worker_entry();
    panic!("worker_process runs only as a worker started by a test cluster");
}
