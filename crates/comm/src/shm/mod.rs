//! The shared-memory link between two processes of one host.
//!
//! After the handshake on a pair's Unix socket, the dialing side creates an anonymous
//! memory file (`memfd_create`) holding two [`ring`]s, one per direction, reserves its
//! pages (`fallocate`, so that a full memory never turns into a `SIGBUS` later), maps it
//! and passes the descriptor over the socket (`SCM_RIGHTS`). The file has no name in any
//! file system: when both processes are gone, by exit or by `SIGKILL`, the kernel frees
//! it, so nothing is ever left behind in `/dev/shm`.
//!
//! The socket stays open beside the rings and carries only one-byte wake-ups (sent only
//! when the other side sleeps, see [`ring`]); its end of stream is how a process learns that
//! its peer died, at once and without a timeout.
//!
//! Both sides also find out whether they may read each other's memory with
//! `process_vm_readv` (cross-memory attach, CMA: allowed between processes of one user
//! unless Yama's `ptrace_scope` forbids it, or `CHORUS_SINGLE_COPY=off`). Large collective
//! messages then cross in one copy, straight from the sender's buffer into the receiver's
//! ([`read_remote`]); without it they stream through the ring in two copies, the sender's
//! into the ring and the receiver's out of it into the destination, made at the same time.
//!
//! When the rings cannot be made (no memory to reserve, a kernel without `memfd_create`),
//! the pair falls back to the Unix socket alone and says so once.

pub(crate) mod group;
pub(crate) mod ring;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UnixStream;

use self::ring::Segment;
use crate::{diag, Error, Result};

/// A word whose address each process sends its peer, who reads it back with
/// `process_vm_readv` to learn whether cross-memory attach works between them.
static CMA_PROBE: AtomicU64 = AtomicU64::new(0x6368_6f72_7573_2121);

/// What the dialer offers after the handshake.
const OFFER_RINGS: u8 = b'M';
const OFFER_SOCKET: u8 = b'S';
/// Offer: kind, pid, probe address. Reply: the same and whether the acceptor can read the
/// dialer. Last: whether the dialer can read the acceptor.
const OFFER_LEN: usize = 1 + 4 + 8;

/// A same-host link with rings.
pub(crate) struct ShmLink {
    /// The two rings.
    pub(crate) segment: Arc<Segment>,
    /// The ring this side writes (the other one it reads).
    pub(crate) outgoing: usize,
    /// The pair's socket: wake-ups, and end of stream when the peer is gone.
    pub(crate) socket: UnixStream,
    /// The peer's process id, for [`read_remote`].
    pub(crate) peer_pid: u32,
    /// Whether this side can read the peer's memory.
    pub(crate) can_read_peer: bool,
    /// Whether the peer can read ours (so large sends may hand it an address).
    pub(crate) peer_can_read: bool,
}

/// The outcome of the shared-memory set-up on one Unix link.
pub(crate) enum Setup {
    /// Rings and the socket.
    Rings(ShmLink),
    /// The socket alone (shared memory refused, or not asked for).
    Socket(UnixStream),
}

fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Maps `len` bytes of `fd` shared; the caller unmaps them.
fn map_raw(fd: &OwnedFd, len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of a descriptor we own; checked for failure below.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        return Err(os_error("mapping shared memory"));
    }
    Ok(p.cast())
}

/// Maps `len` bytes of `fd` shared, as two rings.
fn map(fd: &OwnedFd, len: usize) -> std::io::Result<Segment> {
    let p = map_raw(fd, len)?;
    let unmap = Box::new(|p: *mut u8, len: usize| {
        // SAFETY: unmapping exactly the mapping made above, once.
        unsafe { libc::munmap(p.cast(), len) };
    });
    // SAFETY: mmap returned `len` page-aligned, readable and writable bytes that stay
    // mapped until `unmap`.
    unsafe { Segment::from_raw(p, len, unmap) }
        .map_err(|c| std::io::Error::new(std::io::ErrorKind::InvalidData, c.0))
}

