//! Functions, actors and SPMD jobs registered at compile time by the attribute macros.
//!
//! Each `#[chorus::remote]` function adds a [`FunctionEntry`] to a link-time collection
//! (`inventory`); a worker looks the name it receives up there. The traits give the
//! client side the argument and result types, so calls are type-checked.

use std::any::Any;
use std::collections::HashMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use chorus_comm::World;

use crate::codec;
use crate::error::FailureKind;

/// A function registered with `#[chorus::remote]`.
pub trait RemoteFunction: Copy {
    /// Its parameter types as a tuple.
    type Args;
    /// Its result type (`T` for a function returning `Result<T, E>`).
    type Output;
    /// The name it is registered under: `module::path::name`.
    const NAME: &'static str;
}

/// A function registered with `#[chorus::spmd]`.
pub trait SpmdFunction: Copy {
    /// Its parameter types after the `&World`, as a tuple.
    type Args;
    /// Its result type on each rank.
    type Output;
    /// The name it is registered under.
    const NAME: &'static str;
}

/// A type made an actor with `#[chorus::actor]`.
pub trait ActorClass: 'static {
    /// The parameters of its `new`, as a tuple.
    type Args;
    /// The name it is registered under.
    const CLASS: &'static str;
}

/// Why a registered function could not give a result (the worker adds where and who).
#[derive(Debug, Clone)]
pub struct Fault {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

impl Fault {
    /// The function returned this error.
    pub fn error(e: &dyn std::fmt::Display) -> Fault {
        Fault { kind: FailureKind::Error, message: format!("{e:#}") }
    }

    fn serialization(message: String) -> Fault {
        Fault { kind: FailureKind::Serialization, message }
    }
}

/// A call's encoded result, or why there is none.
pub type Encoded = Result<Vec<u8>, Fault>;
/// A constructed actor object, or why there is none.
pub type Created = Result<Box<dyn Any + Send>, Fault>;

/// A registered function: decodes its arguments, runs, encodes its result.
pub struct FunctionEntry {
    /// Registered name.
    pub name: &'static str,
    /// The call.
    pub call: fn(&[&[u8]]) -> Encoded,
}

/// A registered SPMD function.
pub struct SpmdEntry {
    /// Registered name.
    pub name: &'static str,
    /// The call. The world is shared so that the function may hand it to threads it
    /// joins before returning (a distributed query does); it must not keep a clone.
    pub call: fn(&std::sync::Arc<World>, &[&[u8]]) -> Encoded,
}

/// A registered actor type's constructor.
pub struct ActorEntry {
    /// Registered name of the type.
    pub class: &'static str,
    /// Builds the object from `new`'s arguments.
    pub create: fn(&[&[u8]]) -> Created,
}

/// A registered actor method.
pub struct MethodEntry {
    /// Registered name (`class::method`).
    pub name: &'static str,
    /// The call.
    pub call: fn(&mut (dyn Any + Send), &[&[u8]]) -> Encoded,
}

inventory::collect!(FunctionEntry);
inventory::collect!(SpmdEntry);
inventory::collect!(ActorEntry);
inventory::collect!(MethodEntry);

/// Everything registered in this binary, by name.
pub(crate) struct Registry {
    pub functions: HashMap<&'static str, &'static FunctionEntry>,
    pub spmd: HashMap<&'static str, &'static SpmdEntry>,
    pub actors: HashMap<&'static str, &'static ActorEntry>,
    pub methods: HashMap<&'static str, &'static MethodEntry>,
}

pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        functions: inventory::iter::<FunctionEntry>.into_iter().map(|e| (e.name, e)).collect(),
        spmd: inventory::iter::<SpmdEntry>.into_iter().map(|e| (e.name, e)).collect(),
        actors: inventory::iter::<ActorEntry>.into_iter().map(|e| (e.class, e)).collect(),
        methods: inventory::iter::<MethodEntry>.into_iter().map(|e| (e.name, e)).collect(),
    })
}

/// Checks the number of arguments a worker received.
pub fn check_arity(args: &[&[u8]], expected: usize) -> Result<(), Fault> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(Fault::serialization(format!("expected {expected} arguments, received {}", args.len())))
    }
}

/// Decodes argument number `index`.
pub fn decode_arg<T: DeserializeOwned + 'static>(bytes: &[u8], index: usize) -> Result<T, Fault> {
    codec::decode(bytes).map_err(|e| Fault::serialization(format!("argument {index}: {e}")))
}

/// Encodes a result, taking it so that a byte vector moves instead of being copied.
pub fn encode_result<T: Serialize + 'static>(value: T) -> Result<Vec<u8>, Fault> {
    codec::encode_owned(value).map_err(|e| Fault::serialization(format!("the result: {e}")))
}

/// Encodes a value for the wire, naming its type when that fails.
pub(crate) fn encode_value<T: Serialize + 'static>(value: T, what: &str) -> Result<Vec<u8>, String> {
    codec::encode_owned(value).map_err(|e| format!("{what}: {e}"))
}

/// Decodes a value received from the cluster, naming its type when that fails.
pub(crate) fn decode_value<T: DeserializeOwned + 'static>(bytes: std::sync::Arc<Vec<u8>>, what: &str) -> Result<T, String> {
    codec::decode_shared(bytes).map_err(|e| format!("{what}: {e}; are driver and workers the same build?"))
}
