//! Element types as the workers see them.
//!
//! A partition travels as the task encoding of a `Vec<T>` (the bytes a task returning
//! `Vec<T>` produces: raw for plain numbers, postcard otherwise). Inside a task it is a
//! [`Part`], the `Vec<T>` behind `dyn Any`, with the [`ElementOps`] of `T`: the
//! monomorphised code that decodes, encodes, cuts and joins such vectors. Operations that
//! need more of a type (an order for `topk`, numbers for `sum`, tuples for `pluck`) find
//! it in the ops as optional capabilities, which the registration macros fill in where
//! the type is concrete (see `probe`).
//!
//! The worker finds the ops of a type by its [`std::any::type_name`], which is the same
//! in every process of one build.

use std::any::Any;

use chorus_tasks::registry::{decode_arg, encode_result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keyed::Records;

/// What a bag's elements must be: values that can be sent to and between workers.
///
/// Implemented for every `Serialize + DeserializeOwned + Send + 'static` type.
pub trait Element: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Element for T {}

/// One partition inside a task: a `Vec<T>` whose `T` its [`ElementOps`] know.
pub type Part = Box<dyn Any + Send>;

/// A partition and the ops of its element type.
pub type Typed = (Part, &'static ElementOps);

/// Keeps the `k` largest (or smallest) elements of a partition, in that order.
pub type TopFn = fn(Part, usize, bool) -> Result<Part, String>;

/// The code of one element type `T`, as function pointers over partitions (`Part`).
#[derive(Clone, Copy)]
pub struct ElementOps {
    /// `std::any::type_name::<T>()`: the key the workers look the type up by.
    pub name: &'static str,
    pub(crate) decode: fn(&[u8]) -> Result<Part, String>,
    /// Decodes a postcard `Vec<T>` (which is not the task encoding for plain numbers).
    pub(crate) from_postcard: fn(&[u8]) -> Result<Part, String>,
    pub(crate) encode: fn(Part) -> Result<Vec<u8>, String>,
    pub(crate) len: fn(&Part) -> usize,
    /// Each element's postcard bytes, as one record each.
    pub(crate) records: fn(&Part, &mut Records) -> Result<(), String>,
    /// The elements whose flag is set.
    pub(crate) select: fn(Part, &[bool]) -> Result<Part, String>,
    pub(crate) concat: fn(Vec<Part>) -> Result<Part, String>,
    /// Piece `j` of `k` nearly equal consecutive pieces.
    pub(crate) piece: fn(Part, usize, usize) -> Result<Part, String>,
    pub(crate) ord: Option<TopFn>,
    pub(crate) num: Option<NumOps>,
    pub(crate) truth: Option<TruthFn>,
    pub(crate) tuple: Option<TupleOps>,
    pub(crate) string: bool,
    #[cfg(feature = "frame")]
    pub(crate) to_parquet: fn(Part, &std::path::Path) -> Result<(), String>,
    #[cfg(feature = "frame")]
    pub(crate) from_parquet: fn(&std::path::Path) -> Result<Part, String>,
}

impl std::fmt::Debug for ElementOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementOps").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ElementOps {
    /// The ops every element type has, without capabilities.
    pub fn basic<T: Element>() -> ElementOps {
        ElementOps {
            name: std::any::type_name::<T>(),
            decode: decode::<T>,
            from_postcard: from_postcard::<T>,
            encode: encode::<T>,
            len: len::<T>,
            records: records::<T>,
            select: select::<T>,
            concat: concat::<T>,
            piece: piece::<T>,
            ord: None,
            num: None,
            truth: None,
            tuple: None,
            string: false,
            #[cfg(feature = "frame")]
            to_parquet: crate::frame::to_parquet::<T>,
            #[cfg(feature = "frame")]
            from_parquet: crate::frame::from_parquet::<T>,
        }
    }

    /// With an order (`topk`, `min`, `max`), when the type has one.
    pub fn with_ord(mut self, ord: Option<TopFn>) -> ElementOps {
        self.ord = self.ord.or(ord);
        self
    }

    /// With `pluck` and the key-value split, when the type is a tuple.
    pub fn with_tuple(mut self, tuple: Option<TupleOps>) -> ElementOps {
        self.tuple = self.tuple.or(tuple);
        self
    }

    /// How many capabilities it has: the registry keeps the richest ops of a type.
    pub(crate) fn richness(&self) -> usize {
        self.ord.is_some() as usize + self.num.is_some() as usize + self.truth.is_some() as usize + self.tuple.is_some() as usize + self.string as usize
    }
}

pub(crate) fn take<T: 'static>(part: Part) -> Result<Vec<T>, String> {
    part.downcast::<Vec<T>>().map(|b| *b).map_err(|_| format!("a partition is not a Vec<{}>", std::any::type_name::<T>()))
}

