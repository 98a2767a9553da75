//! A bag's lazy graph, and how one submission ([`Build`]) turns it into tasks.
//!
//! Each node is a list of partitions. Nodes that run per partition (sources generated on
//! the workers, and chains of `map`, `filter`, `flat_map`…) are not tasks of their own:
//! a task is submitted where a partition is needed, with the source and every stage of
//! the chain in one [`Plan`], and the sink the consumer asks for (the partition itself,
//! a partial count, a shuffle's buckets). Nodes that need other partitions (trees,
//! shuffles, repartitions, zips) make their partitions once per submission, however
//! many consumers read them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use chorus_tasks::{Arg, ArgValue, Client, Future, TaskOptions};

use crate::exec::Run;
use crate::plan::{Combine, Plan, Sink, Source, Stage};
use crate::{Error, Result};

/// How many partial results one combining task of a tree takes.
pub(crate) const SPLIT_EVERY: usize = 8;

/// A node: its partitions, the name of its element type, and how they are made.
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) parts: usize,
    pub(crate) ty: &'static str,
}

pub(crate) enum Kind {
    /// Partitions already on the cluster (scattered, persisted, from futures).
    Futures(Vec<Future<Vec<u8>>>),
    /// Partitions made by the workers (ranges, text).
    Generate(Vec<Source>),
    /// Stages run on each partition of `input`, fused with it when it is per partition.
    Stages { input: Arc<Node>, stages: Vec<NodeStage> },
    /// One partition: `sink` on each partition of `input`, then `level` on groups of at
    /// most `split_every` partial results until so few are left that `root` takes them.
    Tree { input: Arc<Node>, reduce: Reduce },
    /// `group_by`: every partition of `input` hashed by `key` into as many buckets.
    Shuffle { input: Arc<Node>, key: String },
    /// Repartition: output `j` is the (input, piece, pieces) list `outputs[j]`.
    Pieces { input: Arc<Node>, outputs: Vec<Vec<(usize, u32, u32)>> },
    /// Two bags of as many partitions, element by element.
    Zip { left: Arc<Node>, right: Arc<Node> },
}

/// A tree reduction: `sink` on each partition, `level` on groups of `split_every`
/// partial results, `root` on the last ones.
#[derive(Debug, Clone)]
pub(crate) struct Reduce {
    pub(crate) sink: Sink,
    pub(crate) level: Combine,
    pub(crate) root: Combine,
    pub(crate) split_every: usize,
}

impl Reduce {
    /// A tree whose levels and root combine alike.
    pub(crate) fn new(sink: Sink, combine: Combine) -> Reduce {
        Reduce { sink, level: combine.clone(), root: combine, split_every: SPLIT_EVERY }
    }

    /// A tree whose root finishes what its levels combine: `combine(true)` makes the
    /// partition, `combine(false)` a partial result for the next level.
    pub(crate) fn finishing(sink: Sink, combine: impl Fn(bool) -> Combine) -> Reduce {
        Reduce { sink, level: combine(false), root: combine(true), split_every: SPLIT_EVERY }
    }
}

/// A stage as the graph keeps it: a join holds the future of its map.
#[derive(Clone)]
pub(crate) enum NodeStage {
    Plain(Stage),
    Join { key: String, out: &'static str, map: Future<Vec<u8>> },
}

impl Node {
    pub(crate) fn new(kind: Kind, parts: usize, ty: &'static str) -> Arc<Node> {
        Arc::new(Node { kind, parts, ty })
    }

    /// Whether this node's partitions are made inside the task that uses them.
    fn fused(&self) -> bool {
        matches!(self.kind, Kind::Generate(_) | Kind::Stages { .. })
    }
}

/// The futures of a node's partitions, in order.
type Partitions = Arc<Vec<Future<Vec<u8>>>>;

/// A partition's task before its sink: source, stages, and the futures they read.
type Fused = (Source, Vec<Stage>, Vec<Future<Vec<u8>>>);

/// One submission: the partitions made so far of the nodes that are not fused.
pub(crate) struct Build<'c> {
    client: &'c Client,
    made: RefCell<HashMap<usize, Partitions>>,
}

