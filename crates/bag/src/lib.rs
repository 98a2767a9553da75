//! Bags and MapReduce for chorus: `chorus::bag`, the dask.bag of Rust.
//!
//! A [`Bag<T>`] is a collection of any serde values, cut into partitions that live on
//! the workers of a chorus cluster ([`LocalCluster`](chorus_tasks::LocalCluster) or a
//! standing one). It is built from a sequence ([`from_sequence`]), from futures
//! ([`from_futures`]), from integers made on the workers ([`range`]) or from text files
//! read by the workers ([`read_text`]), and worked on with the functional operations of
//! dask.bag and MapReduce:
//!
//! - per element, fused into one task per partition: [`map`](Bag::map),
//!   [`filter`](Bag::filter), [`flat_map`](Bag::flat_map),
//!   [`map_partitions`](Bag::map_partitions), [`pluck`](Bag::pluck),
//!   [`random_sample`](Bag::random_sample), [`join`](Bag::join) with a small map;
//! - reductions, as trees of tasks: [`fold`](Bag::fold), [`reduction`](Bag::reduction),
//!   [`count`](Bag::count), [`sum`](Bag::sum), [`min`](Bag::min), [`max`](Bag::max),
//!   [`mean`](Bag::mean), [`std`](Bag::std), [`frequencies`](Bag::frequencies),
//!   [`topk`](Bag::topk), [`distinct`](Bag::distinct), [`any`](Bag::any),
//!   [`all`](Bag::all);
//! - by key: [`fold_by`](Bag::fold_by) and [`reduce_by_key`](Bag::reduce_by_key), which
//!   combine inside each partition before anything moves, and
//!   [`group_by`](Bag::group_by), a full shuffle in which each worker fetches its
//!   buckets straight from the others;
//! - layout: [`zip`](Bag::zip), [`repartition`](Bag::repartition);
//! - results: [`compute`](Bag::compute), [`take`](Bag::take), [`persist`](Bag::persist),
//!   [`to_futures`](Bag::to_futures), [`to_textfiles`](Bag::to_textfiles), and with
//!   the `frame` feature `to_dataframe` and `from_dataframe` (through Parquet files the
//!   workers write and read).
//!
//! # Functions
//!
//! A bag applies registered functions, as tasks do, so that a worker runs compiled code
//! of the same binary and nothing is pickled. [`func!`] registers a closure where it is
//! written: `func!(|x: i64| x * 2)`. Its parameters need their types written, and it
//! must not capture anything (a capture does not compile); its parameters and result
//! must be serde types. A parameter taken by reference makes a filter or a key
//! (`func!(|w: &String| w.len())`), two parameters a fold step.
//!
//! Element types reach the workers through the `func!` that take or return them; the
//! numbers, `bool`, `char`, `String` and common pairs are known already, and
//! [`element!`] registers any other type that a bag holds without a function touching
//! it (an error says when that is needed).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chorus_bag::{self as db, func};
//!
//! let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
//! let client = cluster.client();
//! // The seed's dask.bag example: 5,000,000 integers to characters.
//! let nums: Vec<u32> = (0..5_000_000).map(|i| i % 100).collect();
//! let chars = db::from_sequence(&client, nums, 100)?.map(func!(|n: u32| char::from_u32(n).unwrap_or('?')));
//! assert_eq!(chars.take(3)?, vec!['\0', '\u{1}', '\u{2}']);
//!
//! // A word count: lines, words, counts.
//! let counts = db::read_text(&client, "books/*.txt")?.split_whitespace().frequencies()?;
//! let top = counts.topk(10, func!(|wc: &(String, u64)| wc.1)).compute()?;
//! # let _ = top;
//! # Ok(())
//! # }
//! ```
//!
//! # How it runs
//!
//! Operations build a lazy graph. A result submits it: each
//! partition that is needed becomes one task of the registered function
//! `chorus_bag::run`, whose plan holds the partition's source, every fused stage and
//! what to give back. Keys and records are handled as their serialized bytes, so
//! grouping, counting and the shuffle run the same code for every type.

#![warn(missing_docs)]

mod aggregate;
mod bag;
mod element;
mod error;
mod exec;
#[cfg(feature = "frame")]
mod frame;
mod func;
mod graph;
mod keyed;
mod plan;
mod reduce;
mod registry;
mod text;
mod visualize;
mod words;

pub use bag::{from_futures, from_sequence, range, read_text, Bag, Pluck};
pub use element::Element;
pub use error::{Error, Result};
#[cfg(feature = "frame")]
pub use frame::from_dataframe;
pub use func::Func;
pub use reduce::Number;
pub use text::{ReadText, DEFAULT_BLOCKSIZE};

