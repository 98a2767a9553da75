//! The array type and its lazy expression graph.
//!
//! An [`Array`] is a fused expression over *leaves*: arrays generated where they are used
//! (creation functions, random numbers), arrays whose blocks are already on the workers
//! (scattered from the driver, persisted, or results of reductions), each seen through a
//! view that lines its axes up with the array's (transposition, broadcasting). Building
//! an expression runs nothing. [`Array::compute`] and [`Array::persist`] plan one task
//! per output block, which evaluates the whole chain for that block; reductions plan one
//! task per input block (evaluate and reduce at once) and a tree of combining tasks.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use chorus_tasks::{Arg, ArgValue, Client, Future, TaskOptions};
use ndarray::{ArrayD, IxDyn, Slice, SliceInfoElem};

use crate::chunks::Chunks;
use crate::dtype::{Block, DType, Element, Scalar};
use crate::kernel::{self, BinaryOp, Crop, BlockPlan, CombineBlocks, CombinePlan, DotBlocks, DotPlan, EvalBlock, Expr, Generator, LeafPlan, LeafSource, ReduceOp, Then, UnaryOp};
use crate::{Error, Result};

/// The fan-in of reduction trees unless told otherwise ([`Array::split_every`]).
pub const SPLIT_EVERY: usize = 8;

/// A chunked n-dimensional array of `T` on a chorus cluster (see the crate documentation).
pub struct Array<T: Element> {
    client: Client,
    pub(crate) data: Data,
    split_every: usize,
    _t: PhantomData<T>,
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { client: self.client.clone(), data: self.data.clone(), split_every: self.split_every, _t: PhantomData }
    }
}

/// The untyped description of an array.
#[derive(Clone)]
pub(crate) struct Data {
    pub shape: Vec<usize>,
    pub chunks: Chunks,
    pub dtype: DType,
    expr: Expr,
    leaves: Vec<Leaf>,
}

/// An input of an expression and how its axes line up with the expression's: the
/// expression sees the part `window` of each leaf axis, and output axis `k` is the leaf's
/// axis `axes[k]`, or a broadcast axis of length 1 (`None`). A leaf axis that no output
/// axis names was indexed away (its window holds one element).
#[derive(Clone)]
struct Leaf {
    kind: LeafKind,
    shape: Vec<usize>,
    chunks: Chunks,
    window: Vec<Window>,
    axes: Vec<Option<usize>>,
    /// The element type of a raw leaf's blocks.
    raw_dtype: Option<DType>,
}

/// The elements `start, start + step, …` below `end` of an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: usize,
    end: usize,
    step: usize,
}

impl Window {
    fn full(n: usize) -> Window {
        Window { start: 0, end: n, step: 1 }
    }

    fn len(&self) -> usize {
        if self.end > self.start {
            (self.end - self.start).div_ceil(self.step)
        } else {
            0
        }
    }

    fn is_full(&self, n: usize) -> bool {
        self.start == 0 && self.end == n && self.step == 1
    }

    /// Elements `s..e` by `t` of what this window shows, as a window of the axis.
    fn sub(&self, s: usize, e: usize, t: usize) -> Window {
        let start = self.start + s * self.step;
        let end = if e > s { self.start + (e - 1) * self.step + 1 } else { start };
        Window { start, end, step: self.step * t }
    }

    /// For each block of the axis (of `lengths`) that holds shown elements: the block,
    /// and the first and end element within it. An empty window is one empty piece.
    fn pieces(&self, lengths: &[usize]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut offset = 0;
        for (b, &len) in lengths.iter().enumerate() {
            let (lo, hi) = (self.start.max(offset), self.end.min(offset + len));
            if lo < hi {
                let first = lo + (self.step - (lo - self.start) % self.step) % self.step;
                if first < hi {
                    out.push((b, first - offset, hi - offset));
                }
            }
            offset += len;
        }
        if out.is_empty() {
            out.push((0, 0, 0));
        }
        out
    }

    fn piece_lengths(&self, lengths: &[usize]) -> Vec<usize> {
        self.pieces(lengths).iter().map(|&(_, lo, hi)| (hi - lo).div_ceil(self.step)).collect()
    }
}

/// Futures of an array's blocks, in row-major order of its grid.
type Blocks = Arc<Vec<Future<Vec<u8>>>>;

#[derive(Clone)]
enum LeafKind {
    Generated(Generator),
    Stored(Blocks),
    /// Results of the user's tasks, each the bare elements of a block (`Vec<T>`): the
    /// argument for block `i` is `slot(i)`.
    Raw(Arc<dyn Fn(usize) -> ArgValue + Send + Sync>),
    Reduced(Arc<Reduction>),
    Concat(Arc<Concat>),
    Dot(Arc<Dot>),
    /// A `.npy` file whose blocks the tasks that use them read.
    Npy(Arc<(std::path::PathBuf, crate::npy::Header)>),
}

/// A matrix product whose blocks are computed the first time they are needed.
struct Dot {
    a: Data,
    b: Data,
    split_every: usize,
    blocks: OnceLock<Blocks>,
}

impl Dot {
    fn materialize(&self, client: &Client) -> Result<Blocks> {
        if let Some(b) = self.blocks.get() {
            return Ok(b.clone());
        }
        let (rows, inner, cols) = (self.a.chunks.grid()[0], self.a.chunks.grid()[1], self.b.chunks.grid()[1]);
        let mut blocks = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                let parts = (0..inner)
                    .map(|k| {
                        let (left, mut args) = self.a.plan_block(&[i, k], client, Then::Keep)?;
                        let (right, right_args) = self.b.plan_block(&[k, j], client, Then::Keep)?;
                        let left_args = args.len() as u32;
                        args.extend(right_args);
                        Ok(submit(client, DotBlocks, &DotPlan { left, right, left_args }, args))
                    })
                    .collect::<Result<Vec<_>>>()?;
                blocks.push(tree(client, parts, ReduceOp::Sum, self.split_every, None));
            }
        }
        let blocks = Arc::new(blocks);
        Ok(self.blocks.get_or_init(|| blocks).clone())
    }

    fn task_count(&self) -> usize {
        if self.blocks.get().is_some() {
            return 0;
        }
        let (rows, inner, cols) = (self.a.chunks.grid()[0], self.a.chunks.grid()[1], self.b.chunks.grid()[1]);
        rows * cols * (inner + tree_tasks(inner, self.split_every, false)) + self.a.task_count() + self.b.task_count()
    }
}

