//! Objects on workers, and moving them between processes.
//!
//! Each worker keeps its results in an [`ObjectStore`] and serves them on a data
//! listener of its own. Peers fetch task inputs from there directly and clients gather
//! results and scatter data there, so object bytes never pass through the scheduler.

use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_comm::Secret;

use crate::tasks::net::{self, Stream};
use crate::tasks::proto::{self, DataAddress, DataMsg, TaskId, CHUNK};
use crate::Result;

/// The objects a worker holds.
#[derive(Default)]
pub(crate) struct ObjectStore {
    objects: Mutex<FxHashMap<TaskId, Arc<Vec<u8>>>>,
    bytes: AtomicU64,
    /// Bytes served to other processes (for tests of where data flows).
    pub served: AtomicU64,
}

impl ObjectStore {
    pub(crate) fn get(&self, id: TaskId) -> Option<Arc<Vec<u8>>> {
        self.objects.lock().expect("store lock").get(&id).cloned()
    }

    pub(crate) fn insert(&self, id: TaskId, bytes: Arc<Vec<u8>>) {
        let n = bytes.len() as u64;
        if let Some(old) = self.objects.lock().expect("store lock").insert(id, bytes) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, id: TaskId) {
        if let Some(old) = self.objects.lock().expect("store lock").remove(&id) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Appends the frame of `DataMsg::Chunk(piece)` to `out` without copying the piece into
/// a message first: postcard writes the variant index and the byte length as varints,
/// then the bytes.
fn chunk_header(piece: &[u8], out: &mut Vec<u8>) {
    let mut body_head = vec![CHUNK_VARIANT];
    let mut n = piece.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            body_head.push(byte);
            break;
        }
        body_head.push(byte | 0x80);
    }
    out.extend_from_slice(&((body_head.len() + piece.len()) as u32).to_le_bytes());
    out.extend_from_slice(&body_head);
}

const CHUNK_VARIANT: u8 = 3;

/// Writes `bytes` as chunk frames.
fn write_chunks(w: &mut impl Write, mut head: Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        chunk_header(bytes, &mut head);
        return w.write_all(&head);
    }
    for piece in bytes.chunks(CHUNK) {
        chunk_header(piece, &mut head);
        if piece.len() <= 64 << 10 {
            head.extend_from_slice(piece);
            w.write_all(&head)?;
        } else {
            w.write_all(&head)?;
            w.write_all(piece)?;
        }
        head.clear();
    }
    Ok(())
}

fn write_object(w: &mut impl Write, id: TaskId, bytes: &[u8]) -> io::Result<()> {
    write_chunks(w, proto::encode(&DataMsg::Object { id, size: bytes.len() as u64 }), bytes)
}

fn read_body(r: &mut impl Read, size: u64, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size.min(1 << 30) as usize);
    let mut first = true;
    while first || (out.len() as u64) < size {
        first = false;
        match proto::read_msg::<DataMsg>(r, buf)? {
            DataMsg::Chunk(piece) if out.len() as u64 + piece.len() as u64 <= size => {
                if out.is_empty() && piece.len() as u64 == size {
                    return Ok(piece);
                }
                out.extend_from_slice(&piece)
            }
            other => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("expected an object chunk, got {other:?}")))
            }
        }
    }
    Ok(out)
}

/// Serves a worker's objects on `listeners` until the process ends.
/// Serves `store` on `listeners`; keep the returned directory while serving (see
/// [`net::Listeners::serve`]).
pub(crate) fn serve(
    listeners: net::Listeners,
    secret: Secret,
    store: Arc<ObjectStore>,
) -> Result<Option<chorus_comm::link::SocketDir>> {
    let check = net::same_build_check(true, |k| k == proto::kind::DATA);
    listeners.serve(secret, proto::kind::DATA_SERVER, check, move |stream, _| {
        let _ = serve_conn(stream, &store);
    })
}

