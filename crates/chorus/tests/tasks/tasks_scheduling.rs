//! Priorities and resources as seen from outside.

use std::time::{SystemTime, UNIX_EPOCH};

use chorus::TaskOptions;

use crate::support::{builder, cluster, sleep_ms};

#[chorus::remote]
fn stamp(ms: u64) -> (u128, u128) {
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros();
    let start = now();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    (start, now())
}

#[test]
fn higher_priority_runs_first() {
    let c = cluster(1);
    let client = c.client();
    let blocker = client.submit(sleep_ms, (200,));
    let low: Vec<_> = (0..5).map(|_| client.submit_with(stamp, (1,), TaskOptions::new().priority(-5))).collect();
    let high = client.submit_with(stamp, (1,), TaskOptions::new().priority(10));
    blocker.result().unwrap();
    let h = high.result().unwrap();
    // At most the one low task the worker had queued behind the blocker runs first.
    let later = client.gather(&low).unwrap().iter().filter(|l| h.0 < l.0).count();
    assert!(later >= 4, "the high-priority task started before {later} of 5 low ones");
}

#[test]
fn custom_resources_limit_concurrency() {
    let c = builder(1).threads_per_worker(2).resource("GPU", 1.0).start().unwrap();
    let client = c.client();
    let futs: Vec<_> = (0..4).map(|_| client.submit_with(stamp, (50,), TaskOptions::new().resource("GPU", 1.0))).collect();
    let mut spans = client.gather(&futs).unwrap();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "tasks needing the one GPU never overlap: {spans:?}");
    }
    // Without the resource, two run at once on the two threads.
    let futs: Vec<_> = (0..2).map(|_| client.submit(stamp, (100,))).collect();
    let spans = client.gather(&futs).unwrap();
    assert!(spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1, "{spans:?}");
}
