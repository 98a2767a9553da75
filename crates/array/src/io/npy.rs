//! `.npy` files, read and written by the workers, each block its own byte ranges.
//!
//! The driver reads (or writes) only the header. A task that needs block `b` of a file
//! reads the rows of that block straight from the file (`pread`), and a task that writes
//! block `b` of an array writes its rows at their offsets (`pwrite`), so no block passes
//! through the driver and blocks are written in parallel by the workers that compute
//! them. The workers must see the file at the same path: one machine, or a shared file
//! system.
//!
//! The format is numpy's (version 1.0, or 2.0 for headers over 64 KiB): C order,
//! little-endian numbers, `bool` as one byte.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chorus_tasks::registry::{encode_result, Encoded};
use serde::{Deserialize, Serialize};

use crate::dtype::{Block, DType};
use crate::kernel::{self, entry, BlockPlan};
use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// What the header of a `.npy` file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Where the elements start.
    pub data_offset: u64,
}

fn descr(d: DType) -> &'static str {
    match d {
        DType::F64 => "<f8",
        DType::F32 => "<f4",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    }
}

/// Reads and checks the header of `path`.
pub(crate) fn read_header(path: &Path) -> Result<Header> {
    let bad = |what: String| Error::Io { path: path.to_path_buf(), detail: what };
    let file = File::open(path).map_err(|e| bad(format!("cannot be opened: {e}")))?;
    let mut head = [0u8; 12];
    let got = file.read_at(&mut head, 0).map_err(|e| bad(format!("cannot be read: {e}")))?;
    if got < 10 || &head[..6] != MAGIC {
        return Err(bad("is not a .npy file (it does not start with \\x93NUMPY)".into()));
    }
    let (len, start) = match head[6] {
        1 => (u64::from(u16::from_le_bytes([head[8], head[9]])), 10u64),
        2 | 3 if got == 12 => (u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])), 12u64),
        v => return Err(bad(format!("has .npy format version {v}, which chorus does not read"))),
    };
    if len > 1 << 20 {
        return Err(bad(format!("announces a header of {len} bytes, more than a .npy header can be")));
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact_at(&mut text, start).map_err(|e| bad(format!("ends inside its header: {e}")))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let dtype_text = field("descr").and_then(|r| r.strip_prefix('\'').and_then(|r| r.split('\'').next()).map(str::to_string));
    let dtype = match dtype_text.as_deref() {
        Some("<f8") => DType::F64,
        Some("<f4") => DType::F32,
        Some("<i8") => DType::I64,
        Some("<i4") => DType::I32,
        Some("|u1") | Some("<u1") => DType::U8,
        Some("|b1") => DType::Bool,
        other => return Err(bad(format!("holds elements of type {other:?}, which chorus arrays do not have (f64, f32, i64, i32, u8, bool, little-endian)"))),
    };
    match field("fortran_order") {
        Some(r) if r.starts_with("False") => {}
        Some(r) if r.starts_with("True") => {
            return Err(bad("is in Fortran order; save it in C order (numpy.ascontiguousarray) to read it in blocks".into()));
        }
        _ => return Err(bad("has a header without fortran_order".into())),
    }
    let shape_text = field("shape").and_then(|r| r.strip_prefix('(').and_then(|r| r.split(')').next()).map(str::to_string));
    let shape = shape_text
        .ok_or_else(|| bad("has a header without a shape".into()))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(format!("has a shape with the length {s:?}"))))
        .collect::<Result<Vec<_>>>()?;
    let header = Header { dtype, shape, data_offset: start + len };
    let count = header.shape.iter().try_fold(1u64, |n, d| n.checked_mul(*d as u64)).ok_or_else(|| bad("has a shape too large".into()))?;
    let want = header.data_offset + count * dtype.size() as u64;
    let size = file.metadata().map_err(|e| bad(format!("cannot be read: {e}")))?.len();
    if size < want {
        return Err(bad(format!("is truncated: its shape {:?} of {dtype} needs {want} bytes, the file has {size}", header.shape)));
    }
    Ok(header)
}

/// Writes the header of an array of `dtype` and `shape` to a new file at `path`, sized
/// for its elements.
pub(crate) fn create(path: &Path, dtype: DType, shape: &[usize]) -> Result<Header> {
    let bad = |e: std::io::Error| Error::Io { path: path.to_path_buf(), detail: format!("cannot be written: {e}") };
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {tuple}, }}", descr(dtype));
    let (version, prefix) = if dict.len() + 11 < 65_536 { (1u8, 10) } else { (2u8, 12) };
    // Padded with spaces and a newline so that the data starts on a multiple of 64.
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    dict.push_str(&" ".repeat(total - prefix - dict.len() - 1));
    dict.push('\n');
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&[version, 0]);
    if version == 1 {
        head.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        head.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    head.extend_from_slice(dict.as_bytes());
    let file = File::create(path).map_err(bad)?;
    file.write_all_at(&head, 0).map_err(bad)?;
    let count: u64 = shape.iter().map(|&d| d as u64).product();
    file.set_len(head.len() as u64 + count * dtype.size() as u64).map_err(bad)?;
    Ok(Header { dtype, shape: shape.to_vec(), data_offset: head.len() as u64 })
}

