//! The nodes of the graph that submit tasks of their own: the intermediate results of
//! a submission ([`Build`]) — products, reductions, `map_blocks` — and the trees that
//! combine partial results, with the joined and reshaped arrays whose blocks come from
//! other arrays' blocks.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chorus_tasks::{Arg, ArgValue, Client, Future, TaskOptions};

use super::{Blocks, Data};
use crate::chunks::Chunks;
use crate::kernel::{CombineBlocks, CombinePlan, DotBlocks, DotPlan, EvalBlock, ReduceOp, Then, ToNdarray};
use crate::Result;

/// One submission of a graph (a `compute`, `persist`, `to_npy`…): the client, and
/// the blocks of the intermediate results (products, reductions, `map_blocks`)
/// submitted so far in it, so that each is submitted once however many blocks use it.
///
/// Their futures go with the `Build`. The workers then free each intermediate block as
/// soon as the tasks that read it are done, as Dask does for the inner keys of a graph.
/// The next submission computes them again; `persist` is the way to keep them.
pub(crate) struct Build<'c> {
    pub(crate) client: &'c Client,
    stored: RefCell<HashMap<usize, Blocks>>,
    mapped: RefCell<HashMap<usize, Arc<Vec<Slot>>>>,
    parts: RefCell<Parts>,
}

/// Blocks of the arrays that rechunked arrays are cut from, by array and block.
type Parts = HashMap<(usize, usize), Future<Vec<u8>>>;

impl<'c> Build<'c> {
    pub(crate) fn new(client: &'c Client) -> Build<'c> {
        Build { client, stored: RefCell::default(), mapped: RefCell::default(), parts: RefCell::default() }
    }

    /// Block `index` of `input`, the array a rechunked array is cut from: submitted once
    /// in this submission however many new blocks it overlaps.
    pub(crate) fn part(&self, input: &Arc<Data>, index: &[usize]) -> Result<Future<Vec<u8>>> {
        let k = (key(input), input.chunks.flat(index));
        if let Some(f) = self.parts.borrow().get(&k) {
            return Ok(f.clone());
        }
        let f = input.block_future(index, self)?;
        self.parts.borrow_mut().insert(k, f.clone());
        Ok(f)
    }
}

/// What identifies an intermediate result within one [`Build`]: the address of its
/// node, which the graph keeps alive for the whole submission.
fn key<T>(node: &Arc<T>) -> usize {
    Arc::as_ptr(node) as usize
}

/// The argument for one block of a [`Mapped`] array.
pub(crate) type Slot = Arc<dyn Fn() -> ArgValue + Send + Sync>;

/// Submits a user's function on one block's argument and gives the slot of its result.
pub(crate) type Call = Arc<dyn Fn(&Client, ArgValue) -> Slot + Send + Sync>;

/// A user's function applied to each block of `input`, submitted once per [`Build`],
/// the first time the blocks are needed: `call` submits it on the future of one input
/// block (as an `ndarray::ArrayD`) and gives the slot of its result.
pub(crate) struct Mapped {
    pub(crate) input: Data,
    pub(crate) call: Call,
}

impl Mapped {
    pub(crate) fn materialize(self: &Arc<Self>, build: &Build<'_>) -> Result<Arc<Vec<Slot>>> {
        if let Some(b) = build.mapped.borrow().get(&key(self)) {
            return Ok(b.clone());
        }
        let slots = self
            .input
            .chunks
            .indices()
            .iter()
            .map(|idx| {
                let (plan, args) = self.input.plan_block(idx, build, Then::Keep)?;
                let block = submit(build, ToNdarray, &plan, args);
                Ok((self.call)(build.client, Arg::<Vec<u8>>::into_slot(&block)))
            })
            .collect::<Result<Vec<_>>>()?;
        let slots = Arc::new(slots);
        build.mapped.borrow_mut().insert(key(self), slots.clone());
        Ok(slots)
    }
}

/// A matrix product whose blocks are submitted once per [`Build`], the first time they
/// are needed.
pub(crate) struct Dot {
    pub(crate) a: Data,
    pub(crate) b: Data,
    pub(crate) split_every: usize,
}

impl Dot {
    pub(crate) fn materialize(self: &Arc<Self>, build: &Build<'_>) -> Result<Blocks> {
        if let Some(b) = build.stored.borrow().get(&key(self)) {
            return Ok(b.clone());
        }
        let (rows, inner, cols) = (self.a.chunks.grid()[0], self.a.chunks.grid()[1], self.b.chunks.grid()[1]);
        let mut blocks = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                // Up to `split_every` block products summed in each task, then a tree.
                let ks: Vec<usize> = (0..inner).collect();
                let parts = ks
                    .chunks(self.split_every)
                    .map(|ks| {
                        let mut plan = DotPlan { pairs: Vec::new(), args: Vec::new() };
                        let mut args = Vec::new();
                        for &k in ks {
                            let (left, left_args) = self.a.plan_block(&[i, k], build, Then::Keep)?;
                            let (right, right_args) = self.b.plan_block(&[k, j], build, Then::Keep)?;
                            plan.args.push((left_args.len() as u32, right_args.len() as u32));
                            plan.pairs.push((left, right));
                            args.extend(left_args);
                            args.extend(right_args);
                        }
                        Ok(submit(build, DotBlocks, &plan, args))
                    })
                    .collect::<Result<Vec<_>>>()?;
                blocks.push(tree(build, parts, ReduceOp::Sum, self.split_every, None));
            }
        }
        let blocks = Arc::new(blocks);
        build.stored.borrow_mut().insert(key(self), blocks.clone());
        Ok(blocks)
    }

    pub(crate) fn task_count(&self) -> usize {
        let (rows, inner, cols) = (self.a.chunks.grid()[0], self.a.chunks.grid()[1], self.b.chunks.grid()[1]);
        let parts = inner.div_ceil(self.split_every);
        rows * cols * (parts + tree_tasks(parts, self.split_every, false)) + self.a.leaf_tasks() + self.b.leaf_tasks()
    }
}

