//! What the scheduler remembers for people: the dashboard, progress bars, performance
//! reports and traces all read it.
//!
//! It is kept as the state machine runs, from what the transitions already know, and
//! costs a counter update per transition and one ring slot per finished run:
//!
//! - tasks by function ("groups") and state, like Dask's task groups: the progress
//!   per function;
//! - a bounded ring of finished and failed runs with their worker, thread and timing:
//!   the task stream (older runs drop off the front);
//! - each worker's latest figures and a bounded history of its memory and CPU;
//! - workers that left, and why;
//! - SPMD jobs, rank by rank;
//! - the DataFrame queries clients report (plans, exchanges, timing).
//!
//! Time comes in with the events (heartbeats and clock ticks carry it), so the state
//! machine still reads no clock.

use std::collections::VecDeque;

use chorus_dashboard::model::{
    DepartedWorker, EventKind, GroupRow, MemorySample, QueryRecord, RankRow, RankState, SpmdJob, TaskEvent, Totals,
    DEPARTED_KEPT, JOBS_KEPT, QUERIES_KEPT, SPILL_LANE,
};
use rustc_hash::FxHashMap;

use crate::proto::{Heartbeat, TaskId, Timing, WorkerId, WorkerInfo};

/// Run durations' bucket bounds, in microseconds (Prometheus `le` labels, in seconds).
const BUCKETS_MICROS: [u64; 9] = [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, u64::MAX];
/// Memory samples kept, over all workers (an hour of 10 workers).
const MEMORY_KEPT: usize = 36_000;

/// A task's state as the groups count it; the index into [`Group::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Waiting = 0,
    Queued = 1,
    Processing = 2,
    Memory = 3,
    Released = 4,
    Erred = 5,
}

#[derive(Debug, Default)]
struct Group {
    name: String,
    counts: [u64; 6],
    forgotten: u64,
    forgotten_erred: u64,
    runs: u64,
    run_micros: u64,
    result_bytes: u64,
}

#[derive(Debug, Default)]
struct Figures {
    beat: Heartbeat,
    cpu_percent: f64,
    joined_us: u64,
    last_us: u64,
}

#[derive(Debug)]
struct Job {
    job: String,
    name: String,
    started_us: u64,
    ranks: Vec<RankSlot>,
    error: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct RankSlot {
    task: Option<TaskId>,
    worker: Option<WorkerId>,
    /// Set once it ended: `finished` or `failed`.
    ended: Option<&'static str>,
}

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Observer {
    groups: Vec<Group>,
    by_name: FxHashMap<String, u32>,
    events: VecDeque<TaskEvent>,
    capacity: usize,
    next_seq: u64,
    buckets: [u64; BUCKETS_MICROS.len()],
    duration_micros: u64,
    totals: Totals,
    figures: FxHashMap<WorkerId, Figures>,
    memory: VecDeque<MemorySample>,
    departed: VecDeque<DepartedWorker>,
    jobs: VecDeque<Job>,
    queries: VecDeque<QueryRecord>,
    next_query: u64,
    /// The latest time an event brought, in microseconds since the Unix epoch.
    clock: u64,
}

impl Observer {
    pub(super) fn new(capacity: usize) -> Observer {
        Observer {
            groups: Vec::new(),
            by_name: FxHashMap::default(),
            events: VecDeque::new(),
            capacity,
            next_seq: 0,
            buckets: [0; BUCKETS_MICROS.len()],
            duration_micros: 0,
            totals: Totals::default(),
            figures: FxHashMap::default(),
            memory: VecDeque::new(),
            departed: VecDeque::new(),
            jobs: VecDeque::new(),
            queries: VecDeque::new(),
            next_query: 0,
            clock: 0,
        }
    }

    /// The group of tasks named `name`.
    pub(super) fn group(&mut self, name: &str) -> u32 {
        if let Some(g) = self.by_name.get(name) {
            return *g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group { name: name.to_string(), ..Group::default() });
        self.by_name.insert(name.to_string(), g);
        g
    }

    /// A task of `group` entered state `to` (from `from`, `None` for a new record).
    /// Counts saturate: a miscount would show on the dashboard, never stop the
    /// scheduler.
    #[inline]
    pub(super) fn moved(&mut self, group: u32, from: Option<Slot>, to: Slot) {
        let c = &mut self.groups[group as usize].counts;
        if let Some(f) = from {
            c[f as usize] = c[f as usize].saturating_sub(1);
        }
        c[to as usize] += 1;
    }

    /// A record of `group` in state `last` was dropped.
    pub(super) fn forgotten(&mut self, group: u32, last: Slot) {
        let g = &mut self.groups[group as usize];
        g.counts[last as usize] = g.counts[last as usize].saturating_sub(1);
        if last == Slot::Erred {
            g.forgotten_erred += 1;
        } else {
            g.forgotten += 1;
        }
    }

