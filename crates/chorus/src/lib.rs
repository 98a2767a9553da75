//! # chorus
//!
//! Parallel and distributed computing for Rust programs whose data or compute outgrows one
//! core or one machine.
//!
//! It provides the SPMD model of MPI and Bodo (every process runs the same program on its
//! share of the data and talks through the collectives of a [`World`]), tasks and futures
//! on a cluster of workers ([`LocalCluster`], [`Client`]), and distributed collections,
//! each behind a feature of its name: DataFrames and SQL (`frame`), chunked arrays
//! (`array`), and bags with MapReduce (`bag`, with `chorus::func!` for the
//! functions they apply).
//!
//! ```no_run
//! use chorus::{Sum, WorldBuilder};
//!
//! fn main() -> chorus::Result<()> {
//!     // Started directly, this spawns one process per core; under `chorus run`, mpiexec
//!     // or srun it joins the job they started.
//!     let world = WorldBuilder::new().procs_per_core().init()?;
//!     let (rank, size) = (world.rank(), world.size());
//!     // Each rank sums its own share of 0..1000 …
//!     let mine: u64 = (0..1000u64).filter(|i| i % size as u64 == rank as u64).sum();
//!     // … and every rank gets the total.
//!     let total = world.allreduce(mine, Sum)?;
//!     assert_eq!(total, 499_500);
//!     Ok(())
//! }
//! ```
//!
//! See [`World`] for the collectives, [`WorldBuilder`] for how processes are started, and
//! the README for `chorus run`, `mpiexec` and `srun`.

#![warn(missing_docs)]

pub use chorus_comm::{Max, Min, Pod, Prod, ReduceOp, Secret, Sum, World};
pub use chorus_launch::{init, WorldBuilder};

pub use chorus_macros::{actor, main, remote, spmd};
pub use chorus_tasks::{
    progress, Actor, Arg, AsCompleted, Client, ClusterFile, ErrorKind, FailureKind, Future, IntoArgs, LocalCluster, LocalClusterBuilder,
    PodVec, TaskError, TaskId, TaskOptions, WaitFor, WorkerId, WorkerInfo,
};

/// The task layer in full (scheduler state machine, protocol, worker entry points).
pub mod tasks {
    pub use chorus_tasks::*;
}

/// What the attribute macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use chorus_tasks::registry::{
        check_arity, decode_arg, encode_result, ActorClass, ActorEntry, Fault, FunctionEntry, MethodEntry,
        RemoteFunction, SpmdEntry, SpmdFunction,
    };
    pub use chorus_comm::diag::init_logging;
    pub use chorus_tasks::worker_entry;
    pub use inventory;
}

/// Distributed DataFrames and SQL: DataFusion plans and runs each partition, chorus
/// splits the scans among the ranks and moves data between them (see
/// [`frame::Context`]).
#[cfg(feature = "frame")]
pub mod frame {
    pub use chorus_frame::*;
}

/// Bags and MapReduce, the dask.bag of chorus: partitioned collections of any serde
/// values on the workers, with fused per-partition tasks, tree reductions and a
/// worker-to-worker shuffle (see [`bag::Bag`]).
#[cfg(feature = "bag")]
pub mod bag {
    pub use chorus_bag::*;
}

/// Makes a closure a function that bags apply: `chorus::func!(|x: i64| x * 2)` (see
/// [`bag::func!`](chorus_bag::func)).
#[cfg(feature = "bag")]
pub use chorus_bag::func;

/// Chunked n-dimensional arrays, the dask.array of chorus: lazy fused expressions over
/// blocks that live on the workers (see [`array::Array`]).
#[cfg(feature = "array")]
pub mod array {
    pub use chorus_array::*;
}

/// Errors of every chorus layer.
pub use chorus_tasks::Error;
/// Errors of the communication layer, returned by [`World`]'s methods; they convert into
/// [`Error`] with `?`.
pub use chorus_comm::Error as CommError;

/// `Result` with chorus's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings read from the environment (`CHORUS_MAX_OBJECT`, `CHORUS_SEND_BUDGET`, …).
pub mod settings {
    pub use chorus_tasks::settings::*;
}

/// Launch-level building blocks (job specs, outcomes, environment detection).
pub mod launch {
    pub use chorus_launch::*;
}

/// The web dashboard: its [`Bind`](dashboard::Bind) options and the [`model`](dashboard::model)
/// of what it shows (what `LocalCluster::snapshot` returns).
pub mod dashboard {
    pub use chorus_dashboard::*;
}

/// Wire-level building blocks (frames, handshake, rendezvous), for tools built on chorus.
pub mod comm {
    pub use chorus_comm::*;
}

/// The names most programs need.
pub mod prelude {
    pub use crate::{
        Actor, Client, Future, LocalCluster, Max, Min, Pod, Prod, ReduceOp, Sum, TaskOptions, WaitFor, World,
        WorldBuilder,
    };
}