/// A block of an array that a region overlaps: its index, the part of it inside the
/// region (first, end per axis), and where that part sits in the region.
pub(crate) struct Overlap {
    pub(crate) block: Vec<usize>,
    pub(crate) part: Vec<(usize, usize)>,
    pub(crate) at: Vec<usize>,
}

/// The blocks of an array cut by `chunks` that the region (`offset`, `shape`) overlaps.
pub(crate) fn overlaps(chunks: &Chunks, offset: &[usize], shape: &[usize]) -> Vec<Overlap> {
    // Per axis: (block, first, end, destination) of every block the region touches.
    let per_axis: Vec<Vec<(usize, usize, usize, usize)>> = chunks
        .axes()
        .iter()
        .zip(offset.iter().zip(shape))
        .map(|(lengths, (&o, &n))| {
            let mut out = Vec::new();
            let mut start = 0;
            for (b, &len) in lengths.iter().enumerate() {
                let (lo, hi) = (o.max(start), (o + n).min(start + len));
                if lo < hi || (n == 0 && b == 0) {
                    out.push((b, lo.saturating_sub(start), hi.max(lo) - start, lo - o.min(lo)));
                }
                start += len;
            }
            out
        })
        .collect();
    let mut result = vec![Overlap { block: Vec::new(), part: Vec::new(), at: Vec::new() }];
    for axis in per_axis {
        result = result
            .into_iter()
            .flat_map(|o| {
                axis.iter().map(move |&(b, lo, hi, at)| {
                    let mut next = Overlap { block: o.block.clone(), part: o.part.clone(), at: o.at.clone() };
                    next.block.push(b);
                    next.part.push((lo, hi));
                    next.at.push(at);
                    next
                })
            })
            .collect();
    }
    result
}

/// Combines `parts` by `op` in a tree of fan-in `every`; the last level removes the axes
/// `squeeze` (a single part with nothing to remove is its own result).
pub(crate) fn tree(build: &Build<'_>, mut parts: Vec<Future<Vec<u8>>>, op: ReduceOp, every: usize, squeeze: Option<Vec<usize>>) -> Future<Vec<u8>> {
    let combine = |parts: &[Future<Vec<u8>>], squeeze: Option<Vec<usize>>| {
        let args = parts.iter().map(Arg::<Vec<u8>>::into_slot).collect();
        submit(build, CombineBlocks, &CombinePlan { op, squeeze }, args)
    };
    loop {
        if parts.len() == 1 && squeeze.is_none() {
            return parts.pop().expect("one part");
        }
        if parts.len() <= every {
            return combine(&parts, squeeze);
        }
        parts = parts.chunks(every).map(|c| combine(c, None)).collect();
    }
}

