//! The chorus task layer: tasks and futures, the Dask distributed / Ray model.
//!
//! A driver submits registered functions (`#[chorus::remote]`) to a pool of worker
//! processes and gets typed [`Future`]s back. Results stay on the workers until gathered;
//! a future passed as an argument moves the work to the data. Actors
//! (`#[chorus::actor]`) keep state on a worker, and [`Client::spmd`] starts an SPMD job
//! with a `World` across all workers.
//!
//! The pieces:
//!
//! - [`scheduler`]: the pure state machine that places tasks, tracks results and
//!   recovers from lost workers;
//! - `server`: the scheduler's I/O, in the driver ([`LocalCluster`]) or standalone
//!   (`chorus scheduler`);
//! - `worker`: executes tasks, keeps results, serves them to peers;
//! - [`Client`]: submit, map, gather, scatter, wait, as_completed, cancel, run_on_all,
//!   spmd, actors;
//! - [`proto`]: the messages between them, one type per role and direction;
//! - [`settings`]: the size limits read from the environment.

#![warn(missing_docs)]

mod args;
pub(crate) mod client;
mod cluster;
mod codec;
mod crate_error;
mod data;
pub mod error;
pub(crate) mod net;
mod outgoing;
pub mod proto;
pub mod registry;
pub mod scheduler;
pub mod memory;
mod nanny;
mod server;
mod store;
pub mod settings;
mod worker;

pub use args::{Arg, ArgValue, IntoArgs};
pub use crate_error::{panic_message, Error, ErrorKind, Result};
pub use codec::PodVec;
pub use client::{progress, write_dot, Actor, AsCompleted, Client, Future, PerformanceReport, WaitFor};
pub use cluster::{remote_snapshot, remote_status, worker_entry, ClusterFile, LocalCluster, LocalClusterBuilder};
pub use error::{FailureKind, TaskError};
pub use proto::{ClientId, Resources, Status, TaskId, TaskOptions, WorkerId, WorkerInfo, WorkerStatus};
pub use nanny::Nanny;
pub use registry::{ActorClass, RemoteFunction, SpmdFunction};
pub use server::{ProgramPolicy, SchedulerServer, ServerConfig};
pub use scheduler::SchedulerConfig;
pub use worker::{env as worker_env, parse_resources, run_worker, WorkerConfig};
