//! Reduction operators for [`World::reduce`](crate::World::reduce) and friends.
//!
//! An operator combines two values into one. It must be associative; it need not be
//! commutative: chorus always combines lower ranks' partial results on the left, so
//! `allreduce` gives every rank the same, bit-identical value of
//! `v0 ⊕ v1 ⊕ … ⊕ v(p-1)` (bracketed by the algorithm's tree).
//!
//! Any closure `Fn(T, T) -> T` is an operator:
//!
//! ```
//! use chorus_comm::ReduceOp;
//! let longest = |a: String, b: String| if b.len() > a.len() { b } else { a };
//! assert_eq!(longest.combine("ab".into(), "abc".into()), "abc");
//! ```

/// Combines two partial results; `a` comes from lower ranks than `b`.
pub trait ReduceOp<T> {
    /// Returns `a ⊕ b`.
    fn combine(&self, a: T, b: T) -> T;
}

impl<T, F: Fn(T, T) -> T> ReduceOp<T> for F {
    fn combine(&self, a: T, b: T) -> T {
        self(a, b)
    }
}

/// `a + b`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;
/// `a * b`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prod;
/// The smaller of `a` and `b` (`a` when they are unordered, as with NaN).
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;
/// The larger of `a` and `b` (`a` when they are unordered, as with NaN).
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl<T: std::ops::Add<Output = T>> ReduceOp<T> for Sum {
    fn combine(&self, a: T, b: T) -> T {
        a + b
    }
}

impl<T: std::ops::Mul<Output = T>> ReduceOp<T> for Prod {
    fn combine(&self, a: T, b: T) -> T {
        a * b
    }
}

impl<T: PartialOrd> ReduceOp<T> for Min {
    fn combine(&self, a: T, b: T) -> T {
        if b < a {
            b
        } else {
            a
        }
    }
}

impl<T: PartialOrd> ReduceOp<T> for Max {
    fn combine(&self, a: T, b: T) -> T {
        if b > a {
            b
        } else {
            a
        }
    }
}
