//! Arrays of any plain-data element ([`bytemuck::Pod`]): a user's `#[repr(C)]` struct,
//! `u16`, `[f32; 3]`…, moved, cut and rearranged like numeric arrays, and turned into
//! numbers by the user's own functions.
//!
//! A [`PodArray<T>`] is held as a `u8` array with one more, trailing axis of
//! `size_of::<T>()` bytes that is never cut: every operation that only moves elements
//! (slicing, transposing, reshaping, rechunking, joining, persisting, files) is the
//! numeric array's, applied to the leading axes, and the blocks travel as their bytes.
//! Arithmetic and reductions need numbers: [`PodArray::map_blocks`] applies a registered
//! function to each block, given as a [`PodBlock<T>`], and gives a numeric [`Array`] (or
//! another `PodArray`).

use std::marker::PhantomData;

use bytemuck::Pod;
use chorus_tasks::{Client, RemoteFunction};
use ndarray::{ArrayBase, ArrayD, Data as NdData, Dimension, IxDyn, SliceInfoElem};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::array::Array;
use crate::chunks::Chunks;
use crate::dtype::{DType, Element};
use crate::{Error, Result};

/// A chunked array of plain-data elements `T`, held as bytes with a trailing axis of
/// `size_of::<T>()` that is never cut, so every element-moving operation is the numeric
/// array's; [`PodArray::map_blocks`] turns it into numbers.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// use chorus_array::{ndarray, PodArray};
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Rgb { r: u8, g: u8, b: u8 }
/// let image = ndarray::Array2::from_elem((1000, 1000), Rgb { r: 1, g: 2, b: 3 });
/// let x = PodArray::from_ndarray(&client, &image, &[250, 250])?;
/// let corner = x.slice(ndarray::s![..10, ..10])?.t().compute()?;
/// # let _ = corner;
/// # Ok(())
/// # }
/// ```
pub struct PodArray<T> {
    bytes: Array<u8>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PodArray<T> {
    fn clone(&self) -> Self {
        PodArray { bytes: self.bytes.clone(), _t: PhantomData }
    }
}

/// One block of a [`PodArray`], as a user's function receives and returns it: serde
/// encodes it as its bytes (a `u8` array with a trailing axis of `size_of::<T>()`).
#[derive(Debug, Clone, PartialEq)]
pub struct PodBlock<T>(pub ArrayD<T>);

fn size<T>() -> usize {
    std::mem::size_of::<T>()
}

/// The elements of `a` as bytes, with the trailing byte axis.
fn to_bytes<T: Pod, S: NdData<Elem = T>, D: Dimension>(a: &ArrayBase<S, D>) -> ArrayD<u8> {
    let mut shape = a.shape().to_vec();
    shape.push(size::<T>());
    let elements = a.as_standard_layout();
    let bytes = bytemuck::cast_slice::<T, u8>(elements.as_slice().expect("a standard layout is contiguous")).to_vec();
    ArrayD::from_shape_vec(IxDyn(&shape), bytes).expect("the shape of the elements' bytes")
}

/// The elements whose bytes `b` holds along its trailing axis.
fn from_bytes<T: Pod>(b: &ArrayD<u8>) -> std::result::Result<ArrayD<T>, String> {
    let (last, lead) = b.shape().split_last().ok_or("a block without its byte axis")?;
    if *last != size::<T>() {
        return Err(format!("a block of {last}-byte elements where {} bytes make a {}", size::<T>(), std::any::type_name::<T>()));
    }
    let bytes = b.as_standard_layout();
    let elements: Vec<T> = bytemuck::pod_collect_to_vec(bytes.as_slice().expect("a standard layout is contiguous"));
    ArrayD::from_shape_vec(IxDyn(lead), elements).map_err(|e| e.to_string())
}

impl<T: Pod> Serialize for PodBlock<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        to_bytes(&self.0).serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for PodBlock<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let bytes = ArrayD::<u8>::deserialize(deserializer)?;
        from_bytes(&bytes).map(PodBlock).map_err(serde::de::Error::custom)
    }
}

impl<T: Pod> PodArray<T> {
    fn of(bytes: Array<u8>) -> PodArray<T> {
        PodArray { bytes, _t: PhantomData }
    }

    fn check_size() -> Result<()> {
        if size::<T>() == 0 {
            return Err(Error::Invalid(format!("an array of {}, which has no bytes", std::any::type_name::<T>())));
        }
        Ok(())
    }

