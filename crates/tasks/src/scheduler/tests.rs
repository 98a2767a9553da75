//! The state machine alone: events in, commands out, no sockets.

use rustc_hash::FxHashMap;

use super::*;
use crate::error::FailureKind;
use crate::proto::{
    ArgSlot, ClientId, DataAddress, Failed, Finished, Instance, Resources, TaskId, TaskKind, TaskOptions, TaskSpec, Timing,
    ToClient, WorkerId, WorkerInfo,
};

/// The one client of these tests.
const C: ClientId = ClientId(1);

fn worker(id: u32, nthreads: u32) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId(id),
        nthreads,
        resources: Resources { cpus: nthreads, custom: Vec::new() },
        memory_limit: 0,
        data: DataAddress { tcp: format!("w{id}"), unix: None, host_key: String::new() },
        host: "test".into(),
        pid: id,
    }
}

fn ids(ids: &[u64]) -> Vec<TaskId> {
    ids.iter().map(|i| TaskId(*i)).collect()
}

fn task(id: u64, deps: &[u64]) -> TaskSpec {
    let mut args: Vec<ArgSlot> = deps.iter().map(|d| ArgSlot::Future(TaskId(*d))).collect();
    args.push(ArgSlot::Value(vec![1]));
    TaskSpec { id: TaskId(id), kind: TaskKind::Call { func: "f".into() }, args, options: TaskOptions::default() }
}

/// A run of `micros` that started at 1 s past the epoch.
fn timing(micros: u64) -> Timing {
    Timing { start_us: 1_000_000, micros, ..Timing::default() }
}

fn done(id: u64, size: u64) -> Finished {
    Finished { id: TaskId(id), instance: Instance(1), size, inline: None, timing: timing(10) }
}

fn failed(id: u64, instance: Instance, error: &crate::error::TaskError) -> Vec<Failed> {
    vec![Failed { id: TaskId(id), instance, error: error.clone(), timing: timing(10) }]
}

/// Commands split by kind: (computes per worker, deletes per worker, client notes).
#[derive(Default, Debug)]
struct Out {
    compute: Vec<(u32, u64)>,
    /// The assignment each computed task is in.
    instance: FxHashMap<u64, Instance>,
    delete: Vec<(u32, u64)>,
    steal: Vec<(u32, Vec<TaskId>)>,
    done: Vec<u64>,
    erred: Vec<(u64, FailureKind)>,
}

fn out(s: &mut Scheduler) -> Out {
    let mut o = Out::default();
    for c in s.drain() {
        match c {
            Command::Assign { worker, tasks } => {
                for t in tasks {
                    o.compute.push((worker.0, t.spec.id.0));
                    o.instance.insert(t.spec.id.0, t.instance);
                }
            }
            Command::Release { worker, ids } => o.delete.extend(ids.iter().map(|i| (worker.0, i.0))),
            Command::Steal { worker, ids } => o.steal.push((worker.0, ids)),
            Command::Cancel { .. } | Command::Peers { .. } => {}
            Command::Notify { notes, .. } => {
                for n in notes {
                    match n {
                        Note::Done(d) => o.done.push(d.id.0),
                        Note::Erred { id, error } => o.erred.push((id.0, error.kind)),
                        Note::Workers(_) | Note::Forgotten(_) => {}
                    }
                }
            }
        }
    }
    o
}

fn two_workers() -> Scheduler {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::WorkerJoined(worker(2, 1)));
    s.handle(Event::ClientJoined(C));
    out(&mut s);
    s
}

#[test]
fn dependencies_wait_and_results_are_released_when_unneeded() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[]), task(2, &[1])] });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1, "task 2 waits for task 1: {o:?}");
    let w = o.compute[0].0;
    s.handle(Event::Release { client: C, ids: ids(&[1]) });
    s.handle(Event::Finished { worker: WorkerId(w), results: vec![done(1, 100)] });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1);
    assert!(o.done.is_empty(), "the client dropped its future of task 1");
    let w2 = o.compute[0].0;
    s.handle(Event::Finished { worker: WorkerId(w2), results: vec![done(2, 8)] });
    let o = out(&mut s);
    assert_eq!(o.done, vec![2]);
    assert_eq!(o.delete, vec![(w, 1)], "task 1's result goes once task 2 no longer needs it");
    s.handle(Event::Release { client: C, ids: ids(&[2]) });
    let o = out(&mut s);
    assert_eq!(o.delete, vec![(w2, 2)]);
    assert_eq!(s.task_count(), 0, "nothing is kept once nothing refers to it");
}