pub(crate) fn view<T: 'static>(part: &Part) -> Result<&Vec<T>, String> {
    part.downcast_ref::<Vec<T>>().ok_or_else(|| format!("a partition is not a Vec<{}>", std::any::type_name::<T>()))
}

fn decode<T: Element>(bytes: &[u8]) -> Result<Part, String> {
    decode_arg::<Vec<T>>(bytes, 0).map(|v| Box::new(v) as Part).map_err(|f| f.message)
}

fn from_postcard<T: Element>(bytes: &[u8]) -> Result<Part, String> {
    postcard::from_bytes::<Vec<T>>(bytes).map(|v| Box::new(v) as Part).map_err(|e| format!("elements of type `{}` could not be decoded: {e}", std::any::type_name::<T>()))
}

fn encode<T: Element>(part: Part) -> Result<Vec<u8>, String> {
    encode_result(take::<T>(part)?).map_err(|f| f.message)
}

fn len<T: Element>(part: &Part) -> usize {
    view::<T>(part).map_or(0, Vec::len)
}

fn records<T: Element>(part: &Part, out: &mut Records) -> Result<(), String> {
    for x in view::<T>(part)? {
        out.push_with(|buf| postcard::to_io(x, buf).map(|_| ()).map_err(|e| e.to_string()))?;
    }
    Ok(())
}

fn select<T: Element>(part: Part, keep: &[bool]) -> Result<Part, String> {
    let v = take::<T>(part)?;
    if v.len() != keep.len() {
        return Err(format!("{} flags for {} elements", keep.len(), v.len()));
    }
    Ok(Box::new(v.into_iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| x).collect::<Vec<T>>()))
}

fn concat<T: Element>(parts: Vec<Part>) -> Result<Part, String> {
    let mut out: Vec<T> = Vec::new();
    for p in parts {
        out.append(&mut take::<T>(p)?);
    }
    Ok(Box::new(out))
}

/// The bounds of piece `j` of `k` of `n` elements.
pub(crate) fn piece_bounds(n: usize, j: usize, k: usize) -> (usize, usize) {
    (n * j / k.max(1), n * (j + 1) / k.max(1))
}

fn piece<T: Element>(part: Part, j: usize, k: usize) -> Result<Part, String> {
    if j >= k {
        return Err(format!("piece {j} of {k}"));
    }
    let mut v = take::<T>(part)?;
    let (a, b) = piece_bounds(v.len(), j, k);
    v.truncate(b);
    Ok(Box::new(v.split_off(a)))
}

/// The `k` elements of `v` with the largest (`largest`) or smallest `keys`, in that
/// order; ties keep the earlier element first. A selection, then a sort of the `k`.
pub(crate) fn pick_top<T, K: Ord>(v: Vec<T>, keys: Vec<K>, k: usize, largest: bool) -> Vec<T> {
    let mut keyed: Vec<(K, usize)> = keys.into_iter().zip(0..).collect();
    let order = |a: &(K, usize), b: &(K, usize)| if largest { b.0.cmp(&a.0).then(a.1.cmp(&b.1)) } else { a.cmp(b) };
    if k < keyed.len() {
        if k == 0 {
            return Vec::new();
        }
        keyed.select_nth_unstable_by(k - 1, order);
        keyed.truncate(k);
    }
    keyed.sort_unstable_by(order);
    let mut slots: Vec<Option<T>> = v.into_iter().map(Some).collect();
    keyed.into_iter().filter_map(|(_, i)| slots.get_mut(i).and_then(Option::take)).collect()
}

