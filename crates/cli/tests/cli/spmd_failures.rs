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

/// Runs `scenario` (given a pid file for rank 1 to write) on 3 ranks, SIGKILLs rank 1
/// `settle` after it has started, and returns the job's outcome and how long it took to
/// end after the kill.
fn kill_rank_1(scenario: &str, env: &[(&str, &str)], settle: Duration) -> (crate::support::Finished, Duration) {
    let pidfile = std::env::temp_dir().join(format!("chorus-{scenario}-{}", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    let child = chorus_run(3, &format!("{scenario}:{}", pidfile.display()), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        if let Ok(pid) = std::fs::read_to_string(&pidfile).unwrap_or_default().trim().parse() {
            break pid;
        }
        assert!(Instant::now() < deadline, "rank 1 never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(settle);
    let killed = Instant::now();
    // SAFETY: plain kill(2) of a process this test started (through the launcher).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = wait_with_limit(child, Duration::from_secs(20));
    let _ = std::fs::remove_file(&pidfile);
    (out, killed.elapsed())
}

#[test]
fn rank_killed_with_sigkill_stops_the_job_within_5_seconds() {
    // Ranks print wait warnings before the kill: the report must still name the signal.
    let (out, took) = kill_rank_1("sigkill", &[("CHORUS_WARN_AFTER", "0.1")], Duration::from_millis(400));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(out.code, Some(137), "{}", out.all());
    assert!(out.stderr.contains("rank 1 failed: killed by signal 9 (SIGKILL)"), "{}", out.all());
    assert!(out.stderr.contains("has waited"), "the warnings were printed: {}", out.all());
}

/// The entries of `/dev/shm` (none of them chorus's: its rings are anonymous memory files).
fn dev_shm() -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir("/dev/shm").map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_rank_killed_in_the_middle_of_a_shared_memory_transfer_fails_the_job_fast_and_leaves_nothing_in_dev_shm() {
    // Large messages copied once from the sender's memory, then streamed through the rings
    // straight into the receivers' buffers (two copies).
    for single_copy in ["auto", "off"] {
        let before = dev_shm();
        // Well into the loop of 32 MB broadcasts (each a few milliseconds).
        let env = [("CHORUS_TRANSPORT", "shm"), ("CHORUS_SINGLE_COPY", single_copy)];
        let (out, took) = kill_rank_1("sigkill-bcast", &env, Duration::from_millis(700));
        assert!(took < Duration::from_secs(5), "{single_copy}: took {took:?}");
        assert_eq!(out.code, Some(137), "{single_copy}: {}", out.all());
        assert!(out.stderr.contains("rank 1 failed: killed by signal 9 (SIGKILL)"), "{single_copy}: {}", out.all());
        assert_eq!(dev_shm(), before, "{single_copy}: a killed shared-memory job left files in /dev/shm");
    }
}

#[test]
fn a_rank_killed_in_a_loop_of_shared_segment_barriers_fails_the_job_fast() {
    for (scenario, settle) in [("sigkill-flat", 300), ("sigkill-flat-asleep", 300)] {
        let before = dev_shm();
        let (out, took) = kill_rank_1(scenario, &[("CHORUS_TRANSPORT", "shm")], Duration::from_millis(settle));
        assert!(took < Duration::from_secs(5), "{scenario}: took {took:?}");
        assert_eq!(out.code, Some(137), "{scenario}: {}", out.all());
        assert!(out.stderr.contains("rank 1 failed: killed by signal 9 (SIGKILL)"), "{scenario}: {}", out.all());
        assert_eq!(dev_shm(), before, "{scenario}: a killed job left files in /dev/shm");
    }
}

#[test]
fn without_shared_memory_ranks_fall_back_to_unix_sockets_and_say_so_once() {
    // A file-size limit of 512 bytes makes sizing the rings' memory file fail (EFBIG; the
    // shell ignores SIGXFSZ for the job), as a container without shared memory would.
    let launcher = format!(
        "trap '' XFSZ; ulimit -f 1; exec {} run -n 3 -- {} {}",
        crate::support::chorus_bin().display(),
        me().display(),
        rank_args().join(" ")
    );
    let out = finish(
        Command::new("sh").args(["-c", &launcher]).env("CHORUS_TEST_SCENARIO", "collectives:3").env("CHORUS_TRANSPORT", "shm"),
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.all());
    let said = out.stderr.matches("shared memory between ranks of this host is unavailable").count();
    // Ranks 1 and 2 create rings (each for the ranks below it), each says it once.
    assert_eq!(said, 2, "{}", out.all());
    assert!(out.stderr.contains("using Unix sockets instead"), "{}", out.all());
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
