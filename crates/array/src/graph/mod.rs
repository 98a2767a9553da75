//! The expression graph behind an [`Array`](crate::Array), and how it becomes tasks.
//!
//! An array is a fused expression over *leaves*: arrays generated where they are used
//! (creation functions, random numbers), files read where they are used, arrays whose
//! blocks are already on the workers (scattered, persisted, results of the user's
//! tasks, of reductions and of products) and joined arrays, each seen through a view
//! that lines its axes up with the array's (transposition, broadcasting, a slice window).
//! [`Data::blocks`] plans one task per output block, which evaluates the whole chain for
//! that block; a reduction plans one task per input block (evaluate and reduce at once)
//! and a tree of combining tasks.

use std::sync::Arc;

use chorus_tasks::{Arg, ArgValue, Client, Future, TaskOptions};
use ndarray::SliceInfoElem;

use crate::chunks::Chunks;
use crate::dtype::{DType, Scalar};
use crate::kernel::{self, BinaryOp, BlockPlan, Crop, EvalBlock, Piece, Expr, Generator, LeafPlan, LeafSource, ReduceOp, Then, UnaryOp};
use crate::{Error, Result};

mod nodes;
pub(crate) mod visualize;

pub(crate) use nodes::{overlaps, submit, Build, Concat, Dot, Mapped, Reduction, Reshape, Slot};

/// The untyped description of an array.
#[derive(Clone)]
pub(crate) struct Data {
    pub(crate) shape: Vec<usize>,
    pub(crate) chunks: Chunks,
    pub(crate) dtype: DType,
    pub(crate) expr: Expr,
    pub(crate) leaves: Vec<Leaf>,
}

/// An input of an expression and how its axes line up with the expression's: the
/// expression sees the part `window` of each leaf axis, and output axis `k` is the leaf's
/// axis `axes[k]`, or a broadcast axis of length 1 (`None`). A leaf axis that no output
/// axis names was indexed away (its window holds one element).
#[derive(Clone)]
pub(crate) struct Leaf {
    pub(crate) kind: LeafKind,
    pub(crate) shape: Vec<usize>,
    pub(crate) chunks: Chunks,
    pub(crate) window: Vec<Window>,
    pub(crate) axes: Vec<Option<usize>>,
    /// The element type of its blocks (the array's may differ after a cast).
    pub(crate) dtype: DType,
}

/// The elements `start, start + step, …` below `end` of an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) step: usize,
}

impl Window {
    pub(crate) fn full(n: usize) -> Window {
        Window { start: 0, end: n, step: 1 }
    }

    pub(crate) fn len(&self) -> usize {
        if self.end > self.start {
            (self.end - self.start).div_ceil(self.step)
        } else {
            0
        }
    }

    pub(crate) fn is_full(&self, n: usize) -> bool {
        self.start == 0 && self.end == n && self.step == 1
    }

    /// Elements `s..e` by `t` of what this window shows, as a window of the axis.
    pub(crate) fn sub(&self, s: usize, e: usize, t: usize) -> Window {
        let start = self.start + s * self.step;
        let end = if e > s { self.start + (e - 1) * self.step + 1 } else { start };
        Window { start, end, step: self.step * t }
    }

