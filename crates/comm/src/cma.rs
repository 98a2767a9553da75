//! Cross-memory attach (CMA) for layers above the ranks: one copy between the memory of
//! two processes on one host, with `process_vm_readv`.
//!
//! The task layer uses it to move large objects between a driver and its workers
//! without streaming them through a socket (two copies and a wake-up per buffer). Before
//! either side hands the other an address, the reader proves that it may read the
//! writer's memory and that the process id it was told is really the writer: it reads
//! [`Probe::address`] in that process and finds [`Probe::value`], a random word each
//! process draws once. A process id that names another process (another PID namespace, a
//! reused id) or a kernel that forbids the read (Yama's `ptrace_scope`, a seccomp filter,
//! a container without `CAP_SYS_PTRACE` across users) fails the probe, and the caller
//! keeps its socket path.
//!
//! ```
//! use chorus_comm::cma::{self, Probe};
//!
//! // A process can always read itself.
//! let me = Probe::local();
//! assert!(cma::can_read(&me));
//! let src = vec![7u8; 1 << 20];
//! let mut dst = Vec::with_capacity(src.len());
//! cma::read_into(me.pid, src.as_ptr() as u64, src.len(), &mut dst).unwrap();
//! assert_eq!(dst, src);
//! ```

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The word [`Probe::local`] points at: drawn at random the first time it is asked for.
static PROBE_WORD: OnceLock<u64> = OnceLock::new();

/// What one process tells another so that the other can check it may read its memory:
/// its process id, and where in its memory a word of known value lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The process id, as this process sees itself.
    pub pid: u32,
    /// The address of the probe word in that process.
    pub address: u64,
    /// The probe word's value: random, drawn once per process.
    pub value: u64,
}

impl Probe {
    /// This process's probe.
    pub fn local() -> Probe {
        let word = PROBE_WORD.get_or_init(|| {
            let mut b = [0u8; 8];
            // A zero word (no randomness) still works: the pid and address must match too.
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b) | 1
        });
        Probe { pid: std::process::id(), address: std::ptr::from_ref(word) as u64, value: *word }
    }
}

/// Whether this process can read the memory of the process `probe` describes, and that
/// process is the one that sent it.
pub fn can_read(probe: &Probe) -> bool {
    let mut word = [MaybeUninit::new(0u8); 8];
    crate::shm::read_remote(probe.pid, &[(probe.address, 8)], &mut word).is_ok()
        // SAFETY: every byte was initialised above.
        && u64::from_le_bytes(word.map(|b| unsafe { b.assume_init() })) == probe.value
}

/// Appends `len` bytes at `address` in process `pid` to `dst`, in one copy. On error
/// `dst` keeps its length (its spare capacity may have been written).
///
/// The caller reserves `dst` (and may advise it to huge pages) beforehand; this reserves
/// what is still missing.
pub fn read_into(pid: u32, address: u64, len: usize, dst: &mut Vec<u8>) -> std::io::Result<()> {
    dst.try_reserve_exact(len).map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("{len} bytes for a copy: {e}")))?;
    let spare = &mut dst.spare_capacity_mut()[..len];
    crate::shm::read_remote(pid, &[(address, len)], spare)?;
    let filled = dst.len() + len;
    // SAFETY: `read_remote` wrote every one of the `len` bytes after the old length.
    unsafe { dst.set_len(filled) };
    Ok(())
}

/// Regions at least this large are advised to huge pages by [`advise_huge_pages`].
pub const HUGE_PAGES_FROM: usize = 4 << 20;

/// Asks the kernel to back `room`, memory about to be written in full, with transparent
/// huge pages (2 MiB), as numpy does for its large arrays.
///
/// Two costs of large copies depend on the page size. Fresh memory takes a page fault per
/// page on first write, which in a virtual machine costs more than the copy itself (a
/// 50 MB copy into fresh memory ran at a seventh of the speed of one into touched memory
/// here). And a cross-memory copy pins the other process's pages one by one: reading
/// 100 MB from 4 KiB pages ran at 5.2 GB/s here, from 2 MiB pages at 8.6 GB/s
/// (`process_vm_readv`, one core). Only whole 2 MiB pages inside `room` are advised, only
/// when it is at least [`HUGE_PAGES_FROM`] bytes; pages already in memory keep their size
/// (the kernel may merge them later), and where transparent huge pages are off nothing
/// changes.
pub fn advise_huge_pages(room: &mut [MaybeUninit<u8>]) {
    const HUGE: usize = 2 << 20;
    if room.len() < HUGE_PAGES_FROM {
        return;
    }
    let start = room.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE), (start + room.len()) / HUGE * HUGE);
    if end > first {
        // SAFETY: the range lies inside `room`, which the caller may write; the advice
        // changes how the memory is backed, not its contents or its validity.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_with_another_value_or_process_fails() {
        let me = Probe::local();
        assert!(can_read(&me));
        assert!(!can_read(&Probe { value: me.value ^ 2, ..me }), "another value");
        assert!(!can_read(&Probe { address: 8, ..me }), "an unmapped address");
        assert!(!can_read(&Probe { pid: u32::MAX >> 1, ..me }), "no such process");
    }

    #[test]
    fn a_read_past_the_mapping_is_an_error_and_keeps_the_length() {
        let mut dst = vec![1u8, 2];
        assert!(read_into(std::process::id(), 8, 4096, &mut dst).is_err());
        assert_eq!(dst, [1, 2]);
    }
}
