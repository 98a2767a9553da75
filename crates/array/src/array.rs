//! The array type: its constructors for the crate, the operations users call, and what
//! it shows. Every operation builds a new [`Data`] (see `graph`); nothing runs until
//! [`Array::compute`], [`Array::persist`], [`Array::to_npy`] and the like.

use std::marker::PhantomData;
use std::sync::Arc;

use chorus_tasks::{ArgValue, Client, Future};
use ndarray::{ArrayD, IxDyn, SliceInfoElem};

use crate::chunks::Chunks;
use crate::dtype::{Block, DType, Element, Scalar};
use crate::graph::{submit, Build, Concat, Data, Dot, LeafKind};
use crate::kernel::{BinaryOp, Expr, Generator, ReduceOp, Then, UnaryOp};
use crate::{Error, Result};

/// The fan-in of reduction trees unless told otherwise ([`Array::split_every`]).
pub const SPLIT_EVERY: usize = 8;

/// A chunked n-dimensional array of `T` on a chorus cluster (see the crate documentation).
pub struct Array<T: Element> {
    client: Client,
    pub(crate) data: Data,
    split_every: usize,
    _t: PhantomData<T>,
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { client: self.client.clone(), data: self.data.clone(), split_every: self.split_every, _t: PhantomData }
    }
}

/// The right-hand side of an elementwise operation: an array or a single value.
pub enum Operand<'a, T: Element> {
    /// An array (broadcast against the other side).
    Array(&'a Array<T>),
    /// A value.
    Scalar(T),
}

impl<'a, T: Element> From<&'a Array<T>> for Operand<'a, T> {
    fn from(a: &'a Array<T>) -> Self {
        Operand::Array(a)
    }
}

macro_rules! scalar_operand {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand<'_, $t> {
            fn from(v: $t) -> Self {
                Operand::Scalar(v)
            }
        }
    )*};
}
scalar_operand!(f64, f32, i64, i32, u8, bool);

impl<T: Element> Array<T> {
    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn from_data(client: &Client, data: Data) -> Array<T> {
        Array { client: client.clone(), data, split_every: SPLIT_EVERY, _t: PhantomData }
    }

    fn derive<U: Element>(&self, data: Data) -> Array<U> {
        Array { client: self.client.clone(), data, split_every: self.split_every, _t: PhantomData }
    }

