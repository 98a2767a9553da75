//! What a task does to its blocks: the block expressions the driver plans, and the
//! registered functions that evaluate them on the workers.
//!
//! One task computes one block of a fused chain of elementwise operations (and, for a
//! reduction, reduces it at once, so the block itself never leaves the task). Its
//! inputs are the blocks given as arguments and blocks it makes itself from a
//! [`Generator`]: creation functions and random numbers are generated where they are
//! used, so an array like `random(…)` never occupies memory between tasks.

use chorus_tasks::error::FailureKind;
use chorus_tasks::registry::{encode_result, Encoded, Fault, FunctionEntry, RemoteFunction};
use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};
use serde::{Deserialize, Serialize};

use crate::dtype::{with_block, Block, DType, Scalar};
use crate::random;

/// An elementwise operation of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Not,
}

/// An elementwise operation of two operands (numpy broadcasting between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl BinaryOp {
    pub(crate) fn compares(self) -> bool {
        matches!(self, BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne)
    }
}

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ReduceOp {
    Sum,
    Min,
    Max,
}

/// A fused chain of elementwise operations over a task's input blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Expr {
    /// Input block `k`, already in the output block's axis order.
    Leaf(u32),
    Scalar(Scalar),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Where(Box<Expr>, Box<Expr>, Box<Expr>),
    Cast(DType, Box<Expr>),
}

impl Expr {
    /// Operations in the chain, for the task count shown in `Display`.
    pub(crate) fn operations(&self) -> usize {
        match self {
            Expr::Leaf(_) | Expr::Scalar(_) => 0,
            Expr::Unary(_, a) | Expr::Cast(_, a) => 1 + a.operations(),
            Expr::Binary(_, a, b) => 1 + a.operations() + b.operations(),
            Expr::Where(c, a, b) => 1 + c.operations() + a.operations() + b.operations(),
        }
    }
}

/// How a block that is not an argument is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Generator {
    /// Every element the same.
    Full(Scalar),
    /// `start + i * step` along the only axis, in the element type `dtype`.
    Arange { start: Scalar, step: Scalar },
    /// `start + i * step` in f64 (linspace).
    Linear { start: f64, step: f64 },
    /// Ones on the diagonal `col - row == k`, zeros elsewhere.
    Eye { k: i64, dtype: DType },
    /// Uniform in `[low, high)`, from the block's own stream of `seed`.
    Uniform { seed: u64, low: f64, high: f64 },
    /// Normal with `mean` and `std`, from the block's own stream of `seed`.
    Normal { seed: u64, mean: f64, std: f64 },
}

/// Where one input block of a task comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LeafSource {
    /// The task's argument number `k` (after the plan), an encoded [`Block`].
    Argument(u32),
    /// The task's argument number `k`: the bare elements of a block of `dtype` and
    /// `shape` (the result of a user's task that returned a `Vec`).
    Raw { k: u32, dtype: DType, shape: Vec<usize> },
    /// Read in the task from a `.npy` file: its block `index` (at `offset`, of `shape`).
    Npy { path: std::path::PathBuf, header: crate::npy::Header, index: Vec<usize>, offset: Vec<usize>, shape: Vec<usize> },
    /// Made in the task: block `index` (at `offset`, of `shape`) of the generated array.
    Generate { generator: Generator, index: Vec<usize>, flat: u64, offset: Vec<usize>, shape: Vec<usize> },
}

/// The part of a block a slice takes: per block axis, the first element, the end and the
/// step.
pub(crate) type Crop = Vec<(usize, usize, usize)>;

/// One input block and how it lines up with the output block: the part `crop` of it is
/// taken (per block axis: first element, end, step), block axes that no output axis
/// names are dropped (they have length 1 by then), and output axis `k` is the block's
/// axis `axes[k]`, or a new axis of length 1 (`None`, broadcast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeafPlan {
    pub source: LeafSource,
    pub crop: Option<Crop>,
    pub axes: Vec<Option<usize>>,
}

/// What happens to the evaluated block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Then {
    /// It is the task's result.
    Keep,
    /// It is reduced over `axes` (kept with length 1) and the partial is the result.
    Reduce { op: ReduceOp, axes: Vec<usize> },
}

/// Everything a block task needs besides its argument blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlockPlan {
    pub expr: Expr,
    pub leaves: Vec<LeafPlan>,
    pub then: Then,
}

/// A combining task: partials of a reduction, combined elementwise; with `squeeze`, the
/// reduced axes are then removed (the last level of the tree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CombinePlan {
    pub op: ReduceOp,
    pub squeeze: Option<Vec<usize>>,
}

/// A block of a matrix product: the left block (of its plan) times the right one; the
/// first `left_args` arguments after the plan are the left plan's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DotPlan {
    pub left: BlockPlan,
    pub right: BlockPlan,
    pub left_args: u32,
}

/// The registered function that runs a [`DotPlan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DotBlocks;

impl RemoteFunction for DotBlocks {
    type Args = (Vec<u8>,);
    type Output = Vec<u8>;
    const NAME: &'static str = "chorus_array::dot_blocks";
}

inventory::submit! {
    FunctionEntry { name: DotBlocks::NAME, call: dot_entry }
}

