//! Objects on workers (and large arguments on drivers), and moving them between
//! processes.
//!
//! Each worker keeps its results in an [`ObjectStore`] (spilled to disk past its
//! memory target) and serves them on a data
//! listener of its own; a driver that submits large arguments serves them the same way.
//! Peers fetch task inputs from there directly and clients gather results and scatter
//! data there, so object bytes never pass through the scheduler.
//!
//! On a data connection every request and reply is a small frame ([`DataRequest`],
//! [`DataReply`]); an object's bytes follow its frame as a plain byte stream of the
//! announced size, written straight from the store and read straight into the buffer
//! that becomes the object. The socket's flow control is the back-pressure, and no
//! object, whatever its size, is ever one frame. A size above the hard limit
//! ([`Limits::max_object`]) is refused without allocating: the bytes are read and
//! dropped, and the connection stays usable.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_comm::Secret;

use crate::settings::Limits;
pub(crate) use crate::store::ObjectStore;
use crate::store::Body;
use crate::net::{self, Stream};
use crate::proto::{self, wire, DataAddress, DataReply, DataRequest, TaskId, WireError};
use crate::{Error, Result};

/// Objects no larger than this are written in one call with their header.
const SMALL_OBJECT: usize = 64 << 10;
/// Ids per fetch request, so that a request frame stays small.
const FETCH_BATCH: usize = 16 << 10;

/// Writes a header frame and then `bytes` as a byte stream.
fn write_with_body(w: &mut impl Write, mut head: Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    if bytes.len() <= SMALL_OBJECT {
        head.extend_from_slice(bytes);
        w.write_all(&head)
    } else {
        w.write_all(&head)?;
        w.write_all(bytes)
    }
}

/// Reads a body of `size` bytes that was checked against the limit, growing the buffer
/// as bytes arrive rather than trusting the size for one allocation.
fn read_body(r: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    out.reserve_exact(size.min(256 << 20) as usize);
    advise_huge_pages(&mut out);
    let got = r.by_ref().take(size).read_to_end(&mut out)?;
    if (got as u64) < size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// Buffers at least this large are backed by huge pages where the kernel allows it.
const HUGE_PAGES_FROM: usize = 4 << 20;

/// Asks the kernel to back the spare capacity of `buf` with transparent huge pages.
///
/// A new object's buffer is fresh memory, and on first write every 4 KiB page of it is a
/// page fault: in a virtual machine that costs more than the copy itself (a 50 MB copy
/// into fresh memory runs at about a seventh of the speed of one into memory already
/// touched). With 2 MiB pages there are 512 times fewer faults. Only whole 2 MiB pages
/// inside the buffer are advised; where transparent huge pages are off, nothing changes.
fn advise_huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let spare = buf.spare_capacity_mut();
    if spare.len() < HUGE_PAGES_FROM {
        return;
    }
    let start = spare.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE), (start + spare.len()) / HUGE * HUGE);
    if end > first {
        // SAFETY: the range lies inside memory this vector owns and has not written; the
        // advice changes how it is backed, not its contents or its validity.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

/// Reads and drops `size` bytes.
fn skip_body(r: &mut impl Read, size: u64) -> io::Result<()> {
    let got = io::copy(&mut r.by_ref().take(size), &mut io::sink())?;
    if got < size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Serves `store` on `listeners` until the process ends; keep the returned directory
/// while serving (see [`net::Listeners::serve`]).
pub(crate) fn serve(
    listeners: net::Listeners,
    secret: Secret,
    store: Arc<ObjectStore>,
    limits: Limits,
) -> Result<Option<chorus_comm::link::SocketDir>> {
    let check = net::same_build_check(true, |k| k == proto::kind::DATA);
    listeners.serve(secret, proto::kind::DATA_SERVER, check, move |stream, _| {
        if let Err(e) = serve_conn(stream, &store, limits) {
            chorus_comm::diag::warn(&format!("data server: closing a connection: {e}"));
        }
    })
}

fn serve_conn(stream: Stream, store: &ObjectStore, limits: Limits) -> std::result::Result<(), WireError> {
    stream.enlarge_buffers();
    let mut buf = Vec::new();
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match wire::read::<DataRequest>(&mut reader, &mut buf) {
            Ok(r) => r,
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match request {
            DataRequest::Fetch(ids) => {
                for id in ids {
                    match store.body(id) {
                        Some(Body::Memory(bytes)) => {
                            store.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            let head = wire::encode(&DataReply::Object { id, size: bytes.len() as u64 });
                            write_with_body(&mut writer, head, &bytes)?;
                        }
                        Some(Body::File(file, size)) => {
                            // Straight from the spill file; the announced size is sent
                            // whatever happens, so a short file ends the connection.
                            writer.write_all(&wire::encode(&DataReply::Object { id, size }))?;
                            let sent = io::copy(&mut io::Read::take(file, size), &mut writer)?;
                            if sent < size {
                                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the spill file of {id} is shorter than its object")).into());
                            }
                            store.served.fetch_add(size, Ordering::Relaxed);
                        }
                        None => writer.write_all(&wire::encode(&DataReply::Missing(id)))?,
                    }
                }
            }
            DataRequest::Put { id, size } => {
                let reply = if size > limits.max_object {
                    skip_body(&mut reader, size)?;
                    DataReply::Refused { id, reason: limits.too_large(size) }
                } else {
                    let body = read_body(&mut reader, size)?;
                    store.insert(id, Arc::new(body));
                    DataReply::Stored
                };
                writer.write_all(&wire::encode(&reply))?;
            }
        }
    }
}

/// What a fetch brought back for one id.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The object.
    Object(Arc<Vec<u8>>),
    /// The server does not hold it.
    Missing,
    /// It is larger than this process accepts; the message names the limit.
    TooLarge(String),
}

/// Objects to store on one data server: (id, bytes) each.
pub(crate) type PutRequest<'a> = (DataAddress, Vec<(TaskId, &'a [u8])>);
/// Each object's answer: stored, or the reason it was refused.
pub(crate) type PutAnswers = Vec<std::result::Result<(), String>>;

