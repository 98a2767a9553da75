//! How call arguments are encoded: values, or futures whose results the task receives.

use std::sync::Arc;

use serde::Serialize;

use crate::client::{Future, Handle};
use crate::proto::ArgSlot;
use crate::registry::encode_value;

/// One argument given to a remote call: a value of type `T`, or a [`Future<T>`] (owned
/// or borrowed) whose result the task receives.
pub trait Arg<T> {
    /// Encodes it.
    fn into_slot(self) -> ArgValue;
}

/// An encoded argument (see [`Arg`]).
pub struct ArgValue {
    pub(crate) slot: std::result::Result<ArgSlot, String>,
    pub(crate) keep: Option<Arc<Handle>>,
}

impl<T: Serialize + 'static> Arg<T> for T {
    fn into_slot(self) -> ArgValue {
        ArgValue { slot: encode_value(self, "an argument").map(ArgSlot::Value), keep: None }
    }
}

impl<T> Arg<T> for Future<T> {
    fn into_slot(self) -> ArgValue {
        ArgValue { slot: Ok(ArgSlot::Future(self.handle.id)), keep: Some(self.handle) }
    }
}

impl<T> Arg<T> for &Future<T> {
    fn into_slot(self) -> ArgValue {
        ArgValue { slot: Ok(ArgSlot::Future(self.handle.id)), keep: Some(self.handle.clone()) }
    }
}

/// The arguments of a call, as a tuple matching the function's parameters `P`.
pub trait IntoArgs<P> {
    /// Encodes them.
    fn into_values(self) -> Vec<ArgValue>;
}

macro_rules! tuple_args {
    ($(($($p:ident $a:ident $v:ident),*)),* $(,)?) => {$(
        impl<$($p, $a: Arg<$p>),*> IntoArgs<($($p,)*)> for ($($a,)*) {
            #[allow(clippy::unused_unit)]
            fn into_values(self) -> Vec<ArgValue> {
                let ($($v,)*) = self;
                vec![$($v.into_slot()),*]
            }
        }
    )*};
}

tuple_args!(
    (),
    (P0 A0 v0),
    (P0 A0 v0, P1 A1 v1),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2, P3 A3 v3),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2, P3 A3 v3, P4 A4 v4),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2, P3 A3 v3, P4 A4 v4, P5 A5 v5),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2, P3 A3 v3, P4 A4 v4, P5 A5 v5, P6 A6 v6),
    (P0 A0 v0, P1 A1 v1, P2 A2 v2, P3 A3 v3, P4 A4 v4, P5 A5 v5, P6 A6 v6, P7 A7 v7),
);