    pub(crate) fn generated(client: &Client, shape: &[usize], chunks: Chunks, generator: Generator, dtype: DType) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Generated(generator), shape.to_vec(), chunks, dtype))
    }

    pub(crate) fn stored(client: &Client, shape: &[usize], chunks: Chunks, blocks: Vec<Future<Vec<u8>>>) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Stored(Arc::new(blocks)), shape.to_vec(), chunks, T::DTYPE))
    }

    pub(crate) fn file(client: &Client, shape: Vec<usize>, chunks: Chunks, file: crate::io::FileArray) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::File(Arc::new(file)), shape, chunks, T::DTYPE))
    }

    pub(crate) fn raw(client: &Client, shape: &[usize], chunks: Chunks, slot: Arc<dyn Fn(usize) -> ArgValue + Send + Sync>) -> Array<T> {
        Array::from_data(client, Data::leaf(LeafKind::Raw(slot), shape.to_vec(), chunks, T::DTYPE))
    }

    /// The length of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.data.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.data.shape.len()
    }

    /// How the array is cut into blocks.
    pub fn chunks(&self) -> &Chunks {
        &self.data.chunks
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// Elements in all.
    pub fn len(&self) -> usize {
        self.data.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tasks a [`compute`](Array::compute) would run now.
    pub fn task_count(&self) -> usize {
        self.data.task_count()
    }

    /// The same array whose reductions combine `n` partials per task (at least 2;
    /// [`SPLIT_EVERY`] by default), like Dask's `split_every`.
    pub fn split_every(mut self, n: usize) -> Result<Array<T>> {
        if n < 2 {
            return Err(Error::Invalid(format!("split_every must be at least 2, not {n}")));
        }
        self.split_every = n;
        Ok(self)
    }

    fn operand(&self, op: BinaryOp, rhs: Operand<'_, T>) -> Result<Data> {
        match rhs {
            Operand::Array(b) => self.data.binary(op, &b.data),
            Operand::Scalar(s) => Ok(self.data.scalar(op, s.scalar(), false)),
        }
    }

    fn numeric(&self, what: &str) -> Result<()> {
        if T::DTYPE == DType::Bool {
            return Err(Error::Invalid(format!("{what} of a bool array (shape {:?}); cast it with astype first", self.data.shape)));
        }
        Ok(())
    }

    /// `self + rhs`, elementwise with broadcasting.
    pub fn try_add<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a sum")?;
        Ok(self.derive(self.operand(BinaryOp::Add, rhs.into())?))
    }

    /// `self - rhs`, elementwise with broadcasting.
    pub fn try_sub<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a difference")?;
        Ok(self.derive(self.operand(BinaryOp::Sub, rhs.into())?))
    }

    /// `self * rhs`, elementwise with broadcasting.
    pub fn try_mul<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a product")?;
        Ok(self.derive(self.operand(BinaryOp::Mul, rhs.into())?))
    }

    /// `self / rhs`, elementwise with broadcasting (integer division by zero gives 0).
    pub fn try_div<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a quotient")?;
        Ok(self.derive(self.operand(BinaryOp::Div, rhs.into())?))
    }

    /// `self ** rhs`, elementwise with broadcasting.
    pub fn pow<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<T>> {
        self.numeric("a power")?;
        Ok(self.derive(self.operand(BinaryOp::Pow, rhs.into())?))
    }

    /// `rhs - self` for a value `rhs` (`1.0 - x`).
    pub fn rsub(&self, lhs: T) -> Result<Array<T>> {
        self.numeric("a difference")?;
        Ok(self.derive(self.data.scalar(BinaryOp::Sub, lhs.scalar(), true)))
    }

    /// `rhs / self` for a value `rhs` (`1.0 / x`).
    pub fn rdiv(&self, lhs: T) -> Result<Array<T>> {
        self.numeric("a quotient")?;
        Ok(self.derive(self.data.scalar(BinaryOp::Div, lhs.scalar(), true)))
    }

    /// `self < rhs`, elementwise.
    pub fn lt<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Lt, rhs.into())?))
    }

    /// `self <= rhs`, elementwise.
    pub fn le<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Le, rhs.into())?))
    }

    /// `self > rhs`, elementwise.
    pub fn gt<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Gt, rhs.into())?))
    }

    /// `self >= rhs`, elementwise.
    pub fn ge<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Ge, rhs.into())?))
    }

    /// `self == rhs`, elementwise.
    pub fn eq_elem<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Eq, rhs.into())?))
    }

    /// `self != rhs`, elementwise.
    pub fn ne_elem<'a>(&self, rhs: impl Into<Operand<'a, T>>) -> Result<Array<bool>> {
        Ok(self.derive(self.operand(BinaryOp::Ne, rhs.into())?))
    }

    /// `-self` (integers wrap).
    pub fn try_neg(&self) -> Result<Array<T>> {
        if matches!(T::DTYPE, DType::Bool | DType::U8) {
            return Err(Error::Invalid(format!("negation of a {} array (shape {:?})", T::DTYPE, self.data.shape)));
        }
        Ok(self.derive(self.data.unary(UnaryOp::Neg)))
    }

    /// `|self|`.
    pub fn abs(&self) -> Result<Array<T>> {
        self.numeric("abs")?;
        Ok(self.derive(self.data.unary(UnaryOp::Abs)))
    }

    fn float(&self, op: UnaryOp) -> Result<Array<T>> {
        if !matches!(T::DTYPE, DType::F64 | DType::F32) {
            return Err(Error::Invalid(format!("{op:?} of a {} array (shape {:?}); cast it with astype::<f64>() first", T::DTYPE, self.data.shape)));
        }
        Ok(self.derive(self.data.unary(op)))
    }

    /// The square root of each element (floats).
    pub fn sqrt(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Sqrt)
    }

    /// `e` to the power of each element (floats).
    pub fn exp(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Exp)
    }

    /// The natural logarithm of each element (floats).
    pub fn ln(&self) -> Result<Array<T>> {
        self.float(UnaryOp::Log)
    }

    /// Each element converted to `U`, like numpy's `astype` (`as` casts; numbers are
    /// `true` unless zero).
    pub fn astype<U: Element>(&self) -> Array<U> {
        self.derive(self.data.cast(U::DTYPE))
    }

    /// The axes reversed (`x.T`).
    pub fn t(&self) -> Array<T> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.derive(self.data.transposed(&perm).expect("a reversal is a permutation"))
    }

    /// The axes in the order `perm` gives: axis `k` of the result is axis `perm[k]`.
    pub fn transpose(&self, perm: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.transposed(perm)?))
    }

    /// Axes `a` and `b` exchanged.
    pub fn swap_axes(&self, a: usize, b: usize) -> Result<Array<T>> {
        self.data.check_axes(&[a, b])?;
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        self.transpose(&perm)
    }

    /// The same elements in the shape `shape`, in C order (numpy's `reshape`); the
    /// element count must stay the same.
    ///
    /// Each new block is one old block with its elements rearranged, so the blocks keep
    /// their sizes. Where the old blocks do not hold whole rows of the axes being merged
    /// or split, the array is first rechunked to the nearest blocks that do, as Dask's
    /// `reshape` does (see [`Array::rechunk`]): merging axes needs the trailing merged
    /// axes in one block, splitting an axis needs blocks along it that are multiples of
    /// the new trailing axes, and axes that are regrouped otherwise (`[6, 4]` into
    /// `[4, 6]`) are taken in one block.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
    /// # let client = cluster.client();
    /// use chorus_array as da;
    /// let x = da::arange(&client, 0i64, 24, 1, 6)?;     // blocks of 6
    /// let m = x.reshape(&[4, 6])?;                       // blocks of one row each
    /// assert_eq!(m.chunks().axes(), &[vec![1, 1, 1, 1], vec![6]]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reshape(&self, shape: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.reshaped(shape)?))
    }

    /// The part `info` selects, written with ndarray's `s!` macro: `x.slice(s![..10,
    /// ..10])`. Ranges (with positive steps), single indexes (which remove their axis)
    /// and `NewAxis` are allowed; a range or index beyond an axis is an error. Only the
    /// blocks the slice touches are computed.
    pub fn slice<I: AsRef<[SliceInfoElem]>>(&self, info: I) -> Result<Array<T>> {
        Ok(self.derive(self.data.sliced(info.as_ref())?))
    }

    fn all_axes(&self) -> Vec<usize> {
        (0..self.ndim()).collect()
    }

    /// The sum of all elements (a 0-d array; [`Array::compute_scalar`] gives the value).
    pub fn sum(&self) -> Result<Array<T::Sum>> {
        self.sum_axes(&self.all_axes())
    }

    /// The sums over `axes`, which are removed.
    pub fn sum_axes(&self, axes: &[usize]) -> Result<Array<T::Sum>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Sum, axes, self.split_every)?))
    }

    /// The smallest element (NaN if there is one).
    pub fn min(&self) -> Result<Array<T>> {
        self.min_axes(&self.all_axes())
    }

    /// The smallest elements over `axes`, which are removed.
    pub fn min_axes(&self, axes: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Min, axes, self.split_every)?))
    }

    /// The largest element (NaN if there is one).
    pub fn max(&self) -> Result<Array<T>> {
        self.max_axes(&self.all_axes())
    }

    /// The largest elements over `axes`, which are removed.
    pub fn max_axes(&self, axes: &[usize]) -> Result<Array<T>> {
        Ok(self.derive(self.data.reduced(ReduceOp::Max, axes, self.split_every)?))
    }

    /// The flat (row-major) index of the smallest element, its first occurrence; a NaN
    /// counts as the smallest, as in numpy.
    pub fn argmin(&self) -> Result<Array<i64>> {
        Ok(self.derive(self.data.reduced(ReduceOp::ArgMin, &self.all_axes(), self.split_every)?))
    }

    /// The index along `axis` of the smallest element of each lane; `axis` is removed.
    pub fn argmin_axis(&self, axis: usize) -> Result<Array<i64>> {
        Ok(self.derive(self.data.reduced(ReduceOp::ArgMin, &[axis], self.split_every)?))
    }

    /// The flat (row-major) index of the largest element, its first occurrence; a NaN
    /// counts as the largest, as in numpy.
    pub fn argmax(&self) -> Result<Array<i64>> {
        Ok(self.derive(self.data.reduced(ReduceOp::ArgMax, &self.all_axes(), self.split_every)?))
    }

    /// The index along `axis` of the largest element of each lane; `axis` is removed.
    pub fn argmax_axis(&self, axis: usize) -> Result<Array<i64>> {
        Ok(self.derive(self.data.reduced(ReduceOp::ArgMax, &[axis], self.split_every)?))
    }

    /// The mean of all elements, in f64.
    pub fn mean(&self) -> Result<Array<f64>> {
        self.mean_axes(&self.all_axes())
    }

    /// The means over `axes`, which are removed, in f64.
    pub fn mean_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        let axes = self.data.check_axes(axes)?;
        let n: usize = axes.iter().map(|&a| self.data.shape[a]).product();
        let sums = self.data.cast(DType::F64).reduced(ReduceOp::Sum, &axes, self.split_every)?;
        Ok(self.derive(sums.scalar(BinaryOp::Div, Scalar::F64(n as f64), false)))
    }

    /// The variance of all elements (divided by the count, numpy's `ddof=0`), in f64.
    pub fn var(&self) -> Result<Array<f64>> {
        self.var_axes(&self.all_axes())
    }

    /// The variances over `axes`, which are removed, in f64. Two passes over the data
    /// (the mean, then the squared deviations from it), which is exact where one pass
    /// of sums and sums of squares loses digits.
    pub fn var_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        let axes = self.data.check_axes(axes)?;
        let n: usize = axes.iter().map(|&a| self.data.shape[a]).product();
        let x = self.data.cast(DType::F64);
        let mean = self.mean_axes(&axes)?.data.with_axes_at(&axes);
        let dev = x.binary(BinaryOp::Sub, &mean)?;
        let squares = dev.binary(BinaryOp::Mul, &dev)?;
        let total = squares.reduced(ReduceOp::Sum, &axes, self.split_every)?;
        Ok(self.derive(total.scalar(BinaryOp::Div, Scalar::F64(n as f64), false)))
    }

    /// The standard deviation of all elements (`ddof=0`), in f64.
    pub fn std(&self) -> Result<Array<f64>> {
        self.var()?.sqrt()
    }

    /// The standard deviations over `axes`, which are removed, in f64.
    pub fn std_axes(&self, axes: &[usize]) -> Result<Array<f64>> {
        self.var_axes(axes)?.sqrt()
    }

    /// The matrix product of two 2-D arrays: block `(i, j)` of the result is the sum over
    /// `k` of the products of blocks `(i, k)` and `(k, j)`, each a task (matrixmultiply's
    /// kernels), summed in a tree. The columns of `self` must be cut like the rows of
    /// `other`.
    pub fn dot(&self, other: &Array<T>) -> Result<Array<T>> {
        let (a, b) = (&self.data, &other.data);
        if a.ndim() != 2 || b.ndim() != 2 {
            return Err(Error::Invalid(format!("dot of arrays of shapes {:?} and {:?}: both must be 2-D", a.shape, b.shape)));
        }
        if T::DTYPE == DType::Bool {
            return Err(Error::Invalid("dot of bool arrays; cast them with astype first".into()));
        }
        if a.shape[1] != b.shape[0] {
            return Err(Error::Invalid(format!("dot of arrays of shapes {:?} and {:?}: {} columns against {} rows", a.shape, b.shape, a.shape[1], b.shape[0])));
        }
        if a.chunks.axes()[1] != b.chunks.axes()[0] {
            return Err(Error::Chunks(format!(
                "dot of arrays of shapes {:?} and {:?}: the columns are cut {:?} and the rows {:?}; they must be cut alike",
                a.shape,
                b.shape,
                a.chunks.axes()[1],
                b.chunks.axes()[0]
            )));
        }
        let chunks = Chunks::from_axes(vec![a.chunks.axes()[0].clone(), b.chunks.axes()[1].clone()]);
        let d = Dot { a: a.clone(), b: b.clone(), split_every: self.split_every };
        Ok(self.derive(Data::leaf(LeafKind::Dot(Arc::new(d)), vec![a.shape[0], b.shape[1]], chunks, T::DTYPE)))
    }

    /// The same as [`Array::dot`] (numpy's `@` on 2-D arrays).
    pub fn matmul(&self, other: &Array<T>) -> Result<Array<T>> {
        self.dot(other)
    }

    /// The same array cut into blocks of `chunks` (the last along an axis shorter). Each
    /// new block is put together, in the task that uses it, from the parts of the old
    /// blocks it overlaps, so a task holds at most one new block and the old blocks it
    /// needs, never the array.
    pub fn rechunk(&self, chunks: &[usize]) -> Result<Array<T>> {
        let grid = Chunks::regular(&self.data.shape, chunks)?;
        if grid == self.data.chunks {
            return Ok(self.clone());
        }
        Ok(self.derive(Data::leaf(LeafKind::Rechunk(Arc::new(self.data.clone())), self.data.shape.clone(), grid, T::DTYPE)))
    }

    /// Applies the user's registered function `f` to each block, in the task layer like
    /// any remote call (Dask's `map_blocks`): `f` takes a block as an `ndarray::ArrayD<T>`
    /// and returns one of the same shape (a block of another shape fails the tasks that
    /// read it, naming the block). Its blocks cross to and from `f` through serde.
    ///
    /// ```ignore
    /// #[chorus::remote]
    /// fn clip(b: ArrayD<f64>) -> ArrayD<f64> { b.mapv(|v| v.clamp(0.0, 1.0)) }
    /// let y = x.map_blocks::<_, f64>(clip)?;
    /// ```
    pub fn map_blocks<F, U>(&self, f: F) -> Result<Array<U>>
    where
        F: chorus_tasks::RemoteFunction<Args = (ArrayD<T>,), Output = ArrayD<U>> + Send + Sync + 'static,
        U: Element,
    {
        Ok(self.derive(self.data.mapped(f, self.data.shape.clone(), self.data.chunks.clone(), U::DTYPE)))
    }

    /// Writes the array to the `.npy` file `path`: the driver writes the header, and the
    /// task that computes each block writes that block's bytes into the file, in
    /// parallel. The workers must see `path` (one machine, or a shared file system).
    /// Returns when every block is written.
    pub fn to_npy(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = crate::io::absolute(path.as_ref())?;
        let header = crate::io::npy::create(&path, T::DTYPE, &self.data.shape)?;
        self.write_blocks(crate::io::npy::WriteBlock, |block, index, offset| crate::io::npy::WritePlan {
            block,
            path: path.clone(),
            header: header.clone(),
            offset,
            index,
        })
    }

    /// Writes the array as a new Zarr (version 3) array at `path`, one chunk per block,
    /// with the `bytes` codec and zstd as zarr-python does: the driver writes the
    /// metadata, and the task that computes each block encodes and stores it as its
    /// chunk, so the workers write in parallel. The blocks must be of one shape (the last
    /// along an axis may be shorter), as Zarr's chunk grid is: [`Array::rechunk`] first
    /// if they are not. `path` must not exist; the workers must see it. Returns when
    /// every chunk is written.
    pub fn to_zarr(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = crate::io::absolute(path.as_ref())?;
        let axes = self.data.chunks.axes();
        if let Some(axis) = axes.iter().position(|l| l.len() > 1 && (l[..l.len() - 1].iter().any(|&n| n != l[0]) || l[l.len() - 1] > l[0])) {
            return Err(Error::Chunks(format!(
                "to_zarr of an array cut {:?} along axis {axis}: Zarr chunks are all of one length but the last; rechunk it first",
                axes[axis]
            )));
        }
        let chunk: Vec<usize> = axes.iter().map(|l| l.first().copied().unwrap_or(1)).collect();
        let metadata = crate::io::zarr::create(&path, T::DTYPE, &self.data.shape, &chunk)?;
        self.write_blocks(crate::io::zarr::WriteBlock, |block, index, offset| crate::io::zarr::WritePlan {
            block,
            path: path.clone(),
            metadata: metadata.clone(),
            index,
            offset,
        })
    }

    /// Submits `f` for every block, with the plan `plan(block plan, index, offset)`, and
    /// waits for all of them.
    fn write_blocks<F, P>(&self, f: F, plan: impl Fn(crate::kernel::BlockPlan, Vec<usize>, Vec<usize>) -> P) -> Result<()>
    where
        F: chorus_tasks::RemoteFunction<Output = Vec<u8>> + Copy,
        P: serde::Serialize,
    {
        let build = Build::new(&self.client);
        let acks = self
            .data
            .chunks
            .indices()
            .into_iter()
            .map(|idx| {
                let (block, args) = self.data.plan_block(&idx, &build, Then::Keep)?;
                let offset = self.data.chunks.block_offset(&idx);
                Ok(submit(&build, f, &plan(block, idx, offset), args))
            })
            .collect::<Result<Vec<_>>>()?;
        self.client.gather(&acks)?;
        Ok(())
    }

    /// Runs the array's tasks now and keeps its blocks on the workers: the result
    /// computes from those blocks from then on, like Dask's `persist`. Returns at once;
    /// the blocks are computed in the background.
    pub fn persist(&self) -> Result<Array<T>> {
        let blocks = self.data.blocks(&Build::new(&self.client))?;
        Ok(self.derive(Data::leaf(LeafKind::Stored(blocks), self.data.shape.clone(), self.data.chunks.clone(), T::DTYPE)))
    }

    /// The futures of the array's blocks, in row-major order of the grid: the tasks are
    /// submitted now.
    pub fn to_futures(&self) -> Result<Vec<Future<Vec<u8>>>> {
        Ok(self.data.blocks(&Build::new(&self.client))?.to_vec())
    }

    /// Runs the array's tasks and brings the whole array to the driver.
    pub fn compute(&self) -> Result<ArrayD<T>> {
        let futures = self.data.blocks(&Build::new(&self.client))?;
        let bytes = self.client.gather(&futures)?;
        let mut out = ArrayD::from_elem(IxDyn(&self.data.shape), T::ZERO);
        for (idx, b) in self.data.chunks.indices().into_iter().zip(bytes) {
            let block = Block::decode(&b).map_err(|detail| Error::Block { index: idx.clone(), detail })?;
            let got = block.dtype();
            let block = T::unwrap(block).ok_or_else(|| Error::Block { index: idx.clone(), detail: format!("a {got} block in a {} array", T::DTYPE) })?;
            let shape = self.data.chunks.block_shape(&idx);
            if block.shape() != shape.as_slice() {
                return Err(Error::Block { index: idx, detail: format!("a block of shape {:?} where {shape:?} belongs", block.shape()) });
            }
            let region = self.data.chunks.region(&idx);
            out.slice_each_axis_mut(|ax| region[ax.axis.index()]).assign(&block);
        }
        Ok(out)
    }

    /// The value of a 0-d array (the result of [`Array::sum`] and the like).
    pub fn compute_scalar(&self) -> Result<T> {
        if self.ndim() != 0 {
            return Err(Error::Invalid(format!("compute_scalar of an array of shape {:?}; it needs a 0-d array", self.data.shape)));
        }
        Ok(*self.compute()?.first().expect("a 0-d array has one element"))
    }
}

