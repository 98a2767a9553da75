//! An array's graph as a picture: one box per fused expression (its operations, shape
//! and block grid) and per input it reads — generated blocks, stored blocks, files,
//! reductions, products, joins, rechunks — like the layers of a Dask high-level graph.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Data, LeafKind};
use crate::kernel::Expr;

/// The operations of `e`, in evaluation order.
fn operations(e: &Expr, out: &mut Vec<String>) {
    let name = |d: String| d.split([' ', '(', '{']).next().unwrap_or("op").to_lowercase();
    match e {
        Expr::Leaf(_) | Expr::Scalar(_) => {}
        Expr::Unary(op, a) => {
            operations(a, out);
            out.push(name(format!("{op:?}")));
        }
        Expr::Cast(dtype, a) => {
            operations(a, out);
            out.push(format!("astype {dtype}"));
        }
        Expr::Binary(op, a, b) => {
            operations(a, out);
            operations(b, out);
            out.push(name(format!("{op:?}")));
        }
        Expr::Where(c, a, b) => {
            operations(c, out);
            operations(a, out);
            operations(b, out);
            out.push("where".into());
        }
    }
}

fn shape(data: &Data) -> String {
    let dims: Vec<String> = data.shape.iter().map(ToString::to_string).collect();
    let grid: Vec<String> = data.chunks.grid().iter().map(ToString::to_string).collect();
    format!("{} {}, {} blocks ({})", data.dtype, dims.join("×"), data.chunks.count(), grid.join("×"))
}

/// Writes the nodes of `data` and what it reads; returns its node's number.
struct Dot {
    out: String,
    next: usize,
    /// Shared inputs (the same `Arc`) are drawn once.
    seen: HashMap<usize, usize>,
}

impl Dot {
    fn node(&mut self, label: &str) -> usize {
        let id = self.next;
        self.next += 1;
        let label = label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(self.out, "  a{id} [label=\"{label}\"];");
        id
    }

    fn edge(&mut self, from: usize, to: usize, label: &str) {
        let _ = if label.is_empty() {
            writeln!(self.out, "  a{from} -> a{to};")
        } else {
            writeln!(self.out, "  a{from} -> a{to} [label=\"{label}\"];")
        };
    }

    fn data(&mut self, data: &Data) -> usize {
        let mut ops = Vec::new();
        operations(&data.expr, &mut ops);
        let this = if ops.is_empty() && data.leaves.len() == 1 {
            None
        } else {
            let what = if ops.is_empty() { "blocks".to_string() } else { ops.join(" → ") };
            Some(self.node(&format!("{what}\n{}", shape(data))))
        };
        let mut first = None;
        for leaf in &data.leaves {
            let key = leaf_key(&leaf.kind);
            let from = match key.and_then(|k| self.seen.get(&k).copied()) {
                Some(id) => id,
                None => {
                    let id = self.leaf(&leaf.kind, leaf);
                    if let Some(k) = key {
                        self.seen.insert(k, id);
                    }
                    id
                }
            };
            first.get_or_insert(from);
            let seen_as = if leaf.axes.iter().enumerate().any(|(k, a)| *a != Some(k)) {
                "transposed"
            } else if leaf.window.iter().zip(&leaf.shape).any(|(w, n)| !w.is_full(*n)) {
                "sliced"
            } else {
                ""
            };
            if let Some(this) = this {
                self.edge(from, this, seen_as);
            }
        }
        this.or(first).unwrap_or_else(|| self.node(&shape(data)))
    }

    fn leaf(&mut self, kind: &LeafKind, leaf: &super::Leaf) -> usize {
        let dims: Vec<String> = leaf.shape.iter().map(ToString::to_string).collect();
        let blocks = format!("{} {}, {} blocks", leaf.dtype, dims.join("×"), leaf.chunks.count());
        match kind {
            LeafKind::Generated(g) => {
                let what = format!("{g:?}").split([' ', '(', '{']).next().unwrap_or("generated").to_lowercase();
                self.node(&format!("{what}\n{blocks}"))
            }
            LeafKind::Stored(_) => self.node(&format!("stored on the cluster\n{blocks}")),
            LeafKind::Raw(_) | LeafKind::Serde(_) => self.node(&format!("results of tasks\n{blocks}")),
            LeafKind::File(f) => self.node(&format!("read {}\n{blocks}", f.describe())),
            LeafKind::Reduced(r) => {
                let input = self.data(&r.input);
                let id = self.node(&format!("{:?} over axes {:?} (tree, {} per level)\n{blocks}", r.op, r.axes, r.split_every).to_lowercase());
                self.edge(input, id, "");
                id
            }
            LeafKind::Dot(d) => {
                let (a, b) = (self.data(&d.a), self.data(&d.b));
                let id = self.node(&format!("dot\n{blocks}"));
                self.edge(a, id, "a");
                self.edge(b, id, "b");
                id
            }
            LeafKind::Concat(c) => {
                let parts: Vec<usize> = c.parts.iter().map(|p| self.data(p)).collect();
                let id = self.node(&format!("concatenate along axis {}\n{blocks}", c.axis));
                for p in parts {
                    self.edge(p, id, "");
                }
                id
            }
            LeafKind::Mapped(m) => {
                let input = self.data(&m.input);
                let id = self.node(&format!("map_blocks\n{blocks}"));
                self.edge(input, id, "");
                id
            }
            LeafKind::Rechunk(input) => {
                let from = self.data(input);
                let id = self.node(&format!("rechunk\n{blocks}"));
                self.edge(from, id, "");
                id
            }
            LeafKind::Reshape(r) => {
                let from = self.data(&r.input);
                let id = self.node(&format!("reshape\n{blocks}"));
                self.edge(from, id, "");
                id
            }
        }
    }
}

/// The same input seen twice (`x + x.T`) is one box: its identity.
fn leaf_key(kind: &LeafKind) -> Option<usize> {
    match kind {
        LeafKind::Generated(_) => None,
        LeafKind::Stored(b) => Some(std::sync::Arc::as_ptr(b) as *const () as usize),
        LeafKind::Raw(f) | LeafKind::Serde(f) => Some(std::sync::Arc::as_ptr(f) as *const () as usize),
        LeafKind::File(f) => Some(std::sync::Arc::as_ptr(f) as *const () as usize),
        LeafKind::Reduced(r) => Some(std::sync::Arc::as_ptr(r) as *const () as usize),
        LeafKind::Dot(d) => Some(std::sync::Arc::as_ptr(d) as *const () as usize),
        LeafKind::Concat(c) => Some(std::sync::Arc::as_ptr(c) as *const () as usize),
        LeafKind::Mapped(m) => Some(std::sync::Arc::as_ptr(m) as *const () as usize),
        LeafKind::Rechunk(d) => Some(std::sync::Arc::as_ptr(d) as *const () as usize),
        LeafKind::Reshape(r) => Some(std::sync::Arc::as_ptr(r) as *const () as usize),
    }
}

/// The graph of `data` in DOT.
pub(crate) fn to_dot(data: &Data) -> String {
    let mut dot = Dot {
        out: String::from("digraph array {\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#dcfce7\", fontname=\"sans-serif\"];\n"),
        next: 0,
        seen: HashMap::new(),
    };
    dot.data(data);
    dot.out.push_str("}\n");
    dot.out
}
