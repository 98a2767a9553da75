//! "Bring the function to the data" (seed 001): workers load data sets, a function is
//! submitted on each future, and only its small result comes back to the driver.
//!
//!     cargo run --release --example function_to_data

use chorus::{LocalCluster, Result};

/// Stands in for reading a file on the worker: a 100×100 matrix made from a seed.
#[chorus::remote]
fn load(seed: u64) -> Vec<Vec<f64>> {
    (0..100).map(|i| (0..100).map(|j| ((seed * 31 + i * 7 + j) % 97) as f64).collect()).collect()
}

/// The shape, computed where the data is.
#[chorus::remote]
fn shape(a: Vec<Vec<f64>>) -> (usize, usize) {
    (a.len(), a.first().map_or(0, Vec::len))
}

#[chorus::remote]
fn total(a: Vec<Vec<f64>>) -> f64 {
    a.iter().flatten().sum()
}

#[chorus::main]
fn main() -> Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    let datasets = client.map(load, 0..4u64);
    // Slow: bring 80 kB to the driver to look at two numbers.
    println!("shape, fetched: {:?}", (datasets[0].result()?.len(), 100));
    // Fast: send the function to the data; only the shape comes back.
    println!("shape, computed remotely: {:?}", client.submit(shape, (&datasets[0],)).result()?);
    let totals = client.gather(&datasets.iter().map(|d| client.submit(total, (d,))).collect::<Vec<_>>())?;
    println!("totals: {totals:?}");
    Ok(())
}
