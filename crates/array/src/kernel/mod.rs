//! What a task does to its blocks: the block expressions the driver plans, and the
//! registered functions that evaluate them on the workers.
//!
//! One task computes one block of a fused chain of elementwise operations (and, for a
//! reduction, reduces it at once, so the block itself never leaves the task). Its
//! inputs are the blocks given as arguments and blocks it makes itself from a
//! [`Generator`]: creation functions and random numbers are generated where they are
//! used, so an array like `random(…)` never occupies memory between tasks.
//!
//! `input` makes a task's inputs (received blocks, and generated ones tile by tile);
//! `ops` has the elementwise operations and reductions on blocks.

use chorus_tasks::registry::{encode_result, Encoded, Fault};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use serde::{Deserialize, Serialize};

use crate::dtype::{with_block, Block, DType, Element, Scalar};

mod blas;
mod input;
mod ops;

use input::Input;
use input::leaf;
pub(crate) use ops::{broadcast_shape, eval, sum_dtype};
use ops::{combine, reduce};

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
    /// The index of the smallest element (the first, NaN first as in numpy).
    ArgMin,
    /// The index of the largest element (the first, NaN first as in numpy).
    ArgMax,
}

impl ReduceOp {
    /// Whether the partials are (value, index) pairs.
    pub(crate) fn is_arg(self) -> bool {
        matches!(self, ReduceOp::ArgMin | ReduceOp::ArgMax)
    }
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
    /// The task's argument number `k`: the result of the user's `map_blocks` function,
    /// an `ndarray::ArrayD` of `dtype` encoded with serde, of `shape`.
    Serde { k: u32, dtype: DType, shape: Vec<usize> },
    /// Assembled in the task from parts of encoded argument blocks (a rechunked array):
    /// for each piece, the argument, the part of it (first, end per axis) and where that
    /// part goes in the block of `shape`.
    Assemble { dtype: DType, shape: Vec<usize>, pieces: Vec<Piece> },
    /// Read in the task from a file: its block `index` (at `offset`, of `shape`).
    File { file: crate::io::FileArray, index: Vec<usize>, offset: Vec<usize>, shape: Vec<usize> },
    /// The task's argument number `k`, an encoded [`Block`] whose elements, in C order,
    /// are this block's of `shape` (a reshaped array).
    Reshaped { k: u32, shape: Vec<usize> },
    /// Made in the task: block `index` (at `offset`, of `shape`) of the generated array.
    Generate { generator: Generator, index: Vec<usize>, flat: u64, offset: Vec<usize>, shape: Vec<usize> },
}

/// One part of an assembled block: argument `arg`'s elements `part` (first, end per
/// axis), which go at `at` of the block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Piece {
    pub arg: u32,
    pub part: Vec<(usize, usize)>,
    pub at: Vec<usize>,
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
    /// The value and the index of the best element along `axis`, or over the whole block
    /// as a flat index into the array of shape `full` (`axis` `None`); the block starts
    /// at `offset` of that array. The partial is the pair.
    Arg { op: ReduceOp, axis: Option<usize>, offset: Vec<usize>, full: Vec<usize> },
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

/// A registered function of this crate: a unit type naming it for
/// [`Client::submit_variadic`](chorus_tasks::Client::submit_variadic), and its entry in
/// the registry. Every one takes a plan and blocks as bytes and gives bytes.
macro_rules! entry {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $call:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $ty;

        impl chorus_tasks::registry::RemoteFunction for $ty {
            type Args = (Vec<u8>,);
            type Output = Vec<u8>;
            const NAME: &'static str = $name;
        }

        inventory::submit! {
            chorus_tasks::registry::FunctionEntry { name: $name, call: $call }
        }
    };
}
pub(crate) use entry;

/// A block of a matrix product: the left block (of its plan) times the right one; the
/// first `left_args` arguments after the plan are the left plan's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DotPlan {
    /// The (left, right) plans of each product in the sum.
    pub pairs: Vec<(BlockPlan, BlockPlan)>,
    /// How many argument blocks each pair's left and right plans take, in order.
    pub args: Vec<(u32, u32)>,
}

