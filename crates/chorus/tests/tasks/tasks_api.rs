//! The client API: submit, map, gather, futures as arguments, wait, as_completed,
//! cancel, scatter, run_on_all, spmd, timeouts, locality and memory release.

use std::collections::HashSet;
use std::time::Duration;

use chorus::{ErrorKind, FailureKind, TaskOptions, WaitFor, World};

use crate::support::{add, cluster, inc, pid, sleep_ms};

#[chorus::remote]
fn make_blob(mb: usize) -> Vec<u64> {
    vec![7u64; mb << 17]
}

#[chorus::remote]
fn blob_len(b: Vec<u64>) -> (usize, u32) {
    (b.len(), std::process::id())
}

#[chorus::remote]
fn sum_vec(v: Vec<i64>) -> i64 {
    v.iter().sum()
}

#[chorus::spmd]
fn rank_sum(world: &World, scale: i64) -> (usize, i64) {
    let total = world.allreduce(world.rank() as i64 * scale, chorus::Sum).expect("allreduce");
    (world.rank(), total)
}

#[chorus::remote]
fn env_var(name: String) -> Option<String> {
    std::env::var(name).ok()
}

#[test]
fn local_cluster_workers_get_the_environment_variables_set_for_them() {
    let c = crate::support::builder(2).env("CHORUS_TEST_WORKER_SETTING", "on the workers").start().unwrap();
    let client = c.client();
    let seen = client.gather(&client.map(env_var, vec!["CHORUS_TEST_WORKER_SETTING".to_string(); 8])).unwrap();
    assert!(seen.iter().all(|v| v.as_deref() == Some("on the workers")), "{seen:?}");
    assert!(std::env::var("CHORUS_TEST_WORKER_SETTING").is_err(), "the driver's own environment is unchanged");
}

#[test]
fn submit_map_gather_and_futures_as_arguments() {
    let c = cluster(2);
    let client = c.client();
    assert_eq!(client.submit(inc, (1,)).result().unwrap(), 2);
    let futs = client.map(inc, 0..1000i64);
    let want: Vec<i64> = (1..=1000).collect();
    assert_eq!(client.gather(&futs).unwrap(), want);
    // Chains and fan-in with owned and borrowed futures.
    let a = client.submit(inc, (10,));
    let b = client.submit(add, (&a, &a));
    let d = client.submit(add, (b, 5));
    assert_eq!(d.result().unwrap(), 27);
    assert_eq!(a.result().unwrap(), 11);
    let pairs = client.map_args(add, (0..10i64).map(|i| (i, i * 10)));
    assert_eq!(client.gather(&pairs).unwrap(), (0..10).map(|i| i * 11).collect::<Vec<_>>());
}

#[test]
fn result_timeout_wait_and_as_completed() {
    let c = cluster(2);
    let client = c.client();
    let slow = client.submit(sleep_ms, (400,));
    let err = slow.result_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    slow.result_timeout(Duration::from_secs(20)).unwrap();
    let futs = vec![client.submit(sleep_ms, (300,)), client.submit(sleep_ms, (1,))];
    let (done, pending) = client.wait(&futs, WaitFor::FirstCompleted, None);
    assert_eq!((done, pending), (vec![1], vec![0]));
    let (done, pending) = client.wait(&futs, WaitFor::AllCompleted, Some(Duration::from_secs(20)));
    assert_eq!((done.len(), pending.len()), (2, 0));
    let futs: Vec<_> = [200u64, 1, 100].iter().map(|ms| client.submit(sleep_ms, (*ms,))).collect();
    let ids: Vec<chorus::TaskId> = futs.iter().map(|f| f.id()).collect();
    let seen: Vec<chorus::TaskId> = client.as_completed(futs).map(|f| f.id()).collect();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], ids[1], "the 1 ms task ends first");
}

#[test]
fn cancel_stops_a_queued_task_and_its_dependents() {
    let c = cluster(1);
    let client = c.client();
    let blocker = client.submit(sleep_ms, (300,));
    let queued = client.submit_with(inc, (1,), TaskOptions::new().priority(-1));
    let after = client.submit(inc, (&queued,));
    queued.cancel();
    let e = queued.result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Task(FailureKind::Cancelled), "{e}");
    let e = after.result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Task(FailureKind::Cancelled), "{e}");
    assert!(blocker.result().is_ok());
    assert_eq!(client.submit(inc, (1,)).result().unwrap(), 2, "the cluster keeps working");
}