    /// A run of a task of `group` ended on `worker`.
    pub(super) fn ran(&mut self, group: u32, task: TaskId, worker: WorkerId, timing: &Timing, size: u64, erred: bool) {
        if timing.start_us == 0 {
            return; // it never started (refused before running)
        }
        let g = &mut self.groups[group as usize];
        if erred {
            self.totals.failed += 1;
        } else {
            g.runs += 1;
            g.run_micros += timing.micros;
            g.result_bytes += size;
            self.totals.finished += 1;
            let b = BUCKETS_MICROS.iter().position(|b| timing.micros <= *b).unwrap_or(BUCKETS_MICROS.len() - 1);
            self.buckets[b] += 1;
            self.duration_micros += timing.micros;
        }
        if timing.fetched > 0 {
            self.totals.transfers += 1;
            self.totals.transfer_bytes += timing.fetched;
        }
        self.push_event(TaskEvent {
            group,
            task: task.0,
            worker: worker.0,
            thread: timing.thread,
            start_us: timing.start_us,
            micros: timing.micros,
            fetch_micros: timing.fetch_micros,
            fetched: timing.fetched,
            unspill_micros: timing.unspill_micros,
            unspilled: timing.unspilled,
            size,
            erred,
            ..TaskEvent::default()
        });
    }

    /// Adds `event` to the stream's ring with the next sequence number.
    fn push_event(&mut self, event: TaskEvent) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(TaskEvent { seq: self.next_seq, ..event });
        self.next_seq += 1;
    }

    pub(super) fn clock(&mut self, now_us: u64) {
        self.clock = self.clock.max(now_us);
    }

    pub(super) fn worker_joined(&mut self, worker: WorkerId) {
        self.figures.insert(worker, Figures { joined_us: self.clock, last_us: self.clock, ..Figures::default() });
    }

    pub(super) fn worker_left(&mut self, info: &WorkerInfo, reason: &str) {
        self.figures.remove(&info.id);
        if self.departed.len() == DEPARTED_KEPT {
            self.departed.pop_front();
        }
        self.departed.push_back(DepartedWorker {
            id: info.id.0,
            host: info.host.clone(),
            pid: info.pid,
            reason: reason.to_string(),
            left_us: self.clock,
        });
    }

    pub(super) fn heartbeat(&mut self, worker: WorkerId, beat: Heartbeat, at_us: u64) {
        self.clock(at_us);
        let Some(f) = self.figures.get_mut(&worker) else { return };
        // The first heartbeat counts from the join (the process's start-up CPU with it).
        let wall = at_us.saturating_sub(f.last_us);
        if wall > 0 {
            f.cpu_percent = beat.cpu_micros.saturating_sub(f.beat.cpu_micros) as f64 * 100.0 / wall as f64;
        }
        f.last_us = at_us;
        // What it wrote to disk since the previous beat, as one bar ending now.
        let (bytes, micros) = (
            beat.spill_io.0.saturating_sub(f.beat.spill_io.0),
            beat.spill_io.1.saturating_sub(f.beat.spill_io.1),
        );
        let sample = MemorySample {
            at_us,
            worker: worker.0,
            rss: beat.rss,
            stored: beat.stored,
            spilled: beat.spilled,
            cpu_percent: f.cpu_percent,
        };
        f.beat = beat;
        if self.memory.len() == MEMORY_KEPT {
            self.memory.pop_front();
        }
        self.memory.push_back(sample);
        if bytes > 0 {
            self.push_event(TaskEvent {
                kind: EventKind::Spill,
                worker: worker.0,
                thread: SPILL_LANE,
                start_us: at_us.saturating_sub(micros),
                micros,
                size: bytes,
                ..TaskEvent::default()
            });
        }
    }

    /// An SPMD rank was submitted.
    pub(super) fn rank_submitted(&mut self, job: &str, name: &str, rank: u32, size: u32, task: TaskId) {
        let j = match self.jobs.iter().position(|j| j.job == job) {
            Some(j) => j,
            None => {
                if self.jobs.len() == JOBS_KEPT {
                    self.jobs.pop_front();
                }
                self.jobs.push_back(Job {
                    job: job.to_string(),
                    name: name.to_string(),
                    started_us: self.clock,
                    ranks: vec![RankSlot::default(); size as usize],
                    error: None,
                });
                self.jobs.len() - 1
            }
        };
        if let Some(slot) = self.jobs[j].ranks.get_mut(rank as usize) {
            slot.task = Some(task);
        }
    }

    fn rank_slot(&mut self, job: &str, rank: u32) -> Option<(&mut RankSlot, &mut Option<String>)> {
        let j = self.jobs.iter_mut().rev().find(|j| j.job == job)?;
        let slot = j.ranks.get_mut(rank as usize)?;
        Some((slot, &mut j.error))
    }

    pub(super) fn rank_assigned(&mut self, job: &str, rank: u32, worker: WorkerId) {
        if let Some((slot, _)) = self.rank_slot(job, rank) {
            slot.worker = Some(worker);
        }
    }

