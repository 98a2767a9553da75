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
//!
//! Between two processes of one host (a Unix-socket connection), large objects are not
//! streamed: each side first proves it may read the other's memory
//! ([`DataRequest::Attach`], [`chorus_comm::cma`]), and then an object of
//! [`COPY_FROM`] bytes or more crosses as one copy out of the holder's memory into a fresh
//! buffer of the receiver (`process_vm_readv`) — a scatter as [`DataRequest::PutAt`], a
//! fetch as [`DataReply::ObjectAt`]. The holder keeps the bytes where it said until the
//! copy is answered ([`DataReply::Stored`]) or acknowledged ([`DataRequest::Taken`]).
//! Where the kernel forbids the read, `CHORUS_TRANSPORT` is `unix` or `tcp`, or
//! `CHORUS_SINGLE_COPY` is `off`, the objects stream as above; a copy that fails midway
//! falls back to the stream for that object and the rest of the connection, with one
//! warning.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_comm::cma::{self, Probe};
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
/// Objects at least this large cross between processes of one host as one copy out of
/// the holder's memory, where both sides can read each other.
const COPY_FROM: usize = 256 << 10;

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
    cma::advise_huge_pages(out.spare_capacity_mut());
    let got = r.by_ref().take(size).read_to_end(&mut out)?;
    if (got as u64) < size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// Copies `size` bytes at `address` out of process `pid` into a fresh buffer (backed by
/// huge pages where it is large). `size` was checked against the limit.
fn copy_out(pid: u32, address: u64, size: u64) -> io::Result<Vec<u8>> {
    let size = usize::try_from(size).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an object larger than memory"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(size).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, format!("{size} bytes for an object: {e}")))?;
    cma::advise_huge_pages(out.spare_capacity_mut());
    cma::read_into(pid, address, size, &mut out)?;
    Ok(out)
}

/// Says once per process that same-host copies stopped working on some connection.
fn warn_copy_failed(what: &str, e: &io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        chorus_comm::diag::warn(&format!(
            "{what} failed ({e}); that connection streams objects through its socket from now on"
        ))
    });
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
    // The client's process, once it has shown this server may read its memory.
    let mut client: Option<u32> = None;
    // What the last `FetchAt` lent: kept alive, where the client copies it from, until
    // the client's next request.
    let mut lent: Vec<Arc<Vec<u8>>> = Vec::new();
    loop {
        let request = match wire::read::<DataRequest>(&mut reader, &mut buf) {
            Ok(r) => r,
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        lent.clear();
        match request {
            DataRequest::Fetch(ids) => serve_fetch(&mut writer, store, &ids, None)?,
            // A server told to stream (`CHORUS_TRANSPORT`) answers as to a `Fetch`.
            DataRequest::FetchAt(ids) => serve_fetch(&mut writer, store, &ids, limits.same_host_copy.then_some(&mut lent))?,
            DataRequest::Taken => {}
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
            DataRequest::PutAt { id, size, address } => {
                let reply = match client {
                    _ if size > limits.max_object => DataReply::Refused { id, reason: limits.too_large(size) },
                    None => DataReply::Unreadable { id, reason: "the client's memory is not readable from this server".into() },
                    Some(pid) => match copy_out(pid, address, size) {
                        Ok(body) => {
                            store.insert(id, Arc::new(body));
                            DataReply::Stored
                        }
                        Err(e) => {
                            client = None;
                            DataReply::Unreadable { id, reason: e.to_string() }
                        }
                    },
                };
                writer.write_all(&wire::encode(&reply))?;
            }
            DataRequest::Attach { pid, address, value } => {
                let reads = limits.same_host_copy && cma::can_read(&Probe { pid, address, value });
                client = reads.then_some(pid);
                let me = Probe::local();
                writer.write_all(&wire::encode(&DataReply::Attached { pid: me.pid, address: me.address, value: me.value, reads_you: reads }))?;
            }
        }
    }
}

