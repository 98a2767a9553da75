//! What a driver can ask about the cluster beyond its own results: the dashboard's
//! snapshot, performance reports, Chrome traces, and pictures of the task graph.
//!
//! An in-process client asks the scheduler through its inbox; a remote one opens an
//! observer connection, authenticated like every other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chorus_dashboard::model::{Snapshot, SnapshotQuery};

use super::inner::Link;
use super::{Client, Future};
use crate::proto::{GraphNode, TaskId};
use crate::server::Input;
use crate::{Error, Result};

/// Graphs up to this many tasks are drawn task by task; larger ones by group.
const DRAW_EACH_UP_TO: usize = 60;

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Waits for a reply the scheduler hands to a closure.
fn ask<T: Send + 'static>(client: &Client, what: &str, make: impl FnOnce(Box<dyn FnOnce(T) + Send>) -> Input) -> Result<T> {
    let Link::Local(core) = &client.inner.link else { unreachable!("only local clients ask through the inbox") };
    let (tx, rx) = mpsc::channel();
    if !core.send(make(Box::new(move |v| {
        let _ = tx.send(v);
    }))) {
        return Err(Error::Disconnected { doing: format!("asking for {what}"), reason: "the scheduler has stopped".into() });
    }
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| Error::Timeout(format!("the scheduler did not answer a request for {what} within 30 s")))
}

impl Client {
    /// What the dashboard shows now, with the task events from `query.events_since`
    /// on and the memory samples `query` asks for.
    pub fn snapshot(&self, query: SnapshotQuery) -> Result<Snapshot> {
        match &self.inner.link {
            Link::Local(_) => ask(self, "a snapshot", |reply| Input::Observe(query, reply)),
            Link::Remote(_) => crate::cluster::remote_snapshot(&self.inner.address, &self.inner.secret, query),
        }
    }

    /// Reports a DataFrame query this client ran, for the dashboard's Queries page
    /// (the scheduler keeps the latest 50).
    pub fn record_query(&self, record: chorus_dashboard::model::QueryRecord) {
        self.inner.send(crate::proto::FromClient::Query(Box::new(record)));
    }

    /// The tasks behind `roots` with their dependencies, as far as the scheduler keeps
    /// them.
    pub fn graph(&self, roots: &[TaskId]) -> Result<Vec<GraphNode>> {
        match &self.inner.link {
            Link::Local(_) => ask(self, "a task graph", |reply| Input::Graph(roots.to_vec(), reply)),
            Link::Remote(_) => crate::cluster::remote_graph(&self.inner.address, &self.inner.secret, roots.to_vec()),
        }
    }

    /// Starts a performance report: everything that runs on the cluster until the
    /// guard's [`finish`](PerformanceReport::finish) (or drop) is written to `path` as
    /// one self-contained HTML page (task stream, per-function statistics, transfers,
    /// worker memory over the period), like Dask's `performance_report`.
    ///
    /// ```ignore
    /// # #[chorus::remote] fn inc(x: i64) -> i64 { x + 1 }
    /// # fn main() -> chorus::Result<()> {
    /// # let cluster = chorus::LocalCluster::new()?;
    /// let client = cluster.client();
    /// let report = client.performance_report("report.html")?;
    /// let total: i64 = client.gather(&client.map(inc, 0..1000i64))?.iter().sum();
    /// report.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn performance_report(&self, path: impl Into<PathBuf>) -> Result<PerformanceReport> {
        let start = self.snapshot(SnapshotQuery { events_since: u64::MAX, memory_since_us: None })?;
        Ok(PerformanceReport { client: self.clone(), path: path.into(), since: start.next_event, start_us: start.now_us, done: false })
    }

    /// Runs `f` and writes a performance report of what ran meanwhile to `path`.
    pub fn with_performance_report<R>(&self, path: impl Into<PathBuf>, f: impl FnOnce() -> R) -> Result<R> {
        let report = self.performance_report(path)?;
        let out = f();
        report.finish()?;
        Ok(out)
    }

    /// Writes the task stream the scheduler keeps (its latest runs, see
    /// `SchedulerConfig::event_ring`) as a Chrome trace-event JSON file, which Perfetto
    /// (ui.perfetto.dev) and `chrome://tracing` open.
    pub fn export_trace(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let snap = self.snapshot(SnapshotQuery { events_since: 0, memory_since_us: None })?;
        chorus_dashboard::report::write_chrome_trace(&snap, path).map_err(io(format!("writing the trace {}", path.display())))
    }

    /// Draws the task graph behind `futures` (their tasks and the lineage the scheduler
    /// keeps) to `path`: Graphviz DOT for `.dot`/`.gv`, SVG for `.svg` (made by
    /// Graphviz's `dot`, which must be installed: Debian's `graphviz`). Graphs of more
    /// than a few dozen tasks are drawn by group (tasks of one function at one depth of
    /// the graph), so a 10,000-task map is one box labelled `inc × 10000`.
    pub fn visualize<T>(&self, futures: &[Future<T>], path: impl AsRef<Path>) -> Result<()> {
        let roots: Vec<TaskId> = futures.iter().map(|f| f.id()).collect();
        let graph = self.graph(&roots)?;
        write_dot(&to_dot(&graph), path.as_ref())
    }
}

