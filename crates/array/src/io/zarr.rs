//! Zarr arrays (version 3, and version 2 for reading) through the `zarrs` crate, read
//! and written by the workers, each block by the task that uses or makes it.
//!
//! The driver reads (or writes) only the array's metadata (`zarr.json`). A task that
//! needs block `b` opens the array and reads that block's region, decoding only the
//! chunks it overlaps; a task that writes block `b` encodes it as chunk `b` and stores
//! it, so no block passes through the driver and the workers that hold the blocks
//! write them in parallel. Written arrays are chunked like the chorus array (one chunk
//! per block), with the `bytes` codec and zstd, as zarr-python writes by default.
//! The workers must see the path: one machine, or a shared file system.
//!
//! Codecs read: `bytes`, `transpose`, `sharding_indexed`, `zstd`, `gzip`, `crc32c`.
//! Blosc (the default of zarr version 2) is not built in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chorus_tasks::registry::{encode_result, Encoded};
use serde::{Deserialize, Serialize};
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{data_type, ArrayBuilder, ArrayBytes, ArrayMetadata, ArraySubset, DataType, FillValue};
use zarrs::filesystem::FilesystemStore;

use crate::dtype::{Block, DType};
use crate::kernel::{self, entry, BlockPlan};
use crate::{Error, Result};

/// What the driver learned from an array's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The shape of its (first) chunk: the blocks a read uses unless told otherwise.
    pub chunk: Vec<usize>,
    /// Its `zarr.json` (or v2 metadata) as JSON, so that the tasks open the array
    /// without reading the metadata again.
    pub metadata: String,
}

fn zarr_type(d: DType) -> DataType {
    match d {
        DType::F64 => data_type::float64(),
        DType::F32 => data_type::float32(),
        DType::I64 => data_type::int64(),
        DType::I32 => data_type::int32(),
        DType::U8 => data_type::uint8(),
        DType::Bool => data_type::bool(),
    }
}

fn zero(d: DType) -> FillValue {
    match d {
        DType::F64 => FillValue::from(0f64),
        DType::F32 => FillValue::from(0f32),
        DType::I64 => FillValue::from(0i64),
        DType::I32 => FillValue::from(0i32),
        DType::U8 => FillValue::from(0u8),
        DType::Bool => FillValue::from(false),
    }
}

type Handle = zarrs::array::Array<FilesystemStore>;

/// Opens the array at `path`, whose metadata is `zarr.json` (or `.zarray`) there.
fn open(path: &Path) -> std::result::Result<Handle, String> {
    let store = FilesystemStore::new(path).map_err(|e| format!("cannot be opened: {e}"))?;
    Handle::open(Arc::new(store), "/").map_err(|e| format!("is not a Zarr array chorus can read: {e}"))
}

