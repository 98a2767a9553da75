//! Arrays made from nothing (generated in the tasks that use them) or from the driver's
//! own data (scattered).

use std::sync::Arc;

use chorus_tasks::{Arg, Client, Future};
use ndarray::{ArrayBase, Data as NdData, Dimension};

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
            let region = grid.region(idx);
            let block = view.slice_each_axis(|ax| region[ax.axis.index()]);
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
