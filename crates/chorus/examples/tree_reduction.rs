//! A tree reduction over 8192 leaves (16,383 tasks): each level adds pairs of futures
//! from the level below, on the workers; only the total comes back.
//!
//!     cargo run --release --example tree_reduction

use std::time::Instant;

use chorus::{LocalCluster, Result};

#[chorus::remote]
fn inc(x: i64) -> i64 {
    x + 1
}

#[chorus::remote]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[chorus::main]
fn main() -> Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    let t = Instant::now();
    let mut level = client.map(inc, 0..8192i64);
    while level.len() > 1 {
        level = client.map_args(add, level.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())));
    }
    let total = level[0].result()?;
    assert_eq!(total, (1..=8192).sum::<i64>());
    println!("sum of 1..=8192 = {total} in {:?} (16,383 tasks)", t.elapsed());
    Ok(())
}
