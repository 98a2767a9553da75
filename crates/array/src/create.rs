//! Arrays made from nothing (generated in the tasks that use them) or from the driver's
//! own data (scattered).

use std::sync::Arc;

use chorus_tasks::{Arg, Client, Future};
use ndarray::{ArrayBase, Data as NdData, Dimension, Slice};

use crate::array::Array;
use crate::chunks::Chunks;
use crate::dtype::{DType, Element};
use crate::kernel::Generator;
use crate::{Error, Result};

/// An array of zeros.
pub fn zeros<T: Element>(client: &Client, shape: &[usize], chunks: &[usize]) -> Result<Array<T>> {
    full(client, shape, chunks, T::ZERO)
}

/// An array of ones.
pub fn ones<T: Element>(client: &Client, shape: &[usize], chunks: &[usize]) -> Result<Array<T>> {
    full(client, shape, chunks, T::ONE)
}

/// An array whose every element is `value`.
pub fn full<T: Element>(client: &Client, shape: &[usize], chunks: &[usize], value: T) -> Result<Array<T>> {
    let chunks = Chunks::regular(shape, chunks)?;
    Ok(Array::generated(client, shape, chunks, Generator::Full(value.scalar()), T::DTYPE))
}

/// `start, start + step, …` up to (not including) `stop`, in blocks of `chunk`.
pub fn arange<T: Element>(client: &Client, start: T, stop: T, step: T, chunk: usize) -> Result<Array<T>> {
    if T::DTYPE == DType::Bool {
        return Err(Error::Invalid("arange of bools".into()));
    }
    let (a, b, s) = (start.as_f64(), stop.as_f64(), step.as_f64());
    if s == 0.0 || !s.is_finite() || !a.is_finite() || !b.is_finite() {
        return Err(Error::Invalid(format!("arange from {start:?} to {stop:?} by {step:?}: the step must be finite and not zero")));
    }
    let n = ((b - a) / s).ceil().max(0.0) as usize;
    let chunks = Chunks::regular(&[n], &[chunk])?;
    Ok(Array::generated(client, &[n], chunks, Generator::Arange { start: start.scalar(), step: step.scalar() }, T::DTYPE))
}

/// `num` evenly spaced values from `start` to `stop`, both included, in blocks of `chunk`.
pub fn linspace(client: &Client, start: f64, stop: f64, num: usize, chunk: usize) -> Result<Array<f64>> {
    if !start.is_finite() || !stop.is_finite() {
        return Err(Error::Invalid(format!("linspace from {start} to {stop}: both ends must be finite")));
    }
    let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
    let chunks = Chunks::regular(&[num], &[chunk])?;
    Ok(Array::generated(client, &[num], chunks, Generator::Linear { start, step }, DType::F64))
}

/// The `n × n` identity, in blocks of `chunk × chunk`.
pub fn eye<T: Element>(client: &Client, n: usize, chunk: usize) -> Result<Array<T>> {
    let chunks = Chunks::regular(&[n, n], &[chunk, chunk])?;
    Ok(Array::generated(client, &[n, n], chunks, Generator::Eye { k: 0, dtype: T::DTYPE }, T::DTYPE))
}

/// The driver's array cut into blocks of `chunks` and scattered to the workers.
pub fn from_ndarray<T: Element, S: NdData<Elem = T>, D: Dimension>(client: &Client, array: &ArrayBase<S, D>, chunks: &[usize]) -> Result<Array<T>> {
    let shape = array.shape().to_vec();
    let grid = Chunks::regular(&shape, chunks)?;
    let view = array.view().into_dyn();
    let blocks: Vec<Vec<u8>> = grid
        .indices()
        .iter()
        .map(|idx| {
            let (off, len) = (grid.block_offset(idx), grid.block_shape(idx));
            let block = view.slice_each_axis(|ax| {
                let k = ax.axis.index();
                Slice::from(off[k]..off[k] + len[k])
            });
            T::wrap(block.to_owned()).encode()
        })
        .collect();
    let futures = client.scatter(blocks)?;
    Ok(Array::stored(client, &shape, grid, futures))
}


