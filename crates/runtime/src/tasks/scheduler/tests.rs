//! The state machine alone: events in, commands out, no sockets.

use super::*;
use crate::tasks::error::FailureKind;
use crate::tasks::proto::{
    ArgSlot, DataAddress, Finished, Resources, TaskId, TaskKind, TaskOptions, TaskSpec, ToClient, ToWorker, WorkerId,
    WorkerInfo,
};

fn worker(id: WorkerId, nthreads: u32) -> WorkerInfo {
    WorkerInfo {
        id,
        nthreads,
        resources: Resources { cpus: nthreads, custom: Vec::new() },
        memory_limit: 0,
        data: DataAddress { tcp: format!("w{id}"), unix: None, host_key: String::new() },
        host: "test".into(),
        pid: id,
    }
}

fn task(id: TaskId, deps: &[TaskId]) -> TaskSpec {
    let mut args: Vec<ArgSlot> = deps.iter().map(|d| ArgSlot::Future(*d)).collect();
    args.push(ArgSlot::Value(vec![1]));
    TaskSpec { id, kind: TaskKind::Call { func: "f".into() }, args, options: TaskOptions::default() }
}

fn done(id: TaskId, size: u64) -> Finished {
    Finished { id, size, inline: None, micros: 10 }
}

/// Commands split by kind: (computes per worker, deletes per worker, client notes).
#[derive(Default, Debug)]
struct Out {
    compute: Vec<(WorkerId, TaskId)>,
    delete: Vec<(WorkerId, TaskId)>,
    steal: Vec<(WorkerId, Vec<TaskId>)>,
    done: Vec<TaskId>,
    erred: Vec<(TaskId, FailureKind)>,
}

fn out(s: &mut Scheduler) -> Out {
    let mut o = Out::default();
    for c in s.drain() {
        match c {
            Command::Worker(w, ToWorker::Compute(ts)) => o.compute.extend(ts.iter().map(|t| (w, t.spec.id))),
            Command::Worker(w, ToWorker::Delete(ids)) => o.delete.extend(ids.iter().map(|i| (w, *i))),
            Command::Worker(w, ToWorker::Steal(ids)) => o.steal.push((w, ids)),
            Command::Worker(..) => {}
            Command::Client(_, msgs) => {
                for m in msgs {
                    match m {
                        ToClient::Done { id, .. } => o.done.push(id),
                        ToClient::Erred { id, error } => o.erred.push((id, error.kind)),
                        _ => {}
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
    s.handle(Event::ClientJoined(1));
    out(&mut s);
    s
}

#[test]
fn dependencies_wait_and_results_are_released_when_unneeded() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: 1, tasks: vec![task(1, &[]), task(2, &[1])] });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1, "task 2 waits for task 1: {o:?}");
    let w = o.compute[0].0;
    s.handle(Event::Release { client: 1, ids: vec![1] });
    s.handle(Event::Finished { worker: w, results: vec![done(1, 100)] });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1);
    assert!(o.done.is_empty(), "the client dropped its future of task 1");
    let w2 = o.compute[0].0;
    s.handle(Event::Finished { worker: w2, results: vec![done(2, 8)] });
    let o = out(&mut s);
    assert_eq!(o.done, vec![2]);
    assert_eq!(o.delete, vec![(w, 1)], "task 1's result goes once task 2 no longer needs it");
    s.handle(Event::Release { client: 1, ids: vec![2] });
    let o = out(&mut s);
    assert_eq!(o.delete, vec![(w2, 2)]);
    assert_eq!(s.task_count(), 0, "nothing is kept once nothing refers to it");
}

#[test]
fn a_task_goes_to_the_worker_holding_its_large_input() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: 1, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::Finished { worker: w, results: vec![done(1, 50 << 20)] });
    out(&mut s);
    for id in 2..6 {
        s.handle(Event::Submit { client: 1, tasks: vec![task(id, &[1])] });
        assert_eq!(out(&mut s).compute, vec![(w, id)]);
    }
}

#[test]
fn independent_tasks_spread_over_workers() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: 1, tasks: (1..=4).map(|i| task(i, &[])).collect() });
    let o = out(&mut s);
    let on1 = o.compute.iter().filter(|(w, _)| *w == 1).count();
    assert_eq!((on1, o.compute.len()), (2, 4), "{o:?}");
}

#[test]
fn queues_are_bounded_and_idle_workers_steal() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(1));
    s.handle(Event::Submit { client: 1, tasks: (1..=10).map(|i| task(i, &[])).collect() });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 2, "one thread, tasks of unknown length: two in flight, {o:?}");
    // A second worker joins while worker 1 holds work: it gets the queued tasks first.
    s.handle(Event::WorkerJoined(worker(2, 1)));
    let o = out(&mut s);
    assert!(o.compute.iter().all(|(w, _)| *w == 2) && o.compute.len() == 2, "{o:?}");
    // Nothing left centrally: an idle worker 3 steals from a backlog.
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(1));
    s.handle(Event::Submit { client: 1, tasks: (1..=2).map(|i| task(i, &[])).collect() });
    out(&mut s);
    s.handle(Event::Submit { client: 1, tasks: vec![task(3, &[])] });
    s.handle(Event::WorkerJoined(worker(3, 1)));
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(3, 3)]);
    s.handle(Event::Finished { worker: 3, results: vec![done(3, 1)] });
    let o = out(&mut s);
    assert_eq!(o.steal.len(), 0, "a backlog of one task is not worth stealing: {o:?}");
}