impl<'c> Build<'c> {
    pub(crate) fn new(client: &'c Client) -> Build<'c> {
        Build { client, made: RefCell::default() }
    }

    fn submit(&self, plan: Plan, args: &[Future<Vec<u8>>]) -> Result<Future<Vec<u8>>> {
        let bytes = postcard::to_allocvec(&plan).map_err(|e| Error::InvalidArgument(format!("a bag task's plan could not be encoded: {e}")))?;
        let mut all: Vec<ArgValue> = Vec::with_capacity(args.len() + 1);
        all.push(Arg::<Vec<u8>>::into_slot(bytes));
        all.extend(args.iter().map(Arg::<Vec<u8>>::into_slot));
        Ok(self.client.submit_variadic(Run, all, TaskOptions::default()))
    }

    /// The source and stages of partition `i` of `node`, and the futures they read.
    fn plan_of(&self, node: &Arc<Node>, i: usize) -> Result<Fused> {
        match &node.kind {
            Kind::Generate(sources) => Ok((sources[i].clone(), Vec::new(), Vec::new())),
            Kind::Stages { input, stages } => {
                let (source, mut out, mut args) = if input.fused() {
                    self.plan_of(input, i)?
                } else {
                    (Source::Arg { arg: 0, ty: input.ty.to_string() }, Vec::new(), vec![self.partition(input, i)?])
                };
                for s in stages {
                    match s {
                        NodeStage::Plain(s) => out.push(s.clone()),
                        NodeStage::Join { key, out: ty, map } => {
                            args.push(map.clone());
                            out.push(Stage::Join { key: key.clone(), arg: (args.len() - 1) as u32, out: ty.to_string() });
                        }
                    }
                }
                Ok((source, out, args))
            }
            _ => Ok((Source::Arg { arg: 0, ty: node.ty.to_string() }, Vec::new(), vec![self.partition(node, i)?])),
        }
    }

    /// `sink` on partition `i` of `node`, as one task.
    pub(crate) fn leaf(&self, node: &Arc<Node>, i: usize, sink: Sink) -> Result<Future<Vec<u8>>> {
        if let (Kind::Futures(f), Sink::Encode) = (&node.kind, &sink) {
            return Ok(f[i].clone());
        }
        let (source, stages, args) = self.plan_of(node, i)?;
        self.submit(Plan { partition: i as u32, source, stages, sink }, &args)
    }

    /// Partition `i` of `node`.
    pub(crate) fn partition(&self, node: &Arc<Node>, i: usize) -> Result<Future<Vec<u8>>> {
        if node.fused() || matches!(node.kind, Kind::Futures(_)) {
            return self.leaf(node, i, Sink::Encode);
        }
        Ok(self.partitions(node)?[i].clone())
    }

    /// Every partition of `node`.
    pub(crate) fn partitions(&self, node: &Arc<Node>) -> Result<Partitions> {
        let key = Arc::as_ptr(node) as usize;
        if let Some(p) = self.made.borrow().get(&key) {
            return Ok(p.clone());
        }
        let parts = match &node.kind {
            Kind::Futures(f) => f.clone(),
            Kind::Generate(_) | Kind::Stages { .. } => (0..node.parts).map(|i| self.leaf(node, i, Sink::Encode)).collect::<Result<_>>()?,
            Kind::Tree { input, reduce } => vec![self.tree(input, reduce)?],
            Kind::Shuffle { input, key } => self.shuffle(node, input, key)?,
            Kind::Pieces { input, outputs } => {
                let inputs = self.partitions(input)?;
                let mut out = Vec::with_capacity(outputs.len());
                for (j, pieces) in outputs.iter().enumerate() {
                    let mut args = Vec::new();
                    let mut plan = Vec::new();
                    for &(i, piece, of) in pieces {
                        args.push(inputs[i].clone());
                        plan.push(((args.len() - 1) as u32, piece, of));
                    }
                    let source = Source::Pieces { ty: input.ty.to_string(), pieces: plan };
                    out.push(self.submit(Plan { partition: j as u32, source, stages: Vec::new(), sink: Sink::Encode }, &args)?);
                }
                out
            }
            Kind::Zip { left, right } => {
                let (l, r) = (self.partitions(left)?, self.partitions(right)?);
                let mut out = Vec::with_capacity(node.parts);
                for i in 0..node.parts {
                    let source = Source::Zip { left: left.ty.to_string(), right: right.ty.to_string(), out: node.ty.to_string() };
                    out.push(self.submit(Plan { partition: i as u32, source, stages: Vec::new(), sink: Sink::Encode }, &[l[i].clone(), r[i].clone()])?);
                }
                out
            }
        };
        let parts = Arc::new(parts);
        self.made.borrow_mut().insert(key, parts.clone());
        Ok(parts)
    }

    /// `sink` on every partition of `node`, combined by a tree into one result.
    pub(crate) fn tree(&self, node: &Arc<Node>, reduce: &Reduce) -> Result<Future<Vec<u8>>> {
        let mut level: Vec<Future<Vec<u8>>> = (0..node.parts).map(|i| self.leaf(node, i, reduce.sink.clone())).collect::<Result<_>>()?;
        let split_every = reduce.split_every.max(2);
        while level.len() > split_every {
            level = level
                .chunks(split_every)
                .enumerate()
                .map(|(j, c)| self.submit(Plan { partition: j as u32, source: Source::Combine { combine: reduce.level.clone() }, stages: Vec::new(), sink: Sink::Encode }, c))
                .collect::<Result<_>>()?;
        }
        self.submit(Plan { partition: 0, source: Source::Combine { combine: reduce.root.clone() }, stages: Vec::new(), sink: Sink::Encode }, &level)
    }

    /// `group_by`: a map task per input partition writes its records into one bucket
    /// per output partition; a task on the same worker cuts out each bucket; the task of
    /// output partition `b` takes bucket `b` of every map output, fetched from the
    /// workers that hold them.
    fn shuffle(&self, node: &Arc<Node>, input: &Arc<Node>, key: &str) -> Result<Vec<Future<Vec<u8>>>> {
        let n = node.parts;
        let mut columns: Vec<Vec<Future<Vec<u8>>>> = vec![Vec::with_capacity(input.parts); n];
        for i in 0..input.parts {
            let mapped = self.leaf(input, i, Sink::Buckets { key: key.to_string(), n: n as u32 })?;
            for (b, column) in columns.iter_mut().enumerate() {
                column.push(self.submit(Plan { partition: i as u32, source: Source::Bucket { index: b as u32 }, stages: Vec::new(), sink: Sink::Encode }, std::slice::from_ref(&mapped))?);
            }
        }
        columns
            .iter()
            .enumerate()
            .map(|(b, column)| self.submit(Plan { partition: b as u32, source: Source::Groups { out: node.ty.to_string() }, stages: Vec::new(), sink: Sink::Encode }, column))
            .collect()
    }
}