/// The array at `path` whose metadata the driver read (`metadata`, as JSON).
fn with_metadata(path: &Path, metadata: &str) -> std::result::Result<Handle, String> {
    let store = FilesystemStore::new(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let metadata: ArrayMetadata = serde_json::from_str(metadata).map_err(|e| format!("metadata does not decode: {e}"))?;
    Handle::new_with_metadata(Arc::new(store), "/", metadata).map_err(|e| format!("is not a Zarr array chorus can read: {e}"))
}

/// The metadata of `array` as JSON.
fn metadata_of(array: &Handle) -> String {
    serde_json::to_string(array.metadata()).expect("Zarr metadata is JSON")
}

/// Reads and checks the metadata of the array at `path`.
pub(crate) fn read_meta(path: &Path) -> Result<Meta> {
    let bad = |detail: String| Error::Io { path: path.to_path_buf(), detail };
    if !path.is_dir() {
        return Err(bad("is not a directory; a Zarr array is a directory holding zarr.json".into()));
    }
    let array = open(path).map_err(bad)?;
    let dtype = [DType::F64, DType::F32, DType::I64, DType::I32, DType::U8, DType::Bool]
        .into_iter()
        .find(|d| zarr_type(*d) == *array.data_type())
        .ok_or_else(|| bad(format!("holds elements of type {}, which chorus arrays do not take", array.data_type())))?;
    let shape = to_usize(array.shape()).ok_or_else(|| bad(format!("has a shape too large for this machine: {:?}", array.shape())))?;
    let origin = vec![0; shape.len()];
    let chunk = array
        .chunk_shape(&origin)
        .ok()
        .and_then(|c| to_usize(&c.iter().map(|n| n.get()).collect::<Vec<_>>()))
        .ok_or_else(|| bad("has no regular chunk grid; pass the chunks to read it in".into()))?;
    Ok(Meta { dtype, shape, chunk, metadata: metadata_of(&array) })
}

/// The region of a block at `offset` of `shape`.
fn ranges(offset: &[usize], shape: &[usize]) -> Vec<std::ops::Range<u64>> {
    offset.iter().zip(shape).map(|(&o, &n)| o as u64..(o + n) as u64).collect()
}

fn to_usize(v: &[u64]) -> Option<Vec<usize>> {
    v.iter().map(|&n| usize::try_from(n).ok()).collect()
}

/// Writes the metadata of a new array at `path`, chunked `chunk`, and gives it as JSON;
/// `path` must not exist yet.
pub(crate) fn create(path: &Path, dtype: DType, shape: &[usize], chunk: &[usize]) -> Result<String> {
    let bad = |detail: String| Error::Io { path: path.to_path_buf(), detail };
    if path.exists() {
        return Err(bad("already exists; to_zarr writes a new array (remove it, or choose another path)".into()));
    }
    std::fs::create_dir_all(path).map_err(|e| bad(format!("cannot be made: {e}")))?;
    let store = FilesystemStore::new(path).map_err(|e| bad(format!("cannot be opened: {e}")))?;
    // Zarr chunks are never empty: an axis of length 0 still has chunks of length 1.
    let chunk: Vec<u64> = chunk.iter().map(|&c| c.max(1) as u64).collect();
    let array = ArrayBuilder::new(shape.iter().map(|&n| n as u64).collect::<Vec<_>>(), chunk, zarr_type(dtype), zero(dtype))
        .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(1, false))])
        .build(Arc::new(store), "/")
        .map_err(|e| bad(format!("cannot be described as a Zarr array: {e}")))?;
    array.store_metadata().map_err(|e| bad(format!("cannot be written: {e}")))?;
    Ok(metadata_of(&array))
}

/// Reads block `index` (at `offset`, of `shape`) of the array at `path`.
pub(crate) fn read_block(path: &Path, meta: &Meta, index: &[usize], offset: &[usize], shape: &[usize]) -> Result<Block, String> {
    let at = || format!("block {index:?} of {}", path.display());
    let array = with_metadata(path, &meta.metadata).map_err(|e| format!("{}: the array {e}", at()))?;
    let bytes: ArrayBytes<'static> = array
        .retrieve_array_subset_opt(&ArraySubset::new_with_ranges(&ranges(offset, shape)), &one_thread())
        .map_err(|e| format!("{}: {e} (is a chunk file damaged or truncated?)", at()))?;
    let data = bytes.into_fixed().map_err(|e| format!("{}: {e}", at()))?;
    Block::from_raw(meta.dtype, shape, &data).map_err(|e| format!("{}: {e}", at()))
}

/// Codec options for one task: the tasks already use every core, so `zarrs` decodes and
/// encodes a block on the task's own thread.
fn one_thread() -> zarrs::array::CodecOptions {
    zarrs::array::CodecOptions::default().with_concurrent_target(1)
}

/// What a writing task needs besides its argument blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WritePlan {
    pub block: BlockPlan,
    pub path: PathBuf,
    /// The array's metadata as JSON.
    pub metadata: String,
    /// The block's index, which is its chunk's.
    pub index: Vec<usize>,
    pub offset: Vec<usize>,
}

entry! {
    /// The registered function that computes a block and stores it as a Zarr chunk.
    WriteBlock, "chorus_array::write_zarr_block", write_entry
}

fn write_entry(args: &[&[u8]]) -> Encoded {
    let (plan, blocks): (WritePlan, _) = kernel::plan_of(args, "a Zarr writing task")?;
    let block = kernel::run_plan(&plan.block, blocks)?;
    let failed = |e: String| kernel::fault(format!("writing block {:?} of {}: {e}", plan.index, plan.path.display()));
    let array = with_metadata(&plan.path, &plan.metadata).map_err(|e| failed(format!("the array {e}")))?;
    let encoded = block.encode();
    let data = ArrayBytes::new_flen(&encoded[Block::data_offset(block.shape().len())..]);
    // A block is its chunk, or the part of it inside the array for the last chunk along
    // an axis (which Zarr stores whole, with the fill value outside).
    let region = ArraySubset::new_with_ranges(&ranges(&plan.offset, block.shape()));
    array.store_array_subset_opt(&region, data, &one_thread()).map_err(|e| failed(e.to_string()))?;
    encode_result(Vec::<u8>::new())
}