    /// The driver's array cut into blocks of `chunks` and scattered to the workers.
    pub fn from_ndarray<S: NdData<Elem = T>, D: Dimension>(client: &Client, array: &ArrayBase<S, D>, chunks: &[usize]) -> Result<PodArray<T>> {
        Self::check_size()?;
        Chunks::regular(array.shape(), chunks)?;
        let mut with_bytes = chunks.to_vec();
        with_bytes.push(size::<T>());
        Ok(Self::of(crate::from_ndarray(client, &to_bytes(array), &with_bytes)?))
    }

    /// An array whose element bytes are those of `bytes` along its last axis, which must
    /// be `size_of::<T>()` long and in one block (the inverse of [`PodArray::as_bytes`]).
    pub fn from_bytes(bytes: Array<u8>) -> Result<PodArray<T>> {
        Self::check_size()?;
        let chunks = bytes.chunks().axes();
        match (bytes.shape().last(), chunks.last()) {
            (Some(&n), Some(c)) if n == size::<T>() && c.len() == 1 => Ok(Self::of(bytes)),
            _ => Err(Error::Invalid(format!(
                "an array of shape {:?} in blocks {:?} holding {} elements: the last axis must be their {} bytes, in one block",
                bytes.shape(),
                chunks,
                std::any::type_name::<T>(),
                size::<T>()
            ))),
        }
    }

    /// The elements' bytes: a `u8` array with a trailing axis of `size_of::<T>()` (for
    /// [`Array::to_zarr`] and the other operations of numeric arrays).
    pub fn as_bytes(&self) -> &Array<u8> {
        &self.bytes
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        let s = self.bytes.shape();
        &s[..s.len() - 1]
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// How each axis is cut into blocks.
    pub fn chunks(&self) -> Chunks {
        let axes = self.bytes.chunks().axes();
        Chunks::from_axes(axes[..axes.len() - 1].to_vec())
    }

    /// The tasks [`PodArray::compute`] would run.
    pub fn task_count(&self) -> usize {
        self.bytes.task_count()
    }

    fn with_byte_axis(&self, axes: &[usize]) -> Vec<usize> {
        let mut v = axes.to_vec();
        v.push(size::<T>());
        v
    }

    /// The part `info` selects (see [`Array::slice`]).
    pub fn slice<I: AsRef<[SliceInfoElem]>>(&self, info: I) -> Result<PodArray<T>> {
        let info = info.as_ref();
        let given = info.iter().filter(|e| !matches!(e, SliceInfoElem::NewAxis)).count();
        if given > self.ndim() {
            return Err(Error::Axis(format!("a slice of {given} axes of an array of shape {:?}", self.shape())));
        }
        let full = SliceInfoElem::Slice { start: 0, end: None, step: 1 };
        let mut all = info.to_vec();
        all.extend(std::iter::repeat_n(full, self.ndim() - given + 1));
        Ok(Self::of(self.bytes.slice(all)?))
    }

    /// The axes reversed.
    pub fn t(&self) -> PodArray<T> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.transpose(&perm).expect("a reversal is a permutation")
    }

    /// The axes in the order `perm` (see [`Array::transpose`]).
    pub fn transpose(&self, perm: &[usize]) -> Result<PodArray<T>> {
        if perm.len() != self.ndim() {
            return Err(Error::Axis(format!("a permutation {perm:?} of the {} axes of shape {:?}", self.ndim(), self.shape())));
        }
        let mut all = perm.to_vec();
        all.push(self.ndim());
        Ok(Self::of(self.bytes.transpose(&all)?))
    }