/// A performance report being recorded; see [`Client::performance_report`].
pub struct PerformanceReport {
    client: Client,
    path: PathBuf,
    since: u64,
    start_us: u64,
    done: bool,
}

impl PerformanceReport {
    /// Writes the report and returns its path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.done = true;
        self.write()?;
        Ok(self.path.clone())
    }

    fn write(&self) -> Result<()> {
        let query = SnapshotQuery { events_since: self.since, memory_since_us: Some(self.start_us) };
        let snap = self.client.snapshot(query)?;
        let title = format!("chorus performance report: {}", self.path.file_name().unwrap_or_default().to_string_lossy());
        let html = chorus_dashboard::report::html(&title, &snap);
        std::fs::write(&self.path, html).map_err(io(format!("writing the performance report {}", self.path.display())))
    }
}

impl Drop for PerformanceReport {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.write() {
                chorus_comm::diag::warn(&format!("the performance report was not written: {e}"));
            }
        }
    }
}

/// Writes a Graphviz graph to `path`: the DOT text for `.dot`/`.gv`, an SVG drawn by
/// Graphviz's `dot` for `.svg` (what [`Client::visualize`] and the collections'
/// `visualize` write).
pub fn write_dot(dot: &str, path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("dot" | "gv") => std::fs::write(path, dot).map_err(io(format!("writing {}", path.display()))),
        Some("svg") => {
            use std::io::Write;
            use std::process::{Command, Stdio};
            let mut child = Command::new("dot")
                .args(["-Tsvg", "-o"])
                .arg(path)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error::Config(format!("drawing {} needs Graphviz's `dot` (Debian: apt-get install graphviz), which could not be run: {e}; write a .dot file instead", path.display())))?;
            child.stdin.take().expect("piped").write_all(dot.as_bytes()).map_err(io("feeding dot".into()))?;
            let out = child.wait_with_output().map_err(io("running dot".into()))?;
            if !out.status.success() {
                return Err(Error::Config(format!("dot failed on the graph: {}", String::from_utf8_lossy(&out.stderr).trim())));
            }
            Ok(())
        }
        _ => Err(Error::Config(format!("visualize writes .dot, .gv or .svg files, not {}", path.display()))),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

fn fill(state: &str) -> &'static str {
    match state {
        "memory" | "released" => "#bbf7d0",
        "processing" => "#bfdbfe",
        "erred" => "#fecaca",
        _ => "#e5e7eb",
    }
}