/// Arguments: the plan, then the left plan's argument blocks, then the right one's.
fn dot_entry(args: &[&[u8]]) -> Encoded {
    keep_tile_memory();
    let (plan, blocks) = args.split_first().ok_or_else(|| fault("a product task without its plan".into()))?;
    let plan: DotPlan = postcard::from_bytes(plan).map_err(|e| fault(format!("a product plan that does not decode: {e}")))?;
    let split = (plan.left_args as usize).min(blocks.len());
    let a = run_plan(&plan.left, &blocks[..split])?;
    let b = run_plan(&plan.right, &blocks[split..])?;
    let product = matmul(a, b).map_err(fault)?;
    encode_result(product.encode())
}

/// The product of two 2-D blocks (matrixmultiply's kernels, through ndarray).
fn matmul(a: Block, b: Block) -> Result<Block, String> {
    fn two<T>(x: ArrayD<T>) -> Result<ndarray::Array2<T>, String> {
        let shape = x.shape().to_vec();
        x.into_dimensionality::<ndarray::Ix2>().map_err(|_| format!("a product of a block of shape {shape:?}, which is not 2-D"))
    }
    macro_rules! product {
        ($($v:ident),*) => {
            match (a, b) {
                $((Block::$v(x), Block::$v(y)) => {
                    let (x, y) = (two(x)?, two(y)?);
                    if x.ncols() != y.nrows() {
                        return Err(format!("blocks of shapes {:?} and {:?} do not multiply", x.shape(), y.shape()));
                    }
                    Block::$v(x.dot(&y).into_dyn())
                })*
                (x, y) => return Err(format!("a product of {} and {} blocks", x.dtype(), y.dtype())),
            }
        };
    }
    Ok(product!(F64, F32, I64, I32, U8))
}

/// The registered function that evaluates a [`BlockPlan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvalBlock;

impl RemoteFunction for EvalBlock {
    type Args = (Vec<u8>,);
    type Output = Vec<u8>;
    const NAME: &'static str = "chorus_array::eval_block";
}

/// The registered function that runs a [`CombinePlan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CombineBlocks;

impl RemoteFunction for CombineBlocks {
    type Args = (Vec<u8>,);
    type Output = Vec<u8>;
    const NAME: &'static str = "chorus_array::combine_blocks";
}

inventory::submit! {
    FunctionEntry { name: EvalBlock::NAME, call: eval_entry }
}

inventory::submit! {
    FunctionEntry { name: CombineBlocks::NAME, call: combine_entry }
}

pub(crate) fn fault(message: String) -> Fault {
    Fault { kind: FailureKind::Error, message }
}

/// Keeps freed tile buffers in the allocator for reuse.
///
/// Block tasks allocate and free buffers of a few hundred KiB per tile, thousands of
/// times per block. glibc's defaults hand such memory back to the kernel at once (above
/// 128 KiB it is mapped and unmapped, and a heap's free top is trimmed), so every tile
/// would fault its pages in again: half of a task's time, measured with `perf` on
/// `bench-array`. This keeps up to 64 MiB of free memory per arena and maps only
/// allocations above 32 MiB (glibc's largest threshold) on their own. It is set once per
/// worker process, on its first block task.
fn keep_tile_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt changes allocator parameters and touches no memory of ours.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    });
}

/// Arguments: the plan, then the argument blocks.
fn eval_entry(args: &[&[u8]]) -> Encoded {
    keep_tile_memory();
    let (plan, blocks) = args.split_first().ok_or_else(|| fault("a block task without its plan".into()))?;
    let plan: BlockPlan = postcard::from_bytes(plan).map_err(|e| fault(format!("a block plan that does not decode: {e}")))?;
    encode_result(run_plan(&plan, blocks)?.encode())
}

/// The block `plan` describes, from its argument blocks.
pub(crate) fn run_plan(plan: &BlockPlan, blocks: &[&[u8]]) -> Result<Block, Fault> {
    // Each argument is one leaf's (the planner gives every leaf its own), so it is
    // decoded and moved into that leaf without a copy.
    let encoded: Vec<u32> = plan.leaves.iter().filter_map(|l| if let LeafSource::Argument(k) = l.source { Some(k) } else { None }).collect();
    let mut decoded: Vec<Option<Block>> = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        decoded.push(if encoded.contains(&(i as u32)) { Some(Block::decode(b).map_err(|e| fault(format!("input block {i}: {e}")))?) } else { None });
    }
    let leaves = plan.leaves.iter().map(|l| leaf(l, &mut decoded, blocks)).collect::<Result<Vec<_>, _>>().map_err(fault)?;
    evaluate(&plan.expr, &plan.then, leaves).map_err(fault)
}

/// Elements per tile: the temporaries of a chain of operations over a tile stay in cache
/// and come from reused heap memory, instead of each being a fresh block-sized buffer.
const TILE_ELEMENTS: usize = 1 << 16;

