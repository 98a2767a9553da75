//! Files for later: a performance report (one self-contained HTML page, like Dask's
//! `performance_report`) and the task stream as a Chrome trace (which Perfetto and
//! `chrome://tracing` open).

use serde_json::{json, Value};

use crate::assets;
use crate::model::{EventKind, Snapshot, SPILL_LANE};

/// A performance report of what `snap` holds: its task events and memory samples are
/// the period's. The page carries its data and the dashboard's script, so it opens
/// anywhere, offline, with no server.
pub fn html(title: &str, snap: &Snapshot) -> String {
    let data = serde_json::to_string(snap).unwrap_or_else(|_| "{}".into());
    // The data sits in a script element: nothing in it may close that element.
    let data = data.replace("</", "<\\/");
    let title = escape(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{css}</style></head>\n\
         <body data-mode=\"report\" data-title=\"{title}\">\n<script id=\"chorus-data\" type=\"application/json\">{data}</script>\n\
         <script>{js}</script>\n</body></html>\n",
        css = assets::CSS,
        js = assets::JS,
    )
}

/// The task events of `snap` in the Chrome trace-event format: one process per worker,
/// one thread per executor thread, a complete event per run (and one per input fetch
/// before it).
pub fn chrome_trace(snap: &Snapshot) -> Value {
    let name = |g: u32| snap.groups.get(g as usize).map_or("task", |g| g.name.as_str());
    let mut events: Vec<Value> = Vec::with_capacity(snap.events.len() + snap.workers.len() * 4);
    let mut workers: Vec<(u32, String)> =
        snap.workers.iter().map(|w| (w.id, format!("worker {} (pid {} on {})", w.id, w.pid, w.host))).collect();
    workers.extend(snap.departed.iter().map(|w| (w.id, format!("worker {} (pid {} on {}, left)", w.id, w.pid, w.host))));
    let mut threads: Vec<(u32, u32)> = snap.events.iter().map(|e| (e.worker, e.thread)).collect();
    threads.sort_unstable();
    threads.dedup();
    for (w, label) in &workers {
        events.push(json!({ "ph": "M", "name": "process_name", "pid": w, "tid": 0, "args": { "name": label } }));
    }
    for (w, t) in &threads {
        let label = if *t == SPILL_LANE { "spill to disk".to_string() } else { format!("thread {t}") };
        events.push(json!({ "ph": "M", "name": "thread_name", "pid": w, "tid": t, "args": { "name": label } }));
    }
    for e in &snap.events {
        if e.kind == EventKind::Spill {
            events.push(json!({
                "ph": "X", "cat": "disk", "name": "spill to disk",
                "pid": e.worker, "tid": e.thread, "ts": e.start_us, "dur": e.micros.max(1),
                "args": { "bytes": e.size },
            }));
            continue;
        }
        if e.unspill_micros > 0 {
            events.push(json!({
                "ph": "X", "cat": "disk", "name": format!("read spilled inputs of {}", name(e.group)),
                "pid": e.worker, "tid": e.thread, "ts": e.start_us.saturating_sub(e.fetch_micros + e.unspill_micros),
                "dur": e.unspill_micros, "args": { "task": e.task, "bytes": e.unspilled },
            }));
        }
        if e.fetch_micros > 0 {
            events.push(json!({
                "ph": "X", "cat": "transfer", "name": format!("fetch inputs of {}", name(e.group)),
                "pid": e.worker, "tid": e.thread, "ts": e.start_us.saturating_sub(e.fetch_micros), "dur": e.fetch_micros,
                "args": { "task": e.task, "bytes": e.fetched },
            }));
        }
        events.push(json!({
            "ph": "X", "cat": if e.erred { "error" } else { "task" }, "name": name(e.group),
            "pid": e.worker, "tid": e.thread, "ts": e.start_us, "dur": e.micros.max(1),
            "args": { "task": e.task, "result_bytes": e.size, "failed": e.erred },
        }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// Writes [`chrome_trace`] of `snap` to `path`, through a temporary file renamed into
/// place, so a reader (or a trace rewritten while it runs) never sees half a file.
pub fn write_chrome_trace(snap: &Snapshot, path: &std::path::Path) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the trace path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, chrome_trace(snap).to_string())?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
