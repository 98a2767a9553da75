//! `chorus run --dashboard`: the launcher serves the SPMD page of a job that has no
//! scheduler, from what each rank writes of itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{chorus_bin, me, rank_args};

/// `GET path` on `addr`: status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn chorus_run_serves_a_page_that_shows_rank_0_waiting_for_rank_1() {
    let mut child = Command::new(chorus_bin())
        .args(["run", "-n", "2", "--dashboard", "127.0.0.1:0", "--"])
        .arg(me())
        .args(rank_args())
        .env("CHORUS_TEST_SCENARIO", "late:5000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "chorus run printed no dashboard link");
        if let Some(link) = line.split("Dashboard: ").nth(1) {
            break link.trim().trim_start_matches("http://").split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let (status, body) = get(&addr, "/api/spmd");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let job = v["jobs"][0].clone();
        if job["ranks"][0]["wait"]["peer"] == 1 {
            break job;
        }
        assert!(Instant::now() < deadline, "rank 0 was never shown waiting for rank 1: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let wait = &job["ranks"][0]["wait"];
    assert!(wait["call"].as_str().unwrap().contains("barrier"), "{job}");
    assert_eq!(job["ranks"][1]["state"], "running", "{job}");
    assert!(job["ranks"][0]["pid"].as_u64().unwrap() > 0 && job["ranks"][1]["pid"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(job["size"], 2);
    let (status, page) = get(&addr, "/spmd");
    assert!(status == 200 && page.contains("/assets/app.js"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the job failed: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}
