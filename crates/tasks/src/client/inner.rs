//! The state a client and its futures share: the link to the scheduler, the outgoing
//! releases, the argument store, and bringing results to the driver.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_comm::Secret;

use super::mailbox::{Mailbox, Slot};
use super::{too_large_result, MAX_IN_FLIGHT, RELEASE_BATCH, RELEASE_DELAY};
use crate::data::{DataPool, Fetched};
use crate::error::{FailureKind, TaskError};
use crate::net::{self, Stream};
use crate::proto::{wire, ArgSlot, ClientId, DataAddress, FromClient, TaskId, WorkerId};
use crate::server::{CoreHandle, Input};
use crate::settings::{human, Limits, STORE_ARGS_ABOVE, WARN_ARGS_ABOVE};
use crate::{Error, Result};

pub(super) enum Link {
    Local(Arc<CoreHandle>),
    Remote(Mutex<Stream>),
}

pub(crate) struct Inner {
    pub(super) id: ClientId,
    pub(super) next: AtomicU64,
    pub(super) link: Link,
    pub(super) mail: Arc<Mailbox>,
    pub(super) pool: DataPool,
    pub(super) secret: Secret,
    /// Where SPMD rendezvous and the argument store listen: an address the workers can
    /// reach.
    pub(super) bind_ip: String,
    pub(super) scatter_turn: AtomicUsize,
    pub(super) limits: Limits,
    /// Whether the warning about large arguments was printed.
    pub(super) warned: std::sync::atomic::AtomicBool,
    /// Futures dropped since the last release message (see [`RELEASE_BATCH`]).
    pub(super) releases: Mutex<Vec<TaskId>>,
    /// The scheduler's address, for observer requests (empty for an in-process one).
    pub(super) address: String,
}

impl Inner {
    pub(super) fn new(
        id: ClientId,
        link: Link,
        mail: Arc<Mailbox>,
        secret: Secret,
        bind_ip: String,
        limits: Limits,
        address: String,
    ) -> Inner {
        Inner {
            address,
            id,
            next: AtomicU64::new(1),
            link,
            mail,
            pool: DataPool::new(secret.clone(), limits),
            secret,
            bind_ip,
            scatter_turn: AtomicUsize::new(0),
            limits,
            warned: Default::default(),
            releases: Mutex::new(Vec::new()),
        }
    }

    /// Starts the thread that sends releases no other message carried along within
    /// [`RELEASE_DELAY`]; it ends with the client.
    pub(super) fn start_release_timer(inner: &Arc<Inner>) -> Result<()> {
        let weak = Arc::downgrade(inner);
        net::spawn("chorus-client-releases", move || loop {
            // Not holding the client while asleep, so that it can go.
            std::thread::sleep(RELEASE_DELAY);
            let Some(inner) = weak.upgrade() else { return };
            if inner.mail.lock().closed.is_some() {
                return;
            }
            inner.flush_releases();
        })?;
        Ok(())
    }

    /// A future was dropped: the scheduler may free its result.
    pub(super) fn release(&self, id: TaskId) {
        let mut r = self.releases.lock().expect("release lock");
        r.push(id);
        if r.len() >= RELEASE_BATCH {
            let batch = std::mem::take(&mut *r);
            drop(r);
            self.deliver(FromClient::Release(batch));
        }
    }

    pub(super) fn flush_releases(&self) {
        let batch = std::mem::take(&mut *self.releases.lock().expect("release lock"));
        if !batch.is_empty() {
            self.deliver(FromClient::Release(batch));
        }
    }

    /// Sends `msg` after the releases waiting to go, in one batch: what the scheduler
    /// does for both (deleting results, starting tasks) then reaches each worker in one
    /// write, rather than waking it twice.
    pub(super) fn send(&self, msg: FromClient) {
        let released = std::mem::take(&mut *self.releases.lock().expect("release lock"));
        if released.is_empty() {
            self.deliver_all(vec![msg]);
        } else {
            self.deliver_all(vec![FromClient::Release(released), msg]);
        }
    }

    pub(super) fn deliver(&self, msg: FromClient) {
        self.deliver_all(vec![msg]);
    }

