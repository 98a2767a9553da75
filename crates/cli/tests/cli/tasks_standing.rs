//! A standing cluster started with the CLI: `chorus scheduler`, `chorus worker`,
//! `chorus status`, and drivers joining with `Client::connect`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus::tasks::ClusterFile;
use chorus::{Client, Secret};

use crate::support::{chorus_bin, me};

#[chorus::remote]
fn square(x: i64) -> i64 {
    x * x
}

/// Kills the processes it holds when dropped, so a failing test leaves nothing behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_scheduler(file: &Path, procs: &mut Procs) -> String {
    let mut child = Command::new(chorus_bin())
        .args(["scheduler", "--listen", "127.0.0.1:0", "--cluster-file"])
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("chorus scheduler starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("scheduler prints its address");
    procs.0.push(child);
    line.trim().strip_prefix("chorus scheduler at ").expect("address line").to_string()
}

#[test]
fn standing_cluster_from_the_cli_serves_a_connected_client() {
    let dir = std::env::temp_dir().join(format!("chorus-standing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cluster");
    let mut procs = Procs(Vec::new());
    let address = start_scheduler(&file, &mut procs);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the cluster file is owner-only");
    let cf = ClusterFile::read(&file).unwrap();
    assert_eq!(cf.address, address);

    let workers = Command::new(chorus_bin())
        .args(["worker", "--scheduler", &address, "--nworkers", "2", "--cluster-file"])
        .arg(&file)
        .arg(me())
        .args(["--exact", "worker_program", "--ignored", "--quiet"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(workers);

    let client = Client::connect_with_secret(&address, cf.secret.clone()).unwrap();
    client.wait_for_workers(2, Duration::from_secs(30)).unwrap();
    let futs = client.map(square, 0..100i64);
    assert_eq!(client.gather(&futs).unwrap(), (0..100).map(|x| x * x).collect::<Vec<_>>());

    let status = Command::new(chorus_bin()).args(["status", &address, "--cluster-file"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("2 workers, 1 clients"), "{text}");
    assert_eq!(text.lines().count(), 4, "a header and one line per worker: {text}");

    // A driver without the secret is refused, and says why.
    let e = Client::connect_with_secret(&address, Secret::generate().unwrap()).unwrap_err().to_string();
    assert!(e.contains("wrong secret"), "{e}");
    // The cluster still serves the first client.
    assert_eq!(client.submit(square, (12,)).result().unwrap(), 144);
    let _ = std::fs::remove_dir_all(&dir);
}
