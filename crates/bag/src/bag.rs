//! [`Bag`]: the collection, its constructors and its transformations.

use std::marker::PhantomData;
use std::sync::Arc;

use chorus_tasks::registry::decode_arg;
use chorus_tasks::{Client, Future};

use crate::element::Element;
use crate::func::Func;
use crate::graph::{Build, Kind, Node, NodeStage, Reduce};
use crate::plan::{Combine, Sink, Source, Stage};
use crate::text::ReadText;
use crate::{Error, Result};

/// A partitioned collection of `T` on the workers: dask.bag for Rust.
///
/// A bag is a list of partitions, each a `Vec<T>` held by a worker. Transformations are
/// lazy and cheap: they add to the bag's graph, and chains of `map`, `filter`,
/// `flat_map`, `map_partitions`, `pluck`, `random_sample` and `join` run as one task per
/// partition. Results ([`compute`](Bag::compute), [`count`](Bag::count), …) submit the
/// graph; partitions stay on the workers and only what is asked for comes back.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use chorus_bag as db;
/// let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// let client = cluster.client();
/// let nums = db::from_sequence(&client, 0..1_000i64, 10)?;
/// let odd_squares = nums.filter(db::func!(|x: &i64| x % 2 == 1)).map(db::func!(|x: i64| x * x));
/// assert_eq!(odd_squares.take(3)?, vec![1, 9, 25]);
/// assert_eq!(odd_squares.sum()?, 166_666_500);
/// # Ok(())
/// # }
/// ```
pub struct Bag<T> {
    pub(crate) client: Client,
    pub(crate) node: Arc<Node>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Bag<T> {
    fn clone(&self) -> Self {
        Bag { client: self.client.clone(), node: self.node.clone(), _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for Bag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bag<{}> of {} partitions", std::any::type_name::<T>(), self.node.parts)
    }
}

fn check_parts(npartitions: usize, what: &str) -> Result<()> {
    if npartitions == 0 {
        return Err(Error::InvalidArgument(format!("{what}: a bag needs at least one partition")));
    }
    Ok(())
}

/// `items` cut into `npartitions` partitions of nearly equal length (the last ones may
/// be empty when there are fewer items), scattered to the workers.
pub fn from_sequence<T: Element>(client: &Client, items: impl IntoIterator<Item = T>, npartitions: usize) -> Result<Bag<T>> {
    check_parts(npartitions, "from_sequence")?;
    let mut items: Vec<T> = items.into_iter().collect();
    let n = items.len();
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(npartitions);
    let mut cuts: Vec<Vec<T>> = Vec::with_capacity(npartitions);
    for j in (0..npartitions).rev() {
        let (a, _) = crate::element::piece_bounds(n, j, npartitions);
        cuts.push(items.split_off(a));
    }
    for cut in cuts.into_iter().rev() {
        parts.push(chorus_tasks::registry::encode_result(cut).map_err(|f| Error::InvalidArgument(format!("from_sequence: {}", f.message)))?);
    }
    let futures = client.scatter(parts)?;
    Ok(Bag::from_node(client, Node::new(Kind::Futures(futures), npartitions, std::any::type_name::<T>())))
}

/// A bag whose partitions are the results of tasks returning `Vec<T>`, in order.
pub fn from_futures<T: Element>(client: &Client, futures: Vec<Future<Vec<T>>>) -> Result<Bag<T>> {
    check_parts(futures.len(), "from_futures")?;
    let n = futures.len();
    let parts = futures.into_iter().map(Future::retype).collect();
    Ok(Bag::from_node(client, Node::new(Kind::Futures(parts), n, std::any::type_name::<T>())))
}

/// The integers `0..n` in `npartitions` consecutive partitions, made on the workers.
pub fn range(client: &Client, n: u64, npartitions: usize) -> Result<Bag<u64>> {
    check_parts(npartitions, "range")?;
    let k = npartitions as u64;
    let sources = (0..k).map(|j| Source::Range { start: n / k * j + (n % k).min(j), end: n / k * (j + 1) + (n % k).min(j + 1) }).collect();
    Ok(Bag::from_node(client, Node::new(Kind::Generate(sources), npartitions, std::any::type_name::<u64>())))
}

/// The lines of the files `pattern` names (a path or a glob), in partitions of 64 MiB
/// of text; [`ReadText`] sets the block size and lossy decoding.
pub fn read_text(client: &Client, pattern: impl Into<String>) -> Result<Bag<String>> {
    ReadText::new(pattern).open(client)
}

impl ReadText {
    /// The bag of lines. Files are listed and checked here, before any task runs.
    pub fn open(&self, client: &Client) -> Result<Bag<String>> {
        let ranges = self.ranges()?;
        let n = ranges.len();
        Ok(Bag::from_node(client, Node::new(Kind::Generate(ranges.into_iter().map(Source::Text).collect()), n, std::any::type_name::<String>())))
    }
}

/// Whether the workers of this program can handle elements of `T` for `operation`.
pub(crate) fn registered<T>(operation: &str) -> Result<()> {
    let name = std::any::type_name::<T>();
    match crate::registry::ops(name) {
        Some(_) => Ok(()),
        None => Err(Error::NotRegistered { operation: operation.into(), type_name: name.into() }),
    }
}

impl<T> Bag<T> {
    pub(crate) fn from_node(client: &Client, node: Arc<Node>) -> Bag<T> {
        Bag { client: client.clone(), node, _t: PhantomData }
    }

    fn derive<U>(&self, kind: Kind, parts: usize) -> Bag<U> {
        Bag::from_node(&self.client, Node::new(kind, parts, std::any::type_name::<U>()))
    }

    fn stage<U>(&self, stage: NodeStage) -> Bag<U> {
        // Consecutive stages share one node, so that they stay one task.
        let (input, mut stages) = match &self.node.kind {
            Kind::Stages { input, stages } => (input.clone(), stages.clone()),
            _ => (self.node.clone(), Vec::new()),
        };
        stages.push(stage);
        self.derive(Kind::Stages { input, stages }, self.node.parts)
    }

    /// Draws this bag's graph to `path` — where its partitions come from, the stages
    /// fused into each task, shuffles and reductions, one box per step with its
    /// partition count and element type — as DOT (`.dot`, `.gv`) or SVG (`.svg`, drawn
    /// by Graphviz's `dot`). Nothing runs.
    pub fn visualize(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(chorus_tasks::write_dot(&crate::visualize::to_dot(&self.node), path.as_ref())?)
    }

    /// How many partitions it has.
    pub fn npartitions(&self) -> usize {
        self.node.parts
    }

    /// The client it runs on.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl<T: Element> Bag<T> {
    /// `f` applied to every element.
    pub fn map<U: Element, F: Fn(T) -> U>(&self, f: Func<F>) -> Bag<U> {
        self.stage(NodeStage::Plain(Stage::Map(f.name.into())))
    }

    /// The elements `f` holds true for.
    pub fn filter<F: Fn(&T) -> bool>(&self, f: Func<F>) -> Bag<T> {
        self.stage(NodeStage::Plain(Stage::Filter(f.name.into())))
    }

    /// Every element of what `f` returns for each element (Dask's `map(f).flatten()`).
    pub fn flat_map<I, F>(&self, f: Func<F>) -> Bag<I::Item>
    where
        F: Fn(T) -> I,
        I: IntoIterator,
        I::Item: Element,
    {
        self.stage(NodeStage::Plain(Stage::FlatMap(f.name.into())))
    }

    /// `f` applied to each whole partition.
    pub fn map_partitions<U: Element, F: Fn(Vec<T>) -> Vec<U>>(&self, f: Func<F>) -> Bag<U> {
        self.stage(NodeStage::Plain(Stage::MapPartitions(f.name.into())))
    }

    /// Field `I` of every element, for tuples of 2 to 4 (`bag.pluck::<0>()`).
    pub fn pluck<const I: usize>(&self) -> Result<Bag<<T as Pluck<I>>::Output>>
    where
        T: Pluck<I>,
    {
        registered::<T>("pluck")?;
        Ok(self.stage(NodeStage::Plain(Stage::Pluck(I as u32))))
    }

    /// Each element with probability `fraction`, drawn from `seed` and the partition, so
    /// the same seed gives the same sample.
    pub fn random_sample(&self, fraction: f64, seed: u64) -> Result<Bag<T>> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::InvalidArgument(format!("random_sample: the fraction {fraction} is not between 0 and 1")));
        }
        registered::<T>("random_sample")?;
        Ok(self.stage(NodeStage::Plain(Stage::Sample { fraction, seed })))
    }

    /// The distinct elements, in one partition, in order of first appearance. Elements
    /// are compared by their serialized form.
    pub fn distinct(&self) -> Result<Bag<T>>
    where
        T: Eq + std::hash::Hash,
    {
        registered::<T>("distinct")?;
        let ty = self.node.ty;
        let reduce = Reduce::finishing(Sink::Distinct, |finish| Combine::Distinct { finish, ty: ty.to_string() });
        Ok(self.derive(Kind::Tree { input: self.node.clone(), reduce }, 1))
    }

    /// Pairs of this bag's and `other`'s elements, partition by partition: the two must
    /// have as many partitions, and each pair of partitions as many elements.
    pub fn zip<U: Element>(&self, other: &Bag<U>) -> Result<Bag<(T, U)>> {
        if self.node.parts != other.node.parts {
            return Err(Error::InvalidArgument(format!("zip: the bags have {} and {} partitions; repartition one of them", self.node.parts, other.node.parts)));
        }
        registered::<T>("zip")?;
        registered::<U>("zip")?;
        Ok(self.derive(Kind::Zip { left: self.node.clone(), right: other.node.clone() }, self.node.parts))
    }

    /// The same elements in `npartitions` partitions: fewer by joining neighbours, more
    /// by cutting each partition into nearly equal pieces.
    pub fn repartition(&self, npartitions: usize) -> Result<Bag<T>> {
        check_parts(npartitions, "repartition")?;
        registered::<T>("repartition")?;
        let m = self.node.parts;
        let outputs: Vec<Vec<(usize, u32, u32)>> = if npartitions <= m {
            (0..npartitions).map(|j| (m * j / npartitions..m * (j + 1) / npartitions).map(|i| (i, 0, 1)).collect()).collect()
        } else {
            // Input i gives pieces to outputs n*i/m .. n*(i+1)/m.
            (0..m)
                .flat_map(|i| {
                    let (a, b) = (npartitions * i / m, npartitions * (i + 1) / m);
                    (a..b).map(move |j| vec![(i, (j - a) as u32, (b - a) as u32)])
                })
                .collect()
        };
        Ok(self.derive(Kind::Pieces { input: self.node.clone(), outputs }, npartitions))
    }

    /// Each element paired with the value its key has in `map`; elements whose key is
    /// not there are left out (an inner join with a small table, which every task
    /// receives).
    pub fn join<K, V, F>(&self, map: &std::collections::HashMap<K, V>, key: Func<F>) -> Result<Bag<(T, V)>>
    where
        K: Element + Eq + std::hash::Hash,
        V: Element,
        F: Fn(&T) -> K,
    {
        let mut table = Vec::new();
        for (k, v) in map {
            let k = postcard::to_allocvec(k).map_err(|e| Error::InvalidArgument(format!("join: a key could not be encoded: {e}")))?;
            let v = postcard::to_allocvec(v).map_err(|e| Error::InvalidArgument(format!("join: a value could not be encoded: {e}")))?;
            crate::keyed::put_frame(&mut table, &k);
            crate::keyed::put_frame(&mut table, &v);
        }
        let map = self.client.scatter(vec![table])?.pop().expect("one future per value");
        Ok(self.stage(NodeStage::Join { key: key.name.into(), out: std::any::type_name::<(T, V)>(), map }))
    }

    /// Every partition's elements, in partition order.
    pub fn compute(&self) -> Result<Vec<T>> {
        let build = Build::new(&self.client);
        let parts = build.partitions(&self.node)?;
        let mut out = Vec::new();
        for bytes in self.client.gather(&parts)? {
            out.extend(decode_part::<T>(&bytes)?);
        }
        Ok(out)
    }

    /// The first `n` elements, computing partitions one after the other only until
    /// there are enough.
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let build = Build::new(&self.client);
        let mut out = Vec::new();
        for i in 0..self.node.parts {
            if out.len() >= n {
                break;
            }
            out.extend(decode_part::<T>(&build.partition(&self.node, i)?.result()?)?);
        }
        out.truncate(n);
        Ok(out)
    }

    /// Starts computing every partition and gives a bag that reads them where they are,
    /// as Dask's `persist` does; the work is not repeated by later computations.
    pub fn persist(&self) -> Result<Bag<T>> {
        let build = Build::new(&self.client);
        let parts = build.partitions(&self.node)?;
        Ok(self.derive(Kind::Futures(parts.to_vec()), self.node.parts))
    }

    /// The partitions as futures of `Vec<T>`, for tasks that take them.
    pub fn to_futures(&self) -> Result<Vec<Future<Vec<T>>>> {
        let build = Build::new(&self.client);
        Ok(build.partitions(&self.node)?.iter().cloned().map(Future::retype).collect())
    }
}