    pub(super) fn deliver_all(&self, msgs: Vec<FromClient>) {
        match &self.link {
            Link::Local(core) => {
                if !core.send_all(msgs.into_iter().map(|m| Input::FromClient(self.id, m))) {
                    self.mail.close("the scheduler stopped".into());
                }
            }
            Link::Remote(s) => {
                let mut buf = Vec::new();
                for msg in &msgs {
                    match msg {
                        FromClient::Submit(tasks) => {
                            // Specs were checked against the frame limit in `prepare`.
                            wire::encode_batched(tasks, FromClient::Submit, &mut buf, wire::BATCH_BYTES);
                        }
                        other => wire::encode_into(other, &mut buf),
                    }
                }
                if std::io::Write::write_all(&mut *s.lock().expect("link lock"), &buf).is_err() {
                    self.mail.close("the connection to the scheduler was lost".into());
                }
            }
        }
    }

    pub(super) fn next_id(&self) -> TaskId {
        TaskId::new(self.id, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Waits while more than [`MAX_IN_FLIGHT`] futures of this client wait for their
    /// tasks (or until the connection is lost).
    pub(super) fn wait_for_room(&self) {
        let mut s = self.mail.lock();
        while s.pending > MAX_IN_FLIGHT && s.closed.is_none() {
            s = self.mail.cv.wait(s).expect("client state lock");
        }
    }

    /// Moves an encoded argument above the inline threshold into the driver's store;
    /// `Err` (the task's error) when it is larger than the limit or cannot be stored.
    pub(super) fn place_arg(&self, slot: ArgSlot, function: &str, index: usize) -> std::result::Result<ArgSlot, Box<TaskError>> {
        let ArgSlot::Value(bytes) = slot else { return Ok(slot) };
        let size = bytes.len();
        if size as u64 > self.limits.max_object {
            let why = format!("argument {index}: {}", self.limits.too_large(size as u64));
            return Err(Box::new(TaskError::new(FailureKind::TooLarge, function, why)));
        }
        if size <= STORE_ARGS_ABOVE {
            return Ok(ArgSlot::Value(bytes));
        }
        if size > WARN_ARGS_ABOVE && !self.warned.swap(true, Ordering::Relaxed) {
            chorus_comm::diag::warn(&format!(
                "task `{function}` has an argument of {}; it is kept by the driver and fetched by the worker that runs the task. \
                 To pass the same data to many tasks, put it on the cluster once with `client.scatter` and pass the future",
                human(size as u64)
            ));
        }
        let server = self
            .mail
            .args
            .server(&self.bind_ip, &self.secret, self.limits)
            .map_err(|e| Box::new(TaskError::new(FailureKind::Serialization, function, format!("argument {index}: {e}"))))?;
        let id = self.next_id();
        server.store.insert(id, Arc::new(bytes));
        Ok(ArgSlot::Stored { id, size: size as u64, at: server.address.clone() })
    }

    pub(super) fn address_of(&self, w: WorkerId) -> Option<DataAddress> {
        self.mail.lock().workers.iter().find(|i| i.id == w).map(|i| i.data.clone())
    }
}

impl Drop for Inner {
    /// The last future and the last clone of the client are gone: the scheduler
    /// releases everything of this client and cancels what is unfinished.
    fn drop(&mut self) {
        match &self.link {
            Link::Local(core) => {
                core.send(Input::ClientClosed(self.id));
            }
            Link::Remote(s) => s.lock().expect("link lock").shutdown(),
        }
    }
}


impl Inner {
    /// The bytes of a finished result: inline, or fetched from a holder. `None` when the
    /// holders could not give it (the scheduler will recompute it and say so again).
    pub(super) fn materialize(&self, id: TaskId, slot: Slot) -> Result<Option<Arc<Vec<u8>>>> {
        match slot {
            Slot::Erred(e) => Err(Error::Task(e)),
            Slot::Pending => Ok(None),
            Slot::Done { inline: Some(b), .. } => Ok(Some(b)),
            Slot::Done { inline: None, holders } => {
                for h in &holders {
                    if let Some(addr) = self.address_of(*h) {
                        match self.pool.fetch(&addr, &[id]).map(|mut got| got.pop()) {
                            Ok(Some(Fetched::Object(b))) => return Ok(Some(b)),
                            Ok(Some(Fetched::TooLarge(why))) => return Err(too_large_result(why)),
                            _ => {}
                        }
                    }
                }
                self.expect_recompute([id]);
                Ok(None)
            }
        }
    }

    /// The holders of these results could not give them: they are gone, and the
    /// scheduler will recompute the results and announce them again. Marks them pending
    /// and leaves the scheduler a moment to notice the loss.
    pub(super) fn expect_recompute(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut s = self.mail.lock();
        for id in ids {
            if let Some(slot @ Slot::Done { .. }) = s.slots.get_mut(&id) {
                *slot = Slot::Pending;
            }
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(5));
    }
}

