//! The task layer under TLS: a cluster whose scheduler, workers and driver sit on three
//! hosts (network namespaces) works over encrypted connections, worker-to-worker data
//! included, and peers that disagree on TLS or on the secret are refused by name.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::tasks::ClusterFile;
use chorus::{Client, Secret};

use crate::support::{chorus_bin, me, wait_with_limit, Finished, Namespaces};
use crate::tasks_standing::{collect, worker_args, Standing};

#[chorus::remote]
fn plus_one(x: i64) -> i64 {
    x + 1
}

#[chorus::remote]
fn byte_len(v: Vec<u8>) -> usize {
    v.len()
}

/// 8 MB, different for each seed.
#[chorus::remote]
fn block(seed: i64) -> Vec<u8> {
    pattern(seed as u8, 8 << 20)
}

#[chorus::remote]
fn byte_sum(a: Vec<u8>, b: Vec<u8>, c: Vec<u8>, d: Vec<u8>) -> u64 {
    [a, b, c, d].iter().flatten().map(|x| u64::from(*x)).sum()
}

fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

/// The driver of [`a_task_cluster_on_three_hosts_runs_over_tls`]: small tasks, an argument
/// kept in the driver's store, blocks that cross between workers, scatter and gather.
pub fn tls_driver(address: &str) {
    let secret = Secret::from_env().expect("a valid CHORUS_SECRET").expect("CHORUS_SECRET is set");
    let client = Client::connect_with_secret(address, secret).expect("the driver connects");
    client.wait_for_workers(2, Duration::from_secs(30)).expect("both workers join");
    for i in 0..100 {
        assert_eq!(client.submit(plus_one, (i,)).result().unwrap(), i + 1);
    }
    assert_eq!(client.submit(byte_len, (pattern(1, 20 << 20),)).result().unwrap(), 20 << 20);
    let blocks = client.map(block, 0..4i64);
    let sum = client.submit(byte_sum, (&blocks[0], &blocks[1], &blocks[2], &blocks[3])).result().unwrap();
    let want: u64 = (0..4u8).flat_map(|s| pattern(s, 8 << 20)).map(u64::from).sum();
    assert_eq!(sum, want);
    let data = pattern(7, 16 << 20);
    let scattered = client.scatter(vec![data.clone()]).unwrap();
    assert!(client.gather(&scattered).unwrap()[0] == data);
    println!("tls driver ok");
}

/// Kills the processes it holds when dropped, so a failing test leaves nothing behind.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const DEBUG_HANDSHAKES: (&str, &str) = ("RUST_LOG", "warn,chorus_comm::handshake=debug");

/// A standing cluster across hosts: `chorus scheduler` on host 0 listening at `address`,
/// and one `chorus worker` (this binary's `worker_program`) on each of hosts 1 and 2,
/// all with `env`. Dropping it stops them.
pub struct HostCluster {
    pub secret: Secret,
    pub scheduler_log: Arc<Mutex<String>>,
    pub worker_log: Arc<Mutex<String>>,
    procs: Procs,
    _dir: tempfile::TempDir,
}

