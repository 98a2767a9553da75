//! The worker's queue of tasks: by priority, then arrival, each started once the CPUs
//! and custom resources it needs are free.

use std::collections::BinaryHeap;

use rustc_hash::FxHashSet;

use crate::proto::{ComputeTask, Resources, TaskId};

/// A task in the queue, with what orders it.
pub(super) struct Queued {
    priority: i32,
    seq: u64,
    pub(super) task: ComputeTask,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Queued {}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The tasks a worker has been given and not started, and the resources free now.
pub(super) struct Queue {
    pub(super) heap: BinaryHeap<Queued>,
    /// CPUs of the worker, and those no running task holds.
    cpus: u32,
    free_cpus: u32,
    free_custom: Vec<(String, f64)>,
    seq: u64,
    /// Over 80% of the memory limit: start nothing new while tasks run.
    pub(super) paused: bool,
    /// Tasks holding resources now.
    pub(super) running: u32,
    /// Executors waiting for a task, so a notification that nobody would see is skipped.
    pub(super) idle: u32,
}

impl Queue {
    pub(super) fn new(cpus: u32, custom: Vec<(String, f64)>) -> Queue {
        Queue { heap: BinaryHeap::new(), cpus, free_cpus: cpus, free_custom: custom, seq: 0, paused: false, running: 0, idle: 0 }
    }

    /// Queues `task` behind those of its priority that came before it.
    pub(super) fn push(&mut self, task: ComputeTask) {
        self.seq += 1;
        self.heap.push(Queued { priority: task.spec.options.priority, seq: self.seq, task });
    }

    fn fits(&self, need: &Resources) -> bool {
        need.cpus <= self.free_cpus
            && need.custom.iter().all(|(n, a)| self.free_custom.iter().any(|(m, have)| m == n && have >= a))
    }

    fn take(&mut self, need: &Resources) {
        self.running += 1;
        self.free_cpus -= need.cpus;
        for (n, a) in &need.custom {
            if let Some((_, have)) = self.free_custom.iter_mut().find(|(m, _)| m == n) {
                *have -= a;
            }
        }
    }

    pub(super) fn give(&mut self, need: &Resources) {
        self.running -= 1;
        self.free_cpus += need.cpus;
        for (n, a) in &need.custom {
            if let Some((_, have)) = self.free_custom.iter_mut().find(|(m, _)| m == n) {
                *have += a;
            }
        }
    }

    /// The highest-priority task that fits now.
    pub(super) fn pop_fitting(&mut self) -> Option<ComputeTask> {
        // Paused, a worker starts nothing while tasks run; with none running it runs one
        // at a time, so that results it cannot spill never stop it for good.
        if self.paused && self.free_cpus < self.cpus {
            return None;
        }
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some(q) = self.heap.pop() {
            if self.fits(&q.task.spec.options.resources) {
                found = Some(q.task);
                break;
            }
            skipped.push(q);
        }
        self.heap.extend(skipped);
        if let Some(t) = &found {
            let need = t.spec.options.resources.clone();
            self.take(&need);
        }
        found
    }

    pub(super) fn remove(&mut self, ids: &FxHashSet<TaskId>) -> Vec<TaskId> {
        let mut removed = Vec::new();
        self.heap.retain(|q| {
            let hit = ids.contains(&q.task.spec.id);
            if hit {
                removed.push(q.task.spec.id);
            }
            !hit
        });
        removed
    }
}

