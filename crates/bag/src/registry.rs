//! What this program registered: the functions of `func!` and the element types of
//! `func!`, `element!` and the built-ins, found by name on the workers.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::element::{builtins, leak, Element, ElementOps};
use crate::func::{Adapter, Made};

/// A `func!`: its name (`file:line:column`) and how to build its adapter.
pub struct FuncEntry {
    /// Where it was written.
    pub name: &'static str,
    /// Builds the adapter and the ops of its types.
    pub make: fn() -> Made,
}

/// An `element!`: how to build the ops of its type.
pub struct ElementEntry {
    /// Builds the ops.
    pub make: fn() -> &'static ElementOps,
}

inventory::collect!(FuncEntry);
inventory::collect!(ElementEntry);

struct Registry {
    /// `None` for a name registered twice (two `func!` expanded at one place).
    funcs: HashMap<&'static str, Option<Box<dyn Adapter>>>,
    elements: HashMap<&'static str, &'static ElementOps>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut elements: HashMap<&'static str, &'static ElementOps> = HashMap::new();
        let mut add = |ops: &'static ElementOps| {
            let e = elements.entry(ops.name).or_insert(ops);
            if ops.richness() > e.richness() {
                *e = ops;
            }
        };
        for ops in builtins() {
            add(leak(ops));
        }
        for e in inventory::iter::<ElementEntry> {
            add((e.make)());
        }
        let mut funcs = HashMap::new();
        for e in inventory::iter::<FuncEntry> {
            let made = (e.make)();
            for ops in made.elements {
                add(ops);
            }
            funcs.entry(e.name).and_modify(|f| *f = None).or_insert(Some(made.adapter));
        }
        Registry { funcs, elements }
    })
}

/// The adapter registered under `name`.
pub(crate) fn adapter(name: &str) -> Result<&'static dyn Adapter, String> {
    match registry().funcs.get(name) {
        Some(Some(a)) => Ok(&**a),
        Some(None) => Err(format!("two functions are registered at {name}; write each func! at a place of its own")),
        None => Err(format!("no function is registered at {name} in this program; are driver and workers the same build?")),
    }
}

/// Ops of types that no registration made, built where a stage produced such elements.
static EXTRA: OnceLock<Mutex<HashMap<&'static str, &'static ElementOps>>> = OnceLock::new();

/// The ops of the type named `name`, when this process has them.
pub(crate) fn ops(name: &str) -> Option<&'static ElementOps> {
    registry().elements.get(name).copied().or_else(|| EXTRA.get()?.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied())
}

/// The registered ops of `T`, or its basic ops when it was never registered.
pub(crate) fn ops_or_basic<T: Element>() -> &'static ElementOps {
    if let Some(o) = registry().elements.get(std::any::type_name::<T>()) {
        return o;
    }
    let mut extra = EXTRA.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    extra.entry(std::any::type_name::<T>()).or_insert_with(|| leak(ElementOps::basic::<T>()))
}
