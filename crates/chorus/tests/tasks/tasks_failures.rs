//! Errors reach the future with their cause; retries; lost workers; killed workers.

use std::time::Duration;

use chorus::{FailureKind, TaskOptions};

use crate::support::{add, builder, cluster, inc, pid, sleep_ms};

#[chorus::remote]
fn fails_on(x: i64) -> Result<i64, String> {
    if x == 3 {
        Err(format!("three is not allowed (got {x})"))
    } else {
        Ok(x)
    }
}

#[chorus::remote]
fn panics(x: i64) -> i64 {
    if x >= 0 {
        panic!("task panic with {x}");
    }
    x
}

/// Fails until it has been called `n` times in this directory (counted with files).
#[chorus::remote]
fn flaky(dir: String, n: usize) -> usize {
    let calls = std::fs::read_dir(&dir).unwrap().count() + 1;
    std::fs::write(format!("{dir}/{calls}-{}", std::process::id()), b"").unwrap();
    if calls < n {
        panic!("attempt {calls} fails");
    }
    calls
}

#[chorus::remote]
fn kill_my_worker() -> i64 {
    std::process::abort()
}

#[derive(Debug, serde::Deserialize)]
pub struct Unserializable;

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot encode this"))
    }
}

#[chorus::remote]
fn unserializable_result() -> Unserializable {
    Unserializable
}

fn temp_dir(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("chorus-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.display().to_string()
}

#[test]
fn errors_carry_function_worker_and_message_to_dependents() {
    let c = cluster(2);
    let client = c.client();
    let bad = client.submit(fails_on, (3,));
    let e = bad.result().unwrap_err();
    let chorus::Error::Task(t) = &e else { panic!("{e}") };
    assert_eq!(t.kind, FailureKind::Error);
    assert!(t.function.ends_with("::fails_on"), "{}", t.function);
    assert!(t.worker.as_deref().unwrap_or("").starts_with("worker "), "{t:?}");
    assert!(e.to_string().contains("three is not allowed (got 3)"), "{e}");
    let dependent = client.submit(add, (&bad, 1));
    let e2 = dependent.result().unwrap_err().to_string();
    assert!(e2.contains("three is not allowed") && e2.contains("add"), "{e2}");

    let p = client.submit(panics, (7,)).result().unwrap_err();
    let chorus::Error::Task(t) = &p else { panic!("{p}") };
    assert_eq!(t.kind, FailureKind::Panic);
    assert_eq!(t.message, "task panic with 7");
    assert!(t.location.as_deref().unwrap_or("").contains("tasks_failures.rs"), "{t:?}");
    assert_eq!(client.submit(panics, (-1,)).result().unwrap(), -1, "the cluster keeps working");

    let s = client.submit(unserializable_result, ()).result().unwrap_err().to_string();
    assert!(s.contains("Unserializable") && s.contains("could not be serialized"), "{s}");
    let e = client.submit(take_picky, (Picky(true),)).result().unwrap_err().to_string();
    assert!(e.contains("Picky") && e.contains("could not be serialized"), "{e}");
    assert_eq!(client.submit(take_picky, (Picky(false),)).result().unwrap(), 1);
}

/// Fails to encode when its flag is set.
#[derive(serde::Deserialize)]
pub struct Picky(bool);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            Err(serde::ser::Error::custom("picky refuses"))
        } else {
            s.serialize_bool(false)
        }
    }
}

#[chorus::remote]
fn take_picky(_p: Picky) -> i64 {
    1
}

#[test]
fn retries_rerun_failed_tasks() {
    let c = cluster(2);
    let client = c.client();
    let dir = temp_dir("retries-ok");
    let ok = client.submit_with(flaky, (dir.clone(), 3), TaskOptions::new().retries(2));
    assert_eq!(ok.result().unwrap(), 3);
    let dir_short = temp_dir("retries-short");
    let short = client.submit_with(flaky, (dir_short.clone(), 3), TaskOptions::new().retries(1));
    let e = short.result().unwrap_err().to_string();
    assert!(e.contains("attempt 2 fails"), "{e}");
    for d in [dir, dir_short] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_task_that_kills_workers_fails_with_killed_worker() {
    let c = builder(3).allowed_failures(1).start().unwrap();
    let client = c.client();
    let e = client.submit(kill_my_worker, ()).result().unwrap_err();
    let chorus::Error::Task(t) = &e else { panic!("{e}") };
    assert_eq!(t.kind, FailureKind::KilledWorker, "{e}");
    assert!(e.to_string().contains("2 workers that died"), "{e}");
    assert_eq!(client.submit(inc, (1,)).result().unwrap(), 2, "the last worker still works");
}

#[test]
fn sigkilled_worker_during_a_large_map_with_dependencies_loses_nothing() {
    let c = cluster(3);
    let client = c.client();
    let n = 100_000i64;
    let level1 = client.map(inc, 0..n);
    let level2 = client.map_args(add, level1.chunks(2).map(|p| (p[0].clone(), p[1].clone())));
    drop(level1);
    // Kill a worker once results are flowing.
    let (done, _) = client.wait(&level2[..100], chorus::WaitFor::FirstCompleted, Some(Duration::from_secs(30)));
    assert!(!done.is_empty());
    let victim = c.worker_pids()[1];
    unsafe {
        // SAFETY: kill(2) on a child process id this test started.
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let got = client.gather(&level2).unwrap();
    let want: Vec<i64> = (0..n / 2).map(|i| (2 * i + 1) + (2 * i + 2)).collect();
    assert_eq!(got, want);
    assert_eq!(client.workers().len(), 2);
}

#[test]
fn a_worker_that_stops_answering_is_dropped_after_the_heartbeat_timeout() {
    let c = builder(2).heartbeat_timeout(Duration::from_secs(3)).start().unwrap();
    let client = c.client();
    let frozen = c.worker_pids()[0];
    let futs = client.map(sleep_ms, std::iter::repeat_n(100u64, 10));
    let (done, _) = client.wait(&futs, chorus::WaitFor::FirstCompleted, Some(Duration::from_secs(30)));
    assert!(!done.is_empty());
    // SIGSTOP keeps the connection open: only the missing heartbeats can tell.
    unsafe {
        // SAFETY: kill(2) on a child process id this test started.
        libc::kill(frozen as i32, libc::SIGSTOP);
    }
    let (done, pending) = client.wait(&futs, chorus::WaitFor::AllCompleted, Some(Duration::from_secs(60)));
    unsafe {
        // SAFETY: as above; the worker was dropped, so it exits once resumed.
        libc::kill(frozen as i32, libc::SIGKILL);
    }
    assert!(pending.is_empty(), "{} tasks still pending", pending.len());
    assert_eq!(done.len(), 10);
    let pids = client.gather(&futs).unwrap();
    assert!(pids.iter().all(|&p| p != 0));
    let workers = client.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(client.submit(pid, ()).result().unwrap(), c.worker_pids()[1], "the other worker runs new tasks");
}
