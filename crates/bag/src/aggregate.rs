//! Reductions (tree reductions to one value or one partition) and the by-key
//! operations of MapReduce: `fold_by`, `reduce_by_key` and the `group_by` shuffle.

use crate::bag::{decode_part, registered, Bag};
use crate::element::Element;
use crate::func::Func;
use crate::graph::{Build, Kind, Reduce};
use crate::plan::{Combine, Sink};
use crate::reduce::{Moments, NumAcc, NumAccPublic, Number};
use crate::{Error, Result};

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::InvalidArgument(format!("{what} could not be encoded: {e}")))
}

impl<T: Element> Bag<T> {
    /// Runs a tree reduction and brings its one result here.
    fn reduce(&self, reduce: Reduce) -> Result<Vec<u8>> {
        let build = Build::new(&self.client);
        let root = build.tree(&self.node, &reduce)?;
        Ok(root.result()?)
    }

    /// `binop` folds each partition from `init`; `combine` folds the partitions'
    /// results, in partition order, through a tree.
    pub fn fold<A, B, C>(&self, init: A, binop: Func<B>, combine: Func<C>) -> Result<A>
    where
        A: Element,
        B: Fn(A, T) -> A,
        C: Fn(A, A) -> A,
    {
        let sink = Sink::Fold { binop: binop.name.into(), init: encode(&init, "fold's initial value")? };
        decode(&self.reduce(Reduce::new(sink, Combine::Fold(combine.name.into())))?)
    }

    /// `per_partition` on each whole partition, then `aggregate` on the list of their
    /// results (in partition order), in one task.
    pub fn reduction<R, S, P, G>(&self, per_partition: Func<P>, aggregate: Func<G>) -> Result<S>
    where
        R: Element,
        S: Element,
        P: Fn(Vec<T>) -> R,
        G: Fn(Vec<R>) -> S,
    {
        let reduce = Reduce { sink: Sink::Whole(per_partition.name.into()), level: Combine::Aggregate(aggregate.name.into()), root: Combine::Aggregate(aggregate.name.into()), split_every: usize::MAX };
        decode(&self.reduce(reduce)?)
    }

    /// How many elements.
    pub fn count(&self) -> Result<u64> {
        decode(&self.reduce(Reduce::new(Sink::Count, Combine::Count))?)
    }

    /// The sum (0 for an empty bag); exact for integers, an error when it does not fit `T`.
    pub fn sum(&self) -> Result<T>
    where
        T: Number,
    {
        registered::<T>("sum")?;
        let acc: NumAcc = decode(&self.reduce(Reduce::new(Sink::Sum, Combine::Sum))?)?;
        T::from_acc(NumAccPublic(acc)).ok_or_else(|| Error::Overflow { type_name: std::any::type_name::<T>().into() })
    }

    fn moments(&self, operation: &str) -> Result<Moments>
    where
        T: Number,
    {
        registered::<T>(operation)?;
        let m: Moments = decode(&self.reduce(Reduce::new(Sink::Moments, Combine::Moments))?)?;
        if m.n == 0 {
            return Err(Error::Empty { operation: operation.into() });
        }
        Ok(m)
    }

    /// The mean, as `f64`.
    pub fn mean(&self) -> Result<f64>
    where
        T: Number,
    {
        Ok(self.moments("mean")?.mean)
    }

    /// The standard deviation (of the population, as Dask's `std()`), as `f64`.
    pub fn std(&self) -> Result<f64>
    where
        T: Number,
    {
        let m = self.moments("std")?;
        Ok((m.m2 / m.n as f64).sqrt())
    }

    fn extreme(&self, largest: bool, operation: &str) -> Result<T>
    where
        T: PartialOrd,
    {
        registered::<T>(operation)?;
        let ty = self.node.ty.to_string();
        let combine = Combine::Top { k: 1, largest, key: None, ty };
        let bytes = self.reduce(Reduce::new(Sink::Top { k: 1, largest, key: None }, combine))?;
        decode_part::<T>(&bytes)?.pop().ok_or_else(|| Error::Empty { operation: operation.into() })
    }

    /// The smallest element (floats in IEEE total order).
    pub fn min(&self) -> Result<T>
    where
        T: PartialOrd,
    {
        self.extreme(false, "min")
    }

    /// The largest element (floats in IEEE total order, where NaN is largest).
    pub fn max(&self) -> Result<T>
    where
        T: PartialOrd,
    {
        self.extreme(true, "max")
    }