/// The `k` largest (`largest`) or smallest elements of a partition by `key`, in order.
pub(crate) fn top_by<T: 'static, K: Ord>(part: Part, k: usize, largest: bool, key: impl Fn(&T) -> K) -> Result<Vec<T>, String> {
    let v = take::<T>(part)?;
    let keys = v.iter().map(key).collect();
    Ok(pick_top(v, keys, k, largest))
}

/// [`TopFn`] of a type with `Ord`.
pub fn top_ord<T: Element + Ord + Clone>(part: Part, k: usize, largest: bool) -> Result<Part, String> {
    top_by::<T, T>(part, k, largest, T::clone).map(|v| Box::new(v) as Part)
}

/// Whether any and whether all elements of a `bool` partition are true.
pub type TruthFn = fn(&Part) -> (bool, bool);
/// Field `i` of every element of a tuple partition.
pub type PluckFn = fn(Part, usize) -> Result<Typed, String>;
/// The two fields of every element of a pair partition, apart.
pub type UnzipFn = fn(Part) -> Result<(Typed, Typed), String>;

/// What `sum`, `mean` and `std` need of a number type.
#[derive(Clone, Copy)]
pub(crate) struct NumOps {
    pub(crate) sum: fn(&Part) -> Result<crate::reduce::NumAcc, String>,
    pub(crate) moments: fn(&Part) -> Result<crate::reduce::Moments, String>,
}

/// What `pluck` and the key-value operations need of a tuple type.
#[derive(Clone, Copy)]
pub struct TupleOps {
    /// The two fields of every pair, apart (pairs only).
    pub(crate) unzip: Option<UnzipFn>,
    /// Field `i` of every element, and the ops of its type.
    pub(crate) pluck: PluckFn,
}

/// The ops of a type, leaked: each registration makes them once per process.
pub fn leak(ops: ElementOps) -> &'static ElementOps {
    Box::leak(Box::new(ops))
}

macro_rules! tuple_ops {
    ($fn:ident, $n:literal, $($t:ident $i:tt),+) => {
        /// [`TupleOps`] of this tuple type.
        pub fn $fn<$($t: Element),+>() -> TupleOps {
            fn pluck<$($t: Element),+>(part: Part, field: usize) -> Result<Typed, String> {
                let v = take::<($($t,)+)>(part)?;
                match field {
                    $($i => Ok((Box::new(v.into_iter().map(|x| x.$i).collect::<Vec<$t>>()) as Part, crate::registry::ops_or_basic::<$t>())),)+
                    _ => Err(format!("field {field} of a tuple of {}", $n)),
                }
            }
            TupleOps { pluck: pluck::<$($t),+>, unzip: None }
        }
    };
}

tuple_ops!(tuple2_fields, 2, A 0, B 1);

/// [`TupleOps`] of a pair type.
pub fn tuple2<A: Element, B: Element>() -> TupleOps {
    fn unzip<A: Element, B: Element>(part: Part) -> Result<(Typed, Typed), String> {
        let (a, b): (Vec<A>, Vec<B>) = take::<(A, B)>(part)?.into_iter().unzip();
        Ok(((Box::new(a), crate::registry::ops_or_basic::<A>()), (Box::new(b), crate::registry::ops_or_basic::<B>())))
    }
    TupleOps { unzip: Some(unzip::<A, B>), ..tuple2_fields::<A, B>() }
}
tuple_ops!(tuple3, 3, A 0, B 1, C 2);
tuple_ops!(tuple4, 4, A 0, B 1, C 2, D 3);

/// Numbers: `sum` (exact for integers, in `i128`/`u128`), `mean` and `std`.
pub(crate) trait NumberOps: Element + Copy {
    fn acc(v: &[Self]) -> Result<crate::reduce::NumAcc, String>;
    fn as_f64(self) -> f64;
}

