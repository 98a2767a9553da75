//! The chorus dashboard: a live view of a cluster in the browser.
//!
//! Whoever runs a cluster implements [`Source`]: give a [`Snapshot`] of the cluster
//! when asked. The task scheduler does (it serves the dashboard on the embedded
//! default and for `chorus scheduler`), and so does `chorus run` for an SPMD job that
//! has no scheduler. [`Dashboard::serve`] then serves, on its own thread:
//!
//! - pages: `/status` (task stream, progress per function, memory and CPU per worker),
//!   `/workers`, `/spmd` (every rank of every SPMD job: the collective it is in, how
//!   long it waited and for whom), `/queries` (DataFrame plans and their exchanges);
//! - a JSON API under `/api/` for everything the pages show (the [`model`] types);
//! - Prometheus metrics at `/metrics`;
//! - a server-sent event stream, `/api/stream`, that the pages draw from: one message
//!   at most every 100 ms, carrying what changed.
//!
//! Every asset is compiled into the binary. The dashboard only reads: nothing it
//! serves can submit work. It listens on loopback unless told otherwise; on any other
//! address every request must carry the cluster's token, as a `?token=` query (the
//! link printed once) or the cookie that link sets, or it gets `401`.
//!
//! [`report`] writes the same views into one self-contained HTML file (performance
//! reports) and the task stream as a Chrome trace.
//!
//! ```no_run
//! use std::sync::Arc;
//! use chorus_dashboard::{Bind, Dashboard, Source, model::{Snapshot, SnapshotQuery}};
//!
//! struct Fixed;
//! impl Source for Fixed {
//!     fn snapshot(&self, _query: SnapshotQuery) -> Option<Snapshot> {
//!         Some(Snapshot::default())
//!     }
//! }
//!
//! let dashboard = Dashboard::serve(Bind::Default, "token".into(), Arc::new(Fixed)).unwrap();
//! println!("Dashboard: {}", dashboard.link());
//! ```

#![warn(missing_docs)]

mod assets;
mod auth;
mod metrics;
pub mod model;
pub mod report;
mod server;

use std::net::SocketAddr;

use model::{Snapshot, SnapshotQuery};

pub use server::Dashboard;

/// The token a dashboard of the cluster with `secret` asks for beyond loopback: derived
/// from the secret, so everyone who holds it (scheduler, launcher, user) agrees.
pub fn token(secret: &chorus_comm::Secret) -> String {
    secret.derive_token("chorus dashboard")
}

/// What the dashboard shows: implemented by whoever runs the cluster.
pub trait Source: Send + Sync + 'static {
    /// The cluster now, with the task events and memory history `query` asks for;
    /// `None` once the cluster has stopped. Called from a blocking thread, never while
    /// the dashboard holds a lock.
    fn snapshot(&self, query: SnapshotQuery) -> Option<Snapshot>;
}

/// Where the dashboard listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// `127.0.0.1:8787`, or the next free port above it: the embedded default.
    Default,
    /// Exactly this address; taken is an error.
    Explicit(SocketAddr),
}

impl Bind {
    /// The first port [`Bind::Default`] tries.
    pub const DEFAULT_PORT: u16 = 8787;
    /// How many ports above it [`Bind::Default`] tries.
    pub const PORTS_TRIED: u16 = 100;

    /// Where `CHORUS_DASHBOARD` (or `--dashboard`) says to listen; `None` for `off`.
    pub fn from_setting(setting: chorus_comm::settings::DashboardSetting) -> Option<Bind> {
        use chorus_comm::settings::DashboardSetting as S;
        match setting {
            S::Default => Some(Bind::Default),
            S::Off => None,
            S::At(addr) => Some(Bind::Explicit(addr)),
        }
    }
}

/// What can go wrong starting a dashboard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address given is taken or cannot be bound.
    #[error("the dashboard cannot listen on {addr}: {source} (choose another with --dashboard ADDR, or turn it off with --no-dashboard)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Every port from 8787 on that [`Bind::Default`] tries is taken.
    #[error("the dashboard found no free port in 127.0.0.1:{first}-{last}")]
    NoFreePort {
        /// The first port tried.
        first: u16,
        /// The last.
        last: u16,
    },
    /// The dashboard's thread could not start.
    #[error("starting the dashboard's thread: {0}")]
    Thread(#[source] std::io::Error),
}