fn serve_conn(mut stream: Stream, store: &ObjectStore) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut reader = stream.try_clone()?;
    loop {
        match proto::read_msg::<DataMsg>(&mut reader, &mut buf)? {
            DataMsg::Fetch(ids) => {
                for id in ids {
                    match store.get(id) {
                        Some(bytes) => {
                            store.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            write_object(&mut stream, id, &bytes)?
                        }
                        None => proto::write_msg(&mut stream, &DataMsg::Object { id, size: u64::MAX })?,
                    }
                }
            }
            DataMsg::Put { id, size } => {
                let body = read_body(&mut reader, size, &mut buf)?;
                store.insert(id, Arc::new(body));
                proto::write_msg(&mut stream, &DataMsg::Stored)?;
            }
            other => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected data message {other:?}")))
            }
        }
    }
}

/// Open data connections to workers, reused between transfers.
pub(crate) struct DataPool {
    secret: Secret,
    idle: Mutex<HashMap<String, Vec<Stream>>>,
    /// Bytes received through this pool.
    pub received: AtomicU64,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DataPool {
    pub(crate) fn new(secret: Secret) -> DataPool {
        DataPool { secret, idle: Mutex::new(HashMap::new()), received: AtomicU64::new(0) }
    }

    fn take(&self, addr: &DataAddress) -> Result<Stream> {
        if let Some(s) = self.idle.lock().expect("pool lock").get_mut(&addr.tcp).and_then(|v| v.pop()) {
            return Ok(s);
        }
        net::connect_data(addr, &self.secret, CONNECT_TIMEOUT)
    }

    fn put_back(&self, addr: &DataAddress, s: Stream) {
        self.idle.lock().expect("pool lock").entry(addr.tcp.clone()).or_default().push(s);
    }

    /// Fetches objects from one worker; `None` for those it does not have.
    pub(crate) fn fetch(&self, addr: &DataAddress, ids: &[TaskId]) -> Result<Vec<Option<Arc<Vec<u8>>>>> {
        let mut s = self.take(addr)?;
        let io_err = |source| crate::Error::Io { context: format!("fetching data from the worker at {}", addr.tcp), source };
        proto::write_msg(&mut s, &DataMsg::Fetch(ids.to_vec())).map_err(io_err)?;
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(ids.len());
        for want in ids {
            match proto::read_msg::<DataMsg>(&mut s, &mut buf).map_err(io_err)? {
                DataMsg::Object { id, size } if id == *want => {
                    if size == u64::MAX {
                        out.push(None);
                    } else {
                        let body = read_body(&mut s, size, &mut buf).map_err(io_err)?;
                        self.received.fetch_add(size, Ordering::Relaxed);
                        out.push(Some(Arc::new(body)));
                    }
                }
                other => {
                    return Err(io_err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected answer {other:?}"))))
                }
            }
        }
        self.put_back(addr, s);
        Ok(out)
    }

    /// Stores objects on one worker.
    pub(crate) fn put(&self, addr: &DataAddress, objects: &[(TaskId, &[u8])]) -> Result<()> {
        let mut s = self.take(addr)?;
        let io_err = |source| crate::Error::Io { context: format!("sending data to the worker at {}", addr.tcp), source };
        let mut buf = Vec::new();
        for (id, bytes) in objects {
            let head = proto::encode(&DataMsg::Put { id: *id, size: bytes.len() as u64 });
            write_chunks(&mut s, head, bytes).map_err(io_err)?;
            match proto::read_msg::<DataMsg>(&mut s, &mut buf).map_err(io_err)? {
                DataMsg::Stored => {}
                other => {
                    return Err(io_err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected answer {other:?}"))))
                }
            }
        }
        self.put_back(addr, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_chunk_frames_decode_as_chunks() {
        for len in [0usize, 1, 127, 128, 300, 70_000, CHUNK + 5] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut wire = Vec::new();
            write_object(&mut wire, 7, &bytes).unwrap();
            let mut r = &wire[..];
            let mut buf = Vec::new();
            match proto::read_msg::<DataMsg>(&mut r, &mut buf).unwrap() {
                DataMsg::Object { id: 7, size } => assert_eq!(size, len as u64),
                other => panic!("{other:?}"),
            }
            assert_eq!(read_body(&mut r, len as u64, &mut buf).unwrap(), bytes);
            assert!(r.is_empty());
        }
    }
}