macro_rules! int_ops {
    ($variant:ident, $wide:ty, $($t:ty),*) => {$(
        impl NumberOps for $t {
            fn acc(v: &[Self]) -> Result<crate::reduce::NumAcc, String> {
                let mut s: $wide = 0;
                for &x in v {
                    s = s.checked_add(x as $wide).ok_or_else(|| format!("the sum overflows {}", stringify!($wide)))?;
                }
                Ok(crate::reduce::NumAcc::$variant(s))
            }
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

int_ops!(I, i128, i8, i16, i32, i64, isize);
int_ops!(U, u128, u8, u16, u32, u64, usize);

macro_rules! float_ops {
    ($($t:ty),*) => {$(
        impl NumberOps for $t {
            fn acc(v: &[Self]) -> Result<crate::reduce::NumAcc, String> {
                Ok(crate::reduce::NumAcc::F(v.iter().map(|&x| x as f64).sum()))
            }
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

float_ops!(f32, f64);

fn num_sum<T: NumberOps>(part: &Part) -> Result<crate::reduce::NumAcc, String> {
    T::acc(view::<T>(part)?)
}

fn num_moments<T: NumberOps>(part: &Part) -> Result<crate::reduce::Moments, String> {
    Ok(crate::reduce::Moments::of(view::<T>(part)?.iter().map(|&x| x.as_f64())))
}

fn float_top<T: Element + Copy + Into<f64>>(part: Part, k: usize, largest: bool) -> Result<Part, String> {
    // Floats in IEEE total order: NaN above +∞ (and a negative NaN below −∞).
    struct Total(f64);
    impl PartialEq for Total {
        fn eq(&self, o: &Self) -> bool {
            self.0.total_cmp(&o.0).is_eq()
        }
    }
    impl Eq for Total {}
    impl PartialOrd for Total {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Total {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&o.0)
        }
    }
    top_by::<T, Total>(part, k, largest, |x| Total((*x).into())).map(|v| Box::new(v) as Part)
}

/// The ops of the types chorus-bag knows without a registration: numbers, `bool`,
/// `char`, `String`, and pairs of the common ones.
pub(crate) fn builtins() -> Vec<ElementOps> {
    let mut out = Vec::new();
    macro_rules! int {
        ($($t:ty),*) => {$(
            let mut o = ElementOps::basic::<$t>().with_ord(Some(top_ord::<$t>));
            o.num = Some(NumOps { sum: num_sum::<$t>, moments: num_moments::<$t> });
            out.push(o);
        )*};
    }
    int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);
    macro_rules! float {
        ($($t:ty),*) => {$(
            let mut o = ElementOps::basic::<$t>().with_ord(Some(float_top::<$t>));
            o.num = Some(NumOps { sum: num_sum::<$t>, moments: num_moments::<$t> });
            out.push(o);
        )*};
    }
    float!(f32, f64);
    let mut b = ElementOps::basic::<bool>().with_ord(Some(top_ord::<bool>));
    b.truth = Some(|p| view::<bool>(p).map_or((false, true), |v| (v.iter().any(|x| *x), v.iter().all(|x| *x))));
    out.push(b);
    out.push(ElementOps::basic::<char>().with_ord(Some(top_ord::<char>)));
    let mut s = ElementOps::basic::<String>().with_ord(Some(top_ord::<String>));
    s.string = true;
    out.push(s);
    out.push(ElementOps::basic::<Vec<u8>>().with_ord(Some(top_ord::<Vec<u8>>)));
    macro_rules! pairs {
        ($(($a:ty, $b:ty)),*) => {$(
            out.push(ElementOps::basic::<($a, $b)>().with_ord(Some(top_ord::<($a, $b)>)).with_tuple(Some(tuple2::<$a, $b>())));
        )*};
    }
    pairs!((String, u64), (String, i64), (String, usize), (String, String), (u64, u64), (i64, i64), (u32, u32), (usize, usize), (char, u64), (bool, u64), (u64, String), (i64, String));
    macro_rules! float_pairs {
        ($(($a:ty, $b:ty)),*) => {$(
            out.push(ElementOps::basic::<($a, $b)>().with_tuple(Some(tuple2::<$a, $b>())));
        )*};
    }
    float_pairs!((String, f64), (u64, f64), (i64, f64), (f64, f64));
    out
}
