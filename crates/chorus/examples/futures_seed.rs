//! The futures workflow of the Dask tutorial (seed 001), on a local cluster: a map of a
//! sleeping function that reports its worker's process id, three different functions
//! submitted and gathered, a chain of futures, and a map of 20,000 with a progress bar.
//!
//!     cargo run --release --example futures_seed

use std::time::Duration;

use chorus::{LocalCluster, Result};

/// Sleeps `d / 10` seconds and returns the process id it ran in.
#[chorus::remote]
fn f(d: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(d * 100));
    let pid = std::process::id();
    println!(" f argument: {d:2}, process id: {pid:7}");
    pid
}

#[chorus::remote]
fn f1(d: i64) -> i64 {
    d + 1
}

#[chorus::remote]
fn f2(d: i64) -> i64 {
    d + 2
}

#[chorus::remote]
fn f3(d: i64) -> i64 {
    d + 3
}

#[chorus::main]
fn main() -> Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    println!("cluster of {} workers started in {:?}", client.workers().len(), cluster.startup_time());
    println!("Parent process id: {:7}", std::process::id());

    // SPMD-style: one function over many inputs.
    let futures = client.map(f, [30u64, 15, 2]);
    println!("{:?}", client.gather(&futures)?);

    // MPMD-style: different functions, gathered together.
    let futurelist = vec![client.submit(f1, (1,)), client.submit(f2, (1,)), client.submit(f3, (1,))];
    println!("{:?}", client.gather(&futurelist)?);

    // Futures as arguments: the chain runs on the workers, only the last value returns.
    let a = client.submit(f1, (1,));
    let b = client.submit(f2, (&a,));
    let c = client.submit(f3, (b,));
    println!("f3(f2(f1(1))) = {}", c.result()?);

    // Many futures, with a progress bar on stderr (like Dask's `progress`) when it is a
    // terminal; the dashboard whose link the cluster printed shows the same run.
    let many = client.map(f1, 0..20_000i64);
    let total: i64 = client.gather_with_progress(&many)?.iter().sum();
    println!("sum of f1 over 0..20000 = {total}");
    Ok(())
}
