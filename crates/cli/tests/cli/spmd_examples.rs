//! The examples, under `chorus run` and self-spawned.

use std::process::Command;
use std::time::Duration;

use crate::support::{chorus_bin, example, finish};

fn lines_sorted(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(|l| l.to_string()).collect();
    v.sort();
    v
}

#[test]
fn hello_under_chorus_run_prefixes_each_rank() {
    let out = finish(Command::new(chorus_bin()).args(["run", "-n", "4"]).arg(example("hello")), Duration::from_secs(60));
    assert!(out.success(), "{}", out.all());
    assert_eq!(lines_sorted(&out.stdout), (0..4).map(|r| format!("[{r}] rank {r} of 4")).collect::<Vec<_>>());
}

#[test]
fn hello_without_prefix() {
    let out = finish(
        Command::new(chorus_bin()).args(["run", "-n", "2", "--no-prefix", "--"]).arg(example("hello")),
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.all());
    assert_eq!(lines_sorted(&out.stdout), vec!["rank 0 of 2", "rank 1 of 2"]);
}

#[test]
fn hello_self_spawned_with_chorus_procs() {
    let out = finish(Command::new(example("hello")).env("CHORUS_PROCS", "4"), Duration::from_secs(60));
    assert!(out.success(), "{}", out.all());
    let mut expect: Vec<String> = (1..4).map(|r| format!("[{r}] rank {r} of 4")).collect();
    expect.push("rank 0 of 4".into());
    expect.sort();
    assert_eq!(lines_sorted(&out.stdout), expect);
}

#[test]
fn hello_started_plainly_is_a_world_of_one() {
    let out = finish(&mut Command::new(example("hello")), Duration::from_secs(30));
    assert_eq!(out.stdout, "rank 0 of 1\n", "{}", out.all());
}

/// The mean computed naively, in this process.
fn reference_mean(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut cents, mut rows) = (0i128, 0u64);
    for line in text.lines().skip(1) {
        let amount = line.split(',').nth(3).unwrap();
        let (w, f) = amount.split_once('.').unwrap();
        cents += w.parse::<i128>().unwrap() * 100 + f.parse::<i128>().unwrap();
        rows += 1;
    }
    format!("mean Purchase_Amount = {:.6} over {rows} rows", cents as f64 / rows as f64 / 100.0)
}

#[test]
fn purchases_mean_is_identical_for_any_number_of_ranks() {
    let dir = std::env::temp_dir().join(format!("chorus-pm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("purchases.csv");
    chorus_datagen::write_purchases(&path, 30_011, 5).unwrap();
    let expect = reference_mean(&path);
    for n in 1..=4 {
        let out = finish(
            Command::new(chorus_bin()).args(["run", "-n", &n.to_string()]).arg(example("purchases_mean")).arg("--path").arg(&path),
            Duration::from_secs(60),
        );
        assert!(out.success(), "{}", out.all());
        assert_eq!(out.stdout.trim(), format!("[0] {expect} ({n} ranks)"), "{}", out.all());
    }
    let out = finish(
        Command::new(example("purchases_mean")).arg("--path").arg(&path).env("CHORUS_PROCS", "3"),
        Duration::from_secs(60),
    );
    assert_eq!(out.stdout.trim(), format!("{expect} (3 ranks)"), "{}", out.all());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn purchases_mean_generates_missing_data_and_reports_bad_rows_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("chorus-pm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gen.csv");
    let out = finish(
        Command::new(chorus_bin()).args(["run", "-n", "2"]).arg(example("purchases_mean")).arg("--path").arg(&path).args(["--rows", "5000"]),
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("over 5000 rows (2 ranks)"), "{}", out.all());

    let mut text = std::fs::read_to_string(&path).unwrap();
    let line_4000 = text.lines().nth(3999).unwrap().to_string();
    let broken: Vec<&str> = line_4000.split(',').collect();
    let bad = line_4000.replacen(broken[3], "12.3x", 1);
    text = text.replacen(&line_4000, &bad, 1);
    std::fs::write(&path, text).unwrap();
    let out = finish(
        Command::new(chorus_bin()).args(["run", "-n", "3"]).arg(example("purchases_mean")).arg("--path").arg(&path),
        Duration::from_secs(60),
    );
    assert!(!out.success());
    assert!(out.stderr.contains(&format!("{}:4000", path.display())), "{}", out.all());
    assert!(out.stderr.contains("\"12.3x\" is not an amount"), "{}", out.all());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chorus_run_explains_usage_errors() {
    let out = finish(Command::new(chorus_bin()).args(["run", "-n", "2", "no-such-program-xyz"]), Duration::from_secs(20));
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("no-such-program-xyz was not found on PATH"), "{}", out.all());
    let out = finish(Command::new(chorus_bin()).args(["run", "-n", "0"]).arg(example("hello")), Duration::from_secs(20));
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("at least one process"), "{}", out.all());
    let out = finish(Command::new(chorus_bin()).args(["run", "-n", "2"]), Duration::from_secs(20));
    assert_eq!(out.code, Some(2), "{}", out.all());
}

#[test]
fn chorus_run_passes_arguments_and_exit_codes_through() {
    // `sh -c 'exit 3'` as every rank: not a chorus program, but its status must come back.
    let out = finish(Command::new(chorus_bin()).args(["run", "-n", "2", "sh", "-c", "echo hi; exit 3"]), Duration::from_secs(20));
    assert_eq!(out.code, Some(3), "{}", out.all());
    assert!(out.stdout.contains("hi"), "{}", out.all());
    assert!(out.stderr.contains("failed: exited with status 3"), "{}", out.all());
}
