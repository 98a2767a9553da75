//! What one task of a bag does, as the driver writes it for the worker: where its
//! partition comes from, the fused stages it runs, and what it makes of the result.

use serde::{Deserialize, Serialize};

use crate::text::TextRange;

/// One task: `source`, then each of `stages`, then `sink`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// The index of the partition in its bag, for errors and for `random_sample`.
    pub partition: u32,
    pub source: Source,
    pub stages: Vec<Stage>,
    pub sink: Sink,
}

/// Where the task's partition comes from. Arguments count from 0 after the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Source {
    /// Argument `arg` is a partition of elements of the type named `ty`.
    Arg { arg: u32, ty: String },
    /// The integers `start..end`.
    Range { start: u64, end: u64 },
    /// Lines of a file.
    Text(TextRange),
    /// The rows of a Parquet file, as elements of the type named `ty`.
    Parquet { path: String, ty: String },
    /// Pieces of partitions of `ty` put together: (argument, piece, number of pieces).
    Pieces { ty: String, pieces: Vec<(u32, u32, u32)> },
    /// Arguments 0 and 1 paired element by element.
    Zip { left: String, right: String, out: String },
    /// A `group_by` partition from its buckets (every argument).
    Groups { out: String },
    /// Bucket `index` of the `group_by` map output in argument 0.
    Bucket { index: u32 },
    /// One level of a tree reduction over every argument; `out` names the element
    /// type when the level makes a partition.
    Combine { combine: Combine },
}

/// A per-partition step; consecutive ones run in one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Stage {
    Map(String),
    Filter(String),
    FlatMap(String),
    MapPartitions(String),
    Sample { fraction: f64, seed: u64 },
    Pluck(u32),
    Words,
    /// Pairs each element with the value of its key in the map of argument `arg`.
    Join { key: String, arg: u32, out: String },
}

/// What the task gives back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Sink {
    /// The partition.
    Encode,
    Count,
    Sum,
    Moments,
    Truth,
    /// The `k` largest (or smallest) elements, by `key` or by their own order.
    Top { k: u64, largest: bool, key: Option<String> },
    Fold { binop: String, init: Vec<u8> },
    /// `reduction`'s per-partition function.
    Whole(String),
    FoldBy { key: String, binop: String, init: Vec<u8> },
    ReduceByKey { binop: String },
    Frequencies,
    Distinct,
    /// `group_by`'s map side: records hashed by key into `n` buckets.
    Buckets { key: String, n: u32 },
    /// Lines written to `dir`, one file per partition.
    Text { dir: String },
    /// Rows written to `dir` as Parquet, one file per partition.
    Parquet { dir: String },
}

/// How a tree reduction combines partial results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Combine {
    Count,
    Sum,
    Moments,
    Truth,
    Top { k: u64, largest: bool, key: Option<String>, ty: String },
    Fold(String),
    Aggregate(String),
    /// Accumulators by key (`fold_by`, `reduce_by_key`); `finish` makes the partition.
    Keyed { combine: String, finish: bool },
    Frequencies { finish: bool },
    Distinct { finish: bool, ty: String },
}
