//! Progress bars: drawn on a terminal, never into a pipe.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{example, finish};

#[test]
fn a_piped_run_draws_no_bar_but_prints_the_dashboard_link() {
    let out = finish(&mut Command::new(example("futures_seed")), Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("sum of f1 over 0..20000 = 200010000"), "{}", out.all());
    assert!(!out.stderr.contains("%|") && !out.stderr.contains('\u{1b}'), "a bar was drawn into a pipe:\n{}", out.stderr);
    assert!(out.stderr.contains("Dashboard: http://127.0.0.1:"), "{}", out.all());
}

#[test]
fn a_run_on_a_terminal_draws_the_bar_to_100_percent() {
    // `script` gives the program a pseudo-terminal and copies what it draws.
    let command = format!("{} 2>&1", example("futures_seed").display());
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &command, "/dev/null"]).env("TERM", "xterm");
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux's script is not installed");
        return;
    }
    let out = finish(&mut cmd, Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("progress: 100%|") && out.stdout.contains("20000/20000 tasks"), "{}", out.all());
}

#[test]
fn chorus_trace_makes_a_local_cluster_write_its_task_stream_when_it_stops() {
    let dir = std::env::temp_dir().join(format!("chorus-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.json");
    let out = finish(Command::new(example("futures_seed")).env("CHORUS_TRACE", &path), Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the trace was written")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let events = trace["traceEvents"].as_array().unwrap();
    let runs = events.iter().filter(|e| e["ph"] == "X" && e["cat"] == "task").count();
    // 3 + 3 + 3 tasks, then the map of 20,000.
    assert_eq!(runs, 20_009, "one complete event per run");
    let workers = events.iter().filter(|e| e["ph"] == "M" && e["name"] == "process_name").count();
    assert_eq!(workers, 2, "one process per worker");
    assert!(events.iter().any(|e| e["name"].as_str().is_some_and(|n| n.ends_with("f1"))));
}

#[test]
fn chorus_scheduler_trace_is_rewritten_while_tasks_run_and_written_at_sigterm() {
    use crate::tasks_standing::{square, Standing};
    let dir = std::env::temp_dir().join(format!("chorus-sched-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stream.json");
    let runs = |path: &std::path::Path| -> usize {
        let text = std::fs::read_to_string(path).expect("the trace was written");
        let trace: serde_json::Value = serde_json::from_str(&text).expect("a whole JSON file");
        trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X" && e["cat"] == "task").count()
    };
    let mut cluster = Standing::start_with("trace", 2, &[], &["--no-dashboard", "--trace", path.to_str().unwrap()]);
    let client = cluster.client(2);
    let futs = client.map(square, 0..300i64);
    assert_eq!(client.gather(&futs).unwrap().len(), 300);
    // Rewritten while the scheduler runs (every 5 s).
    let t = Instant::now();
    while !path.exists() || runs(&path) < 300 {
        assert!(t.elapsed() < Duration::from_secs(30), "the trace was not rewritten with the 300 runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let more = client.map(square, 0..50i64);
    assert_eq!(client.gather(&more).unwrap().len(), 50);
    drop(client);
    let status = cluster.stop_scheduler(libc::SIGTERM, Duration::from_secs(20));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
    assert_eq!(runs(&path), 350, "the last write, at SIGTERM, has every run");
    let log = cluster.wait_for_log("trace written to", Duration::from_secs(5));
    assert!(log.contains("stopped by signal 15"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