/// Creates a memory file of `len` bytes, its pages reserved (`fallocate`, so that a full
/// memory is an error now rather than a `SIGBUS` later).
fn memfd(name: &std::ffi::CStr, len: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: the name is a valid C string; the result is checked.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(os_error("memfd_create"));
    }
    // SAFETY: a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain calls on our descriptor; results checked.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(os_error(&format!("sizing shared memory to {len} bytes")));
    }
    // SAFETY: as above.
    let reserved = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len as libc::off_t) };
    if reserved != 0 {
        return Err(os_error(&format!("reserving {len} bytes of shared memory")));
    }
    Ok(fd)
}

/// Creates and maps a memory file for two rings of `capacity` bytes.
fn create(capacity: usize) -> std::io::Result<(OwnedFd, Segment)> {
    let len = Segment::size_for(capacity);
    let fd = memfd(c"chorus-rings", len)?;
    let segment = map(&fd, len)?;
    Ok((fd, segment))
}

/// Sends `msg` with `fd` attached (if any).
async fn send_with_fd(sock: &UnixStream, msg: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
    sock.async_io(Interest::WRITABLE, || {
        let mut iov = libc::iovec { iov_base: msg.as_ptr() as *mut _, iov_len: msg.len() };
        // Room for one descriptor, aligned as cmsghdr wants.
        let mut control = [0u64; 4];
        // SAFETY: zeroed msghdr is a valid empty header.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if let Some(fd) = fd {
            // SAFETY: CMSG_SPACE/CMSG_FIRSTHDR/CMSG_DATA on a control buffer large enough
            // for one int, as the cmsg(3) recipe does.
            unsafe {
                hdr.msg_control = control.as_mut_ptr().cast();
                hdr.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
                let c = libc::CMSG_FIRSTHDR(&hdr);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            }
        }
        // SAFETY: hdr points at live buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        match n {
            n if n < 0 => Err(std::io::Error::last_os_error()),
            n if n as usize != msg.len() => Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "short write")),
            _ => Ok(()),
        }
    })
    .await
}

/// Receives exactly `N` bytes and the descriptor sent with them, if any.
async fn recv_with_fd<const N: usize>(sock: &UnixStream) -> std::io::Result<([u8; N], Option<OwnedFd>)> {
    sock.async_io(Interest::READABLE, || {
        let mut buf = [0u8; N];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: N };
        let mut control = [0u64; 8];
        // SAFETY: zeroed msghdr is a valid empty header.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: hdr points at live buffers; MSG_CMSG_CLOEXEC marks received fds.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC | libc::MSG_WAITALL) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut fd = None;
        // SAFETY: walking the control messages the kernel filled in, as cmsg(3) shows.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                    fd = Some(OwnedFd::from_raw_fd(raw));
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        if n as usize != N {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed during the shared-memory set-up"));
        }
        Ok((buf, fd))
    })
    .await
}

fn offer(kind: u8) -> [u8; OFFER_LEN] {
    let mut m = [0u8; OFFER_LEN];
    m[0] = kind;
    m[1..5].copy_from_slice(&std::process::id().to_le_bytes());
    m[5..13].copy_from_slice(&(std::ptr::addr_of!(CMA_PROBE) as u64).to_le_bytes());
    m
}

fn parse_offer(m: &[u8]) -> (u8, u32, u64) {
    (m[0], u32::from_le_bytes(m[1..5].try_into().expect("4 bytes")), u64::from_le_bytes(m[5..13].try_into().expect("8 bytes")))
}

/// Whether this process can read the probe word at `addr` in process `pid` (never when
/// single copies are not `allowed`: `CHORUS_SINGLE_COPY=off`).
fn probe_cma(pid: u32, addr: u64, allowed: bool) -> bool {
    allowed && crate::cma::can_read(&crate::cma::Probe { pid, address: addr, value: CMA_PROBE.load(Ordering::Relaxed) })
}

