//! The functions a bag applies: [`Func`], made by [`func!`](crate::func), and the code
//! that runs them on a worker.
//!
//! `func!(|x: i64| x * 2)` writes the closure twice. One copy is the [`Func`] the driver
//! hands to [`Bag::map`](crate::Bag::map), typed, so that a bag of the wrong element type
//! does not compile. The other is built, at the same call site, into an [`Adapter`] that
//! the macro registers under the call site's `file:line:column`; a worker (the same
//! binary) finds it there. The adapter holds the loops of every role the closure can
//! play (map, filter, key, fold…), monomorphised for its types, so a partition is run
//! through a stage with one virtual call, not one per element.
//!
//! The closures must not capture anything: what a worker runs is the registered copy.
//! Values a function needs go in as data (`join`'s map, `fold`'s initial value) or into
//! the elements.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use chorus_tasks::registry::Fault;
use chorus_tasks::FailureKind;

use crate::element::{take, view, Element, ElementOps, Part, TopFn, TupleOps, Typed};
use crate::keyed::Records;

/// A registered function for a bag operation, made by [`func!`](crate::func).
///
/// It carries the closure for the type checker and the name the workers find its
/// registered copy by.
#[derive(Clone, Copy)]
pub struct Func<F> {
    pub(crate) name: &'static str,
    pub(crate) source: &'static str,
    _f: PhantomData<F>,
}

impl<F> Func<F> {
    /// Made by [`func!`](crate::func); not to be called directly.
    #[doc(hidden)]
    pub fn __new(name: &'static str, source: &'static str, _f: F) -> Func<F> {
        Func { name, source, _f: PhantomData }
    }

    /// Where it was written (`file:line:column`), which is also its registered name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its source text, as errors quote it.
    pub fn source(&self) -> &'static str {
        self.source
    }
}

impl<F> std::fmt::Debug for Func<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "func!({}) at {}", self.source, self.name)
    }
}

/// Which function, for errors: where it was written and its text.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    /// `file:line:column` of the `func!`.
    pub name: &'static str,
    /// The closure's text.
    pub source: &'static str,
}

/// Where in a bag a stage runs, for errors.
#[derive(Debug, Clone, Copy)]
pub struct Cx {
    /// The partition's index in its bag.
    pub partition: u32,
}

impl Label {
    fn panicked(&self, cx: Cx, element: Option<usize>, payload: Box<dyn Any + Send>) -> Fault {
        let at = match element {
            Some(i) => format!("element {i} of partition {}", cx.partition),
            None => format!("partition {}", cx.partition),
        };
        Fault {
            kind: FailureKind::Panic,
            message: format!("function `{}` ({}) panicked on {at}: {}", self.source, self.name, chorus_tasks::panic_message(&*payload)),
        }
    }

    fn wrong(&self, role: &str) -> Fault {
        Fault {
            kind: FailureKind::Error,
            message: format!("function `{}` ({}) cannot be used for {role}; are driver and workers the same build?", self.source, self.name),
        }
    }

    fn fault(&self, what: String) -> Fault {
        Fault { kind: FailureKind::Error, message: format!("function `{}` ({}): {what}", self.source, self.name) }
    }

    /// Runs `body`, turning a panic into an error that names the element `body` was at.
    fn guard<R>(&self, cx: Cx, body: impl FnOnce(&mut usize) -> R) -> Result<R, Fault> {
        let mut i = 0usize;
        let r = catch_unwind(AssertUnwindSafe(|| body(&mut i)));
        r.map_err(|p| self.panicked(cx, Some(i), p))
    }
}