impl Array<bool> {
    /// `a` where `self` is true, `b` elsewhere, with broadcasting among the three.
    pub fn select<'a, 'b, T: Element>(&self, a: impl Into<Operand<'a, T>>, b: impl Into<Operand<'b, T>>) -> Result<Array<T>> {
        let side = |o: Operand<'_, T>| match o {
            Operand::Array(x) => x.data.clone(),
            Operand::Scalar(s) => Data { shape: vec![], chunks: Chunks::from_axes(vec![]), dtype: T::DTYPE, expr: Expr::Scalar(s.scalar()), leaves: vec![] },
        };
        let (a, b) = (side(a.into()), side(b.into()));
        if a.dtype != b.dtype {
            return Err(Error::Invalid(format!("where over a {} and a {} array", a.dtype, b.dtype)));
        }
        // Brought to the shape all three broadcast to, one pair at a time.
        let (c, a) = Data::aligned(&self.data, &a)?;
        let (mut out, b) = Data::aligned(&c, &b)?;
        let (a, _) = Data::aligned(&a, &out)?;
        let (ea, eb) = (out.merge(&a), out.merge(&b));
        out.expr = Expr::Where(Box::new(out.expr.clone()), Box::new(ea), Box::new(eb));
        out.dtype = T::DTYPE;
        Ok(Array { client: self.client.clone(), data: out, split_every: self.split_every, _t: PhantomData })
    }

    /// Logical not.
    pub fn not(&self) -> Array<bool> {
        self.derive(self.data.unary(UnaryOp::Not))
    }
}

