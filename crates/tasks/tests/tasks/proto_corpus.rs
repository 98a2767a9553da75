//! The corpus: one well-formed message of every variant of every message type, the
//! seeds the decoder tests mutate. Kept as code so that it follows the protocol when
//! the messages change.

use std::sync::Arc;

use chorus_tasks::proto::*;
use chorus_tasks::{FailureKind, TaskError};

fn worker() -> WorkerInfo {
    WorkerInfo {
        id: WorkerId(3),
        nthreads: 2,
        resources: Resources { cpus: 2, custom: vec![("GPU".into(), 1.0)] },
        memory_limit: 1 << 30,
        data: DataAddress { tcp: "10.0.0.2:4000".into(), unix: Some("/tmp/chorus-x/s".into()), host_key: "host".into() },
        host: "node2".into(),
        pid: 4242,
    }
}

fn spec() -> TaskSpec {
    TaskSpec {
        id: TaskId(0x2_0000_0000_0007),
        kind: TaskKind::Call { func: "crate::inc".into() },
        args: vec![
            ArgSlot::Value(vec![1, 2, 3]),
            ArgSlot::Future(TaskId(5)),
            ArgSlot::Stored { id: TaskId(9), size: 4 << 20, at: Arc::new(worker().data) },
        ],
        options: TaskOptions::new().priority(-2).retries(1).resource("GPU", 0.5).on_worker(WorkerId(1)),
    }
}

fn error() -> TaskError {
    let mut e = TaskError::new(FailureKind::Panic, "crate::f", "boom");
    e.location = Some("src/lib.rs:3:5".into());
    e
}

pub fn from_worker() -> Vec<FromWorker> {
    vec![
        FromWorker::Register(worker()),
        FromWorker::Finished(vec![Finished { id: TaskId(7), instance: Instance(2), size: 3, inline: Some(Arc::new(vec![1, 2, 3])), timing: Timing { start_us: 5, micros: 10, fetch_micros: 2, fetched: 100, unspill_micros: 3, unspilled: 50, thread: 1 } }]),
        FromWorker::Failed(vec![Failed { id: TaskId(7), instance: Instance(1), error: error(), timing: Timing::default() }]),
        FromWorker::MissingInputs { id: TaskId(8), instance: Instance(1), missing: vec![TaskId(5)] },
        FromWorker::Stolen(vec![TaskId(1), TaskId(2)]),
        FromWorker::Heartbeat(Heartbeat { stored: 10, spilled: 11, spills: 12, unspills: 13, spill_error: Some("disk full".into()), spill_io: (14, 15), unspill_io: (16, 17), rss: 20, cpu_micros: 30, sent: 40, received: 50, ranks: Vec::new() }),
        FromWorker::Leaving("exceeded its memory limit".into()),
    ]
}

pub fn to_worker() -> Vec<ToWorker> {
    let spmd = TaskSpec {
        kind: TaskKind::Spmd { func: "crate::job".into(), rank: 1, size: 2, coordinator: "10.0.0.1:7000".into() },
        ..spec()
    };
    let deps = vec![DepSource { id: TaskId(5), inline: None, holders: vec![WorkerId(2)] }];
    vec![
        ToWorker::Welcome(WorkerId(3)),
        ToWorker::Compute(vec![
            ComputeTask { spec: Arc::new(spec()), instance: Instance(1), deps: deps.clone() },
            ComputeTask { spec: Arc::new(spmd), instance: Instance(4), deps },
        ]),
        ToWorker::Delete(vec![TaskId(1)]),
        ToWorker::Steal(vec![TaskId(2)]),
        ToWorker::Cancel(vec![TaskId(3)]),
        ToWorker::Peers(vec![worker()]),
        ToWorker::Shutdown,
    ]
}

pub fn from_client() -> Vec<FromClient> {
    let actor = TaskSpec { kind: TaskKind::ActorCall { actor: TaskId(4), method: "C::m".into() }, ..spec() };
    let new = TaskSpec { kind: TaskKind::ActorNew { class: "C".into() }, ..spec() };
    vec![
        FromClient::Register,
        FromClient::Submit(vec![spec(), actor, new]),
        FromClient::Release(vec![TaskId(7)]),
        FromClient::Cancel(vec![TaskId(8)]),
        FromClient::Scattered { worker: WorkerId(1), objects: vec![(TaskId(9), 100)] },
    ]
}

pub fn to_client() -> Vec<ToClient> {
    vec![
        ToClient::Welcome { client: ClientId(2), workers: vec![worker()] },
        ToClient::Workers(vec![]),
        ToClient::Done(vec![Done { id: TaskId(7), inline: Some(Arc::new(vec![9])), holders: vec![] }]),
        ToClient::Erred { id: TaskId(7), error: error() },
        ToClient::Forgotten(vec![TaskId(7)]),
    ]
}

pub fn observer() -> (Vec<FromObserver>, Vec<ToObserver>) {
    let status = Status {
        workers: vec![WorkerStatus { info: worker(), processing: 1, objects: 2, stored: 3, rss: 4, spilled: 5, spills: 6 }],
        tasks: 5,
        waiting: 6,
        clients: 1,
    };
    (vec![FromObserver::Register, FromObserver::Status], vec![ToObserver::Status(status)])
}

pub fn data() -> (Vec<DataRequest>, Vec<DataReply>) {
    (
        vec![DataRequest::Fetch(vec![TaskId(1), TaskId(2)]), DataRequest::Put { id: TaskId(3), size: 100 }],
        vec![
            DataReply::Object { id: TaskId(1), size: 5 },
            DataReply::Missing(TaskId(2)),
            DataReply::Stored,
            DataReply::Refused { id: TaskId(3), reason: "too large".into() },
        ],
    )
}