/// A registered closure's loops, one method per role. The driver's types decide which
/// role a closure plays, so a role it cannot play is an error that does not happen
/// between processes of one build.
#[allow(unused_variables)]
pub trait Adapter: Send + Sync {
    /// Which function this is.
    fn label(&self) -> &Label;
    /// `map`: `Vec<A>` to `Vec<B>`.
    fn map(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        Err(self.label().wrong("map"))
    }
    /// `flat_map`: each element to any number of elements.
    fn flat_map(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        Err(self.label().wrong("flat_map"))
    }
    /// `map_partitions`: the whole partition to a new one.
    fn map_partition(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        Err(self.label().wrong("map_partitions"))
    }
    /// `reduction`'s per-partition function: the whole partition to one value (postcard).
    fn whole(&self, p: Part, cx: Cx) -> Result<Vec<u8>, Fault> {
        Err(self.label().wrong("a reduction"))
    }
    /// `reduction`'s aggregate: a postcard `Vec<R>` to one value (postcard).
    fn aggregate(&self, input: &[u8], cx: Cx) -> Result<Vec<u8>, Fault> {
        Err(self.label().wrong("an aggregate"))
    }
    /// `filter`: the elements it returns `true` for.
    fn filter(&self, p: Part, cx: Cx) -> Result<Part, Fault> {
        Err(self.label().wrong("filter"))
    }
    /// A key function: each element's key, postcard-encoded, as one record each.
    fn keys(&self, p: &Part, out: &mut Records, cx: Cx) -> Result<(), Fault> {
        Err(self.label().wrong("a key"))
    }
    /// `topk` by key: the `k` elements of largest (or smallest) key, in order.
    fn top(&self, p: Part, k: usize, largest: bool, cx: Cx) -> Result<Part, Fault> {
        Err(self.label().wrong("topk"))
    }
    /// `fold`'s binop over a partition from `init` (postcard), giving the accumulator.
    fn fold(&self, init: &[u8], p: Part, cx: Cx) -> Result<Vec<u8>, Fault> {
        Err(self.label().wrong("fold"))
    }
    /// One fold per group: element `i` goes into group `groups[i]`; each group starts
    /// from `init`, or from its first element when there is none. Gives the encoded
    /// accumulators.
    fn fold_groups(&self, init: Option<&[u8]>, p: Part, groups: &[u32], n: usize, cx: Cx) -> Result<Vec<Vec<u8>>, Fault> {
        Err(self.label().wrong("fold_by"))
    }
    /// A combine: the encoded accumulators folded left into one.
    fn merge(&self, accs: &[&[u8]], cx: Cx) -> Result<Vec<u8>, Fault> {
        Err(self.label().wrong("a combine"))
    }
}

/// What a registration makes: the adapter, and the ops of the types it touches.
pub struct Made {
    pub(crate) adapter: Box<dyn Adapter>,
    pub(crate) elements: Vec<&'static ElementOps>,
}