#[test]
fn a_task_goes_to_the_worker_holding_its_large_input() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::Finished { worker: WorkerId(w), results: vec![done(1, 50 << 20)] });
    out(&mut s);
    for id in 2..6 {
        s.handle(Event::Submit { client: C, tasks: vec![task(id, &[1])] });
        assert_eq!(out(&mut s).compute, vec![(w, id)]);
    }
}

#[test]
fn independent_tasks_spread_over_workers() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: (1..=4).map(|i| task(i, &[])).collect() });
    let o = out(&mut s);
    let on1 = o.compute.iter().filter(|(w, _)| *w == 1).count();
    assert_eq!((on1, o.compute.len()), (2, 4), "{o:?}");
}

#[test]
fn queues_are_bounded_and_idle_workers_steal() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: (1..=10).map(|i| task(i, &[])).collect() });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 2, "one thread, tasks of unknown length: two in flight, {o:?}");
    // A second worker joins while worker 1 holds work: it gets the queued tasks first.
    s.handle(Event::WorkerJoined(worker(2, 1)));
    let o = out(&mut s);
    assert!(o.compute.iter().all(|(w, _)| *w == 2) && o.compute.len() == 2, "{o:?}");
    // Nothing left centrally: an idle worker 3 steals from a backlog.
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: (1..=2).map(|i| task(i, &[])).collect() });
    out(&mut s);
    s.handle(Event::Submit { client: C, tasks: vec![task(3, &[])] });
    s.handle(Event::WorkerJoined(worker(3, 1)));
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(3, 3)]);
    s.handle(Event::Finished { worker: WorkerId(3), results: vec![done(3, 1)] });
    let o = out(&mut s);
    assert_eq!(o.steal.len(), 0, "a backlog of one task is not worth stealing: {o:?}");
}

#[test]
fn a_lost_worker_is_recomputed_from_lineage() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::Finished { worker: WorkerId(w), results: vec![done(1, 10 << 20)] });
    s.handle(Event::Submit { client: C, tasks: vec![task(2, &[1])] });
    s.handle(Event::Release { client: C, ids: ids(&[1]) });
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(w, 2)]);
    s.handle(Event::WorkerLost { worker: WorkerId(w), reason: "killed".into(), memory: false });
    let o = out(&mut s);
    let other = if w == 1 { 2 } else { 1 };
    assert_eq!(o.compute, vec![(other, 1)], "task 1 is run again, its result being lost: {o:?}");
    s.handle(Event::Finished { worker: WorkerId(other), results: vec![done(1, 10 << 20)] });
    assert_eq!(out(&mut s).compute, vec![(other, 2)]);
    s.handle(Event::Finished { worker: WorkerId(other), results: vec![done(2, 1)] });
    assert_eq!(out(&mut s).done, vec![2]);
}

#[test]
fn a_task_that_keeps_killing_workers_fails() {
    let mut s = Scheduler::new(SchedulerConfig { allowed_failures: 1, ..SchedulerConfig::default() });
    for w in 1..=3 {
        s.handle(Event::WorkerJoined(worker(w, 1)));
    }
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::WorkerLost { worker: WorkerId(w), reason: "killed".into(), memory: false });
    let w2 = out(&mut s).compute[0].0;
    s.handle(Event::WorkerLost { worker: WorkerId(w2), reason: "killed".into(), memory: false });
    let o = out(&mut s);
    assert_eq!(o.erred, vec![(1, FailureKind::KilledWorker)]);
}

