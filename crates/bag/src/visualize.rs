//! A bag's graph as a picture: one box per step — where its partitions come from, the
//! stages fused into one task, shuffles, reductions — with its partition count, like the
//! layers of a Dask high-level graph.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::graph::{Kind, Node, NodeStage};
use crate::plan::{Sink, Stage};

/// `file.rs:3:14` for a `func!` at that place: where the closure is.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn stage(s: &NodeStage) -> String {
    match s {
        NodeStage::Plain(Stage::Map(f)) => format!("map {}", short(f)),
        NodeStage::Plain(Stage::Filter(f)) => format!("filter {}", short(f)),
        NodeStage::Plain(Stage::FlatMap(f)) => format!("flat_map {}", short(f)),
        NodeStage::Plain(Stage::MapPartitions(f)) => format!("map_partitions {}", short(f)),
        NodeStage::Plain(Stage::Sample { fraction, .. }) => format!("sample {fraction}"),
        NodeStage::Plain(Stage::Pluck(i)) => format!("pluck {i}"),
        NodeStage::Plain(Stage::Words) => "words".into(),
        NodeStage::Plain(Stage::Join { key, .. }) | NodeStage::Join { key, .. } => format!("join on {}", short(key)),
    }
}

fn sink(s: &Sink) -> String {
    match s {
        Sink::Encode => "collect".into(),
        Sink::Count => "count".into(),
        Sink::Sum => "sum".into(),
        Sink::Moments => "mean/var".into(),
        Sink::Truth => "any/all".into(),
        Sink::Top { k, largest, .. } => format!("{} {k}", if *largest { "topk" } else { "bottomk" }),
        Sink::Fold { binop, .. } => format!("fold {}", short(binop)),
        other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or("reduce").to_lowercase(),
    }
}

/// The element type's last path segment: `i64`, `String`, `(String, u64)` stay whole.
fn ty(t: &str) -> String {
    t.replace("alloc::string::", "").replace("alloc::vec::", "")
}

fn label(node: &Node) -> String {
    let n = node.parts;
    let what = match &node.kind {
        Kind::Futures(f) => format!("{} partitions on the cluster", f.len()),
        Kind::Generate(_) => format!("read or generate × {n}"),
        Kind::Stages { stages, .. } => {
            let names: Vec<String> = stages.iter().map(stage).collect();
            format!("{} × {n}", names.join(" → "))
        }
        Kind::Tree { reduce, .. } => format!("{} (tree, {} per level) → 1", sink(&reduce.sink), reduce.split_every),
        Kind::Shuffle { .. } => format!("group_by shuffle × {n}"),
        Kind::Pieces { .. } => format!("repartition × {n}"),
        Kind::Zip { .. } => format!("zip × {n}"),
    };
    format!("{what}\n{}", ty(node.ty))
}

fn inputs(node: &Node) -> Vec<&Arc<Node>> {
    match &node.kind {
        Kind::Futures(_) | Kind::Generate(_) => Vec::new(),
        Kind::Stages { input, .. } | Kind::Tree { input, .. } | Kind::Shuffle { input, .. } | Kind::Pieces { input, .. } => vec![input],
        Kind::Zip { left, right } => vec![left, right],
    }
}

/// The graph under `root` in DOT, inputs below what uses them.
pub(crate) fn to_dot(root: &Arc<Node>) -> String {
    let mut out = String::from("digraph bag {\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#e0e7ff\", fontname=\"sans-serif\"];\n");
    let mut ids: HashMap<*const Node, usize> = HashMap::new();
    let mut stack = vec![root.clone()];
    let mut edges = Vec::new();
    while let Some(node) = stack.pop() {
        let key = Arc::as_ptr(&node);
        if ids.contains_key(&key) {
            continue;
        }
        let id = ids.len();
        ids.insert(key, id);
        let text = label(&node).replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(out, "  n{id} [label=\"{text}\"];");
        for input in inputs(&node) {
            edges.push((Arc::as_ptr(input), id));
            stack.push(input.clone());
        }
    }
    for (from, to) in edges {
        let _ = writeln!(out, "  n{} -> n{to};", ids[&from]);
    }
    out.push_str("}\n");
    out
}
