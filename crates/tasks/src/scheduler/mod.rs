//! The scheduler's core: a pure state machine.
//!
//! It is fed [`Event`]s (a task submitted, a task finished on a worker, a worker lost…)
//! and answers with [`Command`]s (run these tasks on that worker, drop those objects, tell
//! that client its result is ready). It does no I/O and reads no clock, so every decision
//! can be tested without sockets; the server around it (`crate::server`) moves events in
//! and commands out, and batches: commands pile up per destination until the events
//! waiting at that moment are handled, then go out as one message each.
//!
//! What it decides:
//!
//! - **placement**: the eligible worker (resources, pin) with the lowest estimated start
//!   time, counting its queue and the input bytes it would have to fetch, so a task goes
//!   to the worker holding most of its input unless that worker is swamped;
//! - **queueing**: a worker gets at most `nthreads × saturation` tasks, where saturation
//!   grows as tasks get shorter (deep pipelines for microsecond tasks, shallow ones for
//!   long tasks); the rest wait here by priority, then in graph order: depth first, so
//!   a tree reduction combines results as they come instead of running every root
//!   first and holding all their results (root-task queuing);
//! - **work stealing**: a worker with idle threads takes half the unstarted backlog of
//!   the most loaded one when that backlog is worth more than a round trip;
//! - **memory**: a result lives while a client holds a future for it or a pending task
//!   needs it; a task's description lives while its result or any dependent's does, which
//!   is the lineage used to recompute results lost with a worker;
//! - **failures**: retries, errors passed on to dependents, tasks retried elsewhere when
//!   their worker dies, and a "killed worker" error for tasks that keep killing workers.
//!
//! Beside its decisions it keeps what people look at (`observe`): tasks by function and
//! state, a bounded ring of finished runs, workers' figures, SPMD jobs rank by rank.
//! [`Scheduler::observe`] returns it as the dashboard's [`Snapshot`].
//!
//! [`Snapshot`]: chorus_dashboard::model::Snapshot

mod events;
mod observe;
mod state;
#[cfg(test)]
mod tests;

pub use events::{Command, Event, Note, SchedulerConfig};
pub use state::Scheduler;