#[test]
fn scatter_and_broadcast_feed_tasks() {
    let c = cluster(2);
    let client = c.client();
    let data = client.scatter(vec![vec![1i64, 2, 3], vec![10, 20]]).unwrap();
    let sums: Vec<_> = data.iter().map(|d| client.submit(sum_vec, (d,))).collect();
    assert_eq!(client.gather(&sums).unwrap(), vec![6, 30]);
    assert_eq!(data[1].result().unwrap(), vec![10, 20]);
    let shared = client.scatter_broadcast(vec![vec![5i64; 1000]]).unwrap();
    let sums: Vec<_> = (0..8).map(|_| client.submit(sum_vec, (&shared[0],))).collect();
    assert!(client.gather(&sums).unwrap().iter().all(|s| *s == 5000));
}

#[test]
fn run_on_all_reaches_every_worker_and_spmd_gets_a_world() {
    let c = cluster(3);
    let client = c.client();
    let pids = client.run_on_all(pid, ()).unwrap();
    assert_eq!(pids.len(), 3);
    let distinct: HashSet<u32> = pids.iter().map(|(_, p)| *p).collect();
    assert_eq!(distinct.len(), 3);
    for (info, p) in &pids {
        assert_eq!(info.pid, *p);
    }
    let ranks = client.spmd(rank_sum, (2,)).unwrap();
    assert_eq!(ranks, vec![(0, 6), (1, 6), (2, 6)]);
}

#[test]
fn data_moves_worker_to_worker_never_through_driver_or_scheduler() {
    let c = cluster(2);
    let client = c.client();
    let workers = client.workers();
    let (a, b) = (workers[0].id, workers[1].id);
    // 8 MB made on worker a, used on worker b.
    let blob = client.submit_with(make_blob, (8,), TaskOptions::new().on_worker(a));
    let before = c.scheduler_bytes_received();
    let (len, ran_on) = client.submit_with(blob_len, (&blob,), TaskOptions::new().on_worker(b)).result().unwrap();
    assert_eq!(len, 8 << 17);
    assert_eq!(ran_on, workers[1].pid);
    // Unpinned, the task goes where the 8 MB are.
    let (_, placed_on) = client.submit(blob_len, (&blob,)).result().unwrap();
    assert!(placed_on == workers[0].pid || placed_on == workers[1].pid);
    let blob2 = client.submit_with(make_blob, (8,), TaskOptions::new().on_worker(a));
    for _ in 0..5 {
        let (_, placed) = client.submit(blob_len, (&blob2,)).result().unwrap();
        assert_eq!(placed, workers[0].pid, "tasks run on the worker holding their 8 MB input");
    }
    assert_eq!(client.bytes_received(), 0, "the driver received none of the 8 MB");
    let through_scheduler = c.scheduler_bytes_received() - before;
    assert!(through_scheduler < 64 << 10, "the scheduler received {through_scheduler} bytes");
    // Gathering brings the bytes to the driver, from the worker.
    assert_eq!(blob.result().unwrap().len(), 8 << 17);
    assert_eq!(client.bytes_received(), 8 << 20, "a Vec<u64> travels as its bytes");
}

#[test]
fn results_are_released_when_no_future_needs_them() {
    let c = cluster(2);
    let client = c.client();
    for round in 0..300 {
        let futs = client.map(make_blob_small, 0..20i64);
        let sums: Vec<_> = futs.iter().map(|f| client.submit(sum_vec, (f,))).collect();
        drop(futs);
        assert_eq!(client.gather(&sums).unwrap().len(), 20, "round {round}");
    }
    // Releases are asynchronous: wait for the scheduler to settle.
    let mut status = c.status().unwrap();
    for _ in 0..200 {
        if status.tasks == 0 && status.workers.iter().all(|w| w.objects == 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        status = c.status().unwrap();
    }
    assert_eq!(status.tasks, 0, "{status:?}");
    assert!(status.workers.iter().all(|w| w.objects == 0 && w.stored == 0), "{status:?}");
    let kept = client.submit(make_blob_small, (3,));
    assert_eq!(kept.result().unwrap().len(), 3000);
    assert_eq!(c.status().unwrap().tasks, 1, "a held future keeps its result");
}

#[chorus::remote]
fn make_blob_small(n: i64) -> Vec<i64> {
    vec![1; n as usize * 1000]
}

#[test]
fn unknown_resources_fail_with_a_clear_error() {
    let c = cluster(1);
    let client = c.client();
    let e = client.submit_with(inc, (1,), TaskOptions::new().cpus(4)).result().unwrap_err();
    match &e {
        chorus::Error::Task(t) => assert_eq!(t.kind, FailureKind::NoWorker),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("no worker offers"), "{e}");
}
