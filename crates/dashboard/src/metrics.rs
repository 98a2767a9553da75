//! `/metrics` in Prometheus's text format.

use std::fmt::Write;

use crate::model::{Snapshot, WorkerRow};

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A per-worker metric: name, type, help, and how to read it off a worker's row.
type PerWorker = (&'static str, &'static str, &'static str, fn(&WorkerRow) -> f64);

/// The metrics of `s`.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    family(&mut out, "chorus_workers", "gauge", "Workers connected.");
    let _ = writeln!(out, "chorus_workers {}", s.workers.len());
    family(&mut out, "chorus_clients", "gauge", "Clients connected.");
    let _ = writeln!(out, "chorus_clients {}", s.cluster.clients);
    family(&mut out, "chorus_tasks", "gauge", "Tasks the scheduler holds, by function and state.");
    for g in &s.groups {
        let name = label(&g.name);
        for (state, n) in [
            ("waiting", g.waiting),
            ("queued", g.queued),
            ("processing", g.processing),
            ("memory", g.memory),
            ("released", g.released),
            ("erred", g.erred),
        ] {
            let _ = writeln!(out, "chorus_tasks{{function=\"{name}\",state=\"{state}\"}} {n}");
        }
    }
    family(&mut out, "chorus_tasks_forgotten_total", "counter", "Tasks the scheduler finished with and forgot, by function and outcome.");
    for g in &s.groups {
        let name = label(&g.name);
        let _ = writeln!(out, "chorus_tasks_forgotten_total{{function=\"{name}\",outcome=\"finished\"}} {}", g.forgotten);
        let _ = writeln!(out, "chorus_tasks_forgotten_total{{function=\"{name}\",outcome=\"erred\"}} {}", g.forgotten_erred);
    }
    family(&mut out, "chorus_task_runs_total", "counter", "Task runs that ended, by outcome.");
    let _ = writeln!(out, "chorus_task_runs_total{{outcome=\"finished\"}} {}", s.totals.finished);
    let _ = writeln!(out, "chorus_task_runs_total{{outcome=\"failed\"}} {}", s.totals.failed);
    family(&mut out, "chorus_task_duration_seconds", "histogram", "Run time of finished tasks.");
    for (le, n) in &s.totals.duration_buckets {
        let le = if le.is_infinite() { "+Inf".to_string() } else { format!("{le}") };
        let _ = writeln!(out, "chorus_task_duration_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "chorus_task_duration_seconds_sum {}", s.totals.duration_sum);
    let _ = writeln!(out, "chorus_task_duration_seconds_count {}", s.totals.finished);
    family(&mut out, "chorus_transfers_total", "counter", "Task runs that fetched inputs from another process.");
    let _ = writeln!(out, "chorus_transfers_total {}", s.totals.transfers);
    family(&mut out, "chorus_transfer_bytes_total", "counter", "Bytes those fetches moved.");
    let _ = writeln!(out, "chorus_transfer_bytes_total {}", s.totals.transfer_bytes);
    let per_worker: [PerWorker; 8] = [
        ("chorus_worker_stored_bytes", "gauge", "Bytes of results a worker holds.", |w| w.stored as f64),
        ("chorus_worker_objects", "gauge", "Results a worker holds.", |w| w.objects as f64),
        ("chorus_worker_rss_bytes", "gauge", "Resident set size of a worker process.", |w| w.rss as f64),
        ("chorus_worker_memory_limit_bytes", "gauge", "A worker's memory limit (0: none).", |w| w.memory_limit as f64),
        ("chorus_worker_processing", "gauge", "Tasks assigned to a worker and not finished.", |w| w.processing as f64),
        ("chorus_worker_cpu_percent", "gauge", "A worker's CPU use, in percent of one core.", |w| w.cpu_percent),
        ("chorus_worker_sent_bytes_total", "counter", "Bytes of task data a worker sent.", |w| w.sent as f64),
        ("chorus_worker_received_bytes_total", "counter", "Bytes of task data a worker fetched.", |w| w.received as f64),
    ];
    for (name, kind, help, value) in per_worker {
        family(&mut out, name, kind, help);
        for w in &s.workers {
            let _ = writeln!(out, "{name}{{worker=\"{}\",host=\"{}\"}} {}", w.id, label(&w.host), value(w));
        }
    }
    family(&mut out, "chorus_workers_departed", "gauge", "Workers that left (the latest 100).");
    let _ = writeln!(out, "chorus_workers_departed {}", s.departed.len());
    out
}