/// An array whose blocks are the results of the user's tasks, each the elements of one
/// block of `block_shape` in row-major order (`Vec<T>`, which travels as its bytes),
/// laid out in `grid` blocks along each axis in row-major order: the seed's
/// `client.map(load_file, files)` followed by `da.concatenate` is
/// `from_futures(&client, &futures, &[100, 100], &[futures.len(), 1])`.
///
/// A result of another length fails the tasks that read it, with the block named.
pub fn from_futures<T: Element>(client: &Client, futures: &[Future<Vec<T>>], block_shape: &[usize], grid: &[usize]) -> Result<Array<T>> {
    if T::DTYPE == DType::Bool {
        return Err(Error::Invalid("from_futures of bool blocks: return them as Vec<u8> (0 or 1) and cast with astype".into()));
    }
    if grid.len() != block_shape.len() || grid.iter().product::<usize>() != futures.len() {
        return Err(Error::Invalid(format!(
            "{} futures laid out in a grid of {grid:?} blocks of shape {block_shape:?}; the grid must have one entry per axis and hold every future",
            futures.len()
        )));
    }
    let shape: Vec<usize> = grid.iter().zip(block_shape).map(|(g, b)| g * b).collect();
    let chunks = Chunks::explicit(&shape, grid.iter().zip(block_shape).map(|(&g, &b)| vec![b; g]).collect())?;
    let futures: Vec<Future<Vec<T>>> = futures.to_vec();
    let slot = Arc::new(move |i: usize| Arg::<Vec<T>>::into_slot(&futures[i]));
    Ok(Array::raw(client, &shape, chunks, slot))
}

/// The `.npy` file `path` as an array in blocks of `chunks`: the driver reads its header,
/// and each task that needs a block reads that block's bytes from the file. The workers
/// must see `path` (one machine, or a shared file system). The file's element type must
/// be `T`; a file that is not `.npy`, in Fortran order, of another type, or shorter than
/// its shape says is an error naming it.
pub fn read_npy<T: Element>(client: &Client, path: impl AsRef<std::path::Path>, chunks: &[usize]) -> Result<Array<T>> {
    let path = std::path::absolute(path.as_ref()).map_err(|e| Error::Io { path: path.as_ref().to_path_buf(), detail: e.to_string() })?;
    let header = crate::npy::read_header(&path)?;
    if header.dtype != T::DTYPE {
        return Err(Error::Io { path, detail: format!("holds {} elements, and the array was asked for as {}", header.dtype, T::DTYPE) });
    }
    let grid = Chunks::regular(&header.shape, chunks)?;
    Ok(Array::npy(client, path, header, grid))
}

/// The Zarr array at `path` (a directory with `zarr.json`, Zarr version 3; version 2
/// arrays without Blosc are read too), in blocks of `chunks`, or of the array's own
/// chunks (shards, for a sharded array) with `None`: the driver reads its metadata, and
/// each task that needs a block reads that block's region, decoding only the chunks it
/// overlaps. Blocks that are the array's chunks read each chunk once. The workers must
/// see `path`. The array's element type must be `T`; a path that is not a Zarr array,
/// of another type, or whose chunks are damaged is an error naming it (and the block).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// use chorus_array as da;
/// let x = da::read_zarr::<f64>(&client, "data/x.zarr", None)?;
/// (&x * 2.0).to_zarr("data/twice_x.zarr")?;
/// # Ok(())
/// # }
/// ```
pub fn read_zarr<T: Element>(client: &Client, path: impl AsRef<std::path::Path>, chunks: Option<&[usize]>) -> Result<Array<T>> {
    let path = std::path::absolute(path.as_ref()).map_err(|e| Error::Io { path: path.as_ref().to_path_buf(), detail: e.to_string() })?;
    let meta = crate::zarr::read_meta(&path)?;
    if meta.dtype != T::DTYPE {
        return Err(Error::Io { path, detail: format!("holds {} elements, and the array was asked for as {}", meta.dtype, T::DTYPE) });
    }
    let grid = Chunks::regular(&meta.shape, chunks.unwrap_or(&meta.chunk))?;
    Ok(Array::zarr(client, path, meta, grid))
}
