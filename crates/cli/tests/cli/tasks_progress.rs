//! Progress bars: drawn on a terminal, never into a pipe.

use std::process::Command;
use std::time::Duration;

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