#[test]
fn errors_reach_dependents_and_retries_run_again() {
    let mut s = two_workers();
    let mut t = task(1, &[]);
    t.options.retries = 1;
    s.handle(Event::Submit { client: C, tasks: vec![t, task(2, &[1]), task(3, &[2])] });
    let o1 = out(&mut s);
    let w = o1.compute[0].0;
    let err = crate::error::TaskError::new(FailureKind::Panic, "f", "boom");
    let first = o1.instance[&1];
    s.handle(Event::Failed { worker: WorkerId(w), failures: failed(1, first, &err) });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1, "one retry: {o:?}");
    // A report about the first assignment, arriving late, is recognised as stale.
    s.handle(Event::Failed { worker: WorkerId(o.compute[0].0), failures: failed(1, first, &err) });
    assert!(out(&mut s).erred.is_empty(), "a stale failure is ignored");
    s.handle(Event::Failed { worker: WorkerId(o.compute[0].0), failures: failed(1, o.instance[&1], &err) });
    let mut erred = out(&mut s).erred;
    erred.sort_by_key(|(id, _)| *id);
    assert_eq!(erred, vec![(1, FailureKind::Panic), (2, FailureKind::DependencyFailed), (3, FailureKind::DependencyFailed)]);
}

#[test]
fn actor_calls_are_sent_in_submission_order() {
    let mut s = two_workers();
    let mut create = task(1, &[]);
    create.kind = TaskKind::ActorNew { class: "C".into() };
    s.handle(Event::Submit { client: C, tasks: vec![create] });
    let w = out(&mut s).compute[0].0;
    // Call 10 waits on an unfinished input; call 11 is ready but must not overtake it.
    s.handle(Event::Submit { client: C, tasks: vec![task(5, &[])] });
    let call = |id: u64, deps: &[u64]| {
        let mut t = task(id, deps);
        t.kind = TaskKind::ActorCall { actor: TaskId(1), method: "m".into() };
        t
    };
    s.handle(Event::Submit { client: C, tasks: vec![call(10, &[5]), call(11, &[])] });
    let o = out(&mut s);
    let five_on = o.compute.iter().find(|(_, id)| *id == 5).expect("task 5 runs").0;
    s.handle(Event::Finished { worker: WorkerId(w), results: vec![Finished { inline: Some(Default::default()), ..done(1, 0) }] });
    assert!(out(&mut s).compute.is_empty(), "call 11 waits behind call 10");
    s.handle(Event::Finished { worker: WorkerId(five_on), results: vec![done(5, 8)] });
    assert_eq!(out(&mut s).compute, vec![(w, 10), (w, 11)]);
}

#[test]
fn priorities_order_the_central_queue() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(C));
    let mut tasks: Vec<TaskSpec> = (1..=4).map(|i| task(i, &[])).collect();
    tasks[3].options.priority = 5;
    s.handle(Event::Submit { client: C, tasks });
    assert_eq!(out(&mut s).compute, vec![(1, 4), (1, 1)]);
}

#[test]
fn a_client_that_leaves_has_its_unfinished_tasks_cancelled_and_its_results_freed() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: (1..=20).map(|i| task(i, &[])).collect() });
    let o = out(&mut s);
    let (w, first) = o.compute[0];
    s.handle(Event::Finished { worker: WorkerId(w), results: vec![done(first, 100)] });
    out(&mut s);
    s.handle(Event::ClientLeft(C));
    let o = out(&mut s);
    assert!(o.compute.is_empty(), "nothing more is started for a client that left: {o:?}");
    assert_eq!(o.delete, vec![(w, first)], "its finished result is freed");
    assert!(o.erred.is_empty() && o.done.is_empty(), "nobody is left to tell");
    assert_eq!(s.task_count(), 0, "nothing of it is kept");
}

#[test]
fn notes_become_one_message_per_run_of_results() {
    let done = |id| Note::Done(crate::proto::Done { id: TaskId(id), inline: None, holders: vec![WorkerId(1)] });
    let error = crate::error::TaskError::new(FailureKind::Panic, "f", "boom");
    let notes = vec![done(1), done(2), Note::Erred { id: TaskId(3), error }, done(4), Note::Forgotten(TaskId(5)), Note::Forgotten(TaskId(6))];
    let msgs = Note::into_messages(notes);
    let shape: Vec<&str> = msgs
        .iter()
        .map(|m| match m {
            ToClient::Done(d) if d.len() == 2 => "done×2",
            ToClient::Done(_) => "done",
            ToClient::Erred { .. } => "erred",
            ToClient::Forgotten(f) if f.len() == 2 => "forgotten×2",
            _ => "other",
        })
        .collect();
    assert_eq!(shape, ["done×2", "erred", "done", "forgotten×2"]);
}