/// The arrays joined along `axis` (numpy's `concatenate`). Their other axes must have
/// the same lengths and chunks; each block of an input is a block of the result.
pub fn concatenate<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays.first().ok_or_else(|| Error::Invalid("concatenate of no arrays".into()))?;
    let n = first.ndim();
    if axis >= n {
        return Err(Error::Axis(format!("concatenate along axis {axis} of arrays of shape {:?}", first.shape())));
    }
    let mut lengths = Vec::new();
    let mut starts = Vec::new();
    let mut total = 0;
    for a in arrays {
        let same_other_axes = a.ndim() == n && (0..n).all(|k| k == axis || a.shape()[k] == first.shape()[k]);
        if !same_other_axes {
            return Err(Error::Invalid(format!(
                "arrays of shapes {:?} and {:?} cannot be joined along axis {axis}: their other axes differ",
                first.shape(),
                a.shape()
            )));
        }
        if let Some(k) = (0..n).find(|&k| k != axis && a.chunks().axes()[k] != first.chunks().axes()[k]) {
            return Err(Error::Chunks(format!("arrays of shapes {:?} and {:?} are cut differently along axis {k}", first.shape(), a.shape())));
        }
        starts.push(lengths.len());
        lengths.extend(a.chunks().axes()[axis].iter().copied());
        total += a.shape()[axis];
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    let mut axes = first.chunks().axes().to_vec();
    axes[axis] = lengths;
    let concat = Concat { parts: arrays.iter().map(|a| a.data.clone()).collect(), axis, starts };
    Ok(first.derive(Data::leaf(LeafKind::Concat(Arc::new(concat)), shape, Chunks::from_axes(axes), T::DTYPE)))
}

