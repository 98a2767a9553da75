//! Arrays of any serde element, fixed-size or not (`String`, a user's enum…): Dask's
//! arrays of `object` dtype.
//!
//! A [`SerdeArray<T>`] is a grid of blocks on the workers, each an `ndarray::ArrayD<T>`
//! encoded with serde (postcard). Elements of such types cannot be moved as bytes, so
//! every operation that rearranges elements (slicing, transposing, rechunking,
//! reshaping) runs one task per new block that decodes the old blocks it needs, copies
//! the elements into place and encodes the result. Those tasks are generic in `T`, and
//! the task layer runs only registered functions: a type is made an element once, with
//! [`serde_element!`](crate::serde_element) (`String` already is). Operations submit
//! their tasks when they are called, as `client.map` does, rather than building a fused
//! expression; [`SerdeArray::map_blocks`] turns blocks into a numeric [`Array`] with a
//! registered function on `ArrayD<T>`.
//!
//! For plain-data elements, [`PodArray`](crate::PodArray) is the faster path: its blocks
//! move as bytes, fused like numeric arrays'.

use std::marker::PhantomData;
use std::sync::Arc;

use chorus_tasks::registry::{encode_result, Encoded};
use chorus_tasks::{Arg, Client, Future, RemoteFunction, TaskOptions};
use ndarray::{ArrayBase, ArrayD, Data as NdData, Dimension, IxDyn, Slice, SliceInfoElem};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::array::Array;
use crate::chunks::Chunks;
use crate::dtype::Element;
use crate::graph::{overlaps, Data, LeafKind};
use crate::kernel::fault;
use crate::{Error, Result};

/// A type whose values can be the elements of a [`SerdeArray`]: serde, and registered
/// with [`serde_element!`](crate::serde_element), which implements this trait.
pub trait SerdeElement: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The name of this type's rearranging task, unique in the program.
    const ASSEMBLE: &'static str;
}

/// Makes a type of this crate the element of [`SerdeArray`]s: implements
/// [`SerdeElement`] and registers the task that rearranges its blocks. Write it once per
/// type, at module level, in the program the workers run (the same binary).
///
/// ```ignore
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// enum Cell { Empty, Text(String), Number(f64) }
/// chorus::array::serde_element!(Cell);
/// ```
#[macro_export]
macro_rules! serde_element {
    ($t:ty) => {
        impl $crate::SerdeElement for $t {
            const ASSEMBLE: &'static str = concat!("chorus_array::assemble::", module_path!(), "::", stringify!($t));
        }
        $crate::__private::inventory::submit! {
            $crate::__private::FunctionEntry { name: <$t as $crate::SerdeElement>::ASSEMBLE, call: $crate::__private::assemble::<$t> }
        }
    };
}

serde_element!(String);

/// A chunked array of serde elements `T`: blocks of `ndarray::ArrayD<T>` encoded with
/// serde, rearranged by one task per new block (Dask's `object` arrays). The type must be
/// registered with [`serde_element!`](crate::serde_element).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// use chorus_array::{ndarray, SerdeArray};
/// let words = ndarray::Array2::from_shape_fn((400, 300), |(i, j)| format!("w{}", i * j % 97));
/// let x = SerdeArray::from_ndarray(&client, &words, &[100, 100])?;
/// let corner = x.slice(ndarray::s![..3, 10..12])?.t()?.compute()?;
/// # let _ = corner;
/// # Ok(())
/// # }
/// ```
pub struct SerdeArray<T> {
    client: Client,
    shape: Vec<usize>,
    chunks: Chunks,
    /// One per block, in row-major order of the grid: `ArrayD<T>` encoded with serde.
    blocks: Arc<Vec<Future<Vec<u8>>>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for SerdeArray<T> {
    fn clone(&self) -> Self {
        SerdeArray { client: self.client.clone(), shape: self.shape.clone(), chunks: self.chunks.clone(), blocks: self.blocks.clone(), _t: PhantomData }
    }
}

/// Where one part of a new block comes from: argument `arg`'s elements `region` (start,
/// end, step per axis), with its axes taken in the order `axes`, laid out as `shape` in C
/// order, put at `at` of the new block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Part {
    arg: u32,
    region: Vec<(usize, usize, usize)>,
    axes: Vec<usize>,
    shape: Vec<usize>,
    at: Vec<usize>,
}