/// Combines `parts` by `op` in a tree of fan-in `every`; the last level removes the axes
/// `squeeze` (a single part with nothing to remove is its own result).
fn tree(client: &Client, mut parts: Vec<Future<Vec<u8>>>, op: ReduceOp, every: usize, squeeze: Option<Vec<usize>>) -> Future<Vec<u8>> {
    let combine = |parts: &[Future<Vec<u8>>], squeeze: Option<Vec<usize>>| {
        let args = parts.iter().map(Arg::<Vec<u8>>::into_slot).collect();
        submit(client, CombineBlocks, &CombinePlan { op, squeeze }, args)
    };
    loop {
        if parts.len() == 1 && squeeze.is_none() {
            return parts.pop().expect("one part");
        }
        if parts.len() <= every {
            return combine(&parts, squeeze);
        }
        parts = parts.chunks(every).map(|c| combine(c, None)).collect();
    }
}

/// The combining tasks [`tree`] submits for `n` parts.
fn tree_tasks(n: usize, every: usize, squeeze: bool) -> usize {
    let (mut g, mut tasks) = (n, 0);
    while g > every {
        g = g.div_ceil(every);
        tasks += g;
    }
    tasks + usize::from(g > 1 || squeeze)
}

/// Arrays joined along an axis; each of their blocks is one block of the result.
struct Concat {
    parts: Vec<Data>,
    axis: usize,
    /// The block (along `axis`) where each part starts.
    starts: Vec<usize>,
}

impl Concat {
    /// The part that holds block `index`, and the block's index within it.
    fn locate(&self, index: &[usize]) -> (usize, Vec<usize>) {
        let b = index[self.axis];
        let p = self.starts.iter().rposition(|&s| s <= b).expect("the first part starts at block 0");
        let mut local = index.to_vec();
        local[self.axis] -= self.starts[p];
        (p, local)
    }
}

/// A reduction whose result blocks are computed the first time they are needed and
/// kept on the workers while this array (or one built on it) lives.
struct Reduction {
    input: Data,
    op: ReduceOp,
    axes: Vec<usize>,
    split_every: usize,
    blocks: OnceLock<Blocks>,
}

