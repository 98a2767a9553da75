//! Element types, and blocks as bytes.
//!
//! A block crosses between processes as one byte vector: a small header (element type,
//! number of axes, each axis's length) followed by the elements in row-major order, as
//! their bytes. It travels on the task layer's raw-bytes path, so a block is never
//! encoded element by element.

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// The element type of an array, as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// `f64`.
    F64,
    /// `f32`.
    F32,
    /// `i64`.
    I64,
    /// `i32`.
    I32,
    /// `u8`.
    U8,
    /// `bool`, stored as one byte (0 or 1).
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::U8 | DType::Bool => 1,
        }
    }

    fn code(self) -> u8 {
        match self {
            DType::F64 => 0,
            DType::F32 => 1,
            DType::I64 => 2,
            DType::I32 => 3,
            DType::U8 => 4,
            DType::Bool => 5,
        }
    }

    fn from_code(c: u8) -> Option<DType> {
        Some(match c {
            0 => DType::F64,
            1 => DType::F32,
            2 => DType::I64,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::Bool,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::Bool => "bool",
        })
    }
}

/// A type an [`Array`](crate::Array) can hold.
pub trait Element: Copy + Send + Sync + PartialOrd + std::fmt::Debug + 'static + private::Sealed {
    /// Its [`DType`].
    const DTYPE: DType;
    /// The type of its sums: 64-bit for small integers and bools, as in numpy.
    type Sum: Element;
    /// Zero (`false`).
    const ZERO: Self;
    /// One (`true`).
    const ONE: Self;
    /// The block of this type inside a [`Block`], if it is one.
    #[doc(hidden)]
    fn unwrap(block: Block) -> Option<ArrayD<Self>>;
    /// Wraps an array of this type.
    #[doc(hidden)]
    fn wrap(array: ArrayD<Self>) -> Block;
    /// The value as a [`Scalar`].
    #[doc(hidden)]
    fn scalar(self) -> Scalar;
    /// The value as an f64 (`true` is 1).
    fn as_f64(self) -> f64;
}

mod private {
    pub trait Sealed {}
}

/// A single value of any element type, as carried in block expressions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Scalar {
    F64(f64),
    F32(f32),
    I64(i64),
    I32(i32),
    U8(u8),
    Bool(bool),
}

/// A block of any element type: what kernels compute on.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Block {
    F64(ArrayD<f64>),
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
    Bool(ArrayD<bool>),
}

