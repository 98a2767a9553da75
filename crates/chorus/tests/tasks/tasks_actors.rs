//! Actors: state on a worker, calls in order, errors that leave the actor usable.

use chorus::Future;

use crate::support::{cluster, inc};

/// A counter living on a worker.
pub struct Counter {
    value: i64,
    log: Vec<i64>,
}

#[chorus::actor]
impl Counter {
    pub fn new(start: i64) -> Counter {
        Counter { value: start, log: Vec::new() }
    }

    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.log.push(by);
        self.value
    }

    pub fn get(&self) -> i64 {
        self.value
    }

    pub fn log(&self) -> Vec<i64> {
        self.log.clone()
    }

    pub fn fail(&mut self) -> Result<i64, String> {
        Err(format!("refusing at {}", self.value))
    }

    pub fn boom(&mut self) -> i64 {
        panic!("actor panic at {}", self.value)
    }
}

#[test]
fn actor_calls_run_in_order_and_keep_state() {
    let c = cluster(2);
    let client = c.client();
    let counter = client.actor::<Counter>((100,));
    let futs: Vec<Future<i64>> = (1..=200).map(|i| counter.incr(i)).collect();
    let got = client.gather(&futs).unwrap();
    let want: Vec<i64> = (1..=200).scan(100, |acc, i| {
        *acc += i;
        Some(*acc)
    }).collect();
    assert_eq!(got, want);
    assert_eq!(counter.log().result().unwrap(), (1..=200).collect::<Vec<_>>());
    // A future as an argument of a method call.
    let five = client.submit(inc, (4,));
    assert_eq!(counter.incr(five).result().unwrap(), want[199] + 5);
    // Errors and panics fail the call, not the actor.
    let e = counter.fail().result().unwrap_err().to_string();
    assert!(e.contains("refusing at"), "{e}");
    let e = counter.boom().result().unwrap_err().to_string();
    assert!(e.contains("actor panic at") && e.contains("boom"), "{e}");
    assert_eq!(counter.get().result().unwrap(), want[199] + 5);
    // Two actors are independent.
    let other = client.actor::<Counter>((0,));
    assert_eq!(other.incr(1).result().unwrap(), 1);
    other.ready().unwrap();
}
