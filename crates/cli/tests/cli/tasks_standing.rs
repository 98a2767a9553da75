//! A standing cluster started with the CLI: `chorus scheduler`, `chorus worker`,
//! `chorus status`, and drivers joining with `Client::connect`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::tasks::ClusterFile;
use chorus::{Client, Secret};

use crate::support::{chorus_bin, me};

#[chorus::remote]
pub fn square(x: i64) -> i64 {
    x * x
}

/// `chorus scheduler` and `chorus worker --nworkers N` running this test binary, with
/// what the scheduler and the workers print kept for the test to read. Dropping it
/// kills them, so a failing test leaves nothing behind.
pub struct Standing {
    pub address: String,
    pub secret: Secret,
    pub file: PathBuf,
    dir: PathBuf,
    procs: Vec<Child>,
    log: Arc<Mutex<String>>,
}

/// Makes `cmd` (`chorus`, perhaps run through `ip netns exec`) start `nworkers` workers,
/// this binary's `worker_program`, that join the scheduler at `address` with the secret of
/// the cluster file `file`.
pub fn worker_args<'a>(cmd: &'a mut Command, address: &str, nworkers: usize, file: &std::path::Path) -> &'a mut Command {
    cmd.args(["worker", "--scheduler", address, "--nworkers", &nworkers.to_string(), "--cluster-file"])
        .arg(file)
        .arg(me())
        .args(["--exact", "worker_program", "--ignored", "--quiet"])
}

/// Appends everything `r` prints to `log`, on a thread of its own.
pub fn collect(r: impl Read + Send + 'static, log: &Arc<Mutex<String>>) {
    let log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut l = log.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
}

impl Standing {
    /// A cluster of `workers` workers; `env` goes to the scheduler and the workers.
    pub fn start(name: &str, workers: usize, env: &[(&str, &str)]) -> Standing {
        Standing::start_with(name, workers, env, &[])
    }

    /// [`Standing::start`], with more arguments for `chorus scheduler`.
    pub fn start_with(name: &str, workers: usize, env: &[(&str, &str)], scheduler_args: &[&str]) -> Standing {
        let dir = std::env::temp_dir().join(format!("chorus-standing-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster");
        let log = Arc::new(Mutex::new(String::new()));
        let mut scheduler = Command::new(chorus_bin())
            .args(["scheduler", "--listen", "127.0.0.1:0", "--cluster-file"])
            .arg(&file)
            .args(scheduler_args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chorus scheduler starts");
        let mut stdout = BufReader::new(scheduler.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("scheduler prints its address");
        collect(stdout, &log);
        collect(scheduler.stderr.take().expect("piped"), &log);
        let address = line.trim().strip_prefix("chorus scheduler at ").expect("address line").to_string();
        let secret = ClusterFile::read(&file).unwrap().secret;
        let mut procs = vec![scheduler];
        if workers > 0 {
            let mut w = worker_args(&mut Command::new(chorus_bin()), &address, workers, &file)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            collect(w.stderr.take().expect("piped"), &log);
            procs.push(w);
        }
        Standing { address, secret, file, dir, procs, log }
    }

    /// A driver in this process, once every worker has joined.
    pub fn client(&self, workers: usize) -> Client {
        let client = Client::connect_with_secret(&self.address, self.secret.clone()).unwrap();
        client.wait_for_workers(workers, Duration::from_secs(30)).unwrap();
        client
    }

    /// Waits until the scheduler or a worker printed `needle`; what they printed.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.contains(needle) {
                return log;
            }
            assert!(t.elapsed() < limit, "nothing printed {needle:?} within {limit:?}; the cluster printed:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the scheduler and waits (up to `limit`) for it to exit.
    pub fn stop_scheduler(&mut self, signal: i32, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: a plain kill(2) of the child this test started.
        assert_eq!(unsafe { libc::kill(self.procs[0].id() as i32, signal) }, 0);
        let t = Instant::now();
        loop {
            if let Some(status) = self.procs[0].try_wait().unwrap() {
                return status;
            }
            assert!(t.elapsed() < limit, "the scheduler did not stop within {limit:?} of signal {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the scheduler process still runs.
    pub fn scheduler_alive(&mut self) -> bool {
        matches!(self.procs[0].try_wait(), Ok(None))
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn standing_cluster_from_the_cli_serves_a_connected_client() {
    let cluster = Standing::start("basic", 2, &[]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cluster.file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the cluster file is owner-only");
    assert_eq!(ClusterFile::read(&cluster.file).unwrap().address, cluster.address);

    let client = cluster.client(2);
    let futs = client.map(square, 0..100i64);
    assert_eq!(client.gather(&futs).unwrap(), (0..100).map(|x| x * x).collect::<Vec<_>>());

    let status =
        Command::new(chorus_bin()).args(["status", &cluster.address, "--cluster-file"]).arg(&cluster.file).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("2 workers, 1 clients"), "{text}");
    assert_eq!(text.lines().count(), 4, "a header and one line per worker: {text}");

    // A driver without the secret is refused, and says why.
    let e = Client::connect_with_secret(&cluster.address, Secret::generate().unwrap()).unwrap_err();
    assert!(
        matches!(&e, chorus::Error::Comm(chorus::CommError::Refused { refusal: chorus::comm::Refusal::WrongSecret, .. })),
        "{e}"
    );
    assert!(e.to_string().contains("wrong secret"), "and says so: {e}");
    // The cluster still serves the first client.
    assert_eq!(client.submit(square, (12,)).result().unwrap(), 144);
}