/// The elements `start, start + step, …` below `end` of old block `block` along one
/// axis, `count` of them: what a slice takes of that block.
#[derive(Debug, Clone, Copy)]
struct Run {
    block: usize,
    start: usize,
    end: usize,
    step: usize,
    count: usize,
}

/// A new block of `shape` made of `parts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AssemblePlan {
    shape: Vec<usize>,
    parts: Vec<Part>,
}

/// The registered task of element type `T` (see [`serde_element!`](crate::serde_element)).
struct Assemble<T>(PhantomData<T>);

impl<T> Clone for Assemble<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Assemble<T> {}

impl<T: SerdeElement> RemoteFunction for Assemble<T> {
    type Args = (Vec<u8>,);
    type Output = Vec<u8>;
    const NAME: &'static str = T::ASSEMBLE;
}

fn bad<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> chorus_tasks::registry::Fault + '_ {
    move |e| fault(format!("{what}: {e}"))
}

/// The task that makes one new block of a `SerdeArray<T>` from parts of old blocks; its
/// arguments are its plan, then the old blocks.
pub fn assemble<T: SerdeElement>(args: &[&[u8]]) -> Encoded {
    let (plan, blocks) = args.split_first().ok_or_else(|| fault("a rearranging task without its plan".into()))?;
    let plan: AssemblePlan = postcard::from_bytes(plan).map_err(bad("the plan of a rearranging task"))?;
    let inputs: Vec<ArrayD<T>> = blocks.iter().map(|b| postcard::from_bytes(b)).collect::<std::result::Result<_, _>>().map_err(bad("an input block"))?;
    let mut pieces = Vec::with_capacity(plan.parts.len());
    for p in &plan.parts {
        let input = inputs.get(p.arg as usize).ok_or_else(|| fault(format!("input block {} is missing", p.arg)))?;
        if p.region.len() != input.ndim() || p.region.iter().zip(input.shape()).any(|(&(s, e, _), &n)| s > e || e > n) {
            return Err(fault(format!("a region {:?} of a block of shape {:?}", p.region, input.shape())));
        }
        let view = input.slice_each_axis(|ax| {
            let (s, e, step) = p.region[ax.axis.index()];
            Slice::new(s as isize, Some(e as isize), step.max(1) as isize)
        });
        let view = if p.axes.len() == view.ndim() { view.permuted_axes(IxDyn(&p.axes)) } else { return Err(fault(format!("axes {:?} of a view of shape {:?}", p.axes, view.shape()))) };
        let piece = view.to_shape(IxDyn(&p.shape)).map_err(bad("a part of a block"))?.into_owned();
        pieces.push((piece, &p.at));
    }
    let count: usize = plan.shape.iter().product();
    let out = match pieces.iter().find_map(|(p, _)| p.first().cloned()) {
        None if count == 0 => ArrayD::from_shape_vec(IxDyn(&plan.shape), Vec::new()).map_err(bad("an empty block"))?,
        None => return Err(fault(format!("a block of shape {:?} without elements", plan.shape))),
        Some(fill) => {
            let mut out = ArrayD::from_elem(IxDyn(&plan.shape), fill);
            for (piece, at) in pieces {
                let mut dest = out.slice_each_axis_mut(|ax| {
                    let k = ax.axis.index();
                    Slice::from(at[k]..at[k] + piece.shape()[k])
                });
                if dest.shape() != piece.shape() {
                    return Err(fault(format!("a part of shape {:?} at {at:?} of a block of shape {:?}", piece.shape(), plan.shape)));
                }
                dest.assign(&piece);
            }
            out
        }
    };
    encode_result(postcard::to_allocvec(&out).map_err(bad("encoding a block"))?)
}