/// Copies between the ranges `scattered` (address, length) and one contiguous range, in
/// calls of at most 1024 ranges (the kernel's `IOV_MAX`): `copy(batch, done, want)` makes
/// one call for the contiguous range's bytes from `done` on and returns how many it
/// copied, which may be fewer than `want`.
fn vm_copy(scattered: &[(u64, usize)], mut copy: impl FnMut(&[libc::iovec], usize, usize) -> std::io::Result<usize>) -> std::io::Result<()> {
    let total: usize = scattered.iter().map(|r| r.1).sum();
    let mut iov: Vec<libc::iovec> =
        scattered.iter().filter(|r| r.1 > 0).map(|&(a, l)| libc::iovec { iov_base: a as *mut _, iov_len: l }).collect();
    let (mut done, mut first) = (0, 0);
    while done < total {
        let batch = &iov[first..iov.len().min(first + 1024)];
        let want: usize = batch.iter().map(|v| v.iov_len).sum();
        let mut n = copy(batch, done, want)?;
        done += n;
        // Skip the ranges copied completely, shorten a partly copied one.
        while n > 0 {
            let v = &mut iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                v.iov_base = (v.iov_base as usize + n) as *mut _;
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// What a `process_vm_readv`/`process_vm_writev` call returned, as a byte count.
fn vm_result(n: isize, pid: u32, what: impl FnOnce() -> String) -> std::io::Result<usize> {
    match n {
        n if n < 0 => Err(os_error(&what())),
        0 => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("process {pid} is gone"))),
        n => Ok(n as usize),
    }
}

/// Copies the remote ranges `ranges` (address, length) of process `pid`, in order, into
/// `dst` (whose length is their total), with `process_vm_readv`. On success every byte of
/// `dst` is written.
pub(crate) fn read_remote(pid: u32, ranges: &[(u64, usize)], dst: &mut [std::mem::MaybeUninit<u8>]) -> std::io::Result<()> {
    let total: usize = ranges.iter().map(|r| r.1).sum();
    if total != dst.len() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "remote ranges and buffer differ in length"));
    }
    vm_copy(ranges, |batch, done, want| {
        let local = libc::iovec { iov_base: dst[done..].as_mut_ptr().cast(), iov_len: want };
        // SAFETY: the local iovec covers `want` bytes of `dst`; the remote ones are only
        // read by the kernel, which checks them against the other process's mappings.
        let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, batch.as_ptr(), batch.len() as _, 0) };
        vm_result(n, pid, || format!("reading {want} bytes of process {pid} (process_vm_readv)"))
    })
}

/// Writes the local ranges `src` (address, length), in order, into process `pid`'s memory
/// at `addr` with `process_vm_writev`. On success every byte is written.
pub(crate) fn write_remote(pid: u32, src: &[(u64, usize)], addr: u64) -> std::io::Result<()> {
    vm_copy(src, |batch, done, want| {
        let remote = libc::iovec { iov_base: (addr as usize + done) as *mut _, iov_len: want };
        // SAFETY: the local iovecs cover live buffers of ours that the kernel only reads;
        // the remote one is checked by the kernel against the other process's mappings.
        let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, batch.as_ptr(), batch.len() as _, &remote, 1, 0) };
        vm_result(n, pid, || format!("writing {want} bytes into process {pid} (process_vm_writev)"))
    })
}

/// The part `from..to` (in bytes from the start) of the message made of `ranges`.
pub(crate) fn cut_ranges(ranges: &[(u64, usize)], from: usize, to: usize) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(addr, len) in ranges {
        let (start, end) = (from.max(at), to.min(at + len));
        if start < end {
            out.push((addr + (start - at) as u64, end - start));
        }
        at += len;
    }
    out
}

/// Bytes per direction of each ring for a host of `local` ranks: `CHORUS_SHM_RING`, or
/// 2 MiB, shrunk so that one rank's rings stay within 64 MiB however many share the host
/// (never below 64 KiB).
pub(crate) fn ring_capacity(local: usize) -> crate::Result<usize> {
    if let Some(n) = crate::settings::settings()?.shm_ring {
        return Ok(n);
    }
    let share = (32usize << 20) / local.saturating_sub(1).max(1);
    let below = if share.is_power_of_two() { share } else { share.next_power_of_two() / 2 };
    Ok(below.clamp(64 << 10, 2 << 20))
}

/// Says once per process that shared memory could not be set up.
fn warn_fallback(why: &std::io::Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        diag::warn(&format!(
            "shared memory between ranks of this host is unavailable ({why}); using Unix sockets instead, which is slower \
             (CHORUS_TRANSPORT=unix silences this)"
        ));
    }
}