/// The runs of consecutive bytes of block (`offset`, `shape`) of an array of `full`
/// shape: for each, where it starts among the elements and how many elements it has.
fn runs(full: &[usize], offset: &[usize], shape: &[usize]) -> Vec<(u64, usize)> {
    let n = full.len();
    if n == 0 {
        return vec![(0, 1)];
    }
    if shape.contains(&0) {
        return Vec::new();
    }
    // Trailing axes the block covers whole are read with the axis before them.
    let mut k = n - 1;
    while k > 0 && shape[k] == full[k] {
        k -= 1;
    }
    let run: usize = shape[k..].iter().product();
    let mut strides = vec![1u64; n];
    for j in (0..n - 1).rev() {
        strides[j] = strides[j + 1] * full[j + 1] as u64;
    }
    let mut out = Vec::new();
    let mut idx = vec![0usize; k];
    loop {
        let start: u64 = (0..k).map(|j| (offset[j] + idx[j]) as u64 * strides[j]).sum::<u64>() + offset[k] as u64 * strides[k];
        out.push((start, run));
        let mut j = k;
        loop {
            if j == 0 {
                return out;
            }
            j -= 1;
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
}

/// Reads block (`offset`, `shape`) of the file `path` described by `header`.
pub(crate) fn read_block(path: &Path, header: &Header, index: &[usize], offset: &[usize], shape: &[usize]) -> Result<Block, String> {
    let size = header.dtype.size();
    let file = File::open(path).map_err(|e| format!("block {index:?} of {}: the file cannot be opened: {e}", path.display()))?;
    let count: usize = shape.iter().product();
    let mut data = vec![0u8; count * size];
    let mut at = 0;
    for (start, len) in runs(&header.shape, offset, shape) {
        let bytes = &mut data[at..at + len * size];
        file.read_exact_at(bytes, header.data_offset + start * size as u64).map_err(|e| {
            format!("block {index:?} of {}: {e} (was the file changed or truncated after it was opened?)", path.display())
        })?;
        at += len * size;
    }
    Block::from_raw(header.dtype, shape, &data).map_err(|e| format!("block {index:?} of {}: {e}", path.display()))
}

/// What a writing task needs besides its argument blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WritePlan {
    pub block: BlockPlan,
    pub path: PathBuf,
    pub header: Header,
    pub index: Vec<usize>,
    pub offset: Vec<usize>,
}

entry! {
    /// The registered function that computes a block and writes it into a `.npy` file.
    WriteBlock, "chorus_array::write_npy_block", write_entry
}

fn write_entry(args: &[&[u8]]) -> Encoded {
    let (plan, blocks): (WritePlan, _) = kernel::plan_of(args, "a writing task")?;
    let block = kernel::run_plan(&plan.block, blocks)?;
    let encoded = block.encode();
    // The elements follow the header that `encode` puts first.
    let data = &encoded[Block::data_offset(block.shape().len())..];
    let (path, size) = (&plan.path, plan.header.dtype.size());
    let failed = |e: std::io::Error| kernel::fault(format!("writing block {:?} of {}: {e}", plan.index, path.display()));
    let file = std::fs::OpenOptions::new().write(true).open(path).map_err(failed)?;
    let mut at = 0;
    for (start, len) in runs(&plan.header.shape, &plan.offset, block.shape()) {
        file.write_all_at(&data[at..at + len * size], plan.header.data_offset + start * size as u64).map_err(failed)?;
        at += len * size;
    }
    encode_result(Vec::<u8>::new())
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_cover_a_block_row_by_row_and_merge_whole_trailing_axes() {
        assert_eq!(runs(&[4, 6], &[1, 2], &[2, 3]), vec![(8, 3), (14, 3)]);
        assert_eq!(runs(&[4, 6], &[2, 0], &[2, 6]), vec![(12, 12)]);
        assert_eq!(runs(&[2, 3, 4], &[0, 1, 0], &[2, 2, 4]), vec![(4, 8), (16, 8)]);
        assert_eq!(runs(&[5], &[3], &[2]), vec![(3, 2)]);
        assert_eq!(runs(&[], &[], &[]), vec![(0, 1)]);
        assert!(runs(&[4, 0], &[0, 0], &[4, 0]).is_empty());
    }
}
