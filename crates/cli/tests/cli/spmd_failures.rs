//! A job fails as a whole and fast: a panic, an error from main, SIGKILL, a mismatched
//! collective; and a slow rank is reported while the others wait.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{chorus_run, finish, me, rank_args, wait_with_limit};

#[test]
fn rank_panic_mid_collective_stops_the_job_and_names_the_rank() {
    let out = finish(&mut chorus_run(4, "panic", &[]), Duration::from_secs(20));
    assert!(!out.success());
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
    assert!(out.stderr.contains("rank 3 failed: panicked at"), "{}", out.all());
    assert!(out.stderr.contains("rank 3 gives up on purpose"), "{}", out.all());
}

#[test]
fn rank_error_from_main_is_reported_with_its_message() {
    let out = finish(&mut chorus_run(3, "error", &[]), Duration::from_secs(20));
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("rank 1 failed: error: rank 1 could not open input.csv"), "{}", out.all());
}

#[test]
fn rank_killed_with_sigkill_stops_the_job_within_5_seconds() {
    let pidfile = std::env::temp_dir().join(format!("chorus-kill-{}", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    // Ranks print wait warnings before the kill: the report must still name the signal.
    let child = chorus_run(3, &format!("sigkill:{}", pidfile.display()), &[("CHORUS_WARN_AFTER", "0.1")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = s.trim().parse() {
                break pid;
            }
        }
        assert!(Instant::now() < deadline, "rank 1 never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(400));
    let killed = Instant::now();
    // SAFETY: plain kill(2) of a process this test started (through the launcher).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = wait_with_limit(child, Duration::from_secs(20));
    assert!(killed.elapsed() < Duration::from_secs(5), "took {:?}", killed.elapsed());
    assert_eq!(out.code, Some(137), "{}", out.all());
    assert!(out.stderr.contains("rank 1 failed: killed by signal 9 (SIGKILL)"), "{}", out.all());
    assert!(out.stderr.contains("has waited"), "the warnings were printed: {}", out.all());
    let _ = std::fs::remove_file(&pidfile);
}

#[test]
fn self_spawned_job_reports_a_child_panic_and_exits_non_zero() {
    let out = finish(
        Command::new(me()).args(rank_args()).env("CHORUS_TEST_SCENARIO", "panic").env("CHORUS_PROCS", "3"),
        Duration::from_secs(20),
    );
    assert!(!out.success(), "{}", out.all());
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
    assert!(out.stderr.contains("rank 2 failed: panicked at"), "{}", out.all());
    assert!(out.stderr.contains("rank 2 gives up on purpose"), "{}", out.all());
}

#[test]
fn mismatched_collectives_fail_every_rank_with_a_message() {
    let out = finish(&mut chorus_run(2, "mismatch", &[]), Duration::from_secs(20));
    assert!(!out.success(), "{}", out.all());
    assert!(out.stderr.contains("collective mismatch"), "{}", out.all());
    assert!(out.stderr.contains("bcast") && out.stderr.contains("gatherv"), "{}", out.all());
}

#[test]
fn a_late_rank_is_named_by_the_ranks_waiting_for_it() {
    let out = finish(&mut chorus_run(3, "late", &[("CHORUS_WARN_AFTER", "0.3")]), Duration::from_secs(20));
    assert!(out.success(), "{}", out.all());
    assert!(out.stderr.contains("barrier(root 0) as collective #0 for rank 1"), "{}", out.all());
    assert_eq!(out.stdout.matches("passed the barrier").count(), 3, "{}", out.all());
}