/// The graph in DOT: task by task when small, else one box per (function, depth).
pub(crate) fn to_dot(graph: &[GraphNode]) -> String {
    let mut out = String::from("digraph chorus {\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n");
    if graph.len() <= DRAW_EACH_UP_TO {
        for n in graph {
            let _ = writeln!(out, "  t{} [label={}, fillcolor=\"{}\"];", n.id.0, quote(&format!("{}\n{}", short(&n.name), n.id)), fill(&n.state));
        }
        let known: std::collections::HashSet<TaskId> = graph.iter().map(|n| n.id).collect();
        for n in graph {
            for d in n.deps.iter().filter(|d| known.contains(d)) {
                let _ = writeln!(out, "  t{} -> t{};", d.0, n.id.0);
            }
        }
    } else {
        let depth = depths(graph);
        // (depth, name) -> (count, done)
        let mut groups: BTreeMap<GroupKey, (u64, u64)> = BTreeMap::new();
        let mut edges: BTreeMap<(GroupKey, GroupKey), u64> = BTreeMap::new();
        let key = |n: &GraphNode| (depth[&n.id], short(&n.name).to_string());
        let by_id: std::collections::HashMap<TaskId, &GraphNode> = graph.iter().map(|n| (n.id, n)).collect();
        for n in graph {
            let g = groups.entry(key(n)).or_default();
            g.0 += 1;
            g.1 += u64::from(matches!(n.state.as_str(), "memory" | "released"));
            for d in n.deps.iter().filter_map(|d| by_id.get(d)) {
                *edges.entry((key(d), key(n))).or_default() += 1;
            }
        }
        let ids: BTreeMap<&GroupKey, usize> = groups.keys().enumerate().map(|(i, k)| (k, i)).collect();
        for (k, (count, done)) in &groups {
            let state = if done == count { "memory" } else { "waiting" };
            let label = format!("{} × {count}\n{done} done", k.1);
            let _ = writeln!(out, "  g{} [label={}, fillcolor=\"{}\"];", ids[k], quote(&label), fill(state));
        }
        for ((a, b), n) in &edges {
            let _ = writeln!(out, "  g{} -> g{} [label=\"{n}\"];", ids[a], ids[b]);
        }
    }
    out.push_str("}\n");
    out
}

/// A group of a large graph: the depth of its tasks and their function.
type GroupKey = (u32, String);

/// The function's last path segment: `inc` for `my_crate::inc`.
fn short(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

/// Each task's depth: 0 for tasks with no inputs in the graph, else one more than its
/// deepest input.
fn depths(graph: &[GraphNode]) -> std::collections::HashMap<TaskId, u32> {
    let by_id: std::collections::HashMap<TaskId, &GraphNode> = graph.iter().map(|n| (n.id, n)).collect();
    let mut depth: std::collections::HashMap<TaskId, u32> = std::collections::HashMap::with_capacity(graph.len());
    for n in graph {
        // Iterative post-order: inputs before the task.
        let mut stack = vec![(n.id, false)];
        while let Some((id, expanded)) = stack.pop() {
            if depth.contains_key(&id) {
                continue;
            }
            let Some(node) = by_id.get(&id) else { continue };
            let inputs = node.deps.iter().filter(|d| by_id.contains_key(d));
            if expanded {
                let d = inputs.filter_map(|d| depth.get(d)).map(|d| d + 1).max().unwrap_or(0);
                depth.insert(id, d);
            } else {
                stack.push((id, true));
                stack.extend(inputs.filter(|d| !depth.contains_key(d)).map(|d| (*d, false)));
            }
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, name: &str, deps: &[u64]) -> GraphNode {
        GraphNode { id: TaskId(id), name: name.into(), deps: deps.iter().map(|d| TaskId(*d)).collect(), state: "memory".into() }
    }

    #[test]
    fn a_large_map_and_its_reduction_are_drawn_as_two_groups() {
        let mut g: Vec<GraphNode> = (0..10_000).map(|i| node(i, "m::inc", &[])).collect();
        g.push(node(10_000, "m::total", &(0..10_000).collect::<Vec<_>>()));
        let dot = to_dot(&g);
        assert!(dot.contains("inc × 10000"), "{dot}");
        assert!(dot.contains("total × 1"), "{dot}");
        assert!(dot.contains("[label=\"10000\"]"), "one edge group of 10000: {dot}");
        assert!(dot.lines().count() < 10, "{dot}");
    }

    #[test]
    fn a_small_graph_is_drawn_task_by_task() {
        let g = vec![node(1, "a", &[]), node(2, "a", &[]), node(3, "b", &[1, 2])];
        let dot = to_dot(&g);
        assert!(dot.contains("t1 -> t3;") && dot.contains("t2 -> t3;"), "{dot}");
    }

    #[test]
    fn a_tree_reduction_keeps_its_levels_apart() {
        let mut g: Vec<GraphNode> = (0..64).map(|i| node(i, "leaf", &[])).collect();
        g.extend((0..32).map(|i| node(100 + i, "add", &[2 * i, 2 * i + 1])));
        g.extend((0..16).map(|i| node(200 + i, "add", &[100 + 2 * i, 101 + 2 * i])));
        let dot = to_dot(&g);
        assert!(dot.contains("add × 32") && dot.contains("add × 16"), "{dot}");
    }
}