impl<T: SerdeElement> SerdeArray<T> {
    fn with(&self, shape: Vec<usize>, chunks: Chunks, blocks: Vec<Future<Vec<u8>>>) -> SerdeArray<T> {
        SerdeArray { client: self.client.clone(), shape, chunks, blocks: Arc::new(blocks), _t: PhantomData }
    }

    /// The driver's array cut into blocks of `chunks` and scattered to the workers.
    pub fn from_ndarray<S: NdData<Elem = T>, D: Dimension>(client: &Client, array: &ArrayBase<S, D>, chunks: &[usize]) -> Result<SerdeArray<T>> {
        let shape = array.shape().to_vec();
        let grid = Chunks::regular(&shape, chunks)?;
        let view = array.view().into_dyn();
        let blocks = grid
            .indices()
            .iter()
            .map(|idx| {
                let region = grid.region(idx);
                let block = view.slice_each_axis(|ax| region[ax.axis.index()]).to_owned();
                postcard::to_allocvec(&block).map_err(|e| Error::Invalid(format!("block {idx:?} does not encode: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let futures = client.scatter(blocks)?;
        Ok(SerdeArray { client: client.clone(), shape, chunks: grid, blocks: Arc::new(futures), _t: PhantomData })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// How each axis is cut into blocks.
    pub fn chunks(&self) -> &Chunks {
        &self.chunks
    }

    /// The futures of the blocks, in row-major order of the grid: each an
    /// `ndarray::ArrayD<T>` encoded with serde.
    pub fn to_futures(&self) -> Vec<Future<Vec<u8>>> {
        self.blocks.to_vec()
    }

    /// One task per new block of `chunks` (over `shape`), made of the parts `parts(index)`
    /// of the old blocks.
    fn rearranged(&self, shape: Vec<usize>, chunks: Chunks, parts: impl Fn(&[usize]) -> Vec<(usize, Part)>) -> SerdeArray<T> {
        let blocks = chunks
            .indices()
            .iter()
            .map(|idx| {
                let mut args = Vec::new();
                let mut plan = AssemblePlan { shape: chunks.block_shape(idx), parts: Vec::new() };
                for (old, mut part) in parts(idx) {
                    part.arg = args.len() as u32;
                    args.push(Arg::<Vec<u8>>::into_slot(&self.blocks[old]));
                    plan.parts.push(part);
                }
                let mut all = vec![Arg::<Vec<u8>>::into_slot(postcard::to_allocvec(&plan).expect("plans are plain data"))];
                all.extend(args);
                self.client.submit_variadic(Assemble::<T>(PhantomData), all, TaskOptions::default())
            })
            .collect();
        self.with(shape, chunks, blocks)
    }

    /// The part `info` selects, with ranges (positive steps) and indexes (see
    /// [`Array::slice`]; `NewAxis` is not taken). Each new block is the part of one old
    /// block, and only the blocks the slice touches are read.
    pub fn slice<I: AsRef<[SliceInfoElem]>>(&self, info: I) -> Result<SerdeArray<T>> {
        let info = info.as_ref();
        if info.len() > self.ndim() || info.iter().any(|e| matches!(e, SliceInfoElem::NewAxis)) {
            return Err(Error::Axis(format!("a slice {info:?} of an array of shape {:?} (ranges and indexes, one per axis at most)", self.shape)));
        }
        // Per old axis: the kept elements (start, end, step) and whether it stays.
        let mut windows = Vec::with_capacity(self.ndim());
        for (k, &n) in self.shape.iter().enumerate() {
            let at = |v: isize| if v < 0 { v + n as isize } else { v };
            windows.push(match info.get(k).copied().unwrap_or(SliceInfoElem::Slice { start: 0, end: None, step: 1 }) {
                SliceInfoElem::Index(i) => {
                    let i = at(i);
                    if i < 0 || i >= n as isize {
                        return Err(Error::Invalid(format!("index {i} of axis {k}, of length {n} (shape {:?})", self.shape)));
                    }
                    (i as usize, i as usize + 1, 1, false)
                }
                SliceInfoElem::Slice { start, end, step } => {
                    let (s, e) = (at(start).clamp(0, n as isize) as usize, at(end.unwrap_or(n as isize)).clamp(0, n as isize) as usize);
                    if step <= 0 {
                        return Err(Error::Invalid(format!("a step of {step} on axis {k}; only positive steps are taken")));
                    }
                    (s, e.max(s), step as usize, true)
                }
                SliceInfoElem::NewAxis => unreachable!("refused above"),
            });
        }
        // Per old axis: the old blocks the window touches, and what of each.
        let pieces: Vec<Vec<Run>> = windows
            .iter()
            .zip(self.chunks.axes())
            .map(|(&(s, e, step, _), lengths)| {
                let mut out = Vec::new();
                let mut offset = 0;
                for (b, &len) in lengths.iter().enumerate() {
                    let (lo, hi) = (offset, offset + len);
                    offset = hi;
                    // The first kept element at or after `lo`.
                    let first = if s >= lo { s } else { s + (lo - s).div_ceil(step) * step };
                    let end = e.min(hi);
                    if first < end {
                        out.push(Run { block: b, start: first - lo, end: end - lo, step, count: (end - first).div_ceil(step) });
                    }
                }
                out
            })
            .collect();
        let kept: Vec<usize> = (0..self.ndim()).filter(|&k| windows[k].3).collect();
        let new_shape: Vec<usize> = kept.iter().map(|&k| pieces[k].iter().map(|p| p.count).sum()).collect();
        if pieces.iter().any(Vec::is_empty) {
            return self.empty_like(new_shape);
        }
        let chunks = Chunks::from_axes(kept.iter().map(|&k| pieces[k].iter().map(|p| p.count).collect()).collect());
        let grid = self.chunks.grid();
        Ok(self.rearranged(new_shape, chunks.clone(), |idx| {
            // The new block's index along each kept axis; removed axes have one piece.
            let mut old = vec![0; grid.len()];
            let mut region = Vec::with_capacity(grid.len());
            let mut j = 0;
            for (k, p) in pieces.iter().enumerate() {
                let piece = if windows[k].3 {
                    j += 1;
                    p[idx[j - 1]]
                } else {
                    p[0]
                };
                old[k] = piece.block;
                region.push((piece.start, piece.end, piece.step));
            }
            let flat = old.iter().zip(&grid).fold(0, |f, (&i, &g)| f * g + i);
            vec![(flat, Part { arg: 0, region, axes: (0..grid.len()).collect(), shape: chunks.block_shape(idx), at: vec![0; idx.len()] })]
        }))
    }

    /// An array of `shape`, which has no elements, in one block.
    fn empty_like(&self, shape: Vec<usize>) -> Result<SerdeArray<T>> {
        let chunks = Chunks::from_axes(shape.iter().map(|&n| vec![n]).collect());
        let empty: ArrayD<T> = ArrayD::from_shape_vec(IxDyn(&shape), Vec::new()).map_err(|e| Error::Invalid(e.to_string()))?;
        let block = postcard::to_allocvec(&empty).map_err(|e| Error::Invalid(e.to_string()))?;
        let future = self.client.scatter(vec![block])?.remove(0);
        Ok(self.with(shape, chunks, vec![future]))
    }

    /// The axes reversed.
    pub fn t(&self) -> Result<SerdeArray<T>> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.transpose(&perm)
    }

    /// The axes in the order `perm`: new axis `k` is old axis `perm[k]`.
    pub fn transpose(&self, perm: &[usize]) -> Result<SerdeArray<T>> {
        let mut seen = perm.to_vec();
        seen.sort_unstable();
        if seen != (0..self.ndim()).collect::<Vec<_>>() {
            return Err(Error::Axis(format!("{perm:?} is not a permutation of the {} axes of shape {:?}", self.ndim(), self.shape)));
        }
        let shape: Vec<usize> = perm.iter().map(|&k| self.shape[k]).collect();
        let chunks = Chunks::from_axes(perm.iter().map(|&k| self.chunks.axes()[k].clone()).collect());
        let old_chunks = self.chunks.clone();
        Ok(self.rearranged(shape, chunks.clone(), |idx| {
            let mut old = vec![0; idx.len()];
            for (j, &k) in perm.iter().enumerate() {
                old[k] = idx[j];
            }
            let region = old_chunks.block_shape(&old).iter().map(|&n| (0, n, 1)).collect();
            vec![(old_chunks.flat(&old), Part { arg: 0, region, axes: perm.to_vec(), shape: chunks.block_shape(idx), at: vec![0; idx.len()] })]
        }))
    }

    /// The same array in blocks of `chunks`: each new block is put together from the
    /// parts of the old blocks it overlaps.
    pub fn rechunk(&self, chunks: &[usize]) -> Result<SerdeArray<T>> {
        let grid = Chunks::regular(&self.shape, chunks)?;
        Ok(self.cut(grid))
    }

    fn cut(&self, grid: Chunks) -> SerdeArray<T> {
        if grid == self.chunks {
            return self.clone();
        }
        let old = self.chunks.clone();
        let n = self.ndim();
        self.rearranged(self.shape.clone(), grid.clone(), |idx| {
            overlaps(&old, &grid.block_offset(idx), &grid.block_shape(idx))
                .into_iter()
                .map(|o| {
                    let shape = o.part.iter().map(|&(s, e)| e - s).collect();
                    (old.flat(&o.block), Part { arg: 0, region: o.part.iter().map(|&(s, e)| (s, e, 1)).collect(), axes: (0..n).collect(), shape, at: o.at })
                })
                .collect()
        })
    }

    /// The same elements in the shape `shape`, in C order (see [`Array::reshape`]: the
    /// array is rechunked first where its blocks are not whole rows).
    pub fn reshape(&self, shape: &[usize]) -> Result<SerdeArray<T>> {
        let (old, new): (usize, usize) = (self.shape.iter().product(), shape.iter().product());
        if old != new {
            return Err(Error::Invalid(format!(
                "reshape of an array of shape {:?} ({old} elements) to {shape:?} ({new} elements): the element counts differ",
                self.shape
            )));
        }
        if new == 0 {
            return self.empty_like(shape.to_vec());
        }
        let groups = crate::reshape::groups(&self.shape, shape);
        let (need, made) = crate::reshape::plan(&self.shape, shape, &self.chunks, &groups);
        let input = self.cut(need);
        let n = self.ndim();
        Ok(input.rearranged(shape.to_vec(), made.clone(), |idx| {
            let old = crate::reshape::old_block(&groups, n, idx);
            let region = input.chunks.block_shape(&old).iter().map(|&len| (0, len, 1)).collect();
            vec![(input.chunks.flat(&old), Part { arg: 0, region, axes: (0..n).collect(), shape: made.block_shape(idx), at: vec![0; idx.len()] })]
        }))
    }

    /// Arrays of one shape but along `axis` joined along it; their blocks are the
    /// result's, with no task.
    pub fn concatenate(arrays: &[&SerdeArray<T>], axis: usize) -> Result<SerdeArray<T>> {
        let first = arrays.first().ok_or_else(|| Error::Invalid("concatenate of no arrays".into()))?;
        if axis >= first.ndim() {
            return Err(Error::Axis(format!("concatenate along axis {axis} of arrays of shape {:?}", first.shape)));
        }
        for a in arrays {
            let other = |s: &[usize]| s.iter().enumerate().filter(|&(k, _)| k != axis).map(|(_, &n)| n).collect::<Vec<_>>();
            let cuts = |c: &Chunks| c.axes().iter().enumerate().filter(|&(k, _)| k != axis).map(|(_, v)| v.clone()).collect::<Vec<_>>();
            if other(&a.shape) != other(&first.shape) || cuts(&a.chunks) != cuts(&first.chunks) {
                return Err(Error::Chunks(format!(
                    "concatenate along axis {axis} of arrays of shapes {:?} and {:?} cut {:?} and {:?}: the other axes must be alike",
                    first.shape, a.shape, first.chunks.axes(), a.chunks.axes()
                )));
            }
        }
        let mut axes = first.chunks.axes().to_vec();
        axes[axis] = arrays.iter().flat_map(|a| a.chunks.axes()[axis].iter().copied().filter(|&n| n > 0)).collect();
        if axes[axis].is_empty() {
            axes[axis] = vec![0];
        }
        let mut shape = first.shape.clone();
        shape[axis] = arrays.iter().map(|a| a.shape[axis]).sum();
        let chunks = Chunks::from_axes(axes);
        // Blocks in row-major order: for each index before `axis`, the arrays' runs along it.
        let outer: usize = first.chunks.grid()[..axis].iter().product();
        let mut blocks = Vec::new();
        for o in 0..outer {
            for a in arrays {
                let grid = a.chunks.grid();
                if a.shape[axis] == 0 {
                    continue;
                }
                let run: usize = grid[axis..].iter().product();
                blocks.extend(a.blocks[o * run..(o + 1) * run].iter().cloned());
            }
        }
        if blocks.len() != chunks.count() {
            return first.empty_like(shape);
        }
        Ok(first.with(shape, chunks, blocks))
    }

    /// Runs the tasks and brings the whole array to the driver.
    pub fn compute(&self) -> Result<ArrayD<T>> {
        let bytes = self.client.gather(&self.blocks)?;
        let mut parts = Vec::with_capacity(bytes.len());
        for (idx, b) in self.chunks.indices().into_iter().zip(bytes) {
            let block: ArrayD<T> = postcard::from_bytes(&b).map_err(|e| Error::Block { index: idx.clone(), detail: e.to_string() })?;
            if block.shape() != self.chunks.block_shape(&idx).as_slice() {
                return Err(Error::Block { index: idx.clone(), detail: format!("a block of shape {:?} where {:?} belongs", block.shape(), self.chunks.block_shape(&idx)) });
            }
            parts.push((idx, block));
        }
        let Some(fill) = parts.iter().find_map(|(_, b)| b.first().cloned()) else {
            return ArrayD::from_shape_vec(IxDyn(&self.shape), Vec::new()).map_err(|e| Error::Invalid(e.to_string()));
        };
        let mut out = ArrayD::from_elem(IxDyn(&self.shape), fill);
        for (idx, block) in parts {
            let region = self.chunks.region(&idx);
            out.slice_each_axis_mut(|ax| region[ax.axis.index()]).assign(&block);
        }
        Ok(out)
    }

    /// Applies the user's registered function `f` to each block (an `ndarray::ArrayD<T>`),
    /// which returns an `ndarray::ArrayD<U>` of the block's shape; the result is a numeric
    /// array (a block of another shape fails the tasks that read it, naming the block).
    pub fn map_blocks<F, U>(&self, f: F) -> Result<Array<U>>
    where
        F: RemoteFunction<Args = (ArrayD<T>,), Output = ArrayD<U>> + Send + Sync + 'static,
        U: Element,
    {
        let results: Vec<Future<ArrayD<U>>> = self
            .blocks
            .iter()
            .map(|b| self.client.submit_variadic(f, vec![Arg::<Vec<u8>>::into_slot(b)], TaskOptions::default()))
            .collect();
        let slot = Arc::new(move |i: usize| Arg::<ArrayD<U>>::into_slot(&results[i]));
        Ok(Array::from_data(&self.client, Data::leaf(LeafKind::Serde(slot), self.shape.clone(), self.chunks.clone(), U::DTYPE)))
    }
}

impl<T> std::fmt::Display for SerdeArray<T> {
    /// Shape, chunks, element type and blocks (the sizes of serde blocks are known only
    /// once they are made).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grid: Vec<String> = self.chunks.grid().iter().map(ToString::to_string).collect();
        writeln!(f, "chorus::SerdeArray<{}>", std::any::type_name::<T>())?;
        writeln!(f, "  shape   {:?}", self.shape)?;
        write!(f, "  chunks  {}  ({} = {} blocks)", self.chunks, grid.join(" × "), self.chunks.count())
    }
}

impl<T> std::fmt::Debug for SerdeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[doc(hidden)]
pub mod private {
    pub use super::assemble;
    pub use chorus_tasks::registry::FunctionEntry;
    pub use inventory;
}