/// Evaluates `expr` tile by tile (ranges of rows of the output block) and keeps or
/// reduces the result: a reduction never holds the evaluated block, only its partials.
fn evaluate(expr: &Expr, then: &Then, leaves: Vec<Input>) -> Result<Block, String> {
    let shapes: Vec<Vec<usize>> = leaves.iter().map(Input::shape).collect();
    let shape = shapes
        .iter()
        .try_fold(Vec::new(), |s, l| broadcast_shape(&s, l))
        .ok_or_else(|| format!("input blocks of shapes {shapes:?} do not broadcast"))?;
    let rows = shape.first().copied().unwrap_or(0);
    let per_row: usize = shape.iter().skip(1).product::<usize>().max(1);
    let finish = |v: Block| match then {
        Then::Keep => Ok(v),
        Then::Reduce { op, axes } => reduce(v, *op, axes),
    };
    if rows <= 1 || rows * per_row <= TILE_ELEMENTS {
        let whole = leaves.into_iter().map(Input::whole).collect::<Result<Vec<_>, _>>()?;
        return finish(eval(expr, whole)?);
    }
    let step = (TILE_ELEMENTS / per_row).max(1);
    let mut out: Option<Block> = None;
    for r0 in (0..rows).step_by(step) {
        let r1 = (r0 + step).min(rows);
        let tile = leaves.iter().map(|l| l.rows(r0, r1)).collect::<Result<Vec<_>, _>>()?;
        let v = eval(expr, tile)?;
        match then {
            Then::Reduce { op, axes } if axes.contains(&0) => {
                let part = reduce(v, *op, axes)?;
                out = Some(match out {
                    None => part,
                    Some(acc) => combine(acc, part, *op)?,
                });
            }
            Then::Reduce { op, axes } => {
                let part = reduce(v, *op, axes)?;
                let mut full = shape.clone();
                for &a in axes {
                    full[a] = 1;
                }
                place(&mut out, &full, r0, part)?;
            }
            Then::Keep => place(&mut out, &shape, r0, v)?,
        }
    }
    out.ok_or_else(|| "an output block without rows".into())
}

/// Rows `r0..r1` of a leaf, in row-major order; a leaf that broadcasts along the rows
/// is all of it.
fn rows_of(l: &Block, r0: usize, r1: usize) -> Block {
    with_block!(l, a => {
        if a.shape()[0] == 1 {
            Element::wrap(a.clone())
        } else {
            Element::wrap(a.slice_axis(Axis(0), Slice::from(r0..r1)).as_standard_layout().into_owned())
        }
    })
}

/// Writes `tile` as the rows from `r0` of the block of `shape` in `out`, made on first use.
fn place(out: &mut Option<Block>, shape: &[usize], r0: usize, tile: Block) -> Result<(), String> {
    macro_rules! put {
        ($($v:ident),*) => {
            match (out.take(), tile) {
                $((None, Block::$v(t)) => {
                    let mut full = ArrayD::from_elem(IxDyn(shape), t.first().cloned().unwrap_or_default());
                    full.slice_axis_mut(Axis(0), Slice::from(r0..r0 + t.shape()[0])).assign(&t);
                    *out = Some(Block::$v(full));
                })*
                $((Some(Block::$v(mut full)), Block::$v(t)) => {
                    full.slice_axis_mut(Axis(0), Slice::from(r0..r0 + t.shape()[0])).assign(&t);
                    *out = Some(Block::$v(full));
                })*
                (Some(full), t) => return Err(format!("a {} tile for a {} block", t.dtype(), full.dtype())),
            }
        };
    }
    put!(F64, F32, I64, I32, U8, Bool);
    Ok(())
}

/// Arguments: the plan, then the partial blocks.
fn combine_entry(args: &[&[u8]]) -> Encoded {
    let (plan, blocks) = args.split_first().ok_or_else(|| fault("a combining task without its plan".into()))?;
    let plan: CombinePlan = postcard::from_bytes(plan).map_err(|e| fault(format!("a combine plan that does not decode: {e}")))?;
    let mut parts = blocks.iter().enumerate().map(|(i, b)| Block::decode(b).map_err(|e| fault(format!("partial {i}: {e}"))));
    let mut acc = parts.next().ok_or_else(|| fault("a combining task without partials".into()))??;
    for p in parts {
        acc = combine(acc, p?, plan.op).map_err(fault)?;
    }
    if let Some(axes) = &plan.squeeze {
        acc = with_block!(acc, a => {
            let mut a = a;
            for &ax in axes.iter().rev() {
                a = a.index_axis_move(Axis(ax), 0);
            }
            Element::wrap(a)
        });
    }
    encode_result(acc.encode())
}

use crate::dtype::Element;

/// An input block, in the output block's axis order.
/// An input of a block task: a block it received, or one it makes where it is used.
enum Input {
    Block(Block),
    Made(Made),
}

/// A generated input block, seen through the plan's crop and axes.
struct Made {
    generator: Generator,
    flat: u64,
    offset: Vec<usize>,
    block: Vec<usize>,
    crop: Crop,
    axes: Vec<Option<usize>>,
}

