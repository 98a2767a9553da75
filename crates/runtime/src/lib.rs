//! The chorus runtime: launching SPMD jobs, and the task cluster (scheduler, workers,
//! clients, actors) in [`tasks`].
//!
//! The launch layer decides how the processes of an SPMD job are started, how they
//! learn their rank, size, coordinator and secret, and how a job fails as a whole.
//! Three ways lead to the same [`World`](chorus_comm::World):
//!
//! - **self-spawn**: a program started directly asks for N processes
//!   ([`WorldBuilder::procs`] or `CHORUS_PROCS=N`) and re-executes itself for ranks 1..N;
//! - **`chorus run -n N PROGRAM`**: the launcher starts every rank (see [`launch::run_job`]);
//! - **existing launchers**: under `mpiexec`/`mpirun` (Open MPI, MPICH/Hydra) or Slurm's
//!   `srun`, rank and size come from their environment and rank 0 serves the rendezvous at
//!   `CHORUS_COORDINATOR=host:port`.
//!
//! In every case a rank that panics, returns an error from `main` or dies stops the whole
//! job quickly, and the failing rank and its cause are reported.

#![warn(missing_docs)]

pub mod launch;
pub mod settings;
pub mod tasks;
mod error;

pub use error::{panic_message, Error, Result};
pub use launch::{init, WorldBuilder};