fn encode<T: serde::Serialize>(label: &Label, value: &T) -> Result<Vec<u8>, Fault> {
    postcard::to_allocvec(value).map_err(|e| label.fault(format!("its result could not be encoded: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(label: &Label, bytes: &[u8], what: &str) -> Result<T, Fault> {
    postcard::from_bytes(bytes).map_err(|e| label.fault(format!("{what} could not be decoded: {e}")))
}

fn input<T: 'static>(label: &Label, p: Part) -> Result<Vec<T>, Fault> {
    take::<T>(p).map_err(|e| label.fault(e))
}

/// `z` as an `X` when the two are the same type (a fold's accumulator), without a copy.
fn same<X: 'static, Z: 'static>(z: Z) -> Option<X> {
    let mut slot = Some(z);
    (&mut slot as &mut dyn Any).downcast_mut::<Option<X>>().and_then(Option::take)
}

/// The role loops of `|x: A| -> B`.
pub struct Unary<F, A, B> {
    f: F,
    label: Label,
    flat: Option<FlatFn<F, A, B>>,
    partition: Option<FlatFn<F, A, B>>,
    _t: PhantomData<fn(A) -> B>,
}

/// A role of a unary closure that needs more of its result type than it always has.
pub type FlatFn<F, A, B> = fn(&Unary<F, A, B>, Part, Cx) -> Result<Typed, Fault>;

impl<F, A, B> Unary<F, A, B>
where
    F: Fn(A) -> B + Send + Sync + 'static,
    A: Element,
    B: Element,
{
    /// The adapter of `f`, with the roles its types allow.
    pub fn made(f: F, label: Label, types: Vec<&'static ElementOps>, flat: Option<FlatFn<F, A, B>>, partition: Option<FlatFn<F, A, B>>) -> Made {
        Made { adapter: Box::new(Unary { f, label, flat, partition, _t: PhantomData }), elements: types }
    }

    /// `flat_map` of a closure whose result iterates over elements.
    pub fn flat_loop(&self, p: Part, cx: Cx) -> Result<Typed, Fault>
    where
        B: IntoIterator,
        B::Item: Element,
    {
        let v = input::<A>(&self.label, p)?;
        let out = self.label.guard(cx, |i| {
            let mut out = Vec::new();
            for x in v {
                out.extend((self.f)(x));
                *i += 1;
            }
            out
        })?;
        Ok((Box::new(out), crate::registry::ops_or_basic::<B::Item>()))
    }

    /// `map_partitions` of a closure that gives a `Vec`.
    pub fn partition_loop<U: Element>(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        let Some(a) = p.downcast::<A>().ok() else { return Err(self.label.fault("a partition of another type".into())) };
        let b = catch_unwind(AssertUnwindSafe(|| (self.f)(*a))).map_err(|p| self.label.panicked(cx, None, p))?;
        let v: Vec<U> = same(b).ok_or_else(|| self.label.wrong("map_partitions"))?;
        Ok((Box::new(v), crate::registry::ops_or_basic::<U>()))
    }
}

impl<F, A, B> Adapter for Unary<F, A, B>
where
    F: Fn(A) -> B + Send + Sync + 'static,
    A: Element,
    B: Element,
{
    fn label(&self) -> &Label {
        &self.label
    }

    fn map(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        let v = input::<A>(&self.label, p)?;
        let out = self.label.guard(cx, |i| {
            let mut out = Vec::with_capacity(v.len());
            for x in v {
                out.push((self.f)(x));
                *i += 1;
            }
            out
        })?;
        Ok((Box::new(out), crate::registry::ops_or_basic::<B>()))
    }

    fn flat_map(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        self.flat.ok_or_else(|| self.label.wrong("flat_map"))?(self, p, cx)
    }

    fn map_partition(&self, p: Part, cx: Cx) -> Result<Typed, Fault> {
        self.partition.ok_or_else(|| self.label.wrong("map_partitions"))?(self, p, cx)
    }

    fn whole(&self, p: Part, cx: Cx) -> Result<Vec<u8>, Fault> {
        let Some(a) = p.downcast::<A>().ok() else { return Err(self.label.fault("a partition of another type".into())) };
        let b = catch_unwind(AssertUnwindSafe(|| (self.f)(*a))).map_err(|p| self.label.panicked(cx, None, p))?;
        encode(&self.label, &b)
    }

    fn aggregate(&self, input: &[u8], cx: Cx) -> Result<Vec<u8>, Fault> {
        let a: A = decode(&self.label, input, "the partial results")?;
        let b = catch_unwind(AssertUnwindSafe(|| (self.f)(a))).map_err(|p| self.label.panicked(cx, None, p))?;
        encode(&self.label, &b)
    }
}

/// The role loops of `|x: &A| -> K`: filters and keys.
pub struct ByRef<F, A, K> {
    f: F,
    label: Label,
    top: Option<TopKeyFn<F, A, K>>,
    _t: PhantomData<fn(&A) -> K>,
}

/// `topk` by a key that has an order.
pub type TopKeyFn<F, A, K> = fn(&ByRef<F, A, K>, Part, usize, bool, Cx) -> Result<Part, Fault>;

impl<F, A, K> ByRef<F, A, K>
where
    F: Fn(&A) -> K + Send + Sync + 'static,
    A: Element,
    K: Element,
{
    /// The adapter of `f`.
    pub fn made(f: F, label: Label, types: Vec<&'static ElementOps>, top: Option<TopKeyFn<F, A, K>>) -> Made {
        Made { adapter: Box::new(ByRef { f, label, top, _t: PhantomData }), elements: types }
    }

    /// `topk` when `K: Ord`.
    pub fn top_loop(&self, p: Part, k: usize, largest: bool, cx: Cx) -> Result<Part, Fault>
    where
        K: Ord,
    {
        let v = input::<A>(&self.label, p)?;
        let keys: Vec<K> = self.label.guard(cx, |i| {
            let mut keys = Vec::with_capacity(v.len());
            for x in &v {
                keys.push((self.f)(x));
                *i += 1;
            }
            keys
        })?;
        Ok(Box::new(crate::element::pick_top(v, keys, k, largest)))
    }
}

impl<F, A, K> Adapter for ByRef<F, A, K>
where
    F: Fn(&A) -> K + Send + Sync + 'static,
    A: Element,
    K: Element,
{
    fn label(&self) -> &Label {
        &self.label
    }

    fn filter(&self, p: Part, cx: Cx) -> Result<Part, Fault> {
        let v = input::<A>(&self.label, p)?;
        let out = self.label.guard(cx, |i| {
            let mut out = Vec::new();
            for x in v {
                let keep: Option<bool> = same((self.f)(&x));
                if keep == Some(true) {
                    out.push(x);
                }
                *i += 1;
            }
            out
        })?;
        Ok(Box::new(out))
    }

    fn keys(&self, p: &Part, out: &mut Records, cx: Cx) -> Result<(), Fault> {
        let v = view::<A>(p).map_err(|e| self.label.fault(e))?;
        let r = self.label.guard(cx, |i| {
            for x in v {
                let k = (self.f)(x);
                out.push_with(|buf| postcard::to_io(&k, buf).map(|_| ()))?;
                *i += 1;
            }
            Ok::<(), postcard::Error>(())
        })?;
        r.map_err(|e| self.label.fault(format!("a key could not be encoded: {e}")))
    }

    fn top(&self, p: Part, k: usize, largest: bool, cx: Cx) -> Result<Part, Fault> {
        self.top.ok_or_else(|| self.label.wrong("topk"))?(self, p, k, largest, cx)
    }
}

/// The role loops of `|acc: X, x: Y| -> Z`: folds and combines.
pub struct Binary<F, X, Y, Z> {
    f: F,
    label: Label,
    _t: PhantomData<fn(X, Y) -> Z>,
}

impl<F, X, Y, Z> Binary<F, X, Y, Z>
where
    F: Fn(X, Y) -> Z + Send + Sync + 'static,
    X: Element,
    Y: Element,
    Z: Element,
{
    /// The adapter of `f`.
    pub fn made(f: F, label: Label, types: Vec<&'static ElementOps>) -> Made {
        Made { adapter: Box::new(Binary { f, label, _t: PhantomData }), elements: types }
    }

    fn step(&self, acc: X, y: Y) -> Result<X, Fault> {
        same((self.f)(acc, y)).ok_or_else(|| self.label.wrong("a fold (its result must be its first argument's type)"))
    }
}

impl<F, X, Y, Z> Adapter for Binary<F, X, Y, Z>
where
    F: Fn(X, Y) -> Z + Send + Sync + 'static,
    X: Element,
    Y: Element,
    Z: Element,
{
    fn label(&self) -> &Label {
        &self.label
    }

    fn fold(&self, init: &[u8], p: Part, cx: Cx) -> Result<Vec<u8>, Fault> {
        let mut acc: X = decode(&self.label, init, "the initial value")?;
        let v = input::<Y>(&self.label, p)?;
        let acc = self.label.guard(cx, |i| {
            for y in v {
                acc = self.step(acc, y)?;
                *i += 1;
            }
            Ok(acc)
        })??;
        encode(&self.label, &acc)
    }

    fn fold_groups(&self, init: Option<&[u8]>, p: Part, groups: &[u32], n: usize, cx: Cx) -> Result<Vec<Vec<u8>>, Fault> {
        let v = input::<Y>(&self.label, p)?;
        let mut accs: Vec<Option<X>> = match init {
            Some(b) => (0..n).map(|_| decode(&self.label, b, "the initial value").map(Some)).collect::<Result<_, _>>()?,
            None => (0..n).map(|_| None).collect(),
        };
        self.label.guard(cx, |i| {
            for (y, &g) in v.into_iter().zip(groups) {
                let slot = &mut accs[g as usize];
                *slot = Some(match slot.take() {
                    Some(acc) => self.step(acc, y)?,
                    None => same::<X, Y>(y).ok_or_else(|| self.label.wrong("reduce_by_key"))?,
                });
                *i += 1;
            }
            Ok(())
        })??;
        accs.iter().map(|a| a.as_ref().map_or_else(|| Err(self.label.fault("a group without values".into())), |a| encode(&self.label, a))).collect()
    }

    fn merge(&self, accs: &[&[u8]], cx: Cx) -> Result<Vec<u8>, Fault> {
        let mut values = accs.iter().map(|b| decode::<X>(&self.label, b, "a partial result"));
        let Some(first) = values.next() else { return Err(self.label.fault("nothing to combine".into())) };
        let mut acc = first?;
        let rest: Vec<X> = values.collect::<Result<_, _>>()?;
        let acc = catch_unwind(AssertUnwindSafe(|| {
            for x in rest {
                acc = self.step(acc, same::<Y, X>(x).ok_or_else(|| self.label.wrong("a combine"))?)?;
            }
            Ok(acc)
        }))
        .map_err(|p| self.label.panicked(cx, None, p))??;
        encode(&self.label, &acc)
    }
}

/// Autoref probes: what a registration site, where the types are concrete, can tell of
/// them. `(&&Probe).cap()` finds the impl on `&Probe` when the bound holds, the
/// fallback on `Probe` otherwise.
pub mod probe {
    use super::*;

    /// Stands for an element type.
    pub struct Probe<T>(PhantomData<fn() -> T>);

    /// Stands for a closure and its parameter and result types.
    #[allow(clippy::type_complexity)]
    pub struct FnProbe<F, A, B>(PhantomData<fn() -> (F, A, B)>);

    /// The probe of `|x: A| -> B`'s types.
    pub fn unary<F: Fn(A) -> B, A, B>(_: &F) -> (FnProbe<F, A, B>, Probe<A>, Probe<B>) {
        (FnProbe(PhantomData), Probe(PhantomData), Probe(PhantomData))
    }

    /// The probe of `|x: &A| -> B`'s types.
    pub fn by_ref<F: Fn(&A) -> B, A, B>(_: &F) -> (FnProbe<F, A, B>, Probe<A>, Probe<B>) {
        (FnProbe(PhantomData), Probe(PhantomData), Probe(PhantomData))
    }

    /// The probe of `|x: X, y: Y| -> Z`'s types.
    pub fn binary<F: Fn(X, Y) -> Z, X, Y, Z>(_: &F) -> (Probe<X>, Probe<Y>, Probe<Z>) {
        (Probe(PhantomData), Probe(PhantomData), Probe(PhantomData))
    }

    impl<T> Probe<T> {
        /// The probe of `T`.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Probe<T> {
            Probe(PhantomData)
        }
    }

    impl<T: Element> Probe<T> {
        /// The basic ops of the type.
        pub fn basic(&self) -> ElementOps {
            ElementOps::basic::<T>()
        }
    }

    /// An order, when the type has one.
    pub trait OrdYes {
        /// See the trait.
        fn ord_cap(&self) -> Option<TopFn>;
    }
    impl<T: Element + Ord + Clone> OrdYes for &Probe<T> {
        fn ord_cap(&self) -> Option<TopFn> {
            Some(crate::element::top_ord::<T>)
        }
    }
    /// The fallback of [`OrdYes`].
    pub trait OrdNo {
        /// See the trait.
        fn ord_cap(&self) -> Option<TopFn>;
    }
    impl<T> OrdNo for Probe<T> {
        fn ord_cap(&self) -> Option<TopFn> {
            None
        }
    }

    /// Tuple fields, when the type is a tuple of 2 to 4.
    pub trait TupleYes {
        /// See the trait.
        fn tuple_cap(&self) -> Option<TupleOps>;
    }
    impl<A: Element, B: Element> TupleYes for &Probe<(A, B)> {
        fn tuple_cap(&self) -> Option<TupleOps> {
            Some(crate::element::tuple2::<A, B>())
        }
    }
    impl<A: Element, B: Element, C: Element> TupleYes for &Probe<(A, B, C)> {
        fn tuple_cap(&self) -> Option<TupleOps> {
            Some(crate::element::tuple3::<A, B, C>())
        }
    }
    impl<A: Element, B: Element, C: Element, D: Element> TupleYes for &Probe<(A, B, C, D)> {
        fn tuple_cap(&self) -> Option<TupleOps> {
            Some(crate::element::tuple4::<A, B, C, D>())
        }
    }
    /// The fallback of [`TupleYes`].
    pub trait TupleNo {
        /// See the trait.
        fn tuple_cap(&self) -> Option<TupleOps>;
    }
    impl<T> TupleNo for Probe<T> {
        fn tuple_cap(&self) -> Option<TupleOps> {
            None
        }
    }

    /// `flat_map`, when the result iterates over elements.
    pub trait FlatYes<F, A, B> {
        /// See the trait.
        fn flat_cap(&self) -> Option<FlatFn<F, A, B>>;
    }
    impl<F, A, B> FlatYes<F, A, B> for &FnProbe<F, A, B>
    where
        F: Fn(A) -> B + Send + Sync + 'static,
        A: Element,
        B: Element + IntoIterator,
        B::Item: Element,
    {
        fn flat_cap(&self) -> Option<FlatFn<F, A, B>> {
            Some(Unary::<F, A, B>::flat_loop)
        }
    }
    /// The fallback of [`FlatYes`].
    pub trait FlatNo<F, A, B> {
        /// See the trait.
        fn flat_cap(&self) -> Option<FlatFn<F, A, B>>;
    }
    impl<F, A, B> FlatNo<F, A, B> for FnProbe<F, A, B> {
        fn flat_cap(&self) -> Option<FlatFn<F, A, B>> {
            None
        }
    }

    /// `map_partitions`, when the result is a `Vec`.
    pub trait VecYes<F, A, B> {
        /// See the trait.
        fn vec_cap(&self) -> Option<FlatFn<F, A, B>>;
    }
    impl<F, A, U> VecYes<F, A, Vec<U>> for &FnProbe<F, A, Vec<U>>
    where
        F: Fn(A) -> Vec<U> + Send + Sync + 'static,
        A: Element,
        U: Element,
    {
        fn vec_cap(&self) -> Option<FlatFn<F, A, Vec<U>>> {
            Some(Unary::<F, A, Vec<U>>::partition_loop::<U>)
        }
    }
    /// The fallback of [`VecYes`].
    pub trait VecNo<F, A, B> {
        /// See the trait.
        fn vec_cap(&self) -> Option<FlatFn<F, A, B>>;
    }
    impl<F, A, B> VecNo<F, A, B> for FnProbe<F, A, B> {
        fn vec_cap(&self) -> Option<FlatFn<F, A, B>> {
            None
        }
    }

    /// The element type of what a closure returns, when it iterates (`flat_map`'s
    /// elements, `map_partitions`' `Vec<U>`), so that it is registered with its
    /// capabilities too.
    pub trait ItemYes<B: IntoIterator> {
        /// See the trait.
        fn item_probe(&self) -> Probe<B::Item>;
    }
    impl<F, A, B: IntoIterator> ItemYes<B> for &FnProbe<F, A, B> {
        fn item_probe(&self) -> Probe<B::Item> {
            Probe(PhantomData)
        }
    }
    /// The fallback of [`ItemYes`]: nothing more to register.
    pub trait ItemNo {
        /// See the trait.
        fn item_probe(&self) -> Probe<()>;
    }
    impl<F, A, B> ItemNo for FnProbe<F, A, B> {
        fn item_probe(&self) -> Probe<()> {
            Probe(PhantomData)
        }
    }

    /// `topk` by this key, when the key has an order.
    pub trait TopYes<F, A, K> {
        /// See the trait.
        fn top_cap(&self) -> Option<TopKeyFn<F, A, K>>;
    }
    impl<F, A, K> TopYes<F, A, K> for &FnProbe<F, A, K>
    where
        F: Fn(&A) -> K + Send + Sync + 'static,
        A: Element,
        K: Element + Ord,
    {
        fn top_cap(&self) -> Option<TopKeyFn<F, A, K>> {
            Some(ByRef::<F, A, K>::top_loop)
        }
    }
    /// The fallback of [`TopYes`].
    pub trait TopNo<F, A, K> {
        /// See the trait.
        fn top_cap(&self) -> Option<TopKeyFn<F, A, K>>;
    }
    impl<F, A, K> TopNo<F, A, K> for FnProbe<F, A, K> {
        fn top_cap(&self) -> Option<TopKeyFn<F, A, K>> {
            None
        }
    }
}