impl Made {
    /// How many elements it has along each output axis (1 where it broadcasts).
    fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.map_or(1, |j| extent(self.crop[j]))).collect()
    }

    /// Output rows `r0..r1` of it (all of it along the rows where it broadcasts).
    fn rows(&self, r0: usize, r1: usize) -> Result<Block, String> {
        let n = self.block.len();
        let mut strides = vec![1i64; n];
        for j in (0..n.saturating_sub(1)).rev() {
            strides[j] = strides[j + 1] * self.block[j + 1] as i64;
        }
        let mut base: i64 = (0..n).map(|j| self.crop[j].0 as i64 * strides[j]).sum();
        let mut shape = Vec::with_capacity(self.axes.len());
        let mut steps = Vec::with_capacity(self.axes.len());
        for (k, a) in self.axes.iter().enumerate() {
            match a {
                // Axes of one element broadcast; empty ones stay empty.
                Some(j) if extent(self.crop[*j]) != 1 => {
                    let step = self.crop[*j].2 as i64 * strides[*j];
                    if k == 0 {
                        base += r0 as i64 * step;
                        shape.push(r1 - r0);
                    } else {
                        shape.push(extent(self.crop[*j]));
                    }
                    steps.push(step);
                }
                _ => {
                    shape.push(1);
                    steps.push(0);
                }
            }
        }
        generate(&self.generator, self.flat, &self.offset, &self.block, &Walk { shape, base, steps })
    }
}

fn extent((lo, hi, step): (usize, usize, usize)) -> usize {
    (hi - lo).div_ceil(step.max(1))
}

impl Input {
    fn shape(&self) -> Vec<usize> {
        match self {
            Input::Block(b) => b.shape().to_vec(),
            Input::Made(m) => m.shape(),
        }
    }

    fn rows(&self, r0: usize, r1: usize) -> Result<Block, String> {
        match self {
            Input::Block(b) => Ok(rows_of(b, r0, r1)),
            Input::Made(m) => m.rows(r0, r1),
        }
    }

    fn whole(self) -> Result<Block, String> {
        match self {
            Input::Block(b) => Ok(b),
            Input::Made(m) => m.rows(0, m.shape().first().copied().unwrap_or(1)),
        }
    }
}

/// A task's input for `plan`, its received blocks moved out of `args`.
fn leaf(plan: &LeafPlan, args: &mut [Option<Block>], raw: &[&[u8]]) -> Result<Input, String> {
    let block = match &plan.source {
        LeafSource::Argument(k) => args.get_mut(*k as usize).and_then(Option::take).ok_or_else(|| format!("input block {k} is missing, or named twice"))?,
        LeafSource::Raw { k, dtype, shape } => {
            let bytes = raw.get(*k as usize).ok_or_else(|| format!("input block {k} is missing"))?;
            Block::from_raw(*dtype, shape, bytes).map_err(|e| format!("input block {k}, the result of a task: {e}"))?
        }
        LeafSource::Npy { path, header, index, offset, shape } => crate::npy::read_block(path, header, index, offset, shape)?,
        LeafSource::Generate { generator, index: _, flat, offset, shape } => {
            let crop = plan.crop.clone().unwrap_or_else(|| shape.iter().map(|&n| (0, n, 1)).collect());
            if crop.len() != shape.len() || plan.axes.iter().flatten().any(|&j| j >= shape.len()) {
                return Err(format!("a generated block of shape {shape:?} with a crop {crop:?} and axes {:?}", plan.axes));
            }
            return Ok(Input::Made(Made { generator: generator.clone(), flat: *flat, offset: offset.clone(), block: shape.clone(), crop, axes: plan.axes.clone() }));
        }
    };
    Ok(Input::Block(with_block!(block, a => Element::wrap(align(crop(a, plan.crop.as_deref())?, &plan.axes)?))))
}

/// The part of a block a slice takes.
fn crop<T: Clone>(a: ArrayD<T>, crop: Option<&[(usize, usize, usize)]>) -> Result<ArrayD<T>, String> {
    let Some(crop) = crop else { return Ok(a) };
    if crop.len() != a.ndim() || crop.iter().zip(a.shape()).any(|(&(lo, hi, step), &n)| lo > hi || hi > n || step == 0) {
        return Err(format!("a crop {crop:?} of a block of shape {:?}", a.shape()));
    }
    if crop.iter().zip(a.shape()).all(|(&(lo, hi, step), &n)| lo == 0 && hi == n && step == 1) {
        return Ok(a);
    }
    Ok(a.slice_each_axis(|ax| {
        let (lo, hi, step) = crop[ax.axis.index()];
        Slice::new(lo as isize, Some(hi as isize), step as isize)
    })
    .to_owned())
}

