//! A block task's inputs: blocks it received, lined up with the output block (crop,
//! dropped and broadcast axes, permutation), and blocks it makes itself, tile by tile.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use super::{rows_of, Crop, Generator, LeafPlan, LeafSource, Piece};
use crate::dtype::{with_block, Block, DType, Element, Scalar};
use crate::random;

/// An input of a block task: a block it received, or one it makes where it is used.
pub(crate) enum Input {
    Block(Block),
    Made(Made),
}

/// A generated input block, seen through the plan's crop and axes.
pub(crate) struct Made {
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
    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            Input::Block(b) => b.shape().to_vec(),
            Input::Made(m) => m.shape(),
        }
    }

    pub(crate) fn rows(&self, r0: usize, r1: usize) -> Result<Block, String> {
        match self {
            Input::Block(b) => Ok(rows_of(b, r0, r1)),
            Input::Made(m) => m.rows(r0, r1),
        }
    }

    pub(crate) fn whole(self) -> Result<Block, String> {
        match self {
            Input::Block(b) => Ok(b),
            Input::Made(m) => m.rows(0, m.shape().first().copied().unwrap_or(1)),
        }
    }
}

/// A task's input for `plan`, its received blocks moved out of `args`.
pub(crate) fn leaf(plan: &LeafPlan, args: &mut [Option<Block>], raw: &[&[u8]]) -> Result<Input, String> {
    let block = match &plan.source {
        LeafSource::Argument(k) => args.get_mut(*k as usize).and_then(Option::take).ok_or_else(|| format!("input block {k} is missing, or named twice"))?,
        LeafSource::Reshaped { k, shape } => {
            let block = args.get_mut(*k as usize).and_then(Option::take).ok_or_else(|| format!("input block {k} is missing, or named twice"))?;
            let from = block.shape().to_vec();
            // Decoded blocks are row-major: reshaped in place.
            with_block!(block, a => Element::wrap(if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() }.into_shape_with_order(IxDyn(shape)).map_err(|e| {
                format!("input block {k} of shape {from:?} cannot be reshaped to {shape:?}: {e}")
            })?))
        }
        LeafSource::Raw { k, dtype, shape } => {
            let bytes = raw.get(*k as usize).ok_or_else(|| format!("input block {k} is missing"))?;
            Block::from_raw(*dtype, shape, bytes).map_err(|e| format!("input block {k}, the result of a task: {e}"))?
        }
        LeafSource::Assemble { dtype, shape, pieces } => assemble(*dtype, shape, pieces, args)?,
        LeafSource::Serde { k, dtype, shape } => {
            let bytes = raw.get(*k as usize).ok_or_else(|| format!("input block {k} is missing"))?;
            let bad = |e: postcard::Error| format!("input block {k}, the result of a map_blocks function: {e}");
            let block = match dtype {
                DType::F64 => Block::F64(postcard::from_bytes(bytes).map_err(bad)?),
                DType::F32 => Block::F32(postcard::from_bytes(bytes).map_err(bad)?),
                DType::I64 => Block::I64(postcard::from_bytes(bytes).map_err(bad)?),
                DType::I32 => Block::I32(postcard::from_bytes(bytes).map_err(bad)?),
                DType::U8 => Block::U8(postcard::from_bytes(bytes).map_err(bad)?),
                DType::Bool => Block::Bool(postcard::from_bytes(bytes).map_err(bad)?),
            };
            if block.shape() != shape.as_slice() {
                return Err(format!(
                    "input block {k}: the map_blocks function returned a block of shape {:?} for one of shape {shape:?}; it must keep the shape",
                    block.shape()
                ));
            }
            block
        }
        LeafSource::File { file, index, offset, shape } => file.read_block(index, offset, shape)?,
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

/// A block of `shape` put together from parts of received blocks.
fn assemble(dtype: DType, shape: &[usize], pieces: &[Piece], args: &mut [Option<Block>]) -> Result<Block, String> {
    macro_rules! build {
        ($($v:ident),*) => {
            match dtype {
                $(DType::$v => {
                    let mut out = ArrayD::from_elem(IxDyn(shape), Default::default());
                    for Piece { arg: k, part, at } in pieces {
                        let Some(Block::$v(src)) = args.get_mut(*k as usize).and_then(Option::take) else {
                            return Err(format!("piece {k} of a rechunked block is missing or not {}", dtype));
                        };
                        if part.len() != src.ndim() || at.len() != shape.len() || part.iter().zip(src.shape()).any(|(&(lo, hi), &n)| lo > hi || hi > n) {
                            return Err(format!("a piece {part:?} of a block of shape {:?} for a block of shape {shape:?}", src.shape()));
                        }
                        let view = src.slice_each_axis(|ax| {
                            let (lo, hi) = part[ax.axis.index()];
                            Slice::from(lo..hi)
                        });
                        let fits = (0..shape.len()).all(|j| at[j] + view.shape()[j] <= shape[j]);
                        if !fits {
                            return Err(format!("a piece of shape {:?} at {at:?} of a block of shape {shape:?}", view.shape()));
                        }
                        out.slice_each_axis_mut(|ax| {
                            let j = ax.axis.index();
                            Slice::from(at[j]..at[j] + view.shape()[j])
                        })
                        .assign(&view);
                    }
                    Block::$v(out)
                })*
            }
        };
    }
    Ok(build!(F64, F32, I64, I32, U8, Bool))
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

