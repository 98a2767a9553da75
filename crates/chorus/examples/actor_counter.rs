//! An actor: a counter that lives on one worker. Method calls return futures and run
//! one at a time in the order they were made.
//!
//!     cargo run --release --example actor_counter

use chorus::{LocalCluster, Result};

/// State kept on a worker between calls.
pub struct Counter {
    value: i64,
}

#[chorus::actor]
impl Counter {
    pub fn new(start: i64) -> Counter {
        Counter { value: start }
    }

    /// Adds `by` and returns the new value.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    pub fn get(&self) -> i64 {
        self.value
    }
}

#[chorus::main]
fn main() -> Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    let counter = client.actor::<Counter>((0,));
    counter.ready()?;
    // Fire off 100 increments without waiting; they apply in order.
    let futures: Vec<_> = (1..=100).map(|_| counter.incr(1)).collect();
    let values = client.gather(&futures)?;
    assert_eq!(values, (1..=100).collect::<Vec<i64>>());
    println!("after 100 increments: {}", counter.get().result()?);
    Ok(())
}
