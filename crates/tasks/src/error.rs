//! Why a task failed, as carried to its future.

use serde::{Deserialize, Serialize};

/// What kind of failure ended a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The function panicked.
    Panic,
    /// The function returned `Err`.
    Error,
    /// An argument or the result could not be (de)serialized.
    Serialization,
    /// No function of that name is registered in the worker's binary.
    UnknownFunction,
    /// The task was running when its worker died, too many times.
    KilledWorker,
    /// The task was running when its worker went past 95% of its memory limit and was
    /// restarted, more times than `allowed_failures`; the message names the limit.
    MemoryLimit,
    /// The worker the task was bound to (actor, `run_on_all`, SPMD rank) left.
    WorkerLost,
    /// A result only one worker held was lost with it and cannot be recomputed (scattered
    /// data has no lineage).
    DataLost,
    /// The task, or one it depends on, was cancelled.
    Cancelled,
    /// A task this one depends on failed; `message` carries that failure.
    DependencyFailed,
    /// No worker of the cluster offers the resources the task asks for.
    NoWorker,
    /// An argument or the result is larger than the limit (`CHORUS_MAX_OBJECT`), or
    /// the task's description larger than a protocol frame; the message names the limit
    /// and the size.
    TooLarge,
}

/// A task's failure: which function, where, what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct TaskError {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The registered name of the function (or actor method) that failed.
    pub function: String,
    /// The worker it failed on, when it ran somewhere ("worker 1 (pid 4242 on host)").
    pub worker: Option<String>,
    /// The panic message, the error's text, or the reason.
    pub message: String,
    /// Where a panic happened (`file:line:col`), when known.
    pub location: Option<String>,
    /// A backtrace, when `RUST_BACKTRACE` asked for one on the worker.
    pub backtrace: Option<String>,
}

impl TaskError {
    /// A failure not tied to a worker.
    pub fn new(kind: FailureKind, function: impl Into<String>, message: impl Into<String>) -> TaskError {
        TaskError { kind, function: function.into(), worker: None, message: message.into(), location: None, backtrace: None }
    }

    /// The failure of a task whose input `self` failed: the same cause, named through it.
    pub fn through_dependency(&self, dependent: &str) -> TaskError {
        let mut e = self.clone();
        if e.kind != FailureKind::DependencyFailed && e.kind != FailureKind::Cancelled {
            e.message = format!("{} (an input of `{dependent}`)", self.render());
            e.kind = FailureKind::DependencyFailed;
            e.worker = None;
            e.location = None;
        }
        e
    }

    fn render(&self) -> String {
        let at = self.worker.as_deref().map(|w| format!(" on {w}")).unwrap_or_default();
        let f = &self.function;
        let mut s = match self.kind {
            FailureKind::Panic => format!("task `{f}` panicked{at}: {}", self.message),
            FailureKind::Error => format!("task `{f}` returned an error{at}: {}", self.message),
            FailureKind::Serialization => format!("task `{f}`{at}: {}", self.message),
            FailureKind::UnknownFunction => format!("task `{f}`{at}: {}", self.message),
            FailureKind::KilledWorker => format!("task `{f}` killed its worker: {}", self.message),
            FailureKind::MemoryLimit => format!("task `{f}` exceeded its worker's memory limit: {}", self.message),
            FailureKind::WorkerLost => format!("task `{f}` lost its worker: {}", self.message),
            FailureKind::DataLost => format!("result of `{f}` was lost: {}", self.message),
            FailureKind::Cancelled => format!("task `{f}` was cancelled{}", if self.message.is_empty() { String::new() } else { format!(": {}", self.message) }),
            FailureKind::DependencyFailed => self.message.clone(),
            FailureKind::NoWorker => format!("task `{f}` cannot run: {}", self.message),
            FailureKind::TooLarge => format!("task `{f}`{at}: {}", self.message),
        };
        if let Some(loc) = &self.location {
            s.push_str(&format!(" (at {loc})"));
        }
        if let Some(bt) = &self.backtrace {
            s.push_str(&format!("\nbacktrace on the worker:\n{bt}"));
        }
        s
    }
}
