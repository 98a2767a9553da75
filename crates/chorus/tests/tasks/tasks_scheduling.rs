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

/// The name of the worker thread that ran it, after sleeping `ms` (panicking if `ms` is
/// `u64::MAX`).
#[chorus::remote]
fn thread_after(ms: u64) -> String {
    assert_ne!(ms, u64::MAX, "asked to fail");
    std::thread::sleep(std::time::Duration::from_millis(ms));
    std::thread::current().name().unwrap_or_default().to_owned()
}

#[test]
fn lone_quick_tasks_run_on_the_thread_that_reads_and_slow_ones_go_back_to_the_executor() {
    let c = builder(1).threads_per_worker(1).start().unwrap();
    let client = c.client();
    let on_executor = |name: &str| name.starts_with("chorus-exec-");
    let run = |ms: u64| client.submit(thread_after, (ms,)).result().unwrap();
    assert!(on_executor(&run(0)), "a function's first run is on the executor");
    // Known-quick lone tasks skip the hand-off. A run that a busy host slows past the
    // limit sends the next one back to the executor, so look over several runs.
    let quick: Vec<String> = (0..20).map(|_| run(0)).collect();
    assert!(quick.iter().any(|n| !on_executor(n)), "known-quick lone tasks skip the hand-off: {quick:?}");
    // Right after a quick run on the reading thread, the history says quick, so a slow
    // run goes there too (unless that quick run itself was slowed: try again); the next
    // run of the function, now known to be slow, goes back to the executor.
    let slow_on_reader = (0..10).any(|_| {
        while on_executor(&run(0)) {}
        !on_executor(&run(150))
    });
    assert!(slow_on_reader, "a function known to be quick runs on the reading thread even when this run is slow");
    assert!(on_executor(&run(0)), "after a slow run the function runs on the executor again");
    while on_executor(&run(0)) {}
    // A panic on the reading thread is an error on the future like anywhere else, and
    // the worker goes on.
    let e = client.submit(thread_after, (u64::MAX,)).result().unwrap_err();
    assert!(e.to_string().contains("asked to fail"), "{e}");
    assert!(!run(0).is_empty());
    // Queued behind other work, or on a worker with more threads, tasks run on executors.
    let blocker = client.submit(sleep_ms, (100,));
    let futs: Vec<_> = (0..4).map(|_| client.submit(thread_after, (0,))).collect();
    assert!(client.gather(&futs).unwrap().iter().all(|n| on_executor(n)));
    blocker.result().unwrap();
    let c2 = builder(1).threads_per_worker(2).start().unwrap();
    let client2 = c2.client();
    let names: Vec<String> = (0..6).map(|_| client2.submit(thread_after, (0,)).result().unwrap()).collect();
    assert!(names.iter().all(|n| on_executor(n)), "{names:?}");
}

/// Returns `x`, after sleeping `ms` when `x` is `slow_at`.
#[chorus::remote]
fn quick_until(x: u64, slow_at: u64, ms: u64) -> u64 {
    if x == slow_at {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    x
}

/// An executor holds its reports while the next task's function is known to be quick.
/// When one run of that function then takes long, the reports held before it must not
/// wait for it to end.
#[test]
fn reports_held_before_a_quick_function_runs_long_are_sent_while_it_runs() {
    let c = builder(1).threads_per_worker(1).start().unwrap();
    let client = c.client();
    // Teach the worker that the function is quick.
    client.gather(&client.map_args(quick_until, (0..200u64).map(|x| (x, u64::MAX, 0)))).unwrap();
    // A batch whose last task sleeps for 20 s: everything before it finishes at once.
    let futs = client.map_args(quick_until, (0..2000u64).map(|x| (x, 1999, 20_000)));
    let started = std::time::Instant::now();
    for (x, f) in futs[..1999].iter().enumerate() {
        let left = std::time::Duration::from_secs(15).saturating_sub(started.elapsed());
        assert_eq!(f.result_timeout(left).unwrap(), x as u64, "task {x}'s report waited behind the slow task");
    }
    assert!(!futs[1999].done());
    futs[1999].cancel();
}
