//! Where the scheduler's messages for a client land: a slot per live future, the
//! workers, and the store of large arguments the driver keeps for its tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use rustc_hash::FxHashMap;

use chorus_comm::Secret;

use crate::data::{self, ObjectStore};
use crate::error::TaskError;
use crate::net;
use crate::proto::{ClientId, DataAddress, Done, TaskId, ToClient, WorkerId, WorkerInfo};
use crate::server::ClientSink;
use crate::settings::Limits;
use crate::{Error, Result};

#[derive(Clone)]
pub(super) enum Slot {
    Pending,
    Done { inline: Option<Arc<Vec<u8>>>, holders: Vec<WorkerId> },
    /// Boxed: a slot per future, and most never fail.
    Erred(Box<TaskError>),
}

#[derive(Default)]
pub(super) struct MailState {
    pub(super) slots: FxHashMap<TaskId, Slot>,
    pub(super) workers: Vec<WorkerInfo>,
    pub(super) welcomed: Option<ClientId>,
    pub(super) closed: Option<String>,
    pub(super) wakers: FxHashMap<TaskId, Vec<Waker>>,
    /// Completions in order, for `as_completed`.
    pub(super) completions: u64,
    /// Futures waiting for their task (see [`MAX_IN_FLIGHT`]).
    pub(super) pending: usize,
}

/// Where the scheduler's messages for this client land.
#[derive(Default)]
pub(crate) struct Mailbox {
    pub(super) state: Mutex<MailState>,
    pub(super) cv: Condvar,
    pub(super) args: ArgStore,
    /// Counts deliveries, so that a waiter can watch for one without the lock.
    delivered: AtomicU64,
}

/// The large arguments this driver keeps for its tasks (see the module documentation).
#[derive(Default)]
pub(super) struct ArgStore {
    /// The store and its data server, started on first use.
    pub(super) server: std::sync::OnceLock<std::result::Result<ArgServer, String>>,
    pub(super) refs: Mutex<ArgRefs>,
}

#[derive(Default)]
pub(super) struct ArgRefs {
    /// For each task with stored arguments, their keys.
    pub(super) by_task: FxHashMap<TaskId, Vec<TaskId>>,
    /// For each key, how many tasks use it.
    pub(super) uses: FxHashMap<TaskId, u32>,
}

pub(super) struct ArgServer {
    pub(super) store: Arc<ObjectStore>,
    pub(super) address: Arc<DataAddress>,
    pub(super) _socket_dir: Option<chorus_comm::link::SocketDir>,
}

impl ArgStore {
    pub(super) fn server(&self, bind_ip: &str, secret: &Secret, limits: Limits) -> std::result::Result<&ArgServer, String> {
        self.server
            .get_or_init(|| {
                let listeners = net::Listeners::bind(&format!("{bind_ip}:0"), true).map_err(|e| e.to_string())?;
                let address = Arc::new(DataAddress {
                    tcp: listeners.tcp_addr(),
                    unix: listeners.unix_path(),
                    host_key: chorus_comm::link::host_key(),
                });
                let store = Arc::new(ObjectStore::default());
                let dir = data::serve(listeners, secret.clone(), store.clone(), limits).map_err(|e| e.to_string())?;
                Ok(ArgServer { store, address, _socket_dir: dir })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `task` uses the stored values `keys`.
    pub(super) fn hold(&self, task: TaskId, keys: Vec<TaskId>) {
        let mut refs = self.refs.lock().expect("arg refs lock");
        for k in &keys {
            *refs.uses.entry(*k).or_default() += 1;
        }
        refs.by_task.insert(task, keys);
    }

    /// The scheduler forgot these tasks: their stored values go once no task uses them.
    pub(super) fn release(&self, tasks: &[TaskId]) {
        let Some(Ok(server)) = self.server.get() else { return };
        let mut refs = self.refs.lock().expect("arg refs lock");
        for t in tasks {
            for k in refs.by_task.remove(t).unwrap_or_default() {
                let n = refs.uses.get_mut(&k).expect("counted in hold");
                *n -= 1;
                if *n == 0 {
                    refs.uses.remove(&k);
                    server.store.remove(k);
                }
            }
        }
    }

    /// Values the store holds now (for tests).
    pub(super) fn held(&self) -> usize {
        self.server.get().and_then(|s| s.as_ref().ok()).map_or(0, |s| s.store.len())
    }
}

impl Mailbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, MailState> {
        self.state.lock().expect("client state lock")
    }

    /// Waits for the scheduler's welcome and returns the client number it gave.
    pub(super) fn wait_welcome(&self) -> Result<ClientId> {
        let mut s = self.lock();
        loop {
            if let Some(id) = s.welcomed {
                return Ok(id);
            }
            if let Some(why) = &s.closed {
                return Err(Error::Disconnected { doing: "joining the cluster".into(), reason: why.clone() });
            }
            s = self.cv.wait(s).expect("client state lock");
        }
    }

    /// The delivery count, to pass to [`Self::spin_for_delivery`].
    pub(super) fn deliveries(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Spins until a delivery after `seen` or `until`, whichever comes first, and says
    /// whether one came. Waking a sleeping thread costs more than a short round trip to a
    /// worker on this machine, so a thread awaiting one result watches for it a while
    /// before it sleeps; it yields its core now and then, in case the thread that will
    /// deliver is waiting for it.
    pub(super) fn spin_for_delivery(&self, seen: u64, until: Instant) -> bool {
        loop {
            for _ in 0..64 {
                if self.delivered.load(Ordering::Acquire) != seen {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }

    pub(super) fn close(&self, why: String) {
        let mut s = self.lock();
        s.closed.get_or_insert(why);
        for (_, ws) in s.wakers.drain() {
            ws.into_iter().for_each(Waker::wake);
        }
        drop(s);
        self.delivered.fetch_add(1, Ordering::Release);
        self.cv.notify_all();
    }
}

impl MailState {
    pub(super) fn settle(&mut self, id: TaskId, slot: Slot) {
        // Only futures still alive have a slot.
        if let Some(old) = self.slots.get_mut(&id) {
            if matches!(old, Slot::Pending) {
                self.pending -= 1;
            }
            *old = slot;
            self.completions += 1;
            if let Some(ws) = self.wakers.remove(&id) {
                ws.into_iter().for_each(Waker::wake);
            }
        }
    }
}

impl ClientSink for Mailbox {
    fn deliver(&self, msgs: Vec<ToClient>) -> std::result::Result<(), String> {
        let mut s = self.lock();
        for m in msgs {
            match m {
                ToClient::Welcome { client, workers } => {
                    s.welcomed = Some(client);
                    s.workers = workers;
                }
                ToClient::Workers(w) => s.workers = w,
                ToClient::Done(done) => {
                    for Done { id, inline, holders } in done {
                        s.settle(id, Slot::Done { inline, holders });
                    }
                }
                ToClient::Erred { id, error } => s.settle(id, Slot::Erred(Box::new(error))),
                ToClient::Forgotten(tasks) => self.args.release(&tasks),
            }
        }
        drop(s);
        self.delivered.fetch_add(1, Ordering::Release);
        self.cv.notify_all();
        Ok(())
    }
}