/// A task running on one worker when its only input, scattered data on another, was lost
/// with that worker: the input failed for good while the task was running, so the error
/// did not reach it, and when its worker then reported the input missing it waited for it
/// forever (found by chorus-array's worker-kill test). It fails with the input's error.
#[test]
fn regression_a_running_task_whose_input_is_lost_for_good_fails_instead_of_waiting_forever() {
    let mut s = two_workers();
    s.handle(Event::Scattered { client: C, worker: WorkerId(1), objects: vec![(TaskId(1), 1000)] });
    let mut t = task(2, &[1]);
    t.options.pin = Some(WorkerId(2));
    s.handle(Event::Submit { client: C, tasks: vec![t] });
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(2, 2)], "{o:?}");
    let instance = o.instance[&2];
    s.handle(Event::WorkerLost { worker: WorkerId(1), reason: "was killed".into(), memory: false });
    let lost = out(&mut s);
    assert!(lost.erred.contains(&(1, FailureKind::DataLost)), "{lost:?}");
    s.handle(Event::MissingInputs { worker: WorkerId(2), id: TaskId(2), instance, missing: ids(&[1]) });
    let o = out(&mut s);
    assert_eq!(o.erred, vec![(2, FailureKind::DependencyFailed)], "task 2 fails through its input: {o:?}");
    assert!(o.compute.is_empty(), "nothing is retried: {o:?}");
}

/// Runs a tree reduction of `roots` blocks with fan-in 8, submitted as an array's
/// reduction is (every root first, then each level of combining tasks), on one worker
/// with one thread whose tasks take 100 ms; returns the most results it held at once.
/// Runs the tasks one at a time on worker 1, in the order they are sent, until `last`
/// is done; the most results held at once (each 1 MiB, 100 ms).
fn most_held_until(s: &mut Scheduler, last: u64) -> usize {
    let (mut queue, mut held, mut most) = (std::collections::VecDeque::new(), 0usize, 0usize);
    loop {
        let o = out(s);
        held -= o.delete.len();
        queue.extend(o.compute.iter().map(|(_, id)| *id));
        if o.done.contains(&last) {
            return most;
        }
        let id = queue.pop_front().expect("work remains until the final result");
        held += 1;
        most = most.max(held);
        let f = Finished { id: TaskId(id), instance: Instance(1), size: 1 << 20, inline: None, timing: timing(100_000) };
        s.handle(Event::Finished { worker: WorkerId(1), results: vec![f] });
    }
}

/// Submits `tasks` and a tree reduction of `leaves` with `fan` inputs per combine, the
/// client keeping only the final result's future (as an array's or a bag's reduction
/// does); the most results held at once while one worker runs them.
fn most_held_by_a_reduction(mut tasks: Vec<TaskSpec>, leaves: Vec<u64>, fan: usize) -> usize {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(C));
    out(&mut s);
    let mut next = tasks.iter().map(|t| t.id.0).max().unwrap_or(0) + 1;
    let mut level = leaves;
    while level.len() > 1 {
        level = level
            .chunks(fan)
            .map(|c| {
                tasks.push(task(next, c));
                next += 1;
                next - 1
            })
            .collect();
    }
    let last = level[0];
    s.handle(Event::Submit { client: C, tasks });
    s.handle(Event::Release { client: C, ids: ids(&(1..last).collect::<Vec<_>>()) });
    most_held_until(&mut s, last)
}

fn most_results_held_by_a_tree_reduction(roots: u64) -> usize {
    most_held_by_a_reduction((1..=roots).map(|i| task(i, &[])).collect(), (1..=roots).collect(), 8)
}

/// `roots` loads, a map of each, and a tree reduction of the maps (a bag's
/// `map(...).sum()`).
fn most_results_held_by_a_pipeline(roots: u64) -> usize {
    let loads = (1..=roots).map(|i| task(i, &[]));
    let maps = (1..=roots).map(|i| task(roots + i, &[i]));
    most_held_by_a_reduction(loads.chain(maps).collect(), (roots + 1..=2 * roots).collect(), 4)
}

