//! Starting rank programs and launchers, with a deadline so that a hang fails the test.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished process printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

pub fn chorus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chorus"))
}

/// This test binary, as a rank program.
pub fn me() -> PathBuf {
    std::env::current_exe().expect("test binary path")
}

/// Arguments that make this test binary run only `rank_program`.
pub fn rank_args() -> Vec<&'static str> {
    vec!["rank_program", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]
}

/// A built example, next to the `chorus` binary.
pub fn example(name: &str) -> PathBuf {
    let p = chorus_bin().parent().expect("target dir").join("examples").join(name);
    assert!(p.exists(), "{} is missing: build the examples (cargo test --workspace builds them)", p.display());
    p
}

/// `chorus run -n N -- <this binary> rank_program` with `scenario`.
pub fn chorus_run(n: usize, scenario: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(chorus_bin());
    cmd.args(["run", "-n", &n.to_string(), "--"]).arg(me()).args(rank_args());
    cmd.env("CHORUS_TEST_SCENARIO", scenario);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd` to completion; panics if it takes longer than `limit` (a hang).
pub fn finish(cmd: &mut Command, limit: Duration) -> Finished {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start process");
    wait_with_limit(child, limit)
}

pub fn wait_with_limit(mut child: Child, limit: Duration) -> Finished {
    let started = Instant::now();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process hung for more than {limit:?}; stderr so far:\n{}", e.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Finished { code: status.code(), stdout: o.join().unwrap(), stderr: e.join().unwrap(), elapsed }
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a requirement may be skipped here (CI sets `CHORUS_REQUIRE_<NAME>=1`).
pub fn skip_or_fail(name: &str, why: &str) {
    if std::env::var(format!("CHORUS_REQUIRE_{name}")).is_ok_and(|v| v == "1") {
        panic!("{why} (CHORUS_REQUIRE_{name}=1, so this is a failure)");
    }
    eprintln!("SKIPPED: {why}");
}