/// The combining tasks [`tree`] submits for `n` parts.
fn tree_tasks(n: usize, every: usize, squeeze: bool) -> usize {
    let (mut g, mut tasks) = (n, 0);
    while g > every {
        g = g.div_ceil(every);
        tasks += g;
    }
    tasks + usize::from(g > 1 || squeeze)
}

/// An array reshaped: `input`, already cut so that each new block is one of its blocks,
/// and how its axes group into the new ones.
pub(crate) struct Reshape {
    pub(crate) input: Data,
    pub(crate) groups: Vec<crate::reshape::Group>,
}

/// Arrays joined along an axis; each of their blocks is one block of the result.
pub(crate) struct Concat {
    pub(crate) parts: Vec<Data>,
    pub(crate) axis: usize,
    /// The block (along `axis`) where each part starts.
    pub(crate) starts: Vec<usize>,
}

impl Concat {
    /// The part that holds block `index`, and the block's index within it.
    pub(crate) fn locate(&self, index: &[usize]) -> (usize, Vec<usize>) {
        let b = index[self.axis];
        let p = self.starts.iter().rposition(|&s| s <= b).expect("the first part starts at block 0");
        let mut local = index.to_vec();
        local[self.axis] -= self.starts[p];
        (p, local)
    }
}

/// A reduction whose result blocks are submitted once per [`Build`], the first time
/// they are needed.
pub(crate) struct Reduction {
    pub(crate) input: Data,
    pub(crate) op: ReduceOp,
    pub(crate) axes: Vec<usize>,
    pub(crate) split_every: usize,
}

pub(crate) fn submit<F: chorus_tasks::RemoteFunction<Output = Vec<u8>>, P: serde::Serialize>(build: &Build<'_>, f: F, plan: &P, args: Vec<ArgValue>) -> Future<Vec<u8>> {
    let plan = postcard::to_allocvec(plan).expect("plans are plain data");
    let mut all = Vec::with_capacity(1 + args.len());
    all.push(Arg::<Vec<u8>>::into_slot(plan));
    all.extend(args);
    build.client.submit_variadic(f, all, TaskOptions::default())
}

impl Reduction {
    pub(crate) fn materialize(self: &Arc<Self>, build: &Build<'_>) -> Result<Blocks> {
        if let Some(b) = build.stored.borrow().get(&key(self)) {
            return Ok(b.clone());
        }
        let mut groups: BTreeMap<Vec<usize>, Vec<Future<Vec<u8>>>> = BTreeMap::new();
        for idx in self.input.chunks.indices() {
            let then = if self.op.is_arg() {
                let axis = (self.axes.len() == 1).then(|| self.axes[0]);
                Then::Arg { op: self.op, axis, offset: self.input.chunks.block_offset(&idx), full: self.input.shape.clone() }
            } else {
                Then::Reduce { op: self.op, axes: self.axes.clone() }
            };
            let (plan, args) = self.input.plan_block(&idx, build, then)?;
            let key: Vec<usize> = idx.iter().enumerate().filter(|(i, _)| !self.axes.contains(i)).map(|(_, b)| *b).collect();
            groups.entry(key).or_default().push(submit(build, EvalBlock, &plan, args));
        }
        let blocks: Vec<Future<Vec<u8>>> =
            groups.into_values().map(|parts| tree(build, parts, self.op, self.split_every, Some(self.axes.clone()))).collect();
        let blocks = Arc::new(blocks);
        build.stored.borrow_mut().insert(key(self), blocks.clone());
        Ok(blocks)
    }

    pub(crate) fn task_count(&self) -> usize {
        let grid = self.input.chunks.grid();
        let group: usize = self.axes.iter().map(|&a| grid[a]).product();
        let groups = self.input.chunks.count() / group.max(1);
        self.input.task_count() + groups * tree_tasks(group, self.split_every, true)
    }
}
