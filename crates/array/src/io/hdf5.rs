//! HDF5 datasets (the `hdf5` feature), read by the workers through the hdf5-metno
//! binding of the system's libhdf5: the seed's `h5py.File(path)[dataset]` on each worker.
//!
//! The driver opens the file to learn the dataset's shape, type and storage chunks. A
//! task that needs a block opens the file itself and reads the block's hyperslab, so
//! HDF5 decodes (and decompresses) only the chunks the block overlaps. Reading only:
//! serial HDF5 cannot take parallel writers to one file, and Zarr is the format for
//! arrays written in parallel.

use std::path::Path;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Hyperslab, Selection, SliceOrIndex};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::dtype::{Block, DType};
use crate::{Error, Result};

/// What the driver learned from the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Its storage chunks, when it is chunked.
    pub chunk: Option<Vec<usize>>,
}

/// Blocks a read uses unless told otherwise: whole storage chunks (rows, for a
/// contiguous dataset), grown from the last axis to the first up to about this many
/// bytes, as Dask's `chunks="auto"` does.
const AUTO_BLOCK_BYTES: usize = 64 << 20;

fn dtype_of(d: &TypeDescriptor) -> Option<DType> {
    Some(match d {
        TypeDescriptor::Float(FloatSize::U8) => DType::F64,
        TypeDescriptor::Float(FloatSize::U4) => DType::F32,
        TypeDescriptor::Integer(IntSize::U8) => DType::I64,
        TypeDescriptor::Integer(IntSize::U4) => DType::I32,
        TypeDescriptor::Unsigned(IntSize::U1) => DType::U8,
        TypeDescriptor::Boolean => DType::Bool,
        _ => return None,
    })
}

fn open(path: &Path, dataset: &str) -> std::result::Result<hdf5::Dataset, String> {
    let file = hdf5::File::open(path).map_err(|e| format!("cannot be opened as an HDF5 file: {e}"))?;
    file.dataset(dataset).map_err(|e| format!("has no dataset {dataset:?}: {e}"))
}

/// Reads and checks what describes `dataset` in the file `path`.
pub(crate) fn read_meta(path: &Path, dataset: &str) -> Result<Meta> {
    let bad = |detail: String| Error::Io { path: path.to_path_buf(), detail };
    let ds = open(path, dataset).map_err(bad)?;
    let descriptor = ds.dtype().and_then(|t| t.to_descriptor()).map_err(|e| bad(format!("dataset {dataset:?} has a type chorus cannot read: {e}")))?;
    let dtype = dtype_of(&descriptor).ok_or_else(|| bad(format!("dataset {dataset:?} holds elements of type {descriptor}, which chorus arrays do not take")))?;
    Ok(Meta { dtype, shape: ds.shape(), chunk: ds.chunk() })
}

/// The blocks of [`AUTO_BLOCK_BYTES`] or less made of whole storage chunks.
pub(crate) fn auto_chunks(meta: &Meta) -> Vec<usize> {
    let n = meta.shape.len();
    let mut c: Vec<usize> = match &meta.chunk {
        Some(chunk) => chunk.iter().zip(&meta.shape).map(|(&c, &s)| c.min(s).max(1)).collect(),
        None => (0..n).map(|k| if k == 0 { 1 } else { meta.shape[k].max(1) }).collect(),
    };
    for k in (0..n).rev() {
        let others: usize = c.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &v)| v).product::<usize>() * meta.dtype.size();
        let fit = (AUTO_BLOCK_BYTES / others.max(1)).max(c[k]);
        let grown = (fit / c[k]) * c[k];
        c[k] = grown.min(meta.shape[k].max(1));
        if c[k] < meta.shape[k] {
            break;
        }
    }
    c
}

/// Reads block `index` (at `offset`, of `shape`) of `dataset` in the file `path`.
pub(crate) fn read_block(path: &Path, dataset: &str, meta: &Meta, index: &[usize], offset: &[usize], shape: &[usize]) -> Result<Block, String> {
    let at = || format!("block {index:?} of dataset {dataset:?} in {}", path.display());
    let ds = open(path, dataset).map_err(|e| format!("{}: the file {e}", at()))?;
    if ds.shape() != meta.shape {
        return Err(format!("{}: the dataset is now of shape {:?}, not {:?} (was the file rewritten?)", at(), ds.shape(), meta.shape));
    }
    fn read<T: hdf5::H5Type + Clone + Default>(ds: &hdf5::Dataset, offset: &[usize], shape: &[usize]) -> hdf5::Result<ArrayD<T>> {
        if shape.iter().product::<usize>() == 0 {
            return Ok(ArrayD::default(IxDyn(shape)));
        }
        if shape.is_empty() {
            return ds.read_dyn::<T>();
        }
        let slab: Vec<SliceOrIndex> = offset.iter().zip(shape).map(|(&start, &count)| SliceOrIndex::SliceCount { start, step: 1, count, block: 1 }).collect();
        ds.read_slice::<T, _, IxDyn>(Selection::from(Hyperslab::from(slab)))
    }
    let failed = |e: hdf5::Error| format!("{}: {e} (is the file damaged or truncated?)", at());
    Ok(match meta.dtype {
        DType::F64 => Block::F64(read(&ds, offset, shape).map_err(failed)?),
        DType::F32 => Block::F32(read(&ds, offset, shape).map_err(failed)?),
        DType::I64 => Block::I64(read(&ds, offset, shape).map_err(failed)?),
        DType::I32 => Block::I32(read(&ds, offset, shape).map_err(failed)?),
        DType::U8 => Block::U8(read(&ds, offset, shape).map_err(failed)?),
        DType::Bool => Block::Bool(read(&ds, offset, shape).map_err(failed)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_blocks_are_whole_storage_chunks_of_about_64_mib() {
        let meta = |shape: &[usize], chunk: Option<&[usize]>| Meta { dtype: DType::F64, shape: shape.to_vec(), chunk: chunk.map(<[usize]>::to_vec) };
        // 100 × 1,000 chunks of 800 KB: whole rows of the last axis, then 8 chunks down.
        assert_eq!(auto_chunks(&meta(&[100_000, 1_000], Some(&[100, 1_000]))), vec![8_300, 1_000]);
        assert_eq!(auto_chunks(&meta(&[100_000, 4_000], Some(&[100, 100]))), vec![2_000, 4_000]);
        // Contiguous: rows.
        assert_eq!(auto_chunks(&meta(&[50_000, 5_000], None)), vec![1_677, 5_000]);
        // Small datasets are one block.
        assert_eq!(auto_chunks(&meta(&[30, 20], Some(&[7, 7]))), vec![30, 20]);
        assert_eq!(auto_chunks(&meta(&[], None)), Vec::<usize>::new());
        assert_eq!(auto_chunks(&meta(&[0, 3], None)), vec![1, 3]);
    }
}