/// Drops the block axes no output axis names, appends the broadcast axes and permutes
/// into the output's axis order.
fn align<T: Clone>(a: ArrayD<T>, axes: &[Option<usize>]) -> Result<ArrayD<T>, String> {
    let mut a = a;
    let named: Vec<usize> = axes.iter().flatten().copied().collect();
    let dropped: Vec<usize> = (0..a.ndim()).filter(|j| !named.contains(j)).collect();
    for &j in dropped.iter().rev() {
        if a.shape()[j] != 1 {
            return Err(format!("axis {j} of an input block is dropped but has length {}", a.shape()[j]));
        }
        a = a.index_axis_move(Axis(j), 0);
    }
    // Block axes renumbered after the drop.
    let renumbered: Vec<Option<usize>> = axes.iter().map(|ax| ax.map(|j| j - dropped.iter().filter(|&&d| d < j).count())).collect();
    let axes = &renumbered[..];
    let n = a.ndim();
    let mut perm = Vec::with_capacity(axes.len());
    let mut next = n;
    for ax in axes {
        match ax {
            Some(j) if *j < n => perm.push(*j),
            Some(j) => return Err(format!("an input block has no axis {j}")),
            None => {
                a.insert_axis_inplace(Axis(next));
                perm.push(next);
                next += 1;
            }
        }
    }
    if next != axes.len() || perm.len() != a.ndim() {
        return Err(format!("an input block of {n} axes does not line up with {} output axes", axes.len()));
    }
    if perm.iter().enumerate().all(|(i, p)| i == *p) {
        Ok(a)
    } else {
        // Left as a view of the block's memory: tiles are copied out in row-major order.
        Ok(a.permuted_axes(IxDyn(&perm)))
    }
}

/// The elements of a generated block a tile needs: the tile (of `shape`) is walked in
/// row-major order, and its element `o` is the block's element number
/// `base + Σ o[k] · steps[k]` (row-major in the block).
struct Walk {
    shape: Vec<usize>,
    base: i64,
    steps: Vec<i64>,
}

impl Walk {
    fn collect<T>(&self, f: impl Fn(u64) -> T) -> Result<ArrayD<T>, String> {
        let n: usize = self.shape.iter().product();
        let mut out = Vec::with_capacity(n);
        if n > 0 {
            let d = self.shape.len();
            let mut idx = vec![0usize; d];
            let mut at = self.base;
            let inner = d.checked_sub(1);
            'walk: loop {
                match inner {
                    Some(last) => {
                        let step = self.steps[last];
                        let mut p = at;
                        for _ in 0..self.shape[last] {
                            out.push(f(p as u64));
                            p += step;
                        }
                        // Next row of the odometer.
                        let mut k = last;
                        loop {
                            if k == 0 {
                                break 'walk;
                            }
                            k -= 1;
                            idx[k] += 1;
                            at += self.steps[k];
                            if idx[k] < self.shape[k] {
                                break;
                            }
                            at -= self.steps[k] * self.shape[k] as i64;
                            idx[k] = 0;
                        }
                    }
                    None => {
                        out.push(f(at as u64));
                        break;
                    }
                }
            }
        }
        ArrayD::from_shape_vec(IxDyn(&self.shape), out).map_err(|e| e.to_string())
    }
}

/// The part `walk` of block `flat` (at `offset`, of shape `block`) of a generated array.
fn generate(g: &Generator, flat: u64, offset: &[usize], block: &[usize], walk: &Walk) -> Result<Block, String> {
    let cols = block.get(1).copied().unwrap_or(1).max(1) as u64;
    Ok(match g {
        Generator::Full(s) => match *s {
            Scalar::F64(v) => Block::F64(walk.collect(|_| v)?),
            Scalar::F32(v) => Block::F32(walk.collect(|_| v)?),
            Scalar::I64(v) => Block::I64(walk.collect(|_| v)?),
            Scalar::I32(v) => Block::I32(walk.collect(|_| v)?),
            Scalar::U8(v) => Block::U8(walk.collect(|_| v)?),
            Scalar::Bool(v) => Block::Bool(walk.collect(|_| v)?),
        },
        Generator::Arange { start, step } => {
            let o = offset.first().copied().unwrap_or(0) as u64;
            match (*start, *step) {
                (Scalar::F64(a), Scalar::F64(s)) => Block::F64(walk.collect(|i| a + (o + i) as f64 * s)?),
                (Scalar::F32(a), Scalar::F32(s)) => Block::F32(walk.collect(|i| a + (o + i) as f32 * s)?),
                (Scalar::I64(a), Scalar::I64(s)) => Block::I64(walk.collect(|i| a.wrapping_add(((o + i) as i64).wrapping_mul(s)))?),
                (Scalar::I32(a), Scalar::I32(s)) => Block::I32(walk.collect(|i| a.wrapping_add(((o + i) as i32).wrapping_mul(s)))?),
                (Scalar::U8(a), Scalar::U8(s)) => Block::U8(walk.collect(|i| a.wrapping_add(((o + i) as u8).wrapping_mul(s)))?),
                other => return Err(format!("arange of {other:?}")),
            }
        }
        Generator::Linear { start, step } => {
            let o = offset.first().copied().unwrap_or(0) as u64;
            Block::F64(walk.collect(|i| start + (o + i) as f64 * step)?)
        }
        Generator::Eye { k, dtype } => {
            let (r0, c0) = (offset.first().copied().unwrap_or(0) as i64, offset.get(1).copied().unwrap_or(0) as i64);
            let on = |i: u64| (c0 + (i % cols) as i64) - (r0 + (i / cols) as i64) == *k;
            match dtype {
                DType::F64 => Block::F64(walk.collect(|i| if on(i) { 1.0 } else { 0.0 })?),
                DType::F32 => Block::F32(walk.collect(|i| if on(i) { 1.0 } else { 0.0 })?),
                DType::I64 => Block::I64(walk.collect(|i| i64::from(on(i)))?),
                DType::I32 => Block::I32(walk.collect(|i| i32::from(on(i)))?),
                DType::U8 => Block::U8(walk.collect(|i| u8::from(on(i)))?),
                DType::Bool => Block::Bool(walk.collect(on)?),
            }
        }
        Generator::Uniform { seed, low, high } => {
            let key = random::block_key(*seed, flat);
            Block::F64(walk.collect(|i| low + (high - low) * random::uniform_at(key, i))?)
        }
        Generator::Normal { seed, mean, std } => {
            let key = random::block_key(*seed, flat);
            Block::F64(walk.collect(|i| mean + std * random::normal_at(key, i))?)
        }
    })
}