fn setup_error(e: std::io::Error) -> Error {
    Error::io("setting up shared memory with a same-host peer", e)
}

/// The dialing side: offers rings of `capacity` bytes (or only the socket when `rings` is
/// false) and learns what the acceptor can do. `single_copy`: whether large messages may
/// be copied straight between the two processes (if the kernel allows it).
pub(crate) async fn dial(sock: UnixStream, rings: bool, capacity: usize, single_copy: bool) -> Result<Setup> {
    let created = if rings {
        match create(capacity) {
            Ok(c) => Some(c),
            Err(e) => {
                warn_fallback(&e);
                None
            }
        }
    } else {
        None
    };
    let Some((fd, segment)) = created else {
        send_with_fd(&sock, &offer(OFFER_SOCKET), None).await.map_err(setup_error)?;
        return Ok(Setup::Socket(sock));
    };
    send_with_fd(&sock, &offer(OFFER_RINGS), Some(fd.as_raw_fd())).await.map_err(setup_error)?;
    drop(fd);
    let (reply, _) = recv_with_fd::<{ OFFER_LEN + 1 }>(&sock).await.map_err(setup_error)?;
    let (kind, pid, addr) = parse_offer(&reply);
    if kind != OFFER_RINGS {
        return Ok(Setup::Socket(sock));
    }
    let can_read_peer = probe_cma(pid, addr, single_copy);
    send_with_fd(&sock, &[u8::from(can_read_peer)], None).await.map_err(setup_error)?;
    Ok(Setup::Rings(ShmLink {
        segment: Arc::new(segment),
        outgoing: 0,
        socket: sock,
        peer_pid: pid,
        can_read_peer,
        peer_can_read: reply[OFFER_LEN] == 1,
    }))
}

/// The accepting side: takes what the dialer offers (`single_copy`: as in [`dial`]).
pub(crate) async fn accept(sock: UnixStream, single_copy: bool) -> Result<Setup> {
    let (msg, fd) = recv_with_fd::<OFFER_LEN>(&sock).await.map_err(setup_error)?;
    let (kind, pid, addr) = parse_offer(&msg);
    let mapped = match (kind, fd) {
        (OFFER_RINGS, Some(fd)) => {
            // SAFETY: fstat into a zeroed struct on a descriptor we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
                Err(os_error("reading the shared rings' size"))
            } else {
                map(&fd, st.st_size as usize)
            }
        }
        (OFFER_SOCKET, _) => return Ok(Setup::Socket(sock)),
        _ => {
            return Err(Error::Rendezvous(format!(
                "a same-host peer sent an unknown shared-memory offer ({kind:#x}): is it another chorus build?"
            )))
        }
    };
    let segment = match mapped {
        Ok(s) => s,
        Err(e) => {
            warn_fallback(&e);
            let mut reply = offer(OFFER_SOCKET).to_vec();
            reply.push(0);
            send_with_fd(&sock, &reply, None).await.map_err(setup_error)?;
            return Ok(Setup::Socket(sock));
        }
    };
    let can_read_peer = probe_cma(pid, addr, single_copy);
    let mut reply = offer(OFFER_RINGS).to_vec();
    reply.push(u8::from(can_read_peer));
    send_with_fd(&sock, &reply, None).await.map_err(setup_error)?;
    let (last, _) = recv_with_fd::<1>(&sock).await.map_err(setup_error)?;
    Ok(Setup::Rings(ShmLink {
        segment: Arc::new(segment),
        outgoing: 1,
        socket: sock,
        peer_pid: pid,
        can_read_peer,
        peer_can_read: last[0] == 1,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cut_ranges_keeps_exactly_the_bytes_asked_for() {
        let r = [(100, 10), (500, 0), (1000, 5)];
        assert_eq!(super::cut_ranges(&r, 0, 15), vec![(100, 10), (1000, 5)]);
        assert_eq!(super::cut_ranges(&r, 8, 12), vec![(108, 2), (1000, 2)]);
        assert_eq!(super::cut_ranges(&r, 10, 15), vec![(1000, 5)]);
        assert!(super::cut_ranges(&r, 15, 15).is_empty());
    }
}
