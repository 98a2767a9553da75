//! The array workloads of the seeds, on a local cluster of two workers:
//!
//! - seed 003: `x = da.random.random((50_000, 50_000), chunks=(5_000, 5_000))` and
//!   `x + x.T`, shown as Dask shows it, then summed (18.6 GiB that no process ever holds;
//!   the seed's `.compute()` of the whole result is shown here as a corner of it);
//! - seed 001: `da.arange(100, chunks=(25,))` computed, and `client.map(load_file, files)`
//!   made into one array (`da.concatenate`) whose corner `array[:10, :10]` is computed
//!   without the rest.
//!
//!     cargo run --release --features array --example array_seed
//!
//! `CHORUS_SEED_N=20000` makes the random array smaller.

use std::time::Instant;

use chorus::array::{self as da, ndarray::s};
use chorus::LocalCluster;

/// Stands in for the seed's `load_file` (h5py on the workers): "file" `i` is a 100 × 100
/// block of values, made on the worker that reads it and kept there.
#[chorus::remote]
fn load_file(i: u64) -> Vec<f64> {
    (0..100 * 100).map(|k| (i * 10_000 + k) as f64 / 1e4).collect()
}

#[chorus::main]
fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    let n: usize = std::env::var("CHORUS_SEED_N").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);

    // Seed 003.
    let my_array = da::random::uniform(&client, &[n, n], &[5_000, 5_000], 0)?;
    let result = &my_array + &my_array.t();
    println!("{result}\n");
    println!("result[:3, :3] =\n{:.6}\n", result.slice(s![..3, ..3])?.compute()?);
    let t = Instant::now();
    let total = result.sum()?.compute_scalar()?;
    println!("(x + x.T).sum() = {total:.6e}  ({:.2?}; expected about {:.6e})\n", t.elapsed(), (n * n) as f64);

    // Seed 001: an array from a range.
    let y = da::arange(&client, 0i64, 100, 1, 25)?;
    println!("{y}\n{}\n", y.compute()?);

    // Seed 001: blocks the workers loaded, as one array; only its corner is computed.
    let futures = client.map(load_file, 0..4u64);
    let array = da::from_futures(&client, &futures, &[100, 100], &[4, 1])?;
    println!("{array}\n");
    println!("array[:10, :10] =\n{:.4}", array.slice(s![..10, ..10])?.compute()?);
    Ok(())
}