/// The shape two operands broadcast to (numpy's rules), or `None`.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], k: usize| if k + s.len() >= n { s[k + s.len() - n] } else { 1 };
    (0..n)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn zip2<A: Clone, B: Clone, O>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> O) -> Result<ArrayD<O>, String> {
    // Equal contiguous shapes, the common case: one pass over two slices.
    if a.shape() == b.shape() {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            let v: Vec<O> = x.iter().zip(y).map(|(x, y)| f(x.clone(), y.clone())).collect();
            return ArrayD::from_shape_vec(a.raw_dim(), v).map_err(|e| e.to_string());
        }
    }
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| format!("blocks of shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()))?;
    let (av, bv) = (a.broadcast(IxDyn(&shape)).expect("checked"), b.broadcast(IxDyn(&shape)).expect("checked"));
    Ok(Zip::from(&av).and(&bv).map_collect(|x, y| f(x.clone(), y.clone())))
}

fn scalar_block(s: Scalar) -> Block {
    let sh = IxDyn(&[]);
    match s {
        Scalar::F64(v) => Block::F64(ArrayD::from_elem(sh, v)),
        Scalar::F32(v) => Block::F32(ArrayD::from_elem(sh, v)),
        Scalar::I64(v) => Block::I64(ArrayD::from_elem(sh, v)),
        Scalar::I32(v) => Block::I32(ArrayD::from_elem(sh, v)),
        Scalar::U8(v) => Block::U8(ArrayD::from_elem(sh, v)),
        Scalar::Bool(v) => Block::Bool(ArrayD::from_elem(sh, v)),
    }
}

/// Evaluates `expr` over the task's input blocks.
pub(crate) fn eval(expr: &Expr, leaves: Vec<Block>) -> Result<Block, String> {
    let mut uses = vec![0u32; leaves.len()];
    count_uses(expr, &mut uses);
    let mut leaves: Vec<Option<Block>> = leaves.into_iter().map(Some).collect();
    eval_in(expr, &mut leaves, &mut uses)
}

fn count_uses(expr: &Expr, uses: &mut [u32]) {
    match expr {
        Expr::Leaf(k) => {
            if let Some(u) = uses.get_mut(*k as usize) {
                *u += 1;
            }
        }
        Expr::Scalar(_) => {}
        Expr::Unary(_, a) | Expr::Cast(_, a) => count_uses(a, uses),
        Expr::Binary(_, a, b) => {
            count_uses(a, uses);
            count_uses(b, uses);
        }
        Expr::Where(c, a, b) => {
            count_uses(c, uses);
            count_uses(a, uses);
            count_uses(b, uses);
        }
    }
}

/// Evaluates `expr`; an input is moved into its last use and copied for the others.
fn eval_in(expr: &Expr, leaves: &mut [Option<Block>], uses: &mut [u32]) -> Result<Block, String> {
    let eval = |e: &Expr, leaves: &mut [Option<Block>], uses: &mut [u32]| eval_in(e, leaves, uses);
    Ok(match expr {
        Expr::Leaf(k) => {
            let k = *k as usize;
            let missing = || format!("the plan names input {k}, which it does not have");
            let u = uses.get_mut(k).ok_or_else(missing)?;
            *u = u.saturating_sub(1);
            if *u == 0 {
                leaves[k].take().ok_or_else(missing)?
            } else {
                leaves[k].clone().ok_or_else(missing)?
            }
        }
        Expr::Scalar(s) => scalar_block(*s),
        Expr::Unary(op, a) => unary(*op, eval(a, leaves, uses)?)?,
        Expr::Binary(op, a, b) => {
            let a = eval(a, leaves, uses)?;
            binary(*op, a, eval(b, leaves, uses)?)?
        }
        Expr::Where(c, a, b) => {
            let Block::Bool(c) = eval(c, leaves, uses)? else { return Err("a condition that is not a bool block".into()) };
            let a = eval(a, leaves, uses)?;
            let b = eval(b, leaves, uses)?;
            macro_rules! pick {
                ($($v:ident),*) => {
                    match (a, b) {
                        $((Block::$v(x), Block::$v(y)) => {
                            let xy = zip2(&x, &y, |x, y| (x, y))?;
                            Block::$v(zip2(&c, &xy, |c, (x, y)| if c { x } else { y })?)
                        })*
                        (x, y) => return Err(format!("where over {} and {} blocks", x.dtype(), y.dtype())),
                    }
                };
            }
            pick!(F64, F32, I64, I32, U8, Bool)
        }
        Expr::Cast(to, a) => cast(eval(a, leaves, uses)?, *to),
    })
}

