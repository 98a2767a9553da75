//! The identifiers of the task layer: tasks (and their results), workers, clients.

use serde::{Deserialize, Serialize};

/// Identifies a task and the object it produces (or a scattered value, or a large
/// argument kept by its driver). The high 16 bits are the submitting client's number,
/// so clients allocate ids without asking the scheduler.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl TaskId {
    /// The `seq`-th id of client `client`.
    pub fn new(client: ClientId, seq: u64) -> TaskId {
        TaskId((u64::from(client.0) << 48) | (seq & ((1 << 48) - 1)))
    }

    /// The client that made it.
    pub fn client(self) -> ClientId {
        ClientId((self.0 >> 48) as u16)
    }
}

impl std::fmt::Debug for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A worker's number, assigned by the scheduler when it joins (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub u32);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "worker {}", self.0)
    }
}

/// A client's number, assigned by the scheduler when it connects (from 2; clients of
/// one scheduler never share a number while connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u16);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// Which assignment of a task a worker reports on: every time the scheduler sends a
/// task to a worker it counts one more, so a report about an earlier assignment (a
/// task stolen and sent again, a retry) is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Instance(pub u32);
