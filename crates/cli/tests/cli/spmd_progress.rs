//! The start-up bar of an SPMD job (`chorus run --progress`, `CHORUS_PROGRESS=1` for a
//! program that starts its own ranks): drawn on a terminal while ranks join, never into a
//! pipe.

use std::process::Command;
use std::time::Duration;

use crate::support::{chorus_bin, finish, me, rank_args};

/// Runs `command` (a shell line) on a pseudo-terminal with util-linux's `script`, which
/// copies what it draws to stdout; `None` when `script` is missing.
fn on_a_terminal(command: &str, env: &[(&str, &str)]) -> Option<crate::support::Finished> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux's script is not installed");
        return None;
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &format!("{command} 2>&1"), "/dev/null"]).env("TERM", "xterm");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Some(finish(&mut cmd, Duration::from_secs(120)))
}

fn shell_words(program: &std::path::Path, args: &[&str]) -> String {
    std::iter::once(program.display().to_string()).chain(args.iter().map(|a| a.to_string())).collect::<Vec<_>>().join(" ")
}

/// What the bar showed: every `N/M ranks` it drew.
fn counts(screen: &str) -> Vec<String> {
    screen.split("| ").filter_map(|s| s.split(" ranks").next().filter(|c| c.contains('/') && c.len() < 8)).map(str::to_string).collect()
}

#[test]
fn chorus_run_progress_shows_ranks_joining_until_all_have() {
    let run = format!("{} run -n 3 --progress -- {}", chorus_bin().display(), shell_words(&me(), &rank_args()));
    let Some(out) = on_a_terminal(&run, &[("CHORUS_TEST_SCENARIO", "slow-start:1500")]) else { return };
    assert!(out.success(), "{}", out.all());
    let seen = counts(&out.stdout);
    assert!(out.stdout.contains("ranks started:"), "{}", out.all());
    assert!(seen.iter().any(|c| c == "2/3"), "the late rank was never shown missing: {seen:?}\n{}", out.all());
    assert_eq!(seen.last().map(String::as_str), Some("3/3"), "{}", out.all());
    assert_eq!(out.stdout.matches("of 3").count(), 3, "every rank ran: {}", out.all());
}

#[test]
fn a_self_spawned_job_draws_the_bar_with_chorus_progress() {
    let program = shell_words(&me(), &rank_args());
    let env = [("CHORUS_TEST_SCENARIO", "slow-start:1500"), ("CHORUS_PROCS", "3"), ("CHORUS_PROGRESS", "1")];
    let Some(out) = on_a_terminal(&program, &env) else { return };
    assert!(out.success(), "{}", out.all());
    let seen = counts(&out.stdout);
    assert!(seen.iter().any(|c| c == "2/3"), "the late rank was never shown missing: {seen:?}\n{}", out.all());
    assert_eq!(seen.last().map(String::as_str), Some("3/3"), "{}", out.all());
}

#[test]
fn no_bar_is_drawn_into_a_pipe_or_without_being_asked() {
    let mut piped = Command::new(chorus_bin());
    piped.args(["run", "-n", "2", "--progress", "--"]).arg(me()).args(rank_args()).env("CHORUS_TEST_SCENARIO", "hello");
    let out = finish(&mut piped, Duration::from_secs(60));
    assert!(out.success(), "{}", out.all());
    assert!(!out.all().contains("ranks started"), "a bar was drawn into a pipe:\n{}", out.all());
    let program = shell_words(&me(), &rank_args());
    let Some(out) = on_a_terminal(&program, &[("CHORUS_TEST_SCENARIO", "hello"), ("CHORUS_PROCS", "2")]) else { return };
    assert!(out.success(), "{}", out.all());
    assert!(!out.stdout.contains("ranks started"), "a bar was drawn without CHORUS_PROGRESS:\n{}", out.all());
}

#[test]
fn a_bad_chorus_progress_value_is_an_error_that_names_it() {
    let mut cmd = Command::new(me());
    cmd.args(rank_args()).env("CHORUS_TEST_SCENARIO", "hello").env("CHORUS_PROCS", "2").env("CHORUS_PROGRESS", "maybe");
    let out = finish(&mut cmd, Duration::from_secs(60));
    assert!(!out.success(), "{}", out.all());
    assert!(out.all().contains("CHORUS_PROGRESS=\"maybe\""), "{}", out.all());
}