fn unary(op: UnaryOp, a: Block) -> Result<Block, String> {
    macro_rules! float {
        ($a:expr, $f:expr) => {
            match $a {
                Block::F64(x) => Block::F64(x.mapv($f)),
                Block::F32(x) => Block::F32(x.mapv(|v| $f(f64::from(v)) as f32)),
                other => return Err(format!("{op:?} of a {} block; cast it to f64 first", other.dtype())),
            }
        };
    }
    Ok(match op {
        UnaryOp::Neg => match a {
            Block::F64(x) => Block::F64(x.mapv(|v| -v)),
            Block::F32(x) => Block::F32(x.mapv(|v| -v)),
            Block::I64(x) => Block::I64(x.mapv(i64::wrapping_neg)),
            Block::I32(x) => Block::I32(x.mapv(i32::wrapping_neg)),
            other => return Err(format!("negation of a {} block", other.dtype())),
        },
        UnaryOp::Abs => match a {
            Block::F64(x) => Block::F64(x.mapv(f64::abs)),
            Block::F32(x) => Block::F32(x.mapv(f32::abs)),
            Block::I64(x) => Block::I64(x.mapv(i64::wrapping_abs)),
            Block::I32(x) => Block::I32(x.mapv(i32::wrapping_abs)),
            Block::U8(x) => Block::U8(x),
            Block::Bool(_) => return Err("abs of a bool block".into()),
        },
        UnaryOp::Sqrt => float!(a, f64::sqrt),
        UnaryOp::Exp => float!(a, f64::exp),
        UnaryOp::Log => float!(a, f64::ln),
        UnaryOp::Not => match a {
            Block::Bool(x) => Block::Bool(x.mapv(|v| !v)),
            other => return Err(format!("not of a {} block", other.dtype())),
        },
    })
}

fn binary(op: BinaryOp, a: Block, b: Block) -> Result<Block, String> {
    macro_rules! cmp {
        ($x:expr, $y:expr) => {
            Block::Bool(match op {
                BinaryOp::Lt => zip2(&$x, &$y, |a, b| a < b)?,
                BinaryOp::Le => zip2(&$x, &$y, |a, b| a <= b)?,
                BinaryOp::Gt => zip2(&$x, &$y, |a, b| a > b)?,
                BinaryOp::Ge => zip2(&$x, &$y, |a, b| a >= b)?,
                BinaryOp::Eq => zip2(&$x, &$y, |a, b| a == b)?,
                _ => zip2(&$x, &$y, |a, b| a != b)?,
            })
        };
    }
    macro_rules! arith {
        ($v:ident, $x:expr, $y:expr, $add:expr, $sub:expr, $mul:expr, $div:expr, $pow:expr) => {
            Block::$v(match op {
                BinaryOp::Add => zip2(&$x, &$y, $add)?,
                BinaryOp::Sub => zip2(&$x, &$y, $sub)?,
                BinaryOp::Mul => zip2(&$x, &$y, $mul)?,
                BinaryOp::Div => zip2(&$x, &$y, $div)?,
                _ => zip2(&$x, &$y, $pow)?,
            })
        };
    }
    if op.compares() {
        return Ok(match (a, b) {
            (Block::F64(x), Block::F64(y)) => cmp!(x, y),
            (Block::F32(x), Block::F32(y)) => cmp!(x, y),
            (Block::I64(x), Block::I64(y)) => cmp!(x, y),
            (Block::I32(x), Block::I32(y)) => cmp!(x, y),
            (Block::U8(x), Block::U8(y)) => cmp!(x, y),
            (Block::Bool(x), Block::Bool(y)) => cmp!(x, y),
            (x, y) => return Err(format!("{op:?} of {} and {} blocks", x.dtype(), y.dtype())),
        });
    }
    // Integer division by zero gives zero and overflow wraps, rather than a panic in the
    // middle of a block (numpy warns and gives 0 too).
    Ok(match (a, b) {
        (Block::F64(x), Block::F64(y)) => arith!(F64, x, y, |a, b| a + b, |a, b| a - b, |a, b| a * b, |a, b| a / b, f64::powf),
        (Block::F32(x), Block::F32(y)) => arith!(F32, x, y, |a, b| a + b, |a, b| a - b, |a, b| a * b, |a, b| a / b, f32::powf),
        (Block::I64(x), Block::I64(y)) => arith!(
            I64,
            x,
            y,
            i64::wrapping_add,
            i64::wrapping_sub,
            i64::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| if b < 0 { 0 } else { a.wrapping_pow(b.min(u32::MAX as i64) as u32) }
        ),
        (Block::I32(x), Block::I32(y)) => arith!(
            I32,
            x,
            y,
            i32::wrapping_add,
            i32::wrapping_sub,
            i32::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| if b < 0 { 0 } else { a.wrapping_pow(b as u32) }
        ),
        (Block::U8(x), Block::U8(y)) => arith!(
            U8,
            x,
            y,
            u8::wrapping_add,
            u8::wrapping_sub,
            u8::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| a.wrapping_pow(u32::from(b))
        ),
        (x, y) => return Err(format!("{op:?} of {} and {} blocks", x.dtype(), y.dtype())),
    })
}

