//! The communication layer of chorus.
//!
//! This crate moves bytes between the processes of a job and builds the SPMD model on
//! them. From the bottom up:
//!
//! - [`frame`]: length-delimited frames with a fixed binary header; payloads travel as raw
//!   bytes and large messages are streamed in bounded chunks;
//! - [`secret`], [`fingerprint`] and [`handshake`]: every connection proves it knows the
//!   job secret (HMAC challenge-response) and that both ends run the same build and protocol;
//! - [`tls`]: TLS on every TCP connection that leaves the host, keyed by the secret;
//! - [`link`]: Unix-domain sockets between same-host processes, TCP across hosts;
//! - `shm`: shared-memory rings between same-host processes, set up over their Unix
//!   socket, and single-copy transfers of large messages (`process_vm_readv`);
//! - [`cma`]: the same single copy for the layers above (the task layer's objects);
//! - [`rendezvous`]: how ranks find each other through a coordinator;
//! - [`World`]: the full mesh among ranks and the collectives (barrier, bcast, gatherv,
//!   scatterv, allgatherv, reduce, allreduce, alltoallv) and tagged send/recv.
//!
//! The crate knows nothing of tasks or launchers: `chorus-launch` decides how processes
//! are started and fills in a [`WorldConfig`].

#![warn(missing_docs)]

pub mod cma;
pub mod diag;
pub mod settings;
mod error;
pub mod fingerprint;
pub mod frame;
pub mod handshake;
pub mod link;
mod pool;
mod reduce;
pub mod rendezvous;
pub mod secret;
mod shm;
pub mod tls;
mod world;

pub use bytemuck::Pod;
pub use error::{Error, Refusal, Result};
pub use reduce::{Max, Min, Prod, ReduceOp, Sum};
pub use secret::Secret;
pub use world::{probe, PeerLink, PeerLostHook, Spin, World, WorldConfig};
pub use link::TransportPreference;