pub(crate) fn decode_part<T: Element>(bytes: &[u8]) -> Result<Vec<T>> {
    decode_arg::<Vec<T>>(bytes, 0).map_err(|f| Error::Decode(f.message))
}

impl Bag<String> {
    /// The words of every line (split on Unicode white space), as Dask's
    /// `.str.split().flatten()`. Read from text and counted with
    /// [`frequencies`](Bag::frequencies), the words are counted where they lie in the
    /// file's bytes, with no string made per word.
    pub fn split_whitespace(&self) -> Bag<String> {
        self.stage(NodeStage::Plain(Stage::Words))
    }

    /// Writes each partition to `dir/part-NNNNN.txt` on the worker that holds it, one
    /// line per element; gives the files' paths. The directory is made when missing.
    pub fn to_textfiles(&self, dir: impl AsRef<std::path::Path>) -> Result<Vec<std::path::PathBuf>> {
        let dir = dir.as_ref().to_str().ok_or_else(|| Error::InvalidArgument("to_textfiles: the directory is not UTF-8".into()))?.to_string();
        let build = Build::new(&self.client);
        let written = (0..self.node.parts).map(|i| build.leaf(&self.node, i, Sink::Text { dir: dir.clone() })).collect::<Result<Vec<_>>>()?;
        self.client
            .gather(&written)?
            .iter()
            .map(|b| postcard::from_bytes::<String>(b).map(Into::into).map_err(|e| Error::Decode(e.to_string())))
            .collect()
    }
}

/// Tuples whose field `I` a bag can [`pluck`](Bag::pluck).
pub trait Pluck<const I: usize> {
    /// The field's type.
    type Output: Element;
}

macro_rules! pluck {
    ($($i:literal => $o:ident in ($($t:ident),+));* $(;)?) => {$(
        impl<$($t: Element),+> Pluck<$i> for ($($t,)+) {
            type Output = $o;
        }
    )*};
}

pluck! {
    0 => A in (A, B); 1 => B in (A, B);
    0 => A in (A, B, C); 1 => B in (A, B, C); 2 => C in (A, B, C);
    0 => A in (A, B, C, D); 1 => B in (A, B, C, D); 2 => C in (A, B, C, D); 3 => D in (A, B, C, D);
}