/// Converts like numpy's `astype` (`as` casts; a number is `true` unless it is zero).
pub(crate) fn cast(a: Block, to: DType) -> Block {
    macro_rules! from {
        ($x:expr, $t:ty) => {
            match to {
                DType::F64 => Block::F64($x.mapv(|v| v as f64)),
                DType::F32 => Block::F32($x.mapv(|v| v as f32)),
                DType::I64 => Block::I64($x.mapv(|v| v as i64)),
                DType::I32 => Block::I32($x.mapv(|v| v as i32)),
                DType::U8 => Block::U8($x.mapv(|v| v as u8)),
                DType::Bool => Block::Bool($x.mapv(|v| v != (0 as $t))),
            }
        };
    }
    if a.dtype() == to {
        return a;
    }
    match a {
        Block::F64(x) => from!(x, f64),
        Block::F32(x) => from!(x, f32),
        Block::I64(x) => from!(x, i64),
        Block::I32(x) => from!(x, i32),
        Block::U8(x) => from!(x, u8),
        Block::Bool(x) => from!(x.mapv(u8::from), u8),
    }
}

/// The element type a sum has (numpy widens small integers and bools to 64 bits).
pub(crate) fn sum_dtype(d: DType) -> DType {
    match d {
        DType::I32 | DType::U8 | DType::Bool => DType::I64,
        other => other,
    }
}

/// Reduces `a` over `axes`, keeping them with length 1.
pub(crate) fn reduce(a: Block, op: ReduceOp, axes: &[usize]) -> Result<Block, String> {
    let a = if op == ReduceOp::Sum {
        let to = sum_dtype(a.dtype());
        cast(a, to)
    } else {
        a
    };
    fn along<T: Clone>(mut x: ArrayD<T>, axes: &[usize], f: impl Fn(ndarray::ArrayViewD<'_, T>) -> T) -> Result<ArrayD<T>, String> {
        // Over every axis of a contiguous block: one pass over its memory.
        if axes.len() == x.ndim() && x.ndim() > 1 && x.is_standard_layout() {
            let n = x.len();
            let flat = x.into_shape_with_order(IxDyn(&[n])).map_err(|e| e.to_string())?;
            let v = f(flat.view());
            return ArrayD::from_shape_vec(IxDyn(&vec![1; axes.len()]), vec![v]).map_err(|e| e.to_string());
        }
        for &ax in axes {
            if ax >= x.ndim() {
                return Err(format!("a reduction over axis {ax} of a block of {} axes", x.ndim()));
            }
            x = x.map_axis(Axis(ax), |lane| f(lane.into_dyn())).insert_axis(Axis(ax));
        }
        Ok(x)
    }
    macro_rules! red {
        ($v:ident, $x:expr) => {
            Block::$v(match op {
                // ndarray's sum keeps several partial sums, so it is not one long chain
                // of dependent additions.
                ReduceOp::Sum => along($x, axes, |l| l.sum())?,
                // NaN wins, as in numpy. An empty lane cannot reach here: the driver
                // refuses min and max over an empty axis.
                ReduceOp::Min => along($x, axes, |l| l.iter().copied().reduce(|m, v| if v < m || v != v { v } else { m }).unwrap_or_default())?,
                ReduceOp::Max => along($x, axes, |l| l.iter().copied().reduce(|m, v| if v > m || v != v { v } else { m }).unwrap_or_default())?,
            })
        };
    }
    Ok(match a {
        Block::F64(x) => red!(F64, x),
        Block::F32(x) => red!(F32, x),
        Block::I64(x) => red!(I64, x),
        Block::I32(x) => red!(I32, x),
        Block::U8(x) => red!(U8, x),
        Block::Bool(x) => match op {
            ReduceOp::Min => Block::Bool(along(x, axes, |l| l.iter().all(|v| *v))?),
            ReduceOp::Max => Block::Bool(along(x, axes, |l| l.iter().any(|v| *v))?),
            ReduceOp::Sum => unreachable!("a sum of bools is cast to i64 above"),
        },
    })
}

/// Combines two partials of the same shape.
fn combine(a: Block, b: Block, op: ReduceOp) -> Result<Block, String> {
    match op {
        ReduceOp::Sum => binary(BinaryOp::Add, a, b),
        ReduceOp::Min | ReduceOp::Max => {
            macro_rules! pick {
                ($($v:ident),*) => {
                    match (a, b) {
                        $((Block::$v(x), Block::$v(y)) => Ok(Block::$v(zip2(&x, &y, |x, y| {
                            #[allow(clippy::eq_op)]
                            let nan = x != x;
                            if nan || (op == ReduceOp::Min && x <= y) || (op == ReduceOp::Max && x >= y) { x } else { y }
                        })?)),)*
                        (x, y) => Err(format!("combining {} and {} partials", x.dtype(), y.dtype())),
                    }
                };
            }
            pick!(F64, F32, I64, I32, U8, Bool)
        }
    }
}
