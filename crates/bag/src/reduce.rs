//! The partial results of reductions and how they combine.

use serde::{Deserialize, Serialize};

/// A partial sum: exact for integers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum NumAcc {
    I(i128),
    U(u128),
    F(f64),
}

impl NumAcc {
    pub(crate) fn add(self, o: NumAcc) -> Result<NumAcc, String> {
        match (self, o) {
            (NumAcc::I(a), NumAcc::I(b)) => a.checked_add(b).map(NumAcc::I).ok_or_else(|| "the sum overflows i128".into()),
            (NumAcc::U(a), NumAcc::U(b)) => a.checked_add(b).map(NumAcc::U).ok_or_else(|| "the sum overflows u128".into()),
            (NumAcc::F(a), NumAcc::F(b)) => Ok(NumAcc::F(a + b)),
            (a, b) => Err(format!("partial sums of different kinds: {a:?} and {b:?}")),
        }
    }
}

/// Count, mean and sum of squared deviations (Welford), combined as Chan et al. do.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Moments {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub(crate) fn of(values: impl Iterator<Item = f64>) -> Moments {
        let mut m = Moments::default();
        for x in values {
            m.n += 1;
            let d = x - m.mean;
            m.mean += d / m.n as f64;
            m.m2 += d * (x - m.mean);
        }
        m
    }

    pub(crate) fn merge(self, o: Moments) -> Moments {
        if self.n == 0 {
            return o;
        }
        if o.n == 0 {
            return self;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments { n, mean: self.mean + d * o.n as f64 / n as f64, m2: self.m2 + o.m2 + d * d * self.n as f64 * o.n as f64 / n as f64 }
    }
}

/// A number type a bag can `sum`: the partial sum back in the element type.
pub trait Number: crate::Element + Copy {
    /// The sum as `Self`, or `None` when it does not fit.
    #[doc(hidden)]
    fn from_acc(acc: NumAccPublic) -> Option<Self>;
}

/// A finished sum, before it is converted to the element type.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct NumAccPublic(pub(crate) NumAcc);

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn from_acc(acc: NumAccPublic) -> Option<Self> {
                match acc.0 {
                    NumAcc::I(v) => <$t>::try_from(v).ok(),
                    NumAcc::U(v) => <$t>::try_from(v).ok(),
                    NumAcc::F(_) => None,
                }
            }
        }
    )*};
}

number!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl Number for f64 {
    fn from_acc(acc: NumAccPublic) -> Option<Self> {
        match acc.0 {
            NumAcc::F(v) => Some(v),
            _ => None,
        }
    }
}

impl Number for f32 {
    fn from_acc(acc: NumAccPublic) -> Option<Self> {
        match acc.0 {
            NumAcc::F(v) => Some(v as f32),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_pass() {
        let xs: Vec<f64> = (0..100).map(|i| (i * 37 % 11) as f64 - 3.5).collect();
        let all = Moments::of(xs.iter().copied());
        let parts = xs.chunks(7).map(|c| Moments::of(c.iter().copied())).fold(Moments::default(), Moments::merge);
        assert_eq!(all.n, parts.n);
        assert!((all.mean - parts.mean).abs() < 1e-12 && (all.m2 - parts.m2).abs() < 1e-9);
    }
}