impl Leaf {
    fn same(&self, other: &Leaf) -> bool {
        let kind = match (&self.kind, &other.kind) {
            (LeafKind::Generated(a), LeafKind::Generated(b)) => a == b,
            (LeafKind::Stored(a), LeafKind::Stored(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Reduced(a), LeafKind::Reduced(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Raw(a), LeafKind::Raw(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Concat(a), LeafKind::Concat(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Dot(a), LeafKind::Dot(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Npy(a), LeafKind::Npy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        kind && self.shape == other.shape && self.chunks == other.chunks && self.window == other.window && self.axes == other.axes
    }

    fn is_whole(&self) -> bool {
        self.window.iter().zip(&self.shape).all(|(w, &n)| w.is_full(n))
    }

    /// The leaf's block that output block `index` uses, and the part of it, unless all.
    fn block_for(&self, index: &[usize]) -> (Vec<usize>, Option<Crop>) {
        let mut at = Vec::with_capacity(self.shape.len());
        let mut crop = Vec::with_capacity(self.shape.len());
        for j in 0..self.shape.len() {
            let w = self.window[j];
            let pieces = w.pieces(&self.chunks.axes()[j]);
            // A window of one element broadcasts (or was indexed away): its only piece.
            let p = if w.len() == 1 {
                pieces[0]
            } else {
                let k = self.axes.iter().position(|a| *a == Some(j)).expect("a leaf axis of more than one element is an output axis");
                pieces[index[k]]
            };
            at.push(p.0);
            crop.push((p.1, p.2, w.step));
        }
        (at, if self.is_whole() { None } else { Some(crop) })
    }

    /// The number of elements the expression sees along leaf axis `j`.
    fn seen(&self, j: usize) -> usize {
        self.window[j].len()
    }
}

fn renumber(expr: &Expr, map: &[u32]) -> Expr {
    match expr {
        Expr::Leaf(k) => Expr::Leaf(map[*k as usize]),
        Expr::Scalar(s) => Expr::Scalar(*s),
        Expr::Unary(op, a) => Expr::Unary(*op, Box::new(renumber(a, map))),
        Expr::Binary(op, a, b) => Expr::Binary(*op, Box::new(renumber(a, map)), Box::new(renumber(b, map))),
        Expr::Where(c, a, b) => Expr::Where(Box::new(renumber(c, map)), Box::new(renumber(a, map)), Box::new(renumber(b, map))),
        Expr::Cast(d, a) => Expr::Cast(*d, Box::new(renumber(a, map))),
    }
}

impl Data {
    fn leaf(kind: LeafKind, shape: Vec<usize>, chunks: Chunks, dtype: DType) -> Data {
        let axes = (0..shape.len()).map(Some).collect();
        let window = shape.iter().map(|&n| Window::full(n)).collect();
        Data {
            shape: shape.clone(),
            chunks: chunks.clone(),
            dtype,
            expr: Expr::Leaf(0),
            leaves: vec![Leaf { raw_dtype: matches!(kind, LeafKind::Raw(_)).then_some(dtype), kind, shape, chunks, window, axes }],
        }
    }

    fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The same array with `extra` unit axes in front.
    fn with_leading(&self, extra: usize) -> Data {
        if extra == 0 {
            return self.clone();
        }
        let mut d = self.clone();
        d.shape = std::iter::repeat_n(1, extra).chain(self.shape.iter().copied()).collect();
        d.chunks = self.chunks.with_leading(extra);
        for l in &mut d.leaves {
            l.axes = std::iter::repeat_n(None, extra).chain(l.axes.iter().copied()).collect();
        }
        d
    }

    /// The same array with unit axes inserted so that they sit at positions `at` of the
    /// result (sorted, distinct).
    fn with_axes_at(&self, at: &[usize]) -> Data {
        let n = self.ndim() + at.len();
        let mut old = 0;
        let mut map = Vec::with_capacity(n);
        for k in 0..n {
            if at.contains(&k) {
                map.push(None);
            } else {
                map.push(Some(old));
                old += 1;
            }
        }
        let mut d = self.clone();
        d.shape = map.iter().map(|m| m.map_or(1, |o| self.shape[o])).collect();
        d.chunks = Chunks::from_axes(map.iter().map(|m| m.map_or(vec![1], |o| self.chunks.axes()[o].clone())).collect());
        for l in &mut d.leaves {
            l.axes = map.iter().map(|m| m.and_then(|o| l.axes[o])).collect();
        }
        d
    }

    /// Merges `other`'s leaves into this one's, sharing equal leaves; `other`'s
    /// expression renumbered to match.
    fn merge(&mut self, other: &Data) -> Expr {
        let map: Vec<u32> = other
            .leaves
            .iter()
            .map(|l| match self.leaves.iter().position(|m| m.same(l)) {
                Some(i) => i as u32,
                None => {
                    self.leaves.push(l.clone());
                    (self.leaves.len() - 1) as u32
                }
            })
            .collect();
        renumber(&other.expr, &map)
    }

    /// The shape and chunks of `a` and `b` broadcast together, both brought to it.
    fn aligned(a: &Data, b: &Data) -> Result<(Data, Data)> {
        let shape = kernel::broadcast_shape(&a.shape, &b.shape).ok_or_else(|| Error::Broadcast { left: a.shape.clone(), right: b.shape.clone() })?;
        let n = shape.len();
        let (a, b) = (a.with_leading(n - a.ndim()), b.with_leading(n - b.ndim()));
        let mut chunks = Vec::with_capacity(n);
        for k in 0..n {
            let (ca, cb) = (&a.chunks.axes()[k], &b.chunks.axes()[k]);
            chunks.push(match (a.shape[k], b.shape[k]) {
                (x, y) if x == y => {
                    if ca != cb {
                        return Err(Error::Chunks(format!(
                            "operands of shapes {:?} and {:?} are cut differently along axis {k} ({ca:?} and {cb:?}); make them with the same chunks",
                            a.shape, b.shape
                        )));
                    }
                    ca.clone()
                }
                (1, _) => cb.clone(),
                _ => ca.clone(),
            });
        }
        let chunks = Chunks::from_axes(chunks);
        let (mut a, mut b) = (a, b);
        a.shape.clone_from(&shape);
        a.chunks = chunks.clone();
        b.shape = shape;
        b.chunks = chunks;
        Ok((a, b))
    }

    fn binary(&self, op: BinaryOp, other: &Data) -> Result<Data> {
        if self.dtype != other.dtype {
            return Err(Error::Invalid(format!("{op:?} of a {} array and a {} array", self.dtype, other.dtype)));
        }
        let (mut a, b) = Data::aligned(self, other)?;
        let right = a.merge(&b);
        a.expr = Expr::Binary(op, Box::new(a.expr.clone()), Box::new(right));
        if op.compares() {
            a.dtype = DType::Bool;
        }
        Ok(a)
    }

    fn scalar(&self, op: BinaryOp, s: Scalar, scalar_left: bool) -> Data {
        let mut d = self.clone();
        let (l, r) = if scalar_left { (Expr::Scalar(s), d.expr.clone()) } else { (d.expr.clone(), Expr::Scalar(s)) };
        d.expr = Expr::Binary(op, Box::new(l), Box::new(r));
        if op.compares() {
            d.dtype = DType::Bool;
        }
        d
    }

    fn unary(&self, op: UnaryOp) -> Data {
        let mut d = self.clone();
        d.expr = Expr::Unary(op, Box::new(d.expr.clone()));
        d
    }

    fn cast(&self, to: DType) -> Data {
        let mut d = self.clone();
        if d.dtype != to {
            d.expr = Expr::Cast(to, Box::new(d.expr.clone()));
            d.dtype = to;
        }
        d
    }

    fn transposed(&self, perm: &[usize]) -> Result<Data> {
        let n = self.ndim();
        let mut seen = vec![false; n];
        if perm.len() != n || perm.iter().any(|&p| p >= n || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::Axis(format!("{perm:?} is not a permutation of the {n} axes of an array of shape {:?}", self.shape)));
        }
        let mut d = self.clone();
        d.shape = perm.iter().map(|&p| self.shape[p]).collect();
        d.chunks = self.chunks.permuted(perm);
        for l in &mut d.leaves {
            l.axes = perm.iter().map(|&p| l.axes[p]).collect();
        }
        Ok(d)
    }

    /// The part `elems` selects (ndarray's `s![…]`: ranges with positive steps, indexes,
    /// new axes); only the blocks it touches are used.
    fn sliced(&self, elems: &[SliceInfoElem]) -> Result<Data> {
        let given = elems.iter().filter(|e| !matches!(e, SliceInfoElem::NewAxis)).count();
        if given > self.ndim() {
            return Err(Error::Axis(format!("a slice of {given} axes of an array of shape {:?}", self.shape)));
        }
        let mut d = self.clone();
        let (mut k, mut out) = (0, 0);
        let (mut drop, mut new_axes) = (Vec::new(), Vec::new());
        for e in elems {
            let n = self.shape.get(k).copied().unwrap_or(0);
            let at = |v: isize| if v < 0 { v + n as isize } else { v };
            let (s, end, step) = match *e {
                SliceInfoElem::NewAxis => {
                    new_axes.push(out);
                    out += 1;
                    continue;
                }
                SliceInfoElem::Index(i) => {
                    let i = at(i);
                    if i < 0 || i >= n as isize {
                        return Err(Error::Invalid(format!("index {} of axis {k}, of length {n} (shape {:?})", e_text(e), self.shape)));
                    }
                    drop.push(k);
                    (i as usize, i as usize + 1, 1)
                }
                SliceInfoElem::Slice { start, end, step } => {
                    if step <= 0 {
                        return Err(Error::Invalid(format!("the step {step} on axis {k}: chunked arrays take positive steps")));
                    }
                    let (s, t) = (at(start), end.map_or(n as isize, at));
                    if s < 0 || s > n as isize || t < 0 || t > n as isize {
                        return Err(Error::Invalid(format!("the slice {} of axis {k}, of length {n}, is out of bounds (shape {:?})", e_text(e), self.shape)));
                    }
                    out += 1;
                    (s as usize, (t as usize).max(s as usize), step as usize)
                }
            };
            // The data's own chunks are the blocks of what it shows along `k`.
            let cut = Window { start: s, end, step };
            let lengths = cut.piece_lengths(&self.chunks.axes()[k]);
            d.shape[k] = cut.len();
            let mut axes = d.chunks.axes().to_vec();
            axes[k] = lengths;
            d.chunks = Chunks::from_axes(axes);
            for l in &mut d.leaves {
                // A leaf that broadcasts along `k` (it shows one element) stays as it is.
                if let Some(j) = l.axes[k] {
                    if l.seen(j) == n {
                        l.window[j] = l.window[j].sub(s, end, step);
                    }
                }
            }
            k += 1;
        }
        // Indexed axes go; new axes come.
        for &a in drop.iter().rev() {
            d.shape.remove(a);
            let mut axes = d.chunks.axes().to_vec();
            axes.remove(a);
            d.chunks = Chunks::from_axes(axes);
            for l in &mut d.leaves {
                l.axes.remove(a);
            }
        }
        Ok(if new_axes.is_empty() { d } else { d.with_axes_at(&new_axes) })
    }

    fn check_axes(&self, axes: &[usize]) -> Result<Vec<usize>> {
        let mut v = axes.to_vec();
        v.sort_unstable();
        v.dedup();
        if let Some(bad) = v.iter().find(|&&a| a >= self.ndim()) {
            return Err(Error::Axis(format!("axis {bad} of an array of shape {:?}, which has {} axes", self.shape, self.ndim())));
        }
        Ok(v)
    }

    fn reduced(&self, op: ReduceOp, axes: &[usize], split_every: usize) -> Result<Data> {
        let axes = self.check_axes(axes)?;
        if op != ReduceOp::Sum {
            if let Some(a) = axes.iter().find(|&&a| self.shape[a] == 0) {
                return Err(Error::Invalid(format!("{op:?} over axis {a}, which is empty (shape {:?}); it has no identity", self.shape)));
            }
        }
        let shape: Vec<usize> = self.shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, n)| *n).collect();
        let chunks = self.chunks.without(&axes);
        let dtype = if op == ReduceOp::Sum { kernel::sum_dtype(self.dtype) } else { self.dtype };
        let r = Reduction { input: self.clone(), op, axes, split_every, blocks: OnceLock::new() };
        Ok(Data::leaf(LeafKind::Reduced(Arc::new(r)), shape, chunks, dtype))
    }

    /// The plan of output block `index` and its argument blocks.
    fn plan_block(&self, index: &[usize], client: &Client, then: Then) -> Result<(BlockPlan, Vec<ArgValue>)> {
        let mut args = Vec::new();
        let mut leaves = Vec::with_capacity(self.leaves.len());
        for l in &self.leaves {
            let (at, crop) = l.block_for(index);
            let source = match &l.kind {
                LeafKind::Generated(g) => LeafSource::Generate {
                    generator: g.clone(),
                    flat: l.chunks.flat(&at) as u64,
                    offset: l.chunks.block_offset(&at),
                    shape: l.chunks.block_shape(&at),
                    index: at,
                },
                LeafKind::Stored(blocks) => {
                    args.push(Arg::<Vec<u8>>::into_slot(&blocks[l.chunks.flat(&at)]));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
                LeafKind::Reduced(r) => {
                    let blocks = r.materialize(client)?;
                    args.push(Arg::<Vec<u8>>::into_slot(&blocks[l.chunks.flat(&at)]));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
                LeafKind::Raw(slot) => {
                    args.push(slot(l.chunks.flat(&at)));
                    LeafSource::Raw { k: (args.len() - 1) as u32, dtype: l.raw_dtype.expect("raw leaves know their type"), shape: l.chunks.block_shape(&at) }
                }
                LeafKind::Npy(file) => LeafSource::Npy {
                    path: file.0.clone(),
                    header: file.1.clone(),
                    offset: l.chunks.block_offset(&at),
                    shape: l.chunks.block_shape(&at),
                    index: at,
                },
                LeafKind::Dot(d) => {
                    let blocks = d.materialize(client)?;
                    args.push(Arg::<Vec<u8>>::into_slot(&blocks[l.chunks.flat(&at)]));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
                LeafKind::Concat(c) => {
                    let (p, local) = c.locate(&at);
                    args.push(Arg::<Vec<u8>>::into_slot(&c.parts[p].block_future(&local, client)?));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
            };
            leaves.push(LeafPlan { source, crop, axes: l.axes.clone() });
        }
        Ok((BlockPlan { expr: self.expr.clone(), leaves, then }, args))
    }

    /// A future of block `index`: the stored one, or a task that computes it.
    fn block_future(&self, index: &[usize], client: &Client) -> Result<Future<Vec<u8>>> {
        if let Some(b) = self.direct(client)? {
            return Ok(b[self.chunks.flat(index)].clone());
        }
        let (plan, args) = self.plan_block(index, client, Then::Keep)?;
        Ok(submit(client, EvalBlock, &plan, args))
    }

    /// The blocks when the array is one stored leaf as it is.
    fn direct(&self, client: &Client) -> Result<Option<Blocks>> {
        let [l] = &self.leaves[..] else { return Ok(None) };
        let identity = l.axes.iter().enumerate().all(|(k, a)| *a == Some(k)) && l.shape == self.shape && l.is_whole();
        if self.expr != Expr::Leaf(0) || !identity {
            return Ok(None);
        }
        Ok(match &l.kind {
            LeafKind::Stored(b) => Some(b.clone()),
            LeafKind::Reduced(r) => Some(r.materialize(client)?),
            LeafKind::Dot(d) => Some(d.materialize(client)?),
            LeafKind::Generated(_) | LeafKind::Raw(_) | LeafKind::Concat(_) | LeafKind::Npy(_) => None,
        })
    }

    /// One future per block, in row-major order of the grid.
    fn blocks(&self, client: &Client) -> Result<Blocks> {
        if let Some(b) = self.direct(client)? {
            return Ok(b);
        }
        let futures = self
            .chunks
            .indices()
            .iter()
            .map(|idx| {
                let (plan, args) = self.plan_block(idx, client, Then::Keep)?;
                Ok(submit(client, EvalBlock, &plan, args))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(futures))
    }

    /// The tasks [`Data::blocks`] would submit, reductions not yet computed included.
    fn task_count(&self) -> usize {
        let direct = matches!(&self.leaves[..], [l] if self.expr == Expr::Leaf(0) && matches!(l.kind, LeafKind::Stored(_) | LeafKind::Reduced(_) | LeafKind::Dot(_)) && l.is_whole() && l.shape == self.shape && l.axes.iter().enumerate().all(|(k, a)| *a == Some(k)));
        let own = if direct { 0 } else { self.chunks.count() };
        own + self
            .leaves
            .iter()
            .map(|l| match &l.kind {
                LeafKind::Reduced(r) => r.task_count(),
                LeafKind::Dot(d) => d.task_count(),
                LeafKind::Concat(c) => c.parts.iter().map(Data::task_count).sum(),
                _ => 0,
            })
            .sum::<usize>()
    }
}

fn e_text(e: &SliceInfoElem) -> String {
    match *e {
        SliceInfoElem::Index(i) => i.to_string(),
        SliceInfoElem::Slice { start, end, step } => {
            let end = end.map(|v| v.to_string()).unwrap_or_default();
            if step == 1 {
                format!("{start}..{end}")
            } else {
                format!("{start}..{end};{step}")
            }
        }
        SliceInfoElem::NewAxis => "NewAxis".into(),
    }
}

fn submit<F: chorus_tasks::RemoteFunction<Output = Vec<u8>>, P: serde::Serialize>(client: &Client, f: F, plan: &P, args: Vec<ArgValue>) -> Future<Vec<u8>> {
    let plan = postcard::to_allocvec(plan).expect("plans are plain data");
    let mut all = Vec::with_capacity(1 + args.len());
    all.push(Arg::<Vec<u8>>::into_slot(plan));
    all.extend(args);
    client.submit_variadic(f, all, TaskOptions::default())
}

impl Reduction {
    fn materialize(&self, client: &Client) -> Result<Blocks> {
        if let Some(b) = self.blocks.get() {
            return Ok(b.clone());
        }
        let mut groups: BTreeMap<Vec<usize>, Vec<Future<Vec<u8>>>> = BTreeMap::new();
        for idx in self.input.chunks.indices() {
            let (plan, args) = self.input.plan_block(&idx, client, Then::Reduce { op: self.op, axes: self.axes.clone() })?;
            let key: Vec<usize> = idx.iter().enumerate().filter(|(i, _)| !self.axes.contains(i)).map(|(_, b)| *b).collect();
            groups.entry(key).or_default().push(submit(client, EvalBlock, &plan, args));
        }
        let blocks: Vec<Future<Vec<u8>>> =
            groups.into_values().map(|parts| tree(client, parts, self.op, self.split_every, Some(self.axes.clone()))).collect();
        let blocks = Arc::new(blocks);
        Ok(self.blocks.get_or_init(|| blocks).clone())
    }

    fn task_count(&self) -> usize {
        if self.blocks.get().is_some() {
            return 0;
        }
        let grid = self.input.chunks.grid();
        let group: usize = self.axes.iter().map(|&a| grid[a]).product();
        let groups = self.input.chunks.count() / group.max(1);
        self.input.task_count() + groups * tree_tasks(group, self.split_every, true)
    }
}

/// The right-hand side of an elementwise operation: an array or a single value.
pub enum Operand<'a, T: Element> {
    /// An array (broadcast against the other side).
    Array(&'a Array<T>),
    /// A value.
    Scalar(T),
}

impl<'a, T: Element> From<&'a Array<T>> for Operand<'a, T> {
    fn from(a: &'a Array<T>) -> Self {
        Operand::Array(a)
    }
}

macro_rules! scalar_operand {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand<'_, $t> {
            fn from(v: $t) -> Self {
                Operand::Scalar(v)
            }
        }
    )*};
}
scalar_operand!(f64, f32, i64, i32, u8, bool);

impl<T: Element> Array<T> {
    pub(crate) fn from_data(client: &Client, data: Data) -> Array<T> {
        Array { client: client.clone(), data, split_every: SPLIT_EVERY, _t: PhantomData }
    }

    fn derive<U: Element>(&self, data: Data) -> Array<U> {
        Array { client: self.client.clone(), data, split_every: self.split_every, _t: PhantomData }
    }

    pub(crate) fn generated(client: &Client, shape: &[usize], chunks: Chunks, generator: Generator, dtype: DType) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Generated(generator), shape.to_vec(), chunks, dtype))
    }

    pub(crate) fn stored(client: &Client, shape: &[usize], chunks: Chunks, blocks: Vec<Future<Vec<u8>>>) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Stored(Arc::new(blocks)), shape.to_vec(), chunks, T::DTYPE))
    }

    pub(crate) fn npy(client: &Client, path: std::path::PathBuf, header: crate::npy::Header, chunks: Chunks) -> Array<T> {
        let shape = header.shape.clone();
        Array::from_data(client, Data::leaf(LeafKind::Npy(Arc::new((path, header))), shape, chunks, T::DTYPE))
    }

    pub(crate) fn raw(client: &Client, shape: &[usize], chunks: Chunks, slot: Arc<dyn Fn(usize) -> ArgValue + Send + Sync>) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Raw(slot), shape.to_vec(), chunks, T::DTYPE))
    }

    /// The length of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.data.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.data.shape.len()
    }

    /// How the array is cut into blocks.
    pub fn chunks(&self) -> &Chunks {
        &self.data.chunks
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// Elements in all.
    pub fn len(&self) -> usize {
        self.data.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tasks a [`compute`](Array::compute) would run now.
    pub fn task_count(&self) -> usize {
        self.data.task_count()
    }

    /// The same array whose reductions combine `n` partials per task (at least 2;
    /// [`SPLIT_EVERY`] by default), like Dask's `split_every`.
    pub fn split_every(mut self, n: usize) -> Result<Array<T>> {
        if n < 2 {
            return Err(Error::Invalid(format!("split_every must be at least 2, not {n}")));
        }
        self.split_every = n;
        Ok(self)
    }

    fn operand(&self, op: BinaryOp, rhs: Operand<'_, T>) -> Result<Data> {
        match rhs {
            Operand::Array(b) => self.data.binary(op, &b.data),
            Operand::Scalar(s) => Ok(self.data.scalar(op, s.scalar(), false)),
        }
    }

    fn numeric(&self, what: &str) -> Result<()> {
        if T::DTYPE == DType::Bool {
            return Err(Error::Invalid(format!("{what} of a bool array (shape {:?}); cast it with astype first", self.data.shape)));
        }
        Ok(())
    }

    /// `self + rhs`, elementwise with broadcasting.
    pub fn try_add<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a sum")?;
        Ok(self.derive(self.operand(BinaryOp::Add, rhs.into())?))
    }

    /// `self - rhs`, elementwise with broadcasting.
    pub fn try_sub<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a difference")?;
        Ok(self.derive(self.operand(BinaryOp::Sub, rhs.into())?))
    }

    /// `self * rhs`, elementwise with broadcasting.
    pub fn try_mul<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a product")?;
        Ok(self.derive(self.operand(BinaryOp::Mul, rhs.into())?))
    }

    /// `self / rhs`, elementwise with broadcasting (integer division by zero gives 0).
    pub fn try_div<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a quotient")?;
        Ok(self.derive(self.operand(BinaryOp::Div, rhs.into())?))
    }

    /// `self ** rhs`, elementwise with broadcasting.
    pub fn pow<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a power")?;
        Ok(self.derive(self.operand(BinaryOp::Pow, rhs.into())?))
    }

    /// `rhs - self` for a value `rhs` (`1.0 - x`).
    pub fn rsub(&self, lhs: T) -> Result<Array<T>> {
        self.numeric("a difference")?;
        Ok(self.derive(self.data.scalar(BinaryOp::Sub, lhs.scalar(), true)))
    }

    /// `rhs / self` for a value `rhs` (`1.0 / x`).
    pub fn rdiv(&self, lhs: T) -> Result<Array<T>> {
        self.numeric("a quotient")?;
        Ok(self.derive(self.data.scalar(BinaryOp::Div, lhs.scalar(), true)))
    }

    /// `self < rhs`, elementwise.
    pub fn lt<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Lt, rhs.into())?))
    }

    /// `self <= rhs`, elementwise.
    pub fn le<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Le, rhs.into())?))
    }

    /// `self > rhs`, elementwise.
    pub fn gt<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Gt, rhs.into())?))
    }

    /// `self >= rhs`, elementwise.
    pub fn ge<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Ge, rhs.into())?))
    }

    /// `self == rhs`, elementwise.
    pub fn eq_elem<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Eq, rhs.into())?))
    }

    /// `self != rhs`, elementwise.
    pub fn ne_elem<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Ne, rhs.into())?))
    }

    /// `-self` (integers wrap).
    pub fn try_neg(&self) -> Result<Array<T>> {
        if matches!(T::DTYPE, DType::Bool | DType::U8) {
            return Err(Error::Invalid(format!("negation of a {} array (shape {:?})", T::DTYPE, self.data.shape)));
        }
        Ok(self.derive(self.data.unary(UnaryOp::Neg)))
    }

    /// `|self|`.
    pub fn abs(&self) -> Result<Array<T>> {
        self.numeric("abs")?;
        Ok(self.derive(self.data.unary(UnaryOp::Abs)))
    }

    fn float(&self, op: UnaryOp) -> Result<Array<T>> {
        if !matches!(T::DTYPE, DType::F64 | DType::F32) {
            return Err(Error::Invalid(format!("{op:?} of a {} array (shape {:?}); cast it with astype::<f64>() first", T::DTYPE, self.data.shape)));
        }
        Ok(self.derive(self.data.unary(op)))
    }

    /// The square root of each element (floats).
    pub fn sqrt(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Sqrt)
    }

    /// `e` to the power of each element (floats).
    pub fn exp(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Exp)
    }

    /// The natural logarithm of each element (floats).
    pub fn ln(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Log)
    }

    /// Each element converted to `U`, like numpy's `astype` (`as` casts; numbers are
    /// `true` unless zero).
    pub fn astype<U: Element>(&self) -> Array<U> {
        self.derive(self.data.cast(U::DTYPE))
    }

    /// The axes reversed (`x.T`).
    pub fn t(&self) -> Array<T> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.derive(self.data.transposed(&perm).expect("a reversal is a permutation"))
    }

    /// The axes in the order `perm` gives: axis `k` of the result is axis `perm[k]`.
    pub fn transpose(&self, perm: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.transposed(perm)?))
    }

    /// Axes `a` and `b` exchanged.
    pub fn swap_axes(&self, a: usize, b: usize) -> Result<Array<T>> {
        self.data.check_axes(&[a, b])?;
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        self.transpose(&perm)
    }

    /// The part `info` selects, written with ndarray's `s!` macro: `x.slice(s![..10,
    /// ..10])`. Ranges (with positive steps), single indexes (which remove their axis)
    /// and `NewAxis` are allowed; a range or index beyond an axis is an error. Only the
    /// blocks the slice touches are computed.
    pub fn slice<I: AsRef<[SliceInfoElem]>>(&self, info: I) -> Result<Array<T>> {
        Ok(self.derive(self.data.sliced(info.as_ref())?))
    }

    fn all_axes(&self) -> Vec<usize> {
        (0..self.ndim()).collect()
    }

    /// The sum of all elements (a 0-d array; [`Array::compute_scalar`] gives the value).
    pub fn sum(&self) -> Result<Array<T::Sum>> {
        self.sum_axes(&self.all_axes())
    }

    /// The sums over `axes`, which are removed.
    pub fn sum_axes(&self, axes: &[usize]) -> Result<Array<T::Sum>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Sum, axes, self.split_every)?))
    }

    /// The smallest element (NaN if there is one).
    pub fn min(&self) -> Result<Array<T>> {
        self.min_axes(&self.all_axes())
    }

    /// The smallest elements over `axes`, which are removed.
    pub fn min_axes(&self, axes: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Min, axes, self.split_every)?))
    }

    /// The largest element (NaN if there is one).
    pub fn max(&self) -> Result<Array<T>> {
        self.max_axes(&self.all_axes())
    }

    /// The largest elements over `axes`, which are removed.
    pub fn max_axes(&self, axes: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Max, axes, self.split_every)?))
    }

    /// The mean of all elements, in f64.
    pub fn mean(&self) -> Result<Array<f64>> {
        self.mean_axes(&self.all_axes())
    }

    /// The means over `axes`, which are removed, in f64.
    pub fn mean_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        let axes = self.data.check_axes(axes)?;
        let n: usize = axes.iter().map(|&a| self.data.shape[a]).product();
        let sums = self.data.cast(DType::F64).reduced(ReduceOp::Sum, &axes, self.split_every)?;
        Ok(self.derive(sums.scalar(BinaryOp::Div, Scalar::F64(n as f64), false)))
    }

    /// The variance of all elements (divided by the count, numpy's `ddof=0`), in f64.
    pub fn var(&self) -> Result<Array<f64>> {
        self.var_axes(&self.all_axes())
    }

    /// The variances over `axes`, which are removed, in f64. Two passes over the data
    /// (the mean, then the squared deviations from it), which is exact where one pass
    /// of sums and sums of squares loses digits.
    pub fn var_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        let axes = self.data.check_axes(axes)?;
        let n: usize = axes.iter().map(|&a| self.data.shape[a]).product();
        let x = self.data.cast(DType::F64);
        let mean = self.mean_axes(&axes)?.data.with_axes_at(&axes);
        let dev = x.binary(BinaryOp::Sub, &mean)?;
        let squares = dev.binary(BinaryOp::Mul, &dev)?;
        let total = squares.reduced(ReduceOp::Sum, &axes, self.split_every)?;
        Ok(self.derive(total.scalar(BinaryOp::Div, Scalar::F64(n as f64), false)))
    }

    /// The standard deviation of all elements (`ddof=0`), in f64.
    pub fn std(&self) -> Result<Array<f64>> {
        self.var()?.sqrt()
    }

    /// The standard deviations over `axes`, which are removed, in f64.
    pub fn std_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        self.var_axes(axes)?.sqrt()
    }

    /// The matrix product of two 2-D arrays: block `(i, j)` of the result is the sum over
    /// `k` of the products of blocks `(i, k)` and `(k, j)`, each a task (matrixmultiply's
    /// kernels), summed in a tree. The columns of `self` must be cut like the rows of
    /// `other`.
    pub fn dot(&self, other: &Array<T>) -> Result<Array<T>> {
        let (a, b) = (&self.data, &other.data);
        if a.ndim() != 2 || b.ndim() != 2 {
            return Err(Error::Invalid(format!("dot of arrays of shapes {:?} and {:?}: both must be 2-D", a.shape, b.shape)));
        }
        if T::DTYPE == DType::Bool {
            return Err(Error::Invalid("dot of bool arrays; cast them with astype first".into()));
        }
        if a.shape[1] != b.shape[0] {
            return Err(Error::Invalid(format!("dot of arrays of shapes {:?} and {:?}: {} columns against {} rows", a.shape, b.shape, a.shape[1], b.shape[0])));
        }
        if a.chunks.axes()[1] != b.chunks.axes()[0] {
            return Err(Error::Chunks(format!(
                "dot of arrays of shapes {:?} and {:?}: the columns are cut {:?} and the rows {:?}; they must be cut alike",
                a.shape,
                b.shape,
                a.chunks.axes()[1],
                b.chunks.axes()[0]
            )));
        }
        let chunks = Chunks::from_axes(vec![a.chunks.axes()[0].clone(), b.chunks.axes()[1].clone()]);
        let d = Dot { a: a.clone(), b: b.clone(), split_every: self.split_every, blocks: OnceLock::new() };
        Ok(self.derive(Data::leaf(LeafKind::Dot(Arc::new(d)), vec![a.shape[0], b.shape[1]], chunks, T::DTYPE)))
    }

    /// The same as [`Array::dot`] (numpy's `@` on 2-D arrays).
    pub fn matmul(&self, other: &Array<T>) -> Result<Array<T>> {
        self.dot(other)
    }

    /// Writes the array to the `.npy` file `path`: the driver writes the header, and the
    /// task that computes each block writes that block's bytes into the file, in
    /// parallel. The workers must see `path` (one machine, or a shared file system).
    /// Returns when every block is written.
    pub fn to_npy(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = std::path::absolute(path.as_ref()).map_err(|e| Error::Io { path: path.as_ref().to_path_buf(), detail: e.to_string() })?;
        let header = crate::npy::create(&path, T::DTYPE, &self.data.shape)?;
        let acks = self
            .data
            .chunks
            .indices()
            .into_iter()
            .map(|idx| {
                let (block, args) = self.data.plan_block(&idx, &self.client, Then::Keep)?;
                let plan = crate::npy::WritePlan { block, path: path.clone(), header: header.clone(), offset: self.data.chunks.block_offset(&idx), index: idx };
                Ok(submit(&self.client, crate::npy::WriteBlock, &plan, args))
            })
            .collect::<Result<Vec<_>>>()?;
        self.client.gather(&acks)?;
        Ok(())
    }

    /// Runs the array's tasks now and keeps its blocks on the workers: the result
    /// computes from those blocks from then on, like Dask's `persist`. Returns at once;
    /// the blocks are computed in the background.
    pub fn persist(&self) -> Result<Array<T>> {
        let blocks = self.data.blocks(&self.client)?;
        Ok(self.derive(Data::leaf(LeafKind::Stored(blocks), self.data.shape.clone(), self.data.chunks.clone(), T::DTYPE)))
    }

    /// The futures of the array's blocks, in row-major order of the grid: the tasks are
    /// submitted now.
    pub fn to_futures(&self) -> Result<Vec<Future<Vec<u8>>>> {
        Ok(self.data.blocks(&self.client)?.to_vec())
    }

    /// Runs the array's tasks and brings the whole array to the driver.
    pub fn compute(&self) -> Result<ArrayD<T>> {
        let futures = self.data.blocks(&self.client)?;
        let bytes = self.client.gather(&futures)?;
        let mut out = ArrayD::from_elem(IxDyn(&self.data.shape), T::ZERO);
        for (idx, b) in self.data.chunks.indices().into_iter().zip(bytes) {
            let block = Block::decode(&b).map_err(|detail| Error::Block { index: idx.clone(), detail })?;
            let got = block.dtype();
            let block = T::unwrap(block).ok_or_else(|| Error::Block { index: idx.clone(), detail: format!("a {got} block in a {} array", T::DTYPE) })?;
            let (shape, offset) = (self.data.chunks.block_shape(&idx), self.data.chunks.block_offset(&idx));
            if block.shape() != shape.as_slice() {
                return Err(Error::Block { index: idx, detail: format!("a block of shape {:?} where {shape:?} belongs", block.shape()) });
            }
            out.slice_each_axis_mut(|ax| {
                let k = ax.axis.index();
                Slice::from(offset[k]..offset[k] + shape[k])
            })
            .assign(&block);
        }
        Ok(out)
    }

    /// The value of a 0-d array (the result of [`Array::sum`] and the like).
    pub fn compute_scalar(&self) -> Result<T> {
        if self.ndim() != 0 {
            return Err(Error::Invalid(format!("compute_scalar of an array of shape {:?}; it needs a 0-d array", self.data.shape)));
        }
        Ok(*self.compute()?.first().expect("a 0-d array has one element"))
    }
}