    /// For each block of the axis (of `lengths`) that holds shown elements: the block,
    /// and the first and end element within it. An empty window is one empty piece.
    pub(crate) fn pieces(&self, lengths: &[usize]) -> Vec<(usize, usize, usize)> {
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

    pub(crate) fn piece_lengths(&self, lengths: &[usize]) -> Vec<usize> {
        self.pieces(lengths).iter().map(|&(_, lo, hi)| (hi - lo).div_ceil(self.step)).collect()
    }
}

/// Futures of an array's blocks, in row-major order of its grid.
pub(crate) type Blocks = Arc<Vec<Future<Vec<u8>>>>;

#[derive(Clone)]
pub(crate) enum LeafKind {
    Generated(Generator),
    Stored(Blocks),
    /// Results of the user's tasks, each the bare elements of a block (`Vec<T>`): the
    /// argument for block `i` is `slot(i)`.
    Raw(Arc<dyn Fn(usize) -> ArgValue + Send + Sync>),
    /// Results of the user's tasks, each a block as an `ndarray::ArrayD` encoded with
    /// serde: the argument for block `i` is `slot(i)`.
    Serde(Arc<dyn Fn(usize) -> ArgValue + Send + Sync>),
    Reduced(Arc<Reduction>),
    Concat(Arc<Concat>),
    Dot(Arc<Dot>),
    /// Blocks that a user's function made of another array's blocks (`map_blocks`).
    Mapped(Arc<Mapped>),
    /// Another array cut into other blocks: each block is put together, in the task
    /// that uses it, from the parts of the blocks of `input` it overlaps.
    Rechunk(Arc<Data>),
    /// An array in a file, whose blocks the tasks that use them read.
    File(Arc<crate::io::FileArray>),
    /// Another array's elements in another shape, block by block (see
    /// [`crate::reshape`]): each block is one block of `input` rearranged.
    Reshape(Arc<Reshape>),
}

impl Leaf {
    pub(crate) fn same(&self, other: &Leaf) -> bool {
        let kind = match (&self.kind, &other.kind) {
            (LeafKind::Generated(a), LeafKind::Generated(b)) => a == b,
            (LeafKind::Stored(a), LeafKind::Stored(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Reduced(a), LeafKind::Reduced(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Raw(a), LeafKind::Raw(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Serde(a), LeafKind::Serde(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Concat(a), LeafKind::Concat(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Dot(a), LeafKind::Dot(b)) => Arc::ptr_eq(a, b),
            (LeafKind::File(a), LeafKind::File(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Reshape(a), LeafKind::Reshape(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Mapped(a), LeafKind::Mapped(b)) => Arc::ptr_eq(a, b),
            (LeafKind::Rechunk(a), LeafKind::Rechunk(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        kind && self.shape == other.shape && self.chunks == other.chunks && self.window == other.window && self.axes == other.axes
    }

    /// Whether its blocks are (or will be, once computed) on the workers as they are.
    pub(crate) fn is_stored(&self) -> bool {
        matches!(self.kind, LeafKind::Stored(_) | LeafKind::Reduced(_) | LeafKind::Dot(_))
    }

    /// The futures of its blocks, submitting a reduction or product the first time in
    /// `build`; `None` for leaves whose blocks are made in the tasks that use them.
    pub(crate) fn stored_blocks(&self, build: &Build<'_>) -> Result<Option<Blocks>> {
        Ok(match &self.kind {
            LeafKind::Stored(b) => Some(b.clone()),
            LeafKind::Reduced(r) => Some(r.materialize(build)?),
            LeafKind::Dot(d) => Some(d.materialize(build)?),
            LeafKind::Generated(_) | LeafKind::Raw(_) | LeafKind::Serde(_) | LeafKind::Concat(_) | LeafKind::File(_) | LeafKind::Reshape(_) | LeafKind::Mapped(_) | LeafKind::Rechunk(_) => None,
        })
    }

    pub(crate) fn is_whole(&self) -> bool {
        self.window.iter().zip(&self.shape).all(|(w, &n)| w.is_full(n))
    }

    /// The leaf's block that output block `index` uses, and the part of it, unless all.
    pub(crate) fn block_for(&self, index: &[usize]) -> (Vec<usize>, Option<Crop>) {
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
    pub(crate) fn seen(&self, j: usize) -> usize {
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
    pub(crate) fn leaf(kind: LeafKind, shape: Vec<usize>, chunks: Chunks, dtype: DType) -> Data {
        let axes = (0..shape.len()).map(Some).collect();
        let window = shape.iter().map(|&n| Window::full(n)).collect();
        Data {
            shape: shape.clone(),
            chunks: chunks.clone(),
            dtype,
            expr: Expr::Leaf(0),
            leaves: vec![Leaf { dtype, kind, shape, chunks, window, axes }],
        }
    }

    pub(crate) fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The same array with `extra` unit axes in front.
    pub(crate) fn with_leading(&self, extra: usize) -> Data {
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
    pub(crate) fn with_axes_at(&self, at: &[usize]) -> Data {
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
    pub(crate) fn merge(&mut self, other: &Data) -> Expr {
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
    pub(crate) fn aligned(a: &Data, b: &Data) -> Result<(Data, Data)> {
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

    pub(crate) fn binary(&self, op: BinaryOp, other: &Data) -> Result<Data> {
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

    pub(crate) fn scalar(&self, op: BinaryOp, s: Scalar, scalar_left: bool) -> Data {
        let mut d = self.clone();
        let (l, r) = if scalar_left { (Expr::Scalar(s), d.expr.clone()) } else { (d.expr.clone(), Expr::Scalar(s)) };
        d.expr = Expr::Binary(op, Box::new(l), Box::new(r));
        if op.compares() {
            d.dtype = DType::Bool;
        }
        d
    }

    pub(crate) fn unary(&self, op: UnaryOp) -> Data {
        let mut d = self.clone();
        d.expr = Expr::Unary(op, Box::new(d.expr.clone()));
        d
    }

    pub(crate) fn cast(&self, to: DType) -> Data {
        let mut d = self.clone();
        if d.dtype != to {
            d.expr = Expr::Cast(to, Box::new(d.expr.clone()));
            d.dtype = to;
        }
        d
    }

    /// The blocks of the user's function `f` applied to each block of this array (given
    /// to it encoded with serde), an array of `shape`, `chunks` and `dtype` whose blocks
    /// are `f`'s results.
    pub(crate) fn mapped<F>(&self, f: F, shape: Vec<usize>, chunks: Chunks, dtype: DType) -> Data
    where
        F: chorus_tasks::RemoteFunction + Send + Sync + 'static,
    {
        let call = Arc::new(move |client: &Client, block: ArgValue| -> Slot {
            let result = client.submit_variadic(f, vec![block], TaskOptions::default());
            Arc::new(move || Arg::<F::Output>::into_slot(&result))
        });
        Data::leaf(LeafKind::Mapped(Arc::new(Mapped { input: self.clone(), call })), shape, chunks, dtype)
    }

    pub(crate) fn reshaped(&self, shape: &[usize]) -> Result<Data> {
        let (old, new): (usize, usize) = (self.shape.iter().product(), shape.iter().product());
        if old != new {
            return Err(Error::Invalid(format!(
                "reshape of an array of shape {:?} ({old} elements) to {shape:?} ({new} elements): the element counts differ",
                self.shape
            )));
        }
        if shape == self.shape.as_slice() {
            return Ok(self.clone());
        }
        let rechunked = |chunks: Chunks| {
            if chunks == self.chunks {
                self.clone()
            } else {
                Data::leaf(LeafKind::Rechunk(Arc::new(self.clone())), self.shape.clone(), chunks, self.dtype)
            }
        };
        let (input, groups, chunks) = if new == 0 {
            // Nothing to rearrange: one empty block becomes another.
            let whole = |s: &[usize]| Chunks::from_axes(s.iter().map(|&n| vec![n]).collect());
            let groups = vec![crate::reshape::Group { old: 0..self.ndim().min(1), new: 0..shape.len().min(1) }];
            (rechunked(whole(&self.shape)), groups, whole(shape))
        } else {
            let groups = crate::reshape::groups(&self.shape, shape);
            let (need, made) = crate::reshape::plan(&self.shape, shape, &self.chunks, &groups);
            (rechunked(need), groups, made)
        };
        Ok(Data::leaf(LeafKind::Reshape(Arc::new(Reshape { input, groups })), shape.to_vec(), chunks, self.dtype))
    }

    pub(crate) fn transposed(&self, perm: &[usize]) -> Result<Data> {
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
    pub(crate) fn sliced(&self, elems: &[SliceInfoElem]) -> Result<Data> {
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

    pub(crate) fn check_axes(&self, axes: &[usize]) -> Result<Vec<usize>> {
        let mut v = axes.to_vec();
        v.sort_unstable();
        v.dedup();
        if let Some(bad) = v.iter().find(|&&a| a >= self.ndim()) {
            return Err(Error::Axis(format!("axis {bad} of an array of shape {:?}, which has {} axes", self.shape, self.ndim())));
        }
        Ok(v)
    }

    pub(crate) fn reduced(&self, op: ReduceOp, axes: &[usize], split_every: usize) -> Result<Data> {
        let axes = self.check_axes(axes)?;
        if op != ReduceOp::Sum {
            if let Some(a) = axes.iter().find(|&&a| self.shape[a] == 0) {
                return Err(Error::Invalid(format!("{op:?} over axis {a}, which is empty (shape {:?}); it has no identity", self.shape)));
            }
        }
        let shape: Vec<usize> = self.shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, n)| *n).collect();
        let chunks = self.chunks.without(&axes);
        let dtype = match op {
            ReduceOp::Sum => kernel::sum_dtype(self.dtype),
            ReduceOp::ArgMin | ReduceOp::ArgMax => DType::I64,
            ReduceOp::Min | ReduceOp::Max => self.dtype,
        };
        let r = Reduction { input: self.clone(), op, axes, split_every };
        Ok(Data::leaf(LeafKind::Reduced(Arc::new(r)), shape, chunks, dtype))
    }

    /// The plan of output block `index` and its argument blocks.
    pub(crate) fn plan_block(&self, index: &[usize], build: &Build<'_>, then: Then) -> Result<(BlockPlan, Vec<ArgValue>)> {
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
                LeafKind::Reshape(r) => {
                    let old = crate::reshape::old_block(&r.groups, r.input.ndim(), &at);
                    args.push(Arg::<Vec<u8>>::into_slot(&r.input.block_future(&old, build)?));
                    LeafSource::Reshaped { k: (args.len() - 1) as u32, shape: l.chunks.block_shape(&at) }
                }
                LeafKind::Stored(_) | LeafKind::Reduced(_) | LeafKind::Dot(_) => {
                    let blocks = l.stored_blocks(build)?.expect("these kinds are stored");
                    args.push(Arg::<Vec<u8>>::into_slot(&blocks[l.chunks.flat(&at)]));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
                LeafKind::Raw(slot) => {
                    args.push(slot(l.chunks.flat(&at)));
                    LeafSource::Raw { k: (args.len() - 1) as u32, dtype: l.dtype, shape: l.chunks.block_shape(&at) }
                }
                LeafKind::Serde(slot) => {
                    args.push(slot(l.chunks.flat(&at)));
                    LeafSource::Serde { k: (args.len() - 1) as u32, dtype: l.dtype, shape: l.chunks.block_shape(&at) }
                }
                LeafKind::Rechunk(input) => {
                    let (offset, shape) = (l.chunks.block_offset(&at), l.chunks.block_shape(&at));
                    let mut pieces = Vec::new();
                    for o in overlaps(&input.chunks, &offset, &shape) {
                        args.push(Arg::<Vec<u8>>::into_slot(&build.part(input, &o.block)?));
                        pieces.push(Piece { arg: (args.len() - 1) as u32, part: o.part, at: o.at });
                    }
                    LeafSource::Assemble { dtype: input.dtype, shape, pieces }
                }
                LeafKind::Mapped(m) => {
                    let slots = m.materialize(build)?;
                    args.push(slots[l.chunks.flat(&at)]());
                    LeafSource::Serde { k: (args.len() - 1) as u32, dtype: l.dtype, shape: l.chunks.block_shape(&at) }
                }
                LeafKind::File(file) => LeafSource::File {
                    file: (**file).clone(),
                    offset: l.chunks.block_offset(&at),
                    shape: l.chunks.block_shape(&at),
                    index: at,
                },
                LeafKind::Concat(c) => {
                    let (p, local) = c.locate(&at);
                    args.push(Arg::<Vec<u8>>::into_slot(&c.parts[p].block_future(&local, build)?));
                    LeafSource::Argument((args.len() - 1) as u32)
                }
            };
            leaves.push(LeafPlan { source, crop, axes: l.axes.clone() });
        }
        Ok((BlockPlan { expr: self.expr.clone(), leaves, then }, args))
    }

    /// A future of block `index`: the stored one, or a task that computes it.
    pub(crate) fn block_future(&self, index: &[usize], build: &Build<'_>) -> Result<Future<Vec<u8>>> {
        if let Some(b) = self.direct(build)? {
            return Ok(b[self.chunks.flat(index)].clone());
        }
        let (plan, args) = self.plan_block(index, build, Then::Keep)?;
        Ok(submit(build, EvalBlock, &plan, args))
    }

    /// The blocks when the array is one stored leaf as it is.
    pub(crate) fn direct(&self, build: &Build<'_>) -> Result<Option<Blocks>> {
        match self.whole_leaf() {
            Some(l) => l.stored_blocks(build),
            None => Ok(None),
        }
    }

    /// The only leaf, when the array is that leaf as it is (no operation, view or slice).
    fn whole_leaf(&self) -> Option<&Leaf> {
        let [l] = &self.leaves[..] else { return None };
        let identity = l.axes.iter().enumerate().all(|(k, a)| *a == Some(k)) && l.shape == self.shape && l.is_whole();
        (self.expr == Expr::Leaf(0) && identity).then_some(l)
    }

    /// One future per block, in row-major order of the grid.
    pub(crate) fn blocks(&self, build: &Build<'_>) -> Result<Blocks> {
        if let Some(b) = self.direct(build)? {
            return Ok(b);
        }
        let futures = self
            .chunks
            .indices()
            .iter()
            .map(|idx| {
                let (plan, args) = self.plan_block(idx, build, Then::Keep)?;
                Ok(submit(build, EvalBlock, &plan, args))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(futures))
    }

    /// The tasks [`Data::blocks`] would submit: one per block (unless the array is a
    /// stored leaf as it is), and those of the leaves.
    pub(crate) fn task_count(&self) -> usize {
        let direct = self.whole_leaf().is_some_and(|l| l.is_stored());
        let own = if direct { 0 } else { self.chunks.count() };
        own + self.leaf_tasks()
    }

    /// The tasks that make what the leaves give the block tasks (a task that evaluates
    /// a block of this array, fused, needs these and no others).
    pub(crate) fn leaf_tasks(&self) -> usize {
        self.leaves
            .iter()
            .map(|l| match &l.kind {
                LeafKind::Reduced(r) => r.task_count(),
                LeafKind::Dot(d) => d.task_count(),
                LeafKind::Concat(c) => c.parts.iter().map(Data::task_count).sum(),
                LeafKind::Mapped(m) => 2 * m.input.chunks.count() + m.input.leaf_tasks(),
                LeafKind::Rechunk(input) => input.task_count(),
                LeafKind::Reshape(r) => r.input.task_count(),
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