    /// Each distinct element and how many times it occurs, in one partition, in order
    /// of first appearance. Elements are compared by their serialized form.
    pub fn frequencies(&self) -> Result<Bag<(T, u64)>>
    where
        T: Eq + std::hash::Hash,
    {
        registered::<T>("frequencies")?;
        let reduce = Reduce::finishing(Sink::Frequencies, |finish| Combine::Frequencies { finish });
        Ok(self.derive_tree(reduce))
    }

    fn derive_tree<U>(&self, reduce: Reduce) -> Bag<U> {
        Bag::from_node(&self.client, crate::graph::Node::new(Kind::Tree { input: self.node.clone(), reduce }, 1, std::any::type_name::<U>()))
    }

    /// The `k` elements of largest `key`, largest first, in one partition (ties keep
    /// the earlier element first).
    pub fn topk<K: Ord, F: Fn(&T) -> K>(&self, k: usize, key: Func<F>) -> Bag<T> {
        let f = Some(key.name.to_string());
        let combine = Combine::Top { k: k as u64, largest: true, key: f.clone(), ty: self.node.ty.to_string() };
        self.derive_tree(Reduce::new(Sink::Top { k: k as u64, largest: true, key: f }, combine))
    }

    /// Dask's `foldby`: the elements of each key (`key`) folded with `binop` from `init`
    /// inside each partition, and the partitions' accumulators of a key combined with
    /// `combine` through a tree; no element leaves its partition. Gives `(key,
    /// accumulator)` pairs in one partition, in order of first appearance. Keys are
    /// compared by their serialized form.
    pub fn fold_by<K, A, KF, B, C>(&self, key: Func<KF>, binop: Func<B>, init: A, combine: Func<C>) -> Result<Bag<(K, A)>>
    where
        K: Element + Eq + std::hash::Hash,
        A: Element,
        KF: Fn(&T) -> K,
        B: Fn(A, T) -> A,
        C: Fn(A, A) -> A,
    {
        let sink = Sink::FoldBy { key: key.name.into(), binop: binop.name.into(), init: encode(&init, "fold_by's initial value")? };
        let reduce = Reduce::finishing(sink, |finish| Combine::Keyed { combine: combine.name.into(), finish });
        Ok(self.derive_tree(reduce))
    }

    /// Every element grouped by `key`, through a full shuffle: each partition's
    /// elements are hashed by key into one bucket per output partition, and each
    /// output partition's task fetches its buckets straight from the workers that made
    /// them. Gives `(key, elements)` pairs in as many partitions, each key in one, its
    /// elements in partition order.
    ///
    /// Every value of a key is held in one task: when a key has more than fits, the
    /// task fails and says so. [`fold_by`](Bag::fold_by) and
    /// [`reduce_by_key`](Bag::reduce_by_key) combine values as they come instead.
    pub fn group_by<K, F>(&self, key: Func<F>) -> Bag<(K, Vec<T>)>
    where
        K: Element + Eq + std::hash::Hash,
        F: Fn(&T) -> K,
    {
        Bag::from_node(&self.client, crate::graph::Node::new(Kind::Shuffle { input: self.node.clone(), key: key.name.into() }, self.node.parts, std::any::type_name::<(K, Vec<T>)>()))
    }
}

impl Bag<bool> {
    /// Whether any element is true (false for an empty bag).
    pub fn any(&self) -> Result<bool> {
        Ok(decode::<(bool, bool)>(&self.reduce(Reduce::new(Sink::Truth, Combine::Truth))?)?.0)
    }

    /// Whether every element is true (true for an empty bag).
    pub fn all(&self) -> Result<bool> {
        Ok(decode::<(bool, bool)>(&self.reduce(Reduce::new(Sink::Truth, Combine::Truth))?)?.1)
    }
}

impl<K: Element + Eq + std::hash::Hash, V: Element> Bag<(K, V)> {
    /// The values of each key combined with `binop`, inside each partition and then
    /// across partitions through a tree: `(key, combined value)` pairs in one
    /// partition, in order of first appearance.
    pub fn reduce_by_key<F: Fn(V, V) -> V>(&self, binop: Func<F>) -> Result<Bag<(K, V)>> {
        registered::<(K, V)>("reduce_by_key")?;
        let reduce = Reduce::finishing(Sink::ReduceByKey { binop: binop.name.into() }, |finish| Combine::Keyed { combine: binop.name.into(), finish });
        Ok(self.derive_tree(reduce))
    }
}