impl Array<bool> {
    /// `a` where `self` is true, `b` elsewhere, with broadcasting among the three.
    pub fn select<'a, 'b, T: Element>(&self, a: impl Into<Operand<'a, T>>, b: impl Into<Operand<'b, T>>) -> Result<Array<T>> {
        let side = |o: Operand<'_, T>| match o {
            Operand::Array(x) => x.data.clone(),
            Operand::Scalar(s) => Data { shape: vec![], chunks: Chunks::from_axes(vec![]), dtype: T::DTYPE, expr: Expr::Scalar(s.scalar()), leaves: vec![] },
        };
        let (a, b) = (side(a.into()), side(b.into()));
        if a.dtype != b.dtype {
            return Err(Error::Invalid(format!("where over a {} and a {} array", a.dtype, b.dtype)));
        }
        // Brought to the shape all three broadcast to, one pair at a time.
        let (c, a) = Data::aligned(&self.data, &a)?;
        let (mut out, b) = Data::aligned(&c, &b)?;
        let (a, _) = Data::aligned(&a, &out)?;
        let (ea, eb) = (out.merge(&a), out.merge(&b));
        out.expr = Expr::Where(Box::new(out.expr.clone()), Box::new(ea), Box::new(eb));
        out.dtype = T::DTYPE;
        Ok(Array { client: self.client.clone(), data: out, split_every: self.split_every, _t: PhantomData })
    }

    /// Logical not.
    pub fn not(&self) -> Array<bool> {
        self.derive(self.data.unary(UnaryOp::Not))
    }
}

