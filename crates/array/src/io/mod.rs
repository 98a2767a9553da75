//! Arrays in files, read and written by the workers, each block by the task that uses or
//! makes it: `.npy` ([`npy`]), Zarr ([`zarr`]) and, with the `hdf5` feature, HDF5
//! datasets (`hdf5`, read only).
//!
//! The driver reads (or writes) only what describes the array (a header, metadata) and
//! the shape it gives; each block is then a [`FileArray`] region that its task reads, so
//! no block passes through the driver. The workers must see the path at the same place:
//! one machine, or a shared file system.

use std::path::{Path, PathBuf};

use chorus_tasks::Client;
use serde::{Deserialize, Serialize};

use crate::array::Array;
use crate::chunks::Chunks;
use crate::dtype::{Block, DType, Element};
use crate::{Error, Result};

#[cfg(feature = "hdf5")]
pub(crate) mod hdf5;
pub(crate) mod npy;
pub(crate) mod zarr;

/// A file (or directory) holding an array, as the driver found it: what a task needs to
/// read any block of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum FileArray {
    Npy { path: PathBuf, header: npy::Header },
    Zarr { path: PathBuf, meta: zarr::Meta },
    #[cfg(feature = "hdf5")]
    Hdf5 { path: PathBuf, dataset: String, meta: hdf5::Meta },
}

impl FileArray {
    /// The file (and dataset), for people.
    pub(crate) fn describe(&self) -> String {
        match self {
            FileArray::Npy { path, .. } | FileArray::Zarr { path, .. } => path.display().to_string(),
            #[cfg(feature = "hdf5")]
            FileArray::Hdf5 { path, dataset, .. } => format!("{}:{dataset}", path.display()),
        }
    }

    /// Reads block `index` (at `offset`, of `shape`); errors name the file and the block.
    pub(crate) fn read_block(&self, index: &[usize], offset: &[usize], shape: &[usize]) -> Result<Block, String> {
        match self {
            FileArray::Npy { path, header } => npy::read_block(path, header, index, offset, shape),
            FileArray::Zarr { path, meta } => zarr::read_block(path, meta, index, offset, shape),
            #[cfg(feature = "hdf5")]
            FileArray::Hdf5 { path, dataset, meta } => hdf5::read_block(path, dataset, meta, index, offset, shape),
        }
    }
}

/// `path` made absolute, so that workers started elsewhere find it.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::Io { path: path.to_path_buf(), detail: e.to_string() })
}

/// Refuses a file whose elements are not the `T` the array was asked for.
fn check_type<T: Element>(path: &Path, found: DType) -> Result<()> {
    if found != T::DTYPE {
        return Err(Error::Io { path: path.to_path_buf(), detail: format!("holds {found} elements, and the array was asked for as {}", T::DTYPE) });
    }
    Ok(())
}

/// The `.npy` file `path` as an array in blocks of `chunks`: the driver reads its header,
/// and each task that needs a block reads that block's bytes from the file. The workers
/// must see `path` (one machine, or a shared file system). The file's element type must
/// be `T`; a file that is not `.npy`, in Fortran order, of another type, or shorter than
/// its shape says is an error naming it.
pub fn read_npy<T: Element>(client: &Client, path: impl AsRef<Path>, chunks: &[usize]) -> Result<Array<T>> {
    let path = absolute(path.as_ref())?;
    let header = npy::read_header(&path)?;
    check_type::<T>(&path, header.dtype)?;
    let grid = Chunks::regular(&header.shape, chunks)?;
    Ok(Array::file(client, header.shape.clone(), grid, FileArray::Npy { path, header }))
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
pub fn read_zarr<T: Element>(client: &Client, path: impl AsRef<Path>, chunks: Option<&[usize]>) -> Result<Array<T>> {
    let path = absolute(path.as_ref())?;
    let meta = zarr::read_meta(&path)?;
    check_type::<T>(&path, meta.dtype)?;
    let grid = Chunks::regular(&meta.shape, chunks.unwrap_or(&meta.chunk))?;
    Ok(Array::file(client, meta.shape.clone(), grid, FileArray::Zarr { path, meta }))
}

/// The dataset `dataset` (a path inside the file, like `"/x"` or `"group/x"`) of the
/// HDF5 file `path`, in blocks of `chunks`, or with `None` in blocks of whole storage
/// chunks of about 64 MiB (rows of the last axes, for a contiguous dataset): the driver
/// reads what describes the dataset, and each task that needs a block opens the file
/// and reads that block's hyperslab. The workers must see `path`. The dataset's element
/// type must be `T` (HDF5's bool is h5py's). A file that is not HDF5, a dataset that is
/// not there or of another type, and a damaged file are errors naming the file (and the
/// block, for a read that fails in a task).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// use chorus_array as da;
/// let x = da::read_hdf5::<f64>(&client, "data/myfile.hdf5", "/x", None)?;
/// let total = x.sum()?.compute_scalar()?;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "hdf5")]
pub fn read_hdf5<T: Element>(client: &Client, path: impl AsRef<Path>, dataset: &str, chunks: Option<&[usize]>) -> Result<Array<T>> {
    let path = absolute(path.as_ref())?;
    let meta = hdf5::read_meta(&path, dataset)?;
    check_type::<T>(&path, meta.dtype)?;
    let auto = hdf5::auto_chunks(&meta);
    let grid = Chunks::regular(&meta.shape, chunks.unwrap_or(&auto))?;
    Ok(Array::file(client, meta.shape.clone(), grid, FileArray::Hdf5 { path, dataset: dataset.to_string(), meta }))
}