/// Makes a closure a function bags can apply, registered where it is written.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// use chorus_bag::{func, range};
/// let evens = range(&client, 100, 4)?.filter(func!(|x: &u64| x % 2 == 0));
/// let total = evens.fold(0u64, func!(|acc: u64, x: u64| acc + x), func!(|a: u64, b: u64| a + b))?;
/// assert_eq!(total, 2450);
/// # Ok(())
/// # }
/// ```
///
/// The forms: `|x: T| …` (map, flat_map, map_partitions, a reduction's functions),
/// `|x: &T| …` (filter, keys), `|a: A, x: T| …` (fold steps and combines). A parameter
/// is a name, `_` or a tuple pattern such as `(word, n)`, with its type. The closure
/// must not capture variables; what it needs goes in the data.
#[macro_export]
macro_rules! func {
    (|$p:tt : & $t:ty| $($body:tt)+) => { $crate::__func!(by_ref, [$p : &$t], $($body)+) };
    (|$p:tt : $t:ty| $($body:tt)+) => { $crate::__func!(unary, [$p : $t], $($body)+) };
    (|$p:tt : $t:ty, $q:tt : $u:ty| $($body:tt)+) => { $crate::__func!(binary, [$p : $t, $q : $u], $($body)+) };
}

/// Registers a type as the element of bags, for bags of it that no [`func!`] takes or
/// returns (for instance one made by `from_sequence` and only counted, sampled or made
/// distinct). Write it once, at module level, in the program the workers run.
///
/// ```ignore
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash)]
/// struct Visit { user: u32, page: String }
/// chorus::bag::element!(Visit);
/// ```
#[macro_export]
macro_rules! element {
    ($t:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::ElementEntry {
                make: {
                    fn make() -> &'static $crate::__private::ElementOps {
                        #[allow(unused_imports)]
                        use $crate::__private::probe::{OrdNo as _, OrdYes as _, TupleNo as _, TupleYes as _};
                        let probe = $crate::__private::probe::Probe::<$t>::new();
                        $crate::__element_ops!(probe)
                    }
                    make
                },
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __func {
    ($shape:ident, [$($p:tt : $t:ty),+], $($body:tt)+) => {{
        const NAME: &str = concat!(file!(), ":", line!(), ":", column!());
        const SOURCE: &str = stringify!(|$($p: $t),+| $($body)+);
        fn make() -> $crate::__private::Made {
            #[allow(unused_imports)]
            use $crate::__private::probe::{
                FlatNo as _, FlatYes as _, ItemNo as _, ItemYes as _, OrdNo as _, OrdYes as _, TopNo as _, TopYes as _, TupleNo as _, TupleYes as _, VecNo as _, VecYes as _,
            };
            let f = |$($p: $t),+| $($body)+;
            $crate::__shape!($shape, f, $crate::__private::Label { name: NAME, source: SOURCE })
        }
        $crate::__private::inventory::submit! { $crate::__private::FuncEntry { name: NAME, make } }
        $crate::Func::__new(NAME, SOURCE, |$($p: $t),+| $($body)+)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __shape {
    (unary, $f:ident, $label:expr) => {{
        let (fp, a, b) = $crate::__private::probe::unary(&$f);
        let item = (&&fp).item_probe();
        let types = vec![$crate::__element_ops!(a), $crate::__element_ops!(b), $crate::__element_ops!(item)];
        $crate::__private::Unary::made($f, $label, types, (&&fp).flat_cap(), (&&fp).vec_cap())
    }};
    (by_ref, $f:ident, $label:expr) => {{
        let (fp, a, k) = $crate::__private::probe::by_ref(&$f);
        let types = vec![$crate::__element_ops!(a), $crate::__element_ops!(k)];
        $crate::__private::ByRef::made($f, $label, types, (&&fp).top_cap())
    }};
    (binary, $f:ident, $label:expr) => {{
        let (x, y, z) = $crate::__private::probe::binary(&$f);
        let types = vec![$crate::__element_ops!(x), $crate::__element_ops!(y), $crate::__element_ops!(z)];
        $crate::__private::Binary::made($f, $label, types)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __element_ops {
    ($probe:ident) => {
        $crate::__private::leak($probe.basic().with_ord((&&$probe).ord_cap()).with_tuple((&&$probe).tuple_cap()))
    };
}

/// What the macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::element::{leak, ElementOps};
    pub use crate::func::{probe, Binary, ByRef, Label, Made, Unary};
    pub use crate::registry::{ElementEntry, FuncEntry};
    pub use inventory;
}