/// The arrays joined along `axis` (numpy's `concatenate`). Their other axes must have
/// the same lengths and chunks; each block of an input is a block of the result.
pub fn concatenate<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays.first().ok_or_else(|| Error::Invalid("concatenate of no arrays".into()))?;
    let n = first.ndim();
    if axis >= n {
        return Err(Error::Axis(format!("concatenate along axis {axis} of arrays of shape {:?}", first.shape())));
    }
    let mut lengths = Vec::new();
    let mut starts = Vec::new();
    let mut total = 0;
    for a in arrays {
        let same_other_axes = a.ndim() == n && (0..n).all(|k| k == axis || a.shape()[k] == first.shape()[k]);
        if !same_other_axes {
            return Err(Error::Invalid(format!(
                "arrays of shapes {:?} and {:?} cannot be joined along axis {axis}: their other axes differ",
                first.shape(),
                a.shape()
            )));
        }
        if let Some(k) = (0..n).find(|&k| k != axis && a.chunks().axes()[k] != first.chunks().axes()[k]) {
            return Err(Error::Chunks(format!("arrays of shapes {:?} and {:?} are cut differently along axis {k}", first.shape(), a.shape())));
        }
        starts.push(lengths.len());
        lengths.extend(a.chunks().axes()[axis].iter().copied());
        total += a.shape()[axis];
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    let mut axes = first.chunks().axes().to_vec();
    axes[axis] = lengths;
    let concat = Concat { parts: arrays.iter().map(|a| a.data.clone()).collect(), axis, starts };
    Ok(first.derive(Data::leaf(LeafKind::Concat(Arc::new(concat)), shape, Chunks::from_axes(axes), T::DTYPE)))
}