/// The arrays, all of one shape, stacked along a new axis at `axis` (numpy's `stack`).
pub fn stack<T: Element>(arrays: &[&Array<T>], axis: usize) -> Result<Array<T>> {
    let first = arrays.first().ok_or_else(|| Error::Invalid("stack of no arrays".into()))?;
    if axis > first.ndim() {
        return Err(Error::Axis(format!("stack at axis {axis} of arrays of shape {:?}", first.shape())));
    }
    if let Some(odd) = arrays.iter().find(|a| a.shape() != first.shape()) {
        return Err(Error::Invalid(format!("stack of arrays of shapes {:?} and {:?}; they must be equal", first.shape(), odd.shape())));
    }
    let raised: Vec<Array<T>> = arrays.iter().map(|a| a.derive(a.data.with_axes_at(&[axis]))).collect();
    concatenate(&raised.iter().collect::<Vec<_>>(), axis)
}

/// `where(cond, a, b)`: `a` where `cond` is true, `b` elsewhere (numpy's `where`).
pub fn where_<'a, 'b, T: Element>(cond: &Array<bool>, a: impl Into<Operand<'a, T>>, b: impl Into<Operand<'b, T>>) -> Result<Array<T>> {
    cond.select(a, b)
}

impl<T: Element> Array<T> {
    /// Draws this array's graph to `path` — each fused expression with its operations,
    /// shape and block grid, and every input it reads (generated blocks, files, stored
    /// blocks, reductions, products, joins, rechunks) — as DOT (`.dot`, `.gv`) or SVG
    /// (`.svg`, drawn by Graphviz's `dot`). Nothing runs.
    ///
    /// For `(x + x.T).sum()` that is three boxes: the random blocks of `x`, the fused
    /// `add` that reads them twice (once transposed), and the tree of sums.
    pub fn visualize(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(chorus_tasks::write_dot(&crate::graph::visualize::to_dot(&self.data), path.as_ref())?)
    }
}