entry! {
    /// The registered function that runs a [`DotPlan`].
    DotBlocks, "chorus_array::dot_blocks", dot_entry
}

/// Arguments: the plan, then each pair's left plan's argument blocks and its right
/// one's. Each pair is evaluated and multiplied into the sum in turn, so a task holds
/// the sum and one pair's blocks besides its arguments.
fn dot_entry(args: &[&[u8]]) -> Encoded {
    keep_tile_memory();
    let (plan, mut blocks): (DotPlan, _) = plan_of(args, "a product task")?;
    if plan.pairs.len() != plan.args.len() || plan.pairs.is_empty() {
        return Err(fault(format!("a product task's plan with {} pairs and {} argument counts", plan.pairs.len(), plan.args.len())));
    }
    let mut sum = None;
    for ((left, right), &(l, r)) in plan.pairs.iter().zip(&plan.args) {
        let (l, r) = ((l as usize).min(blocks.len()), r as usize);
        let a = run_plan(left, &blocks[..l])?;
        blocks = &blocks[l..];
        let r = r.min(blocks.len());
        let b = run_plan(right, &blocks[..r])?;
        blocks = &blocks[r..];
        sum = Some(multiply_add(sum, a, b).map_err(fault)?);
    }
    encode_result(sum.expect("at least one pair").encode())
}

/// `sum + a · b` of 2-D blocks (`a · b` without a sum), on OpenBLAS when it is in use
/// for the type (see [`blas`]), else on ndarray's kernels (matrixmultiply for floats).
fn multiply_add(sum: Option<Block>, a: Block, b: Block) -> Result<Block, String> {
    fn two<T>(x: ArrayD<T>) -> Result<ndarray::Array2<T>, String> {
        let shape = x.shape().to_vec();
        x.into_dimensionality::<ndarray::Ix2>().map_err(|_| format!("a product of a block of shape {shape:?}, which is not 2-D"))
    }
    /// The sums this function makes are row-major already: no copy for them.
    fn standard<T: Clone>(c: ndarray::Array2<T>) -> ndarray::Array2<T> {
        if c.is_standard_layout() { c } else { c.as_standard_layout().into_owned() }
    }
    fn none<T>(_: &ndarray::Array2<T>, _: &ndarray::Array2<T>, _: &mut ndarray::Array2<T>) -> Result<bool, String> {
        Ok(false)
    }
    macro_rules! product {
        ($($v:ident: $blas:path),*) => {
            match (a, b) {
                $((Block::$v(x), Block::$v(y)) => {
                    let (x, y) = (two(x)?, two(y)?);
                    if x.ncols() != y.nrows() {
                        return Err(format!("blocks of shapes {:?} and {:?} do not multiply", x.shape(), y.shape()));
                    }
                    let mut c = match sum {
                        None => ndarray::Array2::zeros((x.nrows(), y.ncols())),
                        Some(Block::$v(c)) if c.shape() == [x.nrows(), y.ncols()] => standard(two(c)?),
                        Some(c) => return Err(format!("a sum of products of shape {:?} and type {} where {:?} of {} belongs", c.shape(), c.dtype(), [x.nrows(), y.ncols()], stringify!($v))),
                    };
                    if !$blas(&x, &y, &mut c)? {
                        ndarray::linalg::general_mat_mul(Element::ONE, &x, &y, Element::ONE, &mut c);
                    }
                    Block::$v(c.into_dyn())
                })*
                (x, y) => return Err(format!("a product of {} and {} blocks", x.dtype(), y.dtype())),
            }
        };
    }
    Ok(product!(F64: blas::dgemm, F32: blas::sgemm, I64: none, I32: none, U8: none))
}

entry! {
    /// The registered function that evaluates a [`BlockPlan`] and gives the block as an
    /// `ndarray::ArrayD` encoded with serde: the argument of a user's `map_blocks` function.
    ToNdarray, "chorus_array::to_ndarray", to_ndarray_entry
}

fn to_ndarray_entry(args: &[&[u8]]) -> Encoded {
    keep_tile_memory();
    let (plan, blocks): (BlockPlan, _) = plan_of(args, "a block task")?;
    let block = run_plan(&plan, blocks)?;
    let bytes = with_block!(&block, a => postcard::to_allocvec(a)).map_err(|e| fault(format!("encoding a block for map_blocks: {e}")))?;
    encode_result(bytes)
}