#[test]
fn a_load_map_reduce_pipeline_holds_a_bounded_number_of_results_whatever_its_length() {
    let small = most_results_held_by_a_pipeline(64);
    let large = most_results_held_by_a_pipeline(2048);
    // Only with the depth of the reduction tree (3 levels of 4 for 64 inputs, 6 for
    // 2048), each level holding at most 3 partial results: not with the inputs.
    assert!(large <= small + 3 * 3, "held results grow with the input: {small} for 64 inputs, {large} for 2048");
    assert!(large <= 24, "a 2048-input pipeline held {large} results at once");
}

#[test]
fn a_task_whose_workers_keep_exceeding_their_memory_fails_with_the_memory_kind() {
    let mut s = Scheduler::new(SchedulerConfig { allowed_failures: 1, ..SchedulerConfig::default() });
    for w in 1..=3 {
        s.handle(Event::WorkerJoined(worker(w, 1)));
    }
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::WorkerLost { worker: WorkerId(w), reason: "exceeded its memory limit".into(), memory: true });
    let w2 = out(&mut s).compute[0].0;
    assert_ne!(w, w2, "retried elsewhere");
    s.handle(Event::WorkerLost { worker: WorkerId(w2), reason: "exceeded its memory limit".into(), memory: true });
    let o = out(&mut s);
    assert_eq!(o.erred, vec![(1, FailureKind::MemoryLimit)]);
}

#[test]
fn a_tree_reduction_combines_results_as_they_come_instead_of_running_every_root_first() {
    // Ready tasks used to go out in the order they became ready, so all 512 roots ran
    // before the first combine and all their results were held at once.
    let small = most_results_held_by_a_tree_reduction(64);
    let large = most_results_held_by_a_tree_reduction(512);
    assert!(large <= 8 * 3 + 2, "a 512-block reduction held {large} results at once");
    assert!(large <= small + 8, "held results grow with the input: {small} for 64 blocks, {large} for 512");
}

#[test]
fn a_task_follows_its_latest_input_still_to_compute_and_inputs_in_memory_do_not_count() {
    // Task 1 is computed first. Then 2, 5, 6, 4 (on 2) and 3 (on 1, in memory) are
    // submitted: 3 is a root of the new graph and goes last, by its submission, not
    // first by the age of its input.
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[])] });
    out(&mut s);
    s.handle(Event::Finished { worker: WorkerId(1), results: vec![done(1, 8)] });
    out(&mut s);
    s.handle(Event::Submit { client: C, tasks: vec![task(2, &[]), task(5, &[]), task(6, &[]), task(4, &[2]), task(3, &[1])] });
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(1, 2), (1, 5)], "{o:?}");
    s.handle(Event::Finished { worker: WorkerId(1), results: vec![done(2, 8)] });
    let o = out(&mut s);
    // 4 comes right after its input 2, before 6 and 3 which were submitted after 2.
    assert_eq!(o.compute, vec![(1, 4)], "{o:?}");
}

/// The counts a group shows: (waiting, queued, processing, memory, released, erred, forgotten).
fn counts(s: &Scheduler, name: &str) -> (u64, u64, u64, u64, u64, u64, u64) {
    let snap = s.observe(Default::default());
    let g = snap.groups.iter().find(|g| g.name == name).expect("group");
    (g.waiting, g.queued, g.processing, g.memory, g.released, g.erred, g.forgotten)
}

