//! Chunked n-dimensional arrays on a chorus cluster: the `dask.array` of chorus.
//!
//! An [`Array`] is a grid of ndarray blocks that live on the workers. Every operation
//! builds a lazy expression; nothing runs until [`Array::compute`] (bring the result to
//! the driver), [`Array::compute_scalar`] or [`Array::persist`] (keep the blocks on the
//! workers). Then each output block is one task that evaluates the whole chain of
//! elementwise operations for that block, so `(&(&x + &x.t()) * 2.0).sum()` is one
//! round of tasks and a small tree of combining tasks, not five rounds of temporaries.
//!
//! - **Creation**: [`zeros`], [`ones`], [`full`], [`arange`], [`linspace`], [`eye`],
//!   [`random::uniform`] and [`random::normal`] describe arrays whose blocks are made in
//!   the tasks that use them, so they never occupy memory between tasks (random blocks
//!   are seeded per block: the values do not depend on the number of workers);
//!   [`from_ndarray`] cuts an array in the driver into blocks and scatters them;
//!   [`from_futures`] takes blocks that the user's tasks made on the workers.
//! - **Joining**: [`concatenate`] and [`stack`].
//! - **Files**: [`read_npy`] and [`Array::to_npy`] (each block its own byte ranges of
//!   the file), [`read_zarr`] and [`Array::to_zarr`] (Zarr v3 through `zarrs`, a block
//!   per chunk), each block read and written by the task that uses or computes it.
//! - **Slicing**: [`Array::slice`] with ndarray's `s![…]`, computing only the blocks the
//!   slice touches.
//! - **Elementwise**: `+ - * /` (operators, or `try_add`… for an error instead of a
//!   panic), [`Array::pow`], negation, [`Array::abs`], [`Array::sqrt`], [`Array::exp`],
//!   [`Array::ln`], comparisons ([`Array::lt`]…), [`where_`], [`Array::astype`], all with
//!   numpy's broadcasting rules between arrays and with scalars.
//! - **Axes**: [`Array::t`], [`Array::transpose`], [`Array::swap_axes`], which reorder
//!   blocks and cost nothing until the blocks are used.
//! - **Reductions**: `sum`, `min`, `max`, `mean`, `var`, `std` over all axes or given
//!   axes, and `argmin`/`argmax` over all axes or one, as trees of tasks with a fan-in
//!   of [`Array::split_every`].
//! - **Products**: [`Array::dot`] of 2-D arrays, each block product on OpenBLAS when
//!   the machine has it (`libopenblas.so.0`, loaded at run time), else on
//!   matrixmultiply.
//! - **Blocks**: [`Array::rechunk`], [`Array::reshape`] and [`Array::map_blocks`].
//! - **Element types**: `f64`, `f32`, `i64`, `i32`, `u8` and `bool` ([`Element`]) for
//!   arithmetic; any plain-data type ([`bytemuck::Pod`]: a `#[repr(C)]` struct, `u16`,
//!   `[f32; 3]`…) in a [`PodArray`], which slices, transposes, reshapes, rechunks, joins
//!   and persists like the others and becomes numbers through [`PodArray::map_blocks`];
//!   any serde type, of any size (`String`, a user's enum…), in a [`SerdeArray`], whose
//!   operations each run one task per new block (Dask's `object` arrays), once the type
//!   is registered with [`serde_element!`].
//!
//! Shapes that do not broadcast, chunks that do not line up, axes out of range and
//! operations a type does not have are errors when the expression is built, before any
//! task runs, and name the shapes involved.
//!
//! Blocks cross between processes as their bytes ([`Block::encode`]): a header and the
//! elements, on the task layer's raw-bytes path.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
//! # let client = cluster.client();
//! use chorus_array as da;
//! let x = da::random::uniform(&client, &[20_000, 20_000], &[5_000, 5_000], 42)?;
//! let y = &x + &x.t();
//! println!("{y}");
//! let total = y.sum()?.compute_scalar()?;
//! # let _ = total;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod array;
mod chunks;
mod create;
mod dtype;
mod error;
mod graph;
mod io;
mod kernel;
mod pod;
pub mod random;
mod reshape;
mod serde_array;

/// The ndarray crate, whose arrays [`Array::compute`] returns and whose `s!` macro
/// [`Array::slice`] takes.
pub use ndarray;

/// The bytemuck crate, whose `Pod` the elements of a [`PodArray`] implement.
pub use bytemuck;

pub use array::{concatenate, stack, where_, Array, Operand, SPLIT_EVERY};
pub use chunks::Chunks;
pub use create::{arange, eye, from_futures, from_ndarray, full, linspace, ones, zeros};
#[cfg(feature = "hdf5")]
pub use io::read_hdf5;
pub use io::{read_npy, read_zarr};
pub use pod::{PodArray, PodBlock};
pub use serde_array::{SerdeArray, SerdeElement};

#[doc(hidden)]
pub use serde_array::private as __private;
pub use dtype::{Block, DType, Element, Scalar};
pub use error::{Error, Result};