#[test]
fn a_lost_worker_is_recomputed_from_lineage() {
    let mut s = two_workers();
    s.handle(Event::Submit { client: 1, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::Finished { worker: w, results: vec![done(1, 10 << 20)] });
    s.handle(Event::Submit { client: 1, tasks: vec![task(2, &[1])] });
    s.handle(Event::Release { client: 1, ids: vec![1] });
    let o = out(&mut s);
    assert_eq!(o.compute, vec![(w, 2)]);
    s.handle(Event::WorkerLost { worker: w, reason: "killed".into() });
    let o = out(&mut s);
    let other = if w == 1 { 2 } else { 1 };
    assert_eq!(o.compute, vec![(other, 1)], "task 1 is run again, its result being lost: {o:?}");
    s.handle(Event::Finished { worker: other, results: vec![done(1, 10 << 20)] });
    assert_eq!(out(&mut s).compute, vec![(other, 2)]);
    s.handle(Event::Finished { worker: other, results: vec![done(2, 1)] });
    assert_eq!(out(&mut s).done, vec![2]);
}

#[test]
fn a_task_that_keeps_killing_workers_fails() {
    let mut s = Scheduler::new(SchedulerConfig { allowed_failures: 1 });
    for w in 1..=3 {
        s.handle(Event::WorkerJoined(worker(w, 1)));
    }
    s.handle(Event::ClientJoined(1));
    s.handle(Event::Submit { client: 1, tasks: vec![task(1, &[])] });
    let w = out(&mut s).compute[0].0;
    s.handle(Event::WorkerLost { worker: w, reason: "killed".into() });
    let w2 = out(&mut s).compute[0].0;
    s.handle(Event::WorkerLost { worker: w2, reason: "killed".into() });
    let o = out(&mut s);
    assert_eq!(o.erred, vec![(1, FailureKind::KilledWorker)]);
}

#[test]
fn errors_reach_dependents_and_retries_run_again() {
    let mut s = two_workers();
    let mut t = task(1, &[]);
    t.options.retries = 1;
    s.handle(Event::Submit { client: 1, tasks: vec![t, task(2, &[1]), task(3, &[2])] });
    let w = out(&mut s).compute[0].0;
    let err = crate::tasks::error::TaskError::new(FailureKind::Panic, "f", "boom");
    s.handle(Event::Failed { worker: w, id: 1, error: err.clone() });
    let o = out(&mut s);
    assert_eq!(o.compute.len(), 1, "one retry: {o:?}");
    s.handle(Event::Failed { worker: o.compute[0].0, id: 1, error: err });
    let mut erred = out(&mut s).erred;
    erred.sort_by_key(|(id, _)| *id);
    assert_eq!(erred, vec![(1, FailureKind::Panic), (2, FailureKind::DependencyFailed), (3, FailureKind::DependencyFailed)]);
}

#[test]
fn actor_calls_are_sent_in_submission_order() {
    let mut s = two_workers();
    let mut create = task(1, &[]);
    create.kind = TaskKind::ActorNew { class: "C".into() };
    s.handle(Event::Submit { client: 1, tasks: vec![create] });
    let w = out(&mut s).compute[0].0;
    // Call 10 waits on an unfinished input; call 11 is ready but must not overtake it.
    s.handle(Event::Submit { client: 1, tasks: vec![task(5, &[])] });
    let call = |id: TaskId, deps: &[TaskId]| {
        let mut t = task(id, deps);
        t.kind = TaskKind::ActorCall { actor: 1, method: "m".into() };
        t
    };
    s.handle(Event::Submit { client: 1, tasks: vec![call(10, &[5]), call(11, &[])] });
    let o = out(&mut s);
    let five_on = o.compute.iter().find(|(_, id)| *id == 5).expect("task 5 runs").0;
    s.handle(Event::Finished { worker: w, results: vec![Finished { id: 1, size: 0, inline: Some(Default::default()), micros: 1 }] });
    assert!(out(&mut s).compute.is_empty(), "call 11 waits behind call 10");
    s.handle(Event::Finished { worker: five_on, results: vec![done(5, 8)] });
    assert_eq!(out(&mut s).compute, vec![(w, 10), (w, 11)]);
}

#[test]
fn priorities_order_the_central_queue() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle(Event::WorkerJoined(worker(1, 1)));
    s.handle(Event::ClientJoined(1));
    let mut tasks: Vec<TaskSpec> = (1..=4).map(|i| task(i, &[])).collect();
    tasks[3].options.priority = 5;
    s.handle(Event::Submit { client: 1, tasks });
    assert_eq!(out(&mut s).compute, vec![(1, 4), (1, 1)]);
}