entry! {
    /// The registered function that evaluates a [`BlockPlan`].
    EvalBlock, "chorus_array::eval_block", eval_entry
}

entry! {
    /// The registered function that runs a [`CombinePlan`].
    CombineBlocks, "chorus_array::combine_blocks", combine_entry
}

/// A task's plan (its first argument) and the argument blocks after it; `what` names the
/// task in errors ("a block task").
pub(crate) fn plan_of<'a, P: serde::de::DeserializeOwned>(args: &'a [&'a [u8]], what: &str) -> Result<(P, &'a [&'a [u8]]), Fault> {
    let (plan, blocks) = args.split_first().ok_or_else(|| fault(format!("{what} without its plan")))?;
    let plan = postcard::from_bytes(plan).map_err(|e| fault(format!("the plan of {what} does not decode: {e}")))?;
    Ok((plan, blocks))
}

pub(crate) fn fault(message: String) -> Fault {
    Fault::error(&message)
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
    let (mut plan, blocks): (BlockPlan, _) = plan_of(args, "a block task")?;
    // An arg reduction's partial is a (values, indices) pair of the evaluated block.
    if matches!(plan.then, Then::Arg { .. }) {
        let Then::Arg { op, axis, offset, full } = std::mem::replace(&mut plan.then, Then::Keep) else { unreachable!("matched above") };
        let block = run_plan(&plan, blocks)?;
        let (values, indices) = ops::arg_reduce(block, op == ReduceOp::ArgMax, axis, &offset, &full).map_err(fault)?;
        return encode_result(ops::pair(&values, &indices));
    }
    encode_result(run_plan(&plan, blocks)?.encode())
}

/// The block `plan` describes, from its argument blocks.
pub(crate) fn run_plan(plan: &BlockPlan, blocks: &[&[u8]]) -> Result<Block, Fault> {
    // Each argument is one leaf's (the planner gives every leaf its own), so it is
    // decoded and moved into that leaf without a copy.
    let encoded: Vec<u32> = plan
        .leaves
        .iter()
        .flat_map(|l| match &l.source {
            LeafSource::Argument(k) | LeafSource::Reshaped { k, .. } => vec![*k],
            LeafSource::Assemble { pieces, .. } => pieces.iter().map(|p| p.arg).collect(),
            _ => Vec::new(),
        })
        .collect();
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
        Then::Arg { .. } => Err("an arg reduction evaluated as a block".to_string()),
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
            Then::Arg { .. } => return Err("an arg reduction evaluated as a block".into()),
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
    let (plan, blocks): (CombinePlan, _) = plan_of(args, "a combining task")?;
    if plan.op.is_arg() {
        let max = plan.op == ReduceOp::ArgMax;
        let mut parts = blocks.iter().enumerate().map(|(i, b)| ops::unpair(b).map_err(|e| fault(format!("partial {i}: {e}"))));
        let mut acc = parts.next().ok_or_else(|| fault("a combining task without partials".into()))??;
        for p in parts {
            acc = ops::arg_combine(acc, p?, max).map_err(fault)?;
        }
        return encode_result(match &plan.squeeze {
            Some(axes) => squeezed(acc.1, axes).encode(),
            None => ops::pair(&acc.0, &acc.1),
        });
    }
    let mut parts = blocks.iter().enumerate().map(|(i, b)| Block::decode(b).map_err(|e| fault(format!("partial {i}: {e}"))));
    let mut acc = parts.next().ok_or_else(|| fault("a combining task without partials".into()))??;
    for p in parts {
        acc = combine(acc, p?, plan.op).map_err(fault)?;
    }
    if let Some(axes) = &plan.squeeze {
        acc = squeezed(acc, axes);
    }
    encode_result(acc.encode())
}

/// `b` without its axes `axes` (of length 1).
fn squeezed(b: Block, axes: &[usize]) -> Block {
    with_block!(b, a => {
        let mut a = a;
        for &ax in axes.iter().rev() {
            a = a.index_axis_move(Axis(ax), 0);
        }
        Element::wrap(a)
    })
}