    /// Axes `a` and `b` exchanged.
    pub fn swap_axes(&self, a: usize, b: usize) -> Result<PodArray<T>> {
        let n = self.ndim();
        if a >= n || b >= n {
            return Err(Error::Axis(format!("axes {a} and {b} of an array of shape {:?}", self.shape())));
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.swap(a, b);
        self.transpose(&perm)
    }

    /// The same elements in the shape `shape`, in C order (see [`Array::reshape`]).
    pub fn reshape(&self, shape: &[usize]) -> Result<PodArray<T>> {
        let (old, new): (usize, usize) = (self.shape().iter().product(), shape.iter().product());
        if old != new {
            return Err(Error::Invalid(format!(
                "reshape of an array of shape {:?} ({old} elements) to {shape:?} ({new} elements): the element counts differ",
                self.shape()
            )));
        }
        Ok(Self::of(self.bytes.reshape(&self.with_byte_axis(shape))?))
    }

    /// The same array in blocks of `chunks` (see [`Array::rechunk`]).
    pub fn rechunk(&self, chunks: &[usize]) -> Result<PodArray<T>> {
        Chunks::regular(self.shape(), chunks)?;
        Ok(Self::of(self.bytes.rechunk(&self.with_byte_axis(chunks))?))
    }

    /// Arrays joined along `axis` (see [`crate::concatenate`]).
    pub fn concatenate(arrays: &[&PodArray<T>], axis: usize) -> Result<PodArray<T>> {
        if let Some(a) = arrays.iter().find(|a| axis >= a.ndim()) {
            return Err(Error::Axis(format!("concatenate along axis {axis} of an array of shape {:?}", a.shape())));
        }
        let bytes: Vec<&Array<u8>> = arrays.iter().map(|a| &a.bytes).collect();
        Ok(Self::of(crate::concatenate(&bytes, axis)?))
    }

    /// Arrays of one shape stacked along a new axis `axis` (see [`crate::stack`]).
    pub fn stack(arrays: &[&PodArray<T>], axis: usize) -> Result<PodArray<T>> {
        if let Some(a) = arrays.iter().find(|a| axis > a.ndim()) {
            return Err(Error::Axis(format!("stack on axis {axis} of arrays of shape {:?}", a.shape())));
        }
        let bytes: Vec<&Array<u8>> = arrays.iter().map(|a| &a.bytes).collect();
        Ok(Self::of(crate::stack(&bytes, axis)?))
    }

    /// Runs the tasks now and keeps the blocks on the workers (see [`Array::persist`]).
    pub fn persist(&self) -> Result<PodArray<T>> {
        Ok(Self::of(self.bytes.persist()?))
    }

    /// Runs the tasks and brings the whole array to the driver.
    pub fn compute(&self) -> Result<ArrayD<T>> {
        let bytes = self.bytes.compute()?;
        from_bytes(&bytes).map_err(|detail| Error::Block { index: vec![], detail })
    }

    /// Applies the user's registered function `f` to each block, given as a
    /// [`PodBlock<T>`]; `f` returns an `ndarray::ArrayD<U>` of the block's shape, and
    /// the result is a numeric array (a block of another shape fails the tasks that read
    /// it, naming the block).
    ///
    /// ```ignore
    /// #[chorus::remote]
    /// fn brightness(b: PodBlock<Rgb>) -> ArrayD<f64> { b.0.mapv(|p| (p.r as f64 + p.g as f64 + p.b as f64) / 3.0) }
    /// let mean = x.map_blocks::<_, f64>(brightness)?.mean()?.compute_scalar()?;
    /// ```
    pub fn map_blocks<F, U>(&self, f: F) -> Result<Array<U>>
    where
        F: RemoteFunction<Args = (PodBlock<T>,), Output = ArrayD<U>> + Send + Sync + 'static,
        U: Element,
    {
        let data = self.bytes.data().mapped(f, self.shape().to_vec(), self.chunks(), U::DTYPE);
        Ok(Array::from_data(self.bytes.client(), data))
    }

    /// Like [`PodArray::map_blocks`], for a function that returns plain-data elements.
    pub fn map_pod_blocks<F, U>(&self, f: F) -> Result<PodArray<U>>
    where
        F: RemoteFunction<Args = (PodBlock<T>,), Output = PodBlock<U>> + Send + Sync + 'static,
        U: Pod,
    {
        PodArray::<U>::check_size()?;
        let mut chunks = self.chunks().axes().to_vec();
        chunks.push(vec![size::<U>()]);
        let data = self.bytes.data().mapped(f, [self.shape(), &[size::<U>()]].concat(), Chunks::from_axes(chunks), DType::U8);
        Ok(PodArray::of(Array::from_data(self.bytes.client(), data)))
    }
}

impl<T> std::fmt::Display for PodArray<T> {
    /// A table like [`Array`]'s: shape, chunks, element type, sizes and tasks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let axes = self.bytes.chunks().axes();
        let chunks = Chunks::from_axes(axes[..axes.len() - 1].to_vec());
        let shape = self.bytes.shape();
        let human = |bytes: u64| chorus_tasks::settings::human_with(bytes, 2);
        let element = shape[shape.len() - 1] as u64;
        let grid: Vec<String> = chunks.grid().iter().map(ToString::to_string).collect();
        writeln!(f, "chorus::PodArray<{}> ({element} bytes each)", std::any::type_name::<T>())?;
        writeln!(f, "  shape   {:?}", &shape[..shape.len() - 1])?;
        writeln!(f, "  chunks  {chunks}  ({} = {} blocks)", grid.join(" × "), chunks.count())?;
        writeln!(f, "  bytes   {}  (largest block {})", human(shape.iter().product::<usize>() as u64), human(chunks.largest_block() as u64 * element))?;
        write!(f, "  tasks   {} to compute", self.bytes.task_count())
    }
}

impl<T> std::fmt::Debug for PodArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