macro_rules! element {
    ($t:ty, $v:ident, $sum:ty, $zero:expr, $one:expr, $as_f64:expr) => {
        impl private::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            type Sum = $sum;
            const ZERO: Self = $zero;
            const ONE: Self = $one;
            fn unwrap(block: Block) -> Option<ArrayD<Self>> {
                match block {
                    Block::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn wrap(array: ArrayD<Self>) -> Block {
                Block::$v(array)
            }
            fn scalar(self) -> Scalar {
                Scalar::$v(self)
            }
            fn as_f64(self) -> f64 {
                ($as_f64)(self)
            }
        }
    };
}

element!(f64, F64, f64, 0.0, 1.0, |v: f64| v);
element!(f32, F32, f32, 0.0, 1.0, f64::from);
element!(i64, I64, i64, 0, 1, |v: i64| v as f64);
element!(i32, I32, i64, 0, 1, f64::from);
element!(u8, U8, i64, 0, 1, f64::from);
element!(bool, Bool, i64, false, true, |v: bool| if v { 1.0 } else { 0.0 });

/// Runs `$body` with `$a` bound to the array inside `$block`, whatever its type.
macro_rules! with_block {
    ($block:expr, $a:ident => $body:expr) => {
        match $block {
            $crate::dtype::Block::F64($a) => $body,
            $crate::dtype::Block::F32($a) => $body,
            $crate::dtype::Block::I64($a) => $body,
            $crate::dtype::Block::I32($a) => $body,
            $crate::dtype::Block::U8($a) => $body,
            $crate::dtype::Block::Bool($a) => $body,
        }
    };
}
pub(crate) use with_block;

impl Block {
    /// Its element type.
    pub fn dtype(&self) -> DType {
        match self {
            Block::F64(_) => DType::F64,
            Block::F32(_) => DType::F32,
            Block::I64(_) => DType::I64,
            Block::I32(_) => DType::I32,
            Block::U8(_) => DType::U8,
            Block::Bool(_) => DType::Bool,
        }
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        with_block!(self, a => a.shape())
    }

    /// Where the elements' bytes start in an encoded block of `ndim` axes.
    pub(crate) fn data_offset(ndim: usize) -> usize {
        2 + 8 * ndim
    }

    /// The header and the elements' bytes (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let shape = self.shape();
        let count: usize = shape.iter().product();
        let mut out = Vec::with_capacity(2 + 8 * shape.len() + count * self.dtype().size());
        out.push(self.dtype().code());
        out.push(shape.len() as u8);
        for d in shape {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        match self {
            Block::F64(a) => extend(&mut out, a),
            Block::F32(a) => extend(&mut out, a),
            Block::I64(a) => extend(&mut out, a),
            Block::I32(a) => extend(&mut out, a),
            Block::U8(a) => extend(&mut out, a),
            Block::Bool(a) => out.extend(a.iter().map(|b| u8::from(*b))),
        }
        out
    }

    /// Reads a block written by [`Block::encode`]; an error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Block, String> {
        let (&code, rest) = bytes.split_first().ok_or("an empty block")?;
        let dtype = DType::from_code(code).ok_or_else(|| format!("unknown element type {code}"))?;
        let (&ndim, rest) = rest.split_first().ok_or("a block without its number of axes")?;
        let ndim = usize::from(ndim);
        if rest.len() < 8 * ndim {
            return Err(format!("a block of {ndim} axes whose shape is cut short"));
        }
        let (dims, data) = rest.split_at(8 * ndim);
        let shape: Vec<usize> = dims
            .chunks_exact(8)
            .map(|d| usize::try_from(u64::from_le_bytes(d.try_into().expect("8 bytes"))).map_err(|_| "an axis too long".to_string()))
            .collect::<Result<_, _>>()?;
        Block::from_raw(dtype, &shape, data)
    }

    /// A block of `dtype` and `shape` from the bare bytes of its elements (what a task
    /// returning a `Vec` of numbers produces).
    pub fn from_raw(dtype: DType, shape: &[usize], data: &[u8]) -> Result<Block, String> {
        let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).ok_or("a shape too large")?;
        if count.checked_mul(dtype.size()) != Some(data.len()) {
            return Err(format!("a {dtype} block of shape {shape:?} needs {} bytes of data, found {}", count.saturating_mul(dtype.size()), data.len()));
        }
        let shape = IxDyn(shape);
        let build = |e: ndarray::ShapeError| e.to_string();
        Ok(match dtype {
            DType::F64 => Block::F64(ArrayD::from_shape_vec(shape, read::<f64>(data)).map_err(build)?),
            DType::F32 => Block::F32(ArrayD::from_shape_vec(shape, read::<f32>(data)).map_err(build)?),
            DType::I64 => Block::I64(ArrayD::from_shape_vec(shape, read::<i64>(data)).map_err(build)?),
            DType::I32 => Block::I32(ArrayD::from_shape_vec(shape, read::<i32>(data)).map_err(build)?),
            DType::U8 => Block::U8(ArrayD::from_shape_vec(shape, data.to_vec()).map_err(build)?),
            DType::Bool => {
                let values = data
                    .iter()
                    .map(|b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        other => Err(format!("a bool block holds the byte {other}")),
                    })
                    .collect::<Result<Vec<bool>, String>>()?;
                Block::Bool(ArrayD::from_shape_vec(shape, values).map_err(build)?)
            }
        })
    }
}

fn extend<T: bytemuck::Pod>(out: &mut Vec<u8>, a: &ArrayD<T>) {
    match a.as_slice() {
        Some(s) => out.extend_from_slice(bytemuck::cast_slice(s)),
        None => {
            for x in a.iter() {
                out.extend_from_slice(bytemuck::bytes_of(x));
            }
        }
    }
}

/// Elements from unaligned bytes.
fn read<T: bytemuck::Pod>(data: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); data.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(data);
    v
}
