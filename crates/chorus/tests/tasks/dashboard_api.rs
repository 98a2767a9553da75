//! The dashboard's JSON API, its metrics and its event stream, checked against the
//! scheduler's own state; ports that are taken; browsers that leave mid-stream.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use chorus::dashboard::model::SnapshotQuery;
use chorus::ErrorKind;

use crate::support::{builder, inc, rss_bytes};
use crate::web;

fn group<'a>(v: &'a serde_json::Value, suffix: &str) -> &'a serde_json::Value {
    v["groups"].as_array().unwrap().iter().find(|g| g["name"].as_str().unwrap().ends_with(suffix)).unwrap_or_else(|| panic!("no group {suffix}: {v}"))
}

#[test]
fn the_json_api_and_metrics_agree_with_the_schedulers_own_state() {
    let cluster = builder(2).start().unwrap();
    let link = cluster.dashboard_link().expect("a local cluster serves a dashboard").to_string();
    assert!(link.starts_with("http://127.0.0.1:") && link.ends_with("/status"), "{link}");
    let addr = web::link_addr(&link);
    let client = cluster.client();
    let futs = client.map(inc, 0..2000i64);
    assert_eq!(client.gather(&futs).unwrap().len(), 2000);

    let status = cluster.status().unwrap();
    let mut pids: Vec<u64> = status.workers.iter().map(|w| w.info.pid as u64).collect();
    pids.sort();
    let workers = web::get(addr, "/api/workers").json();
    let mut api_pids: Vec<u64> = workers["workers"].as_array().unwrap().iter().map(|w| w["pid"].as_u64().unwrap()).collect();
    api_pids.sort();
    assert_eq!(api_pids, pids, "the API lists the workers the scheduler has");
    let mut own: Vec<u64> = cluster.worker_pids().into_iter().map(u64::from).collect();
    own.sort();
    assert_eq!(api_pids, own);

    let tasks = web::get(addr, "/api/tasks?since=0").json();
    let g = group(&tasks, "::inc");
    assert_eq!((g["memory"].as_u64(), g["runs"].as_u64()), (Some(2000), Some(2000)), "{g}");
    let events = tasks["events"].as_array().unwrap();
    assert_eq!(events.len(), 2000);
    let mut ids: Vec<u64> = events.iter().map(|e| e["task"].as_u64().unwrap()).collect();
    ids.sort();
    let mut want: Vec<u64> = futs.iter().map(|f| f.id().0).collect();
    want.sort();
    assert_eq!(ids, want, "one event per task that ran");
    let worker_ids: Vec<u64> = workers["workers"].as_array().unwrap().iter().map(|w| w["id"].as_u64().unwrap()).collect();
    assert!(events.iter().all(|e| worker_ids.contains(&e["worker"].as_u64().unwrap()) && e["start_us"].as_u64().unwrap() > 0));

    let snap = cluster.snapshot(SnapshotQuery { events_since: 0, memory_since_us: None }).unwrap();
    assert_eq!(snap.totals.finished, 2000);
    assert_eq!(snap.workers.len(), 2);
    let metrics = web::get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let m = metrics.body;
    for line in [
        "chorus_workers 2".to_string(),
        "chorus_task_runs_total{outcome=\"finished\"} 2000".to_string(),
        "chorus_task_duration_seconds_count 2000".to_string(),
        "chorus_task_duration_seconds_bucket{le=\"+Inf\"} 2000".to_string(),
        format!("chorus_tasks{{function=\"{}\",state=\"memory\"}} 2000", g["name"].as_str().unwrap()),
    ] {
        assert!(m.lines().any(|l| l == line), "no `{line}` in\n{m}");
    }

    // Dropping the futures releases the results: the group counts them as forgotten.
    drop(futs);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = web::get(addr, "/api/groups").json();
        let g = group(&g, "::inc").clone();
        if g["forgotten"].as_u64() == Some(2000) && g["memory"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "results were never released: {g}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(web::get(addr, "/no-such-page").status, 404);
}

#[test]
fn an_explicit_dashboard_address_that_is_taken_is_an_error_that_names_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = builder(1).dashboard(addr).start().err().expect("a taken port is an error");
    assert_eq!(e.kind(), ErrorKind::Dashboard);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[test]
fn clusters_started_side_by_side_each_take_a_free_port() {
    let a = builder(1).start().unwrap();
    let b = builder(1).start().unwrap();
    let (la, lb) = (web::link_addr(a.dashboard_link().unwrap()), web::link_addr(b.dashboard_link().unwrap()));
    assert_ne!(la, lb);
    assert!(la.port() >= 8787 && lb.port() >= 8787);
    for (addr, cluster) in [(la, &a), (lb, &b)] {
        let w = web::get(addr, "/api/workers").json();
        assert_eq!(w["workers"][0]["pid"].as_u64(), Some(cluster.worker_pids()[0] as u64), "each dashboard shows its own cluster");
    }
    assert!(builder(1).no_dashboard().start().unwrap().dashboard_link().is_none());
}

/// Opens the event stream and reads until `n` snapshots arrived; returns them.
fn read_stream(addr: std::net::SocketAddr, n: usize) -> Vec<serde_json::Value> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /api/stream?since=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    out
}

#[test]
fn the_event_stream_sends_what_is_new_and_browsers_that_leave_cost_nothing() {
    let cluster = builder(1).start().unwrap();
    let addr = web::link_addr(cluster.dashboard_link().unwrap());
    let client = cluster.client();
    let futs = client.map(inc, 0..500i64);
    client.gather(&futs).unwrap();
    let msgs = read_stream(addr, 3);
    assert_eq!(msgs[0]["events"].as_array().unwrap().len(), 500, "the first message carries the runs so far");
    assert!(msgs[1..].iter().all(|m| m["events"].as_array().unwrap().is_empty()), "later ones only what is new");
    assert!(msgs[2]["now_us"].as_u64() > msgs[0]["now_us"].as_u64());

    // Browsers that read a message and go: nothing is kept for them.
    for _ in 0..30 {
        read_stream(addr, 1);
    }
    let before = rss_bytes();
    for _ in 0..300 {
        read_stream(addr, 1);
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 16 << 20, "300 streams that left grew the scheduler's process by {grown} bytes");
    assert_eq!(web::get(addr, "/api/workers").status, 200, "the dashboard still answers");
}
