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

/// Network namespaces joined by a bridge in a namespace of their own, removed on drop.
pub struct Namespaces {
    pub names: Vec<String>,
}

impl Namespaces {
    /// Hosts `0..n` at 10.123.0.1, 10.123.0.2, …
    pub fn create(tag: &str, n: usize) -> Result<Namespaces, String> {
        let ns = Namespaces { names: (0..=n).map(|i| format!("chorus-{tag}-{i}")).collect() };
        let hub = ns.names[n].clone();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let name = &ns.names[i];
            ip(&["netns", "add", name])?;
            let (a, b) = (format!("cv{tag}{i}a"), format!("cv{tag}{i}b"));
            ip(&["link", "add", &a, "netns", name, "type", "veth", "peer", "name", &b, "netns", &hub])?;
            ip(&["-n", &hub, "link", "set", &b, "master", "br0", "up"])?;
            ip(&["-n", name, "addr", "add", &format!("10.123.0.{}/24", i + 1), "dev", &a])?;
            ip(&["-n", name, "link", "set", &a, "up"])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Namespaces {
    /// Namespaces for a test, or `None` (and the test is skipped, or fails under
    /// `CHORUS_REQUIRE_NETNS=1`) where they cannot be made.
    pub fn for_test(n: usize) -> Option<Namespaces> {
        // Tests run in parallel: each gets its own names.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let tag = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        match Namespaces::create(&tag, n) {
            Ok(ns) => Some(ns),
            Err(why) => {
                skip_or_fail("NETNS", &format!("network namespaces cannot be made here (needs root and iproute2): {why}"));
                None
            }
        }
    }

    /// `ip netns exec <host i> program`.
    pub fn exec(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names[i]]).arg(program);
        cmd
    }
}