#[test]
fn the_observer_counts_tasks_by_function_and_state_through_their_lives() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: C, tasks: vec![task(1, &[]), task(2, &[1]), task(3, &[])] });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 2, "1 and 3 run; 2 waits");
    assert_eq!(counts(&s, "f"), (1, 0, 2, 0, 0, 0, 0));
    let on = |id: u64| WorkerId(o.compute.iter().find(|(_, t)| *t == id).expect("assigned").0);
    s.handle(Event::Finished { worker: on(1), results: vec![done(1, 100)] });
    out(&mut s);
    assert_eq!(counts(&s, "f"), (0, 0, 2, 1, 0, 0, 0), "2 was assigned as soon as 1 finished");
    let err = crate::error::TaskError::new(FailureKind::Panic, "f", "boom");
    s.handle(Event::Failed { worker: on(3), failures: failed(3, Instance(1), &err) });
    out(&mut s);
    assert_eq!(counts(&s, "f"), (0, 0, 1, 1, 0, 1, 0));
    s.handle(Event::Release { client: C, ids: ids(&[1, 3]) });
    out(&mut s);
    // 1 stays as lineage of 2 (released); 3 is forgotten.
    let snap = s.observe(Default::default());
    let g = &snap.groups[0];
    assert_eq!((g.released, g.erred, g.forgotten_erred, g.processing), (0, 0, 1, 1));
    assert_eq!(g.memory, 1, "1 is still needed by 2");
    assert_eq!(snap.events.len(), 2);
    assert_eq!((snap.events[0].task, snap.events[0].erred, snap.events[0].micros), (1, false, 10));
    assert!(snap.events[1].erred);
    assert_eq!((snap.totals.finished, snap.totals.failed), (1, 1));
}

#[test]
fn the_task_stream_keeps_only_the_latest_runs_and_counts_on() {
    let mut s = Scheduler::new(SchedulerConfig { event_ring: 2, ..SchedulerConfig::default() });
    s.handle(Event::WorkerJoined(worker(1, 8)));
    s.handle(Event::ClientJoined(C));
    s.handle(Event::Submit { client: C, tasks: (1..=5).map(|i| task(i, &[])).collect() });
    out(&mut s);
    s.handle(Event::Finished { worker: WorkerId(1), results: (1..=5).map(|i| done(i, 1)).collect() });
    let snap = s.observe(Default::default());
    assert_eq!(snap.events.iter().map(|e| e.task).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(snap.next_event, 5);
    let later = s.observe(chorus_dashboard::model::SnapshotQuery { events_since: 5, memory_since_us: None });
    assert!(later.events.is_empty(), "nothing new since 5");
    assert_eq!(snap.totals.finished, 5);
    let le_100us = snap.totals.duration_buckets.iter().find(|(le, _)| (*le - 1e-4).abs() < 1e-12).expect("bucket");
    assert_eq!(le_100us.1, 5, "every run took 10 µs");
}

#[test]
fn a_workers_writes_to_disk_between_heartbeats_are_one_spill_event_in_its_disk_lane() {
    use chorus_dashboard::model::{EventKind, SPILL_LANE};
    let mut s = two_workers();
    let beat = |bytes: u64, micros: u64| crate::proto::Heartbeat { spill_io: (bytes, micros), ..Default::default() };
    s.handle(Event::Heartbeat { worker: WorkerId(1), beat: beat(0, 0), at_us: 1_000_000 });
    s.handle(Event::Heartbeat { worker: WorkerId(1), beat: beat(64 << 20, 300_000), at_us: 2_000_000 });
    // Nothing written since: no event.
    s.handle(Event::Heartbeat { worker: WorkerId(1), beat: beat(64 << 20, 300_000), at_us: 3_000_000 });
    let snap = s.observe(Default::default());
    let spills: Vec<_> = snap.events.iter().filter(|e| e.kind == EventKind::Spill).collect();
    assert_eq!(spills.len(), 1, "{:?}", snap.events);
    let e = spills[0];
    assert_eq!((e.worker, e.thread, e.size, e.micros, e.start_us), (1, SPILL_LANE, 64 << 20, 300_000, 1_700_000));
    assert_eq!(snap.totals.finished, 0, "a spill is not a run");
}

#[test]
fn departed_workers_are_listed_with_their_reason() {
    let mut s = two_workers();
    s.handle(Event::Clock { now_us: 42 });
    s.handle(Event::WorkerLost { worker: WorkerId(2), reason: "closed its connection".into(), memory: false });
    let snap = s.observe(Default::default());
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.departed.len(), 1);
    assert_eq!((snap.departed[0].id, snap.departed[0].reason.as_str(), snap.departed[0].left_us), (2, "closed its connection", 42));
}