/// Open data connections to workers (and drivers), reused between transfers.
pub(crate) struct DataPool {
    secret: Secret,
    limits: Limits,
    idle: Mutex<HashMap<String, Vec<BufReader<Stream>>>>,
    /// Bytes received through this pool.
    pub received: AtomicU64,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DataPool {
    pub(crate) fn new(secret: Secret, limits: Limits) -> DataPool {
        DataPool { secret, limits, idle: Mutex::new(HashMap::new()), received: AtomicU64::new(0) }
    }

    fn take(&self, addr: &DataAddress) -> Result<BufReader<Stream>> {
        if let Some(s) = self.idle.lock().expect("pool lock").get_mut(&addr.tcp).and_then(|v| v.pop()) {
            return Ok(s);
        }
        Ok(BufReader::with_capacity(1 << 16, net::connect_data(addr, &self.secret, CONNECT_TIMEOUT)?))
    }

    fn put_back(&self, addr: &DataAddress, s: BufReader<Stream>) {
        self.idle.lock().expect("pool lock").entry(addr.tcp.clone()).or_default().push(s);
    }

    /// Fetches objects from one data server, one answer per id in order.
    pub(crate) fn fetch(&self, addr: &DataAddress, ids: &[TaskId]) -> Result<Vec<Fetched>> {
        let failed = |e: WireError| Error::Data { context: format!("fetching data from {}", addr.tcp), source: e };
        let mut out = Vec::with_capacity(ids.len());
        let mut s = self.take(addr)?;
        let mut buf = Vec::new();
        for part in ids.chunks(FETCH_BATCH) {
            s.get_mut().write_all(&wire::encode(&DataRequest::Fetch(part.to_vec()))).map_err(|e| failed(e.into()))?;
            for want in part {
                match wire::read::<DataReply>(&mut s, &mut buf).map_err(failed)? {
                    DataReply::Object { id, size } if id == *want => {
                        if size > self.limits.max_object {
                            // The rest of the stream is this object: drop the connection
                            // rather than read gigabytes to skip it.
                            out.push(Fetched::TooLarge(self.limits.too_large(size)));
                            return Ok(out);
                        }
                        let body = read_body(&mut s, size).map_err(|e| failed(e.into()))?;
                        self.received.fetch_add(size, Ordering::Relaxed);
                        out.push(Fetched::Object(Arc::new(body)));
                    }
                    DataReply::Missing(id) if id == *want => out.push(Fetched::Missing),
                    other => {
                        return Err(failed(WireError::Malformed {
                            what: "a data server's reply",
                            detail: format!("expected object {want}, received {other:?}"),
                        }))
                    }
                }
            }
        }
        self.put_back(addr, s);
        Ok(out)
    }

    /// [`fetch`](DataPool::fetch) from several servers at once, one thread each.
    pub(crate) fn fetch_from_each(&self, requests: &[(DataAddress, Vec<TaskId>)]) -> Vec<Result<Vec<Fetched>>> {
        self.on_each(requests, |addr, ids| self.fetch(addr, ids))
    }

    /// [`put`](DataPool::put) to several servers at once, one thread each.
    pub(crate) fn put_to_each(&self, requests: &[PutRequest<'_>]) -> Vec<Result<PutAnswers>> {
        self.on_each(requests, |addr, objects| self.put(addr, objects))
    }

    /// Runs `f` for each request, in parallel when there are several.
    fn on_each<Q: Sync, R: Send>(&self, requests: &[(DataAddress, Q)], f: impl Fn(&DataAddress, &Q) -> R + Sync) -> Vec<R> {
        if requests.len() < 2 {
            return requests.iter().map(|(a, q)| f(a, q)).collect();
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = requests.iter().map(|(a, q)| scope.spawn(|| f(a, q))).collect();
            handles.into_iter().map(|h| h.join().expect("transfers do not panic")).collect()
        })
    }

    /// Stores objects on one data server; each gets `Ok` or the reason it was refused.
    pub(crate) fn put(&self, addr: &DataAddress, objects: &[(TaskId, &[u8])]) -> Result<PutAnswers> {
        let failed = |e: WireError| Error::Data { context: format!("sending data to {}", addr.tcp), source: e };
        let mut s = self.take(addr)?;
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(objects.len());
        for (id, bytes) in objects {
            let head = wire::encode(&DataRequest::Put { id: *id, size: bytes.len() as u64 });
            write_with_body(s.get_mut(), head, bytes).map_err(|e| failed(e.into()))?;
            match wire::read::<DataReply>(&mut s, &mut buf).map_err(failed)? {
                DataReply::Stored => out.push(Ok(())),
                DataReply::Refused { id: r, reason } if r == *id => out.push(Err(reason)),
                other => {
                    return Err(failed(WireError::Malformed {
                        what: "a data server's reply",
                        detail: format!("expected the answer to storing {id}, received {other:?}"),
                    }))
                }
            }
        }
        self.put_back(addr, s);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_follow_their_header_as_raw_bytes() {
        for len in [0usize, 1, 300, SMALL_OBJECT + 1, (4 << 20) + 5] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut wire_bytes = Vec::new();
            let head = wire::encode(&DataReply::Object { id: TaskId(7), size: len as u64 });
            let head_len = head.len();
            write_with_body(&mut wire_bytes, head, &bytes).unwrap();
            assert_eq!(wire_bytes.len(), head_len + len, "nothing but the header and the bytes");
            let mut r = &wire_bytes[..];
            let mut buf = Vec::new();
            match wire::read::<DataReply>(&mut r, &mut buf).unwrap() {
                DataReply::Object { id: TaskId(7), size } => assert_eq!(size, len as u64),
                other => panic!("{other:?}"),
            }
            assert_eq!(read_body(&mut r, len as u64).unwrap(), bytes);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn a_body_shorter_than_announced_is_an_error_not_a_hang_or_a_huge_allocation() {
        let mut r: &[u8] = &[1, 2, 3];
        assert_eq!(read_body(&mut r, u64::MAX >> 1).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut r: &[u8] = &[1, 2, 3];
        assert_eq!(skip_body(&mut r, 10).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