impl HostCluster {
    pub fn start(ns: &Namespaces, address: &str, env: &[(&str, &str)]) -> HostCluster {
        let dir = tempfile::Builder::new().prefix("chorus-host-cluster-").tempdir().unwrap();
        let file = dir.path().join("cluster");
        let (scheduler_log, worker_log) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
        let mut scheduler = ns
            .exec(0, chorus_bin())
            .args(["scheduler", "--listen", address, "--cluster-file"])
            .arg(&file)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(scheduler.stdout.take().unwrap());
        collect(scheduler.stderr.take().unwrap(), &scheduler_log);
        let mut procs = Procs(vec![scheduler]);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains(address), "{line}{}", scheduler_log.lock().unwrap());
        let secret = ClusterFile::read(&file).unwrap().secret;
        for host in [1, 2] {
            let mut w = worker_args(&mut ns.exec(host, chorus_bin()), address, 1, &file)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            collect(w.stderr.take().unwrap(), &worker_log);
            procs.0.push(w);
        }
        HostCluster { secret, scheduler_log, worker_log, procs, _dir: dir }
    }

    /// Runs this binary's `driver_program` with `CHORUS_TEST_DRIVER_JOB=job` on host 0,
    /// with `env`, to its end (at most `limit`).
    pub fn drive(&self, ns: &Namespaces, address: &str, job: &str, env: &[(&str, &str)], limit: Duration) -> Finished {
        let driver = ns
            .exec(0, me())
            .args(["driver_program", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env("CHORUS_TEST_DRIVER", address)
            .env("CHORUS_TEST_DRIVER_JOB", job)
            .env("CHORUS_SECRET", self.secret.to_hex())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_with_limit(driver, limit)
    }

    /// Stops the scheduler and the workers; what they logged.
    pub fn stop(self) -> (String, String) {
        drop(self.procs);
        let logs = (self.scheduler_log.lock().unwrap().clone(), self.worker_log.lock().unwrap().clone());
        logs
    }
}

#[test]
fn a_task_cluster_on_three_hosts_runs_over_tls() {
    let Some(ns) = Namespaces::for_test(3) else { return };
    let address = "10.123.0.1:47100";
    let cluster = HostCluster::start(&ns, address, &[DEBUG_HANDSHAKES]);
    let out = cluster.drive(&ns, address, "tls", &[DEBUG_HANDSHAKES], Duration::from_secs(180));
    let (scheduler_log, worker_log) = cluster.stop();
    assert!(out.success() && out.stdout.contains("tls driver ok"), "{}\nscheduler:\n{scheduler_log}\nworkers:\n{worker_log}", out.all());
    // The scheduler accepted the workers and the driver under TLS; the driver reached
    // the scheduler under TLS; the workers reached the scheduler, the driver's store
    // (for the 20 MB argument) and each other's data servers (for the blocks) under TLS.
    for host in ["10.123.0.1", "10.123.0.2", "10.123.0.3"] {
        assert!(scheduler_log.lines().any(|l| l.contains(&format!("from {host}:")) && l.contains("secured with TLS")), "{host}:\n{scheduler_log}");
    }
    assert!(out.stderr.contains(&format!("to {address} secured with TLS")), "{}", out.all());
    let data = worker_log.lines().filter(|l| l.contains("secured with TLS") && !l.contains(address)).count();
    assert!(data >= 2, "data connections between hosts are encrypted too:\n{worker_log}");
}

/// `chorus status` against a scheduler that has TLS on (on loopback too), with `env`.
fn status(cluster: &Standing, env: &[(&str, &str)]) -> crate::support::Finished {
    let child = Command::new(chorus_bin())
        .args(["status", &cluster.address])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_limit(child, Duration::from_secs(60))
}

#[test]
fn peers_that_disagree_on_tls_or_the_secret_are_refused_by_name_and_the_scheduler_keeps_serving() {
    let cluster = Standing::start("tls-refusals", 0, &[("CHORUS_TLS", "on")]);
    let secret = cluster.secret.to_hex();

    let plain = status(&cluster, &[("CHORUS_TLS", "off"), ("CHORUS_SECRET", &secret)]);
    assert!(!plain.success(), "{}", plain.all());
    assert!(plain.stderr.contains("requires TLS") && plain.stderr.contains("CHORUS_TLS=off"), "{}", plain.all());
    cluster.wait_for_log("does not use TLS", Duration::from_secs(30));

    let stranger = Secret::generate().unwrap().to_hex();
    let other = status(&cluster, &[("CHORUS_TLS", "on"), ("CHORUS_SECRET", &stranger)]);
    assert!(!other.success(), "{}", other.all());
    assert!(other.stderr.contains("TLS key") && other.stderr.contains("another secret"), "{}", other.all());
    cluster.wait_for_log("another secret", Duration::from_secs(30));

    let good = status(&cluster, &[("CHORUS_TLS", "on"), ("CHORUS_SECRET", &secret)]);
    assert!(good.success() && good.stdout.contains("0 workers"), "{}", good.all());
}