/// Answers a fetch of `ids`, in order. With `lend`, objects of [`COPY_FROM`] bytes or more
/// in memory are answered with their address and kept in `lend`; the others stream.
/// Replies without a large body are gathered into one write.
fn serve_fetch(w: &mut Stream, store: &ObjectStore, ids: &[TaskId], mut lend: Option<&mut Vec<Arc<Vec<u8>>>>) -> io::Result<()> {
    let mut heads = Vec::new();
    for &id in ids {
        match store.body(id) {
            Some(Body::Memory(bytes)) => {
                store.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let size = bytes.len() as u64;
                match lend.as_deref_mut() {
                    Some(lent) if bytes.len() >= COPY_FROM => {
                        heads.extend(wire::encode(&DataReply::ObjectAt { id, size, address: bytes.as_ptr() as u64 }));
                        lent.push(bytes);
                    }
                    _ if bytes.len() <= SMALL_OBJECT => {
                        heads.extend(wire::encode(&DataReply::Object { id, size }));
                        heads.extend_from_slice(&bytes);
                    }
                    _ => {
                        heads.extend(wire::encode(&DataReply::Object { id, size }));
                        w.write_all(&std::mem::take(&mut heads))?;
                        w.write_all(&bytes)?;
                    }
                }
            }
            Some(Body::File(file, size)) => {
                // Straight from the spill file; the announced size is sent whatever
                // happens, so a short file ends the connection.
                heads.extend(wire::encode(&DataReply::Object { id, size }));
                w.write_all(&std::mem::take(&mut heads))?;
                let sent = io::copy(&mut io::Read::take(file, size), w)?;
                if sent < size {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the spill file of {id} is shorter than its object")));
                }
                store.served.fetch_add(size, Ordering::Relaxed);
            }
            None => heads.extend(wire::encode(&DataReply::Missing(id))),
        }
        if heads.len() >= SMALL_OBJECT {
            w.write_all(&std::mem::take(&mut heads))?;
        }
    }
    if !heads.is_empty() {
        w.write_all(&heads)?;
    }
    Ok(())
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

/// An open data connection, and what its two ends may read of each other's memory.
struct Conn {
    s: BufReader<Stream>,
    /// The server's process, when this side may copy objects out of its memory.
    server: Option<u32>,
    /// Whether the server may copy objects out of this side's memory.
    reads_us: bool,
}

impl Conn {
    /// Exchanges probes with a server on this host; after it, each side knows whether
    /// it may copy out of the other's memory.
    fn attach(&mut self, buf: &mut Vec<u8>) -> std::result::Result<(), WireError> {
        let me = Probe::local();
        self.s.get_mut().write_all(&wire::encode(&DataRequest::Attach { pid: me.pid, address: me.address, value: me.value }))?;
        match wire::read::<DataReply>(&mut self.s, buf)? {
            DataReply::Attached { pid, address, value, reads_you } => {
                self.server = cma::can_read(&Probe { pid, address, value }).then_some(pid);
                self.reads_us = reads_you;
                Ok(())
            }
            other => Err(WireError::Malformed { what: "a data server's reply", detail: format!("expected the answer to attaching, received {other:?}") }),
        }
    }
}

/// Open data connections to workers (and drivers), reused between transfers.
pub(crate) struct DataPool {
    secret: Secret,
    limits: Limits,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    /// Bytes received through this pool.
    pub received: AtomicU64,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DataPool {
    pub(crate) fn new(secret: Secret, limits: Limits) -> DataPool {
        DataPool { secret, limits, idle: Mutex::new(HashMap::new()), received: AtomicU64::new(0) }
    }

    fn take(&self, addr: &DataAddress) -> Result<Conn> {
        if let Some(c) = self.idle.lock().expect("pool lock").get_mut(&addr.tcp).and_then(|v| v.pop()) {
            return Ok(c);
        }
        let stream = net::connect_data(addr, &self.secret, CONNECT_TIMEOUT)?;
        let same_host = matches!(stream, Stream::Unix(_));
        let mut conn = Conn { s: BufReader::with_capacity(1 << 16, stream), server: None, reads_us: false };
        if same_host && self.limits.same_host_copy {
            conn.attach(&mut Vec::new()).map_err(|e| Error::Data { context: format!("attaching to the data server at {}", addr.tcp), source: e })?;
        }
        Ok(conn)
    }

    fn put_back(&self, addr: &DataAddress, c: Conn) {
        self.idle.lock().expect("pool lock").entry(addr.tcp.clone()).or_default().push(c);
    }

    /// Fetches objects from one data server, one answer per id in order.
    pub(crate) fn fetch(&self, addr: &DataAddress, ids: &[TaskId]) -> Result<Vec<Fetched>> {
        let failed = |e: WireError| Error::Data { context: format!("fetching data from {}", addr.tcp), source: e };
        let mut out = Vec::with_capacity(ids.len());
        let mut c = self.take(addr)?;
        let mut buf = Vec::new();
        for part in ids.chunks(FETCH_BATCH) {
            if !self.fetch_part(&mut c, part, &mut out, &mut buf).map_err(failed)? {
                return Ok(out);
            }
        }
        self.put_back(addr, c);
        Ok(out)
    }

    /// Fetches one batch into `out`; `false` when the connection must be dropped (an
    /// object over the limit is streaming on it).
    fn fetch_part(&self, c: &mut Conn, part: &[TaskId], out: &mut Vec<Fetched>, buf: &mut Vec<u8>) -> std::result::Result<bool, WireError> {
        let lending = c.server;
        let request = if lending.is_some() { DataRequest::FetchAt(part.to_vec()) } else { DataRequest::Fetch(part.to_vec()) };
        c.s.get_mut().write_all(&wire::encode(&request))?;
        // Objects whose copy failed: fetched again, streamed, once the batch is read.
        let mut again: Vec<(usize, TaskId)> = Vec::new();
        for want in part {
            match (wire::read::<DataReply>(&mut c.s, buf)?, lending) {
                (DataReply::ObjectAt { id, size, address }, Some(pid)) if id == *want => {
                    if size > self.limits.max_object {
                        out.push(Fetched::TooLarge(self.limits.too_large(size)));
                        continue;
                    }
                    match copy_out(pid, address, size) {
                        Ok(body) => {
                            self.received.fetch_add(size, Ordering::Relaxed);
                            out.push(Fetched::Object(Arc::new(body)));
                        }
                        Err(e) => {
                            warn_copy_failed(&format!("copying {id} out of process {pid}"), &e);
                            c.server = None;
                            again.push((out.len(), id));
                            out.push(Fetched::Missing);
                        }
                    }
                }
                (DataReply::Object { id, size }, _) if id == *want => {
                    if size > self.limits.max_object {
                        // The rest of the stream is this object: drop the connection
                        // rather than read gigabytes to skip it.
                        out.push(Fetched::TooLarge(self.limits.too_large(size)));
                        return Ok(false);
                    }
                    let body = read_body(&mut c.s, size)?;
                    self.received.fetch_add(size, Ordering::Relaxed);
                    out.push(Fetched::Object(Arc::new(body)));
                }
                (DataReply::Missing(id), _) if id == *want => out.push(Fetched::Missing),
                (other, _) => {
                    return Err(WireError::Malformed { what: "a data server's reply", detail: format!("expected object {want}, received {other:?}") })
                }
            }
        }
        if lending.is_some() {
            c.s.get_mut().write_all(&wire::encode(&DataRequest::Taken))?;
        }
        if !again.is_empty() {
            let ids: Vec<TaskId> = again.iter().map(|a| a.1).collect();
            let mut streamed = Vec::with_capacity(ids.len());
            let keep = self.fetch_part(c, &ids, &mut streamed, buf)?;
            for ((at, _), got) in again.iter().zip(streamed) {
                out[*at] = got;
            }
            return Ok(keep);
        }
        Ok(true)
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
        let mut c = self.take(addr)?;
        let out = put_on(&mut c, objects)
            .map_err(|e| Error::Data { context: format!("sending data to {}", addr.tcp), source: e })?;
        self.put_back(addr, c);
        Ok(out)
    }
}

/// [`DataPool::put`] on one connection.
fn put_on(c: &mut Conn, objects: &[(TaskId, &[u8])]) -> std::result::Result<PutAnswers, WireError> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(objects.len());
    for (id, bytes) in objects {
        let mut answer = None;
        if c.reads_us && bytes.len() >= COPY_FROM {
            let head = wire::encode(&DataRequest::PutAt { id: *id, size: bytes.len() as u64, address: bytes.as_ptr() as u64 });
            c.s.get_mut().write_all(&head)?;
            match wire::read::<DataReply>(&mut c.s, &mut buf)? {
                DataReply::Unreadable { id: r, reason } if r == *id => {
                    warn_copy_failed(&format!("the data server copying {id} out of this process"), &io::Error::other(reason));
                    c.reads_us = false;
                }
                other => answer = Some(other),
            }
        }
        let answer = match answer {
            Some(a) => a,
            None => {
                let head = wire::encode(&DataRequest::Put { id: *id, size: bytes.len() as u64 });
                write_with_body(c.s.get_mut(), head, bytes)?;
                wire::read::<DataReply>(&mut c.s, &mut buf)?
            }
        };
        match answer {
            DataReply::Stored => out.push(Ok(())),
            DataReply::Refused { id: r, reason } if r == *id => out.push(Err(reason)),
            other => {
                return Err(WireError::Malformed {
                    what: "a data server's reply",
                    detail: format!("expected the answer to storing {id}, received {other:?}"),
                })
            }
        }
    }
    Ok(out)
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

    fn limits() -> Limits {
        Limits { max_object: 64 << 20, send_budget: 1 << 20, same_host_copy: true, spin: crate::settings::DEFAULT_SPIN }
    }

    fn pair() -> (Conn, Stream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (Conn { s: BufReader::new(Stream::Unix(a)), server: None, reads_us: false }, Stream::Unix(b))
    }

    fn ask(c: &mut Conn, request: &DataRequest) -> DataReply {
        c.s.get_mut().write_all(&wire::encode(request)).unwrap();
        wire::read::<DataReply>(&mut c.s, &mut Vec::new()).unwrap()
    }

    #[test]
    fn same_host_copies_need_a_proof_and_fall_back_to_the_stream_when_a_copy_fails() {
        let store = Arc::new(ObjectStore::default());
        let (mut c, server) = pair();
        let served = store.clone();
        let thread = std::thread::spawn(move || serve_conn(server, &served, limits()));
        let big: Vec<u8> = (0..COPY_FROM + 4099).map(|i| (i * 7) as u8).collect();
        // Before any proof, and with a wrong one, the server reads nothing of ours.
        let put_at = DataRequest::PutAt { id: TaskId(1), size: big.len() as u64, address: big.as_ptr() as u64 };
        assert!(matches!(ask(&mut c, &put_at), DataReply::Unreadable { id: TaskId(1), .. }));
        let me = Probe::local();
        let wrong = DataRequest::Attach { pid: me.pid, address: me.address, value: me.value ^ 4 };
        assert!(matches!(ask(&mut c, &wrong), DataReply::Attached { reads_you: false, .. }));
        assert!(matches!(ask(&mut c, &put_at), DataReply::Unreadable { .. }));
        // With the proof, both ways are one copy out of the holder's memory.
        c.attach(&mut Vec::new()).unwrap();
        assert!(c.reads_us && c.server == Some(std::process::id()));
        assert!(matches!(ask(&mut c, &put_at), DataReply::Stored));
        assert_eq!(*store.get(TaskId(1)).unwrap(), big);
        match ask(&mut c, &DataRequest::FetchAt(vec![TaskId(1)])) {
            DataReply::ObjectAt { id: TaskId(1), size, address } => {
                assert_eq!(copy_out(std::process::id(), address, size).unwrap(), big)
            }
            other => panic!("a large object in memory is lent, not streamed: {other:?}"),
        }
        // A copy that fails is answered, and the client streams that object instead.
        let bad = DataRequest::PutAt { id: TaskId(2), size: big.len() as u64, address: 8 };
        assert!(matches!(ask(&mut c, &bad), DataReply::Unreadable { id: TaskId(2), .. }));
        let small = vec![5u8; 10];
        let answers = put_on(&mut c, &[(TaskId(3), &big[..]), (TaskId(4), &small[..])]).unwrap();
        assert_eq!(answers, vec![Ok(()), Ok(())]);
        assert!(!c.reads_us, "the server said it cannot read us any more");
        assert_eq!(*store.get(TaskId(3)).unwrap(), big);
        let pool = DataPool::new(Secret::generate().unwrap(), limits());
        let mut got = Vec::new();
        assert!(pool.fetch_part(&mut c, &[TaskId(3), TaskId(4), TaskId(9)], &mut got, &mut Vec::new()).unwrap());
        assert!(matches!(&got[..], [Fetched::Object(a), Fetched::Object(b), Fetched::Missing] if **a == big && **b == small), "{got:?}");
        drop(c);
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn a_lent_object_that_cannot_be_copied_is_fetched_again_through_the_stream() {
        let (mut c, mut server) = pair();
        c.server = Some(std::process::id());
        let body = vec![3u8; COPY_FROM];
        let sent = body.clone();
        let thread = std::thread::spawn(move || {
            let mut r = BufReader::new(server.try_clone().unwrap());
            let mut buf = Vec::new();
            assert!(matches!(wire::read::<DataRequest>(&mut r, &mut buf).unwrap(), DataRequest::FetchAt(ids) if ids == [TaskId(7)]));
            // An address the client cannot read.
            server.write_all(&wire::encode(&DataReply::ObjectAt { id: TaskId(7), size: sent.len() as u64, address: 8 })).unwrap();
            assert!(matches!(wire::read::<DataRequest>(&mut r, &mut buf).unwrap(), DataRequest::Taken));
            assert!(matches!(wire::read::<DataRequest>(&mut r, &mut buf).unwrap(), DataRequest::Fetch(ids) if ids == [TaskId(7)]));
            write_with_body(&mut server, wire::encode(&DataReply::Object { id: TaskId(7), size: sent.len() as u64 }), &sent).unwrap();
        });
        let pool = DataPool::new(Secret::generate().unwrap(), limits());
        let mut got = Vec::new();
        assert!(pool.fetch_part(&mut c, &[TaskId(7)], &mut got, &mut Vec::new()).unwrap());
        assert!(matches!(&got[..], [Fetched::Object(b)] if **b == body), "{got:?}");
        assert_eq!(c.server, None, "later fetches on this connection stream");
        thread.join().unwrap();
    }
}
