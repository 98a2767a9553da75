//! Where ready tasks go: in graph order (depth first), into bounded worker queues, by
//! expected start time with transfers; work stealing.

use std::cmp::Ordering;

use super::{Scheduler, State, WorkerState};
use crate::error::{FailureKind, TaskError};
use crate::proto::{TaskId, WorkerId};
use crate::scheduler::Command;

/// Bytes a worker fetches per second, to weigh transfers against queueing.
const BANDWIDTH: f64 = 1e9;
/// A worker at its queue limit still gets a task if it holds this much of its input.
const LOCALITY_MIN: u64 = 1 << 20;
/// How far queues may reach ahead of the running tasks, in microseconds of work.
const QUEUE_AHEAD_MICROS: f64 = 2_000.0;
/// A backlog is stolen only if it is worth more than this much work.
const STEAL_MIN_MICROS: f64 = 1_000.0;

/// The order in which ready tasks of equal priority go to workers: depth first, so
/// that a graph finishes what it started before it starts more.
///
/// A task is ordered right after the latest of its inputs that were still to be
/// computed when it was submitted (its `anchor` is theirs), and a task with no such
/// input by its own submission. The combining task of a tree reduction thus runs as
/// soon as its inputs are there, before roots submitted after them, and the roots'
/// results are consumed as fast as they are made instead of piling up on the workers
/// (what Dask gets from `dask.order` and root-task queuing). Inputs already in memory
/// do not count: a task that reads only persisted data is a root of its own graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Order {
    pub(super) anchor: u64,
    /// Submission sequence, unique.
    pub(super) seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct ReadyEntry {
    pub(super) priority: i32,
    pub(super) order: Order,
    /// The record's `ready_seq` when it was pushed.
    pub(super) ready_seq: u64,
    pub(super) id: TaskId,
}

impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Highest priority first, then earliest in graph order.
        self.priority.cmp(&other.priority).then(other.order.cmp(&self.order))
    }
}

impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Scheduler {
    fn capacity(&self, w: &WorkerState) -> usize {
        let saturation = (QUEUE_AHEAD_MICROS / self.avg_micros).ceil().clamp(2.0, 256.0) as usize;
        w.info.nthreads.max(1) as usize * saturation
    }

    /// Hands ready tasks to workers with room, then lets idle workers steal.
    pub(super) fn schedule(&mut self) {
        let mut deferred = Vec::new();
        while let Some(top) = self.ready.peek() {
            let id = top.id;
            let valid = self.tasks.get(&id).is_some_and(|r| r.state == State::Ready && r.ready_seq == top.ready_seq);
            if !valid {
                self.ready.pop();
                continue;
            }
            if !self.workers.values().any(|w| w.processing.len() < self.capacity(w)) {
                break;
            }
            match self.pick_worker(id) {
                Pick::Worker(w) => {
                    self.ready.pop();
                    self.assign(id, w);
                }
                Pick::Busy => {
                    deferred.push(self.ready.pop().expect("peeked"));
                    if deferred.len() >= 64 {
                        break;
                    }
                }
                Pick::Never => {
                    self.ready.pop();
                    if self.workers.is_empty() {
                        self.no_worker.push(id);
                        continue;
                    }
                    let r = &self.tasks[&id];
                    let need = &r.spec.as_ref().expect("task").options.resources;
                    let offered: Vec<String> =
                        self.workers.values().map(|w| format!("{:?}", w.info.resources)).collect();
                    let e = TaskError::new(
                        FailureKind::NoWorker,
                        r.name(),
                        format!(
                            "no worker offers the resources it asks for ({need:?}); the workers offer {}; start workers with more threads or the named resources",
                            offered.join(", ")
                        ),
                    );
                    self.fail_for_good(id, e);
                }
            }
        }
        self.ready.extend(deferred);
        if self.ready.is_empty() {
            self.steal();
        }
    }

    fn pick_worker(&self, id: TaskId) -> Pick {
        let r = &self.tasks[&id];
        let need = &r.spec.as_ref().expect("task").options.resources;
        let total: u64 = r.deps.iter().map(|d| &self.tasks[d]).filter(|d| d.inline.is_none()).map(|d| d.size).sum();
        let mut best: Option<(f64, WorkerId)> = None;
        let mut eligible = false;
        for (wid, w) in &self.workers {
            if !w.info.resources.covers(need) {
                continue;
            }
            eligible = true;
            let local: u64 = r
                .deps
                .iter()
                .map(|d| &self.tasks[d])
                .filter(|d| d.inline.is_none() && d.who_has.contains(wid))
                .map(|d| d.size)
                .sum();
            let full = w.processing.len() >= self.capacity(w);
            if full && local < LOCALITY_MIN {
                continue;
            }
            let queue = (w.processing.len() + 1) as f64 / w.info.nthreads.max(1) as f64 * self.avg_micros * 1e-6;
            let cost = queue + (total - local) as f64 / BANDWIDTH;
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, *wid));
            }
        }
        match best {
            Some((_, w)) => Pick::Worker(w),
            None if eligible => Pick::Busy,
            None => Pick::Never,
        }
    }

    fn steal(&mut self) {
        let idle: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.processing.len() < w.info.nthreads as usize)
            .map(|(id, _)| *id)
            .collect();
        for thief in idle {
            let Some((victim, excess)) = self
                .workers
                .iter()
                .filter(|(id, w)| **id != thief && !w.steal_pending)
                .map(|(id, w)| (*id, w.processing.len().saturating_sub(w.info.nthreads as usize)))
                .max_by_key(|(_, excess)| *excess)
            else {
                return;
            };
            if excess < 2 || excess as f64 * self.avg_micros < STEAL_MIN_MICROS {
                continue;
            }
            let thief_resources = self.workers[&thief].info.resources.clone();
            let ids: Vec<TaskId> = self.workers[&victim]
                .processing
                .iter()
                .filter(|t| {
                    let r = &self.tasks[t];
                    !r.bound_to_worker()
                        && thief_resources.covers(&r.spec.as_ref().expect("task").options.resources)
                })
                .take(excess / 2)
                .copied()
                .collect();
            if ids.is_empty() {
                continue;
            }
            self.workers.get_mut(&victim).expect("present").steal_pending = true;
            self.out.other.push(Command::Steal { worker: victim, ids });
        }
    }
}

enum Pick {
    Worker(WorkerId),
    /// Some worker could run it but none has room now.
    Busy,
    /// No worker offers what it needs.
    Never,
}