impl<T: Element> std::fmt::Display for Array<T> {
    /// A table like Dask's: shape, chunks, element type, sizes and tasks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.data;
        let size = T::DTYPE.size() as u64;
        let human = |bytes: u64| chorus_tasks::settings::human_with(bytes, 2);
        let grid: Vec<String> = d.chunks.grid().iter().map(ToString::to_string).collect();
        writeln!(f, "chorus::Array<{}>", T::DTYPE)?;
        writeln!(f, "  shape   {:?}", d.shape)?;
        writeln!(f, "  chunks  {}  ({} = {} blocks)", d.chunks, grid.join(" × "), d.chunks.count())?;
        writeln!(f, "  bytes   {}  (largest block {})", human(self.len() as u64 * size), human(d.chunks.largest_block() as u64 * size))?;
        let ops = d.expr.operations();
        write!(f, "  tasks   {} to compute ({ops} fused operation{} per block)", self.task_count(), if ops == 1 { "" } else { "s" })
    }
}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

macro_rules! operator {
    ($tr:ident, $m:ident, $try:ident) => {
        impl<T: Element> std::ops::$tr<&Array<T>> for &Array<T> {
            type Output = Array<T>;
            /// Panics, like ndarray's operators, when the shapes or chunks do not line up;
            /// the `try_` method gives the error instead.
            fn $m(self, rhs: &Array<T>) -> Array<T> {
                self.$try(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
        impl<T: Element> std::ops::$tr<T> for &Array<T>
        where
            T: for<'a> Into<Operand<'a, T>>,
        {
            type Output = Array<T>;
            fn $m(self, rhs: T) -> Array<T> {
                self.$try(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    };
}

operator!(Add, add, try_add);
operator!(Sub, sub, try_sub);
operator!(Mul, mul, try_mul);
operator!(Div, div, try_div);

impl<T: Element> std::ops::Neg for &Array<T> {
    type Output = Array<T>;
    /// Panics for bool and u8 arrays; [`Array::try_neg`] gives the error instead.
    fn neg(self) -> Array<T> {
        self.try_neg().unwrap_or_else(|e| panic!("{e}"))
    }
}
