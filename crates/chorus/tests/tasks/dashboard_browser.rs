//! The dashboard in a real browser (headless Chromium over WebDriver): what the pages
//! themselves show while a cluster works. Screenshots of every page are kept in
//! `target/tmp/dashboard/` (the README's picture is one of them).

use std::time::Duration;

use chorus::World;

use crate::support::{builder, busy_us, inc};
use crate::web::{self, Browser};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_status_and_workers_pages_show_a_map_of_20000_tasks_on_2_workers() {
    let Some(browser) = Browser::start() else { return };
    let cluster = builder(2).start().unwrap();
    let link = cluster.dashboard_link().unwrap().to_string();
    let client = cluster.client();
    // About 5 s of work: long enough to watch it happen.
    let futs = client.map(busy_us, std::iter::repeat_n(500u64, 20_000));
    browser.open(&link);
    let workers = browser.wait_for("both workers", "return document.querySelectorAll('.memory-row').length == 2", LIMIT);
    assert_eq!(workers, serde_json::json!(true));
    let first = browser.wait_for("runs in the task stream", "const c = document.getElementById('stream'); return c && Number(c.dataset.bars)", LIMIT);
    let grown = browser.wait_for(
        "a task stream that grows",
        &format!("const c = document.getElementById('stream'); return c && Number(c.dataset.bars) > {first} && Number(c.dataset.bars)"),
        LIMIT,
    );
    assert!(grown.as_u64() > first.as_u64());
    let rows = browser.eval("return document.getElementById('stream').dataset.rows");
    assert_eq!(rows, serde_json::json!("2"), "one row per worker thread");
    browser.wait_for(
        "worker memory",
        "return [...document.querySelectorAll('.memory-row')].every(r => Number(r.dataset.rss) > 0 && r.innerText.includes('RSS'))",
        LIMIT,
    );
    browser.screenshot(&web::artifacts().join("status-running.png"));
    let progress = browser.wait_for(
        "progress that reaches 100%",
        "const r = [...document.querySelectorAll('.progress-row')].find(r => r.dataset.name.endsWith('busy_us'));
         return r && r.dataset.done === '20000' && r.dataset.total === '20000' && r.innerText",
        LIMIT,
    );
    assert!(progress.as_str().unwrap().contains("20000 / 20000 (100%)"), "{progress}");
    assert_eq!(client.gather(&futs).unwrap().len(), 20_000);
    browser.screenshot(&web::artifacts().join("status.png"));

    browser.open(&link.replace("/status", "/workers"));
    let pids = browser.wait_for(
        "both workers in the table",
        "const rows = [...document.querySelectorAll('.worker-row')]; return rows.length == 2 && rows.map(r => Number(r.children[2].innerText))",
        LIMIT,
    );
    let mut shown: Vec<u64> = pids.as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    shown.sort();
    let mut own: Vec<u64> = cluster.worker_pids().into_iter().map(u64::from).collect();
    own.sort();
    assert_eq!(shown, own, "the page lists the cluster's worker processes");
    browser.screenshot(&web::artifacts().join("workers.png"));
}

/// Rank 1 sleeps before the barrier that rank 0 is already in.
#[chorus::spmd]
fn late_barrier(world: &World, sleep_ms: u64) -> usize {
    if world.rank() == 1 {
        std::thread::sleep(Duration::from_millis(sleep_ms));
    }
    world.barrier().expect("barrier");
    world.rank()
}

#[test]
fn the_spmd_page_shows_rank_0_waiting_for_rank_1() {
    let Some(browser) = Browser::start() else { return };
    let cluster = builder(2).start().unwrap();
    let link = cluster.dashboard_link().unwrap().replace("/status", "/spmd");
    let client = cluster.client();
    let job = std::thread::spawn(move || client.spmd(late_barrier, (8000u64,)));
    browser.open(&link);
    let text = browser.wait_for(
        "rank 0 waiting for rank 1",
        "const r = document.querySelector('.rank-row[data-rank=\"0\"]'); return r && r.dataset.waitingFor === '1' && r.innerText",
        LIMIT,
    );
    let text = text.as_str().unwrap();
    assert!(text.contains("barrier") && text.contains("for rank 1"), "{text}");
    let one = browser.eval("return document.querySelector('.rank-row[data-rank=\"1\"]').dataset.state");
    assert_eq!(one, serde_json::json!("running"));
    browser.screenshot(&web::artifacts().join("spmd.png"));
    assert_eq!(job.join().unwrap().unwrap(), vec![0, 1]);
    browser.wait_for("the job finished", "const t = document.querySelector('table.spmd-job'); return t && t.dataset.state === 'finished'", LIMIT);
}

#[test]
fn a_performance_report_opens_in_the_browser_and_shows_the_tasks_that_ran() {
    let Some(browser) = Browser::start() else { return };
    let cluster = builder(2).start().unwrap();
    let client = cluster.client();
    // Runs before the report are not in it.
    client.gather(&client.map(busy_us, std::iter::repeat_n(10u64, 50))).unwrap();
    let path = web::artifacts().join("report.html");
    let report = client.performance_report(&path).unwrap();
    client.gather(&client.map(inc, 0..300i64)).unwrap();
    client.gather(&client.map(busy_us, std::iter::repeat_n(100u64, 40))).unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // a heartbeat or two of memory
    report.finish().unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "the report loads nothing from elsewhere");
    browser.open(&format!("file://{}", path.display()));
    let runs = browser.wait_for(
        "the tasks that ran",
        "return Object.fromEntries([...document.querySelectorAll('.function-row')].map(r => [r.dataset.name.split('::').pop(), Number(r.dataset.runs)]))",
        LIMIT,
    );
    assert_eq!(runs, serde_json::json!({ "inc": 300, "busy_us": 40 }), "exactly the runs of the period");
    let stream = browser.eval("return Number(document.getElementById('stream').dataset.bars)");
    assert_eq!(stream, serde_json::json!(340));
    browser.screenshot(&web::artifacts().join("report.png"));

    // The same period as a Chrome trace: one complete event per run.
    let trace_path = web::artifacts().join("trace.json");
    client.export_trace(&trace_path).unwrap();
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let runs = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X" && e["cat"] == "task").count();
    assert_eq!(runs, 50 + 300 + 40, "every run the scheduler kept");
}