/// The arrays, all of one shape, stacked along a new axis at `axis` (numpy's `stack`).
pub fn stack<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays.first().ok_or_else(|| Error::Invalid("stack of no arrays".into()))?;
    if axis > first.ndim() {
        return Err(Error::Axis(format!("stack at axis {axis} of arrays of shape {:?}", first.shape())));
    }
    if let Some(odd) = arrays.iter().find(|a| a.shape() != first.shape()) {
        return Err(Error::Invalid(format!("stack of arrays of shapes {:?} and {:?}; they must be equal", first.shape(), odd.shape())));
    }
    let raised: Vec<Array<T>> = arrays.iter().map(|a| a.derive(a.data.with_axes_at(&[axis]))).collect();
    concatenate(&raised.iter().collect::<Vec<_>>(), axis)
}

/// `where(cond, a, b)`: `a` where `cond` is true, `b` elsewhere (numpy's `where`).
pub fn where_<'a, 'b, T: Element>(cond: &Array<bool>, a: impl Into<Operand<'a, T>>, b: impl Into<Operand<'b, T>>) -> Result<Array<T>> {
    cond.select(a, b)
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

impl<T: Element> std::fmt::Display for Array<T> {
    /// A table like Dask's: shape, chunks, element type, sizes and tasks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.data;
        let size = T::DTYPE.size() as f64;
        let grid: Vec<String> = d.chunks.grid().iter().map(ToString::to_string).collect();
        writeln!(f, "chorus::Array<{}>", T::DTYPE)?;
        writeln!(f, "  shape   {:?}", d.shape)?;
        writeln!(f, "  chunks  {}  ({} = {} blocks)", d.chunks, grid.join(" × "), d.chunks.count())?;
        writeln!(f, "  bytes   {}  (largest block {})", human(self.len() as f64 * size), human(d.chunks.largest_block() as f64 * size))?;
        let ops = d.expr.operations();
        write!(f, "  tasks   {} to compute ({ops} fused operation{} per block)", self.task_count(), if ops == 1 { "" } else { "s" })
    }
}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

macro_rules! operator {
    ($tr:ident, $m:ident, $try:ident) => {
        impl<T: Element> std::ops::$tr<&Array<T>> for &Array<T> {
            type Output = Array<T>;
            /// Panics, like ndarray's operators, when the shapes or chunks do not line up;
            /// the `try_` method gives the error instead.
            fn $m(self, rhs: &Array<T>) -> Array<T> {
                self.$try(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
        impl<T: Element> std::ops::$tr<T> for &Array<T>
        where
            T: for<'a> Into<Operand<'a, T>>,
        {
            type Output = Array<T>;
            fn $m(self, rhs: T) -> Array<T> {
                self.$try(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    };
}

operator!(Add, add, try_add);
operator!(Sub, sub, try_sub);
operator!(Mul, mul, try_mul);
operator!(Div, div, try_div);

impl<T: Element> std::ops::Neg for &Array<T> {
    type Output = Array<T>;
    /// Panics for bool and u8 arrays; [`Array::try_neg`] gives the error instead.
    fn neg(self) -> Array<T> {
        self.try_neg().unwrap_or_else(|e| panic!("{e}"))
    }
}