    pub(super) fn rank_ended(&mut self, job: &str, rank: u32, error: Option<String>) {
        if let Some((slot, job_error)) = self.rank_slot(job, rank) {
            slot.ended = Some(if error.is_some() { "failed" } else { "finished" });
            if job_error.is_none() {
                *job_error = error.map(|e| format!("rank {rank}: {e}"));
            }
        }
    }

    /// A client's DataFrame query; it gets the next number.
    pub(super) fn query(&mut self, mut record: QueryRecord) {
        record.id = self.next_query;
        self.next_query += 1;
        if self.queries.len() == QUERIES_KEPT {
            self.queries.pop_front();
        }
        self.queries.push_back(record);
    }

    pub(super) fn queries(&self) -> Vec<QueryRecord> {
        self.queries.iter().cloned().collect()
    }

    pub(super) fn groups(&self) -> Vec<GroupRow> {
        self.groups
            .iter()
            .enumerate()
            .map(|(id, g)| GroupRow {
                id: id as u32,
                name: g.name.clone(),
                waiting: g.counts[Slot::Waiting as usize],
                queued: g.counts[Slot::Queued as usize],
                processing: g.counts[Slot::Processing as usize],
                memory: g.counts[Slot::Memory as usize],
                released: g.counts[Slot::Released as usize],
                erred: g.counts[Slot::Erred as usize],
                forgotten: g.forgotten,
                forgotten_erred: g.forgotten_erred,
                runs: g.runs,
                run_micros: g.run_micros,
                result_bytes: g.result_bytes,
            })
            .collect()
    }

    /// Runs with a sequence number of at least `since`, and the next number.
    pub(super) fn events(&self, since: u64) -> (Vec<TaskEvent>, u64) {
        let first = self.events.front().map_or(self.next_seq, |e| e.seq);
        let skip = since.saturating_sub(first) as usize;
        (self.events.iter().skip(skip).copied().collect(), self.next_seq)
    }

    pub(super) fn totals(&self, tasks: u64) -> Totals {
        let mut acc = 0;
        let duration_buckets = BUCKETS_MICROS
            .iter()
            .zip(self.buckets)
            .map(|(b, n)| {
                acc += n;
                (if *b == u64::MAX { f64::INFINITY } else { *b as f64 / 1e6 }, acc)
            })
            .collect();
        Totals { tasks, duration_buckets, duration_sum: self.duration_micros as f64 / 1e6, ..self.totals.clone() }
    }

    pub(super) fn memory(&self, since_us: u64) -> Vec<MemorySample> {
        self.memory.iter().filter(|m| m.at_us >= since_us).copied().collect()
    }

    pub(super) fn departed(&self) -> Vec<DepartedWorker> {
        self.departed.iter().cloned().collect()
    }

    /// A worker's latest figures: (heartbeat, cpu %, joined, last heartbeat).
    pub(super) fn figures(&self, worker: WorkerId) -> Option<(&Heartbeat, f64, u64, u64)> {
        self.figures.get(&worker).map(|f| (&f.beat, f.cpu_percent, f.joined_us, f.last_us))
    }

    /// The SPMD jobs; `state` tells what a rank's task is doing now (`None` once the
    /// record is gone), `host` where a worker is.
    pub(super) fn jobs(
        &self,
        state: impl Fn(TaskId) -> Option<(&'static str, Option<WorkerId>)>,
        host: impl Fn(WorkerId) -> Option<(String, u32)>,
    ) -> Vec<SpmdJob> {
        let probes: Vec<&RankState> = self.figures.values().flat_map(|f| f.beat.ranks.iter()).collect();
        self.jobs
            .iter()
            .map(|j| {
                let ranks: Vec<RankRow> = j
                    .ranks
                    .iter()
                    .enumerate()
                    .map(|(rank, slot)| {
                        let now = slot.task.and_then(&state);
                        let worker = now.and_then(|(_, w)| w).or(slot.worker);
                        let state = slot.ended.or(now.map(|(s, _)| s)).unwrap_or("finished");
                        let probe = probes.iter().find(|p| p.job == j.job && p.rank as usize == rank);
                        let (host, pid) = worker.and_then(&host).unwrap_or_default();
                        RankRow {
                            rank: rank as u32,
                            worker: worker.map_or(0, |w| w.0),
                            host,
                            pid,
                            state: state.to_string(),
                            collectives: probe.map_or(0, |p| p.collectives),
                            wait: if state == "running" { probe.and_then(|p| p.wait.clone()) } else { None },
                        }
                    })
                    .collect();
                let job_state = if j.error.is_some() {
                    "failed"
                } else if ranks.iter().all(|r| r.state == "finished") {
                    "finished"
                } else {
                    "running"
                };
                SpmdJob {
                    job: j.job.clone(),
                    name: j.name.clone(),
                    size: j.ranks.len() as u32,
                    started_us: j.started_us,
                    ranks,
                    state: job_state.to_string(),
                    error: j.error.clone(),
                }
            })
            .collect()
    }
}
