//! The objects a process holds, in memory and spilled to local disk.
//!
//! A worker with a memory limit keeps its stored results under a target (60% of the
//! limit, Dask's `target`): when an insert takes them above it, the least recently used
//! objects are written to files in the worker's spill directory and dropped from
//! memory. The worker's memory monitor spills more when the whole process grows past
//! 70% of its limit (see `worker.rs`). A spilled object is read back on its next local
//! use (and then kept in memory, its file kept too, so that spilling it again costs
//! nothing), and is served to other processes straight from its file, without being
//! loaded.
//!
//! No disk work happens under the store's lock: a spill picks its victim under the
//! lock, writes the file without it, and then drops the bytes only if the object is
//! still the one it wrote. A spill that fails (a full disk, a directory that became
//! unwritable, the `--max-spill` cap) keeps the object in memory, says so once with
//! the directory and the cause, and stops spilling: the worker then pauses at 80% and
//! restarts at 95% like one without a disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::proto::TaskId;

/// Where and how much a store may spill.
#[derive(Debug)]
pub(crate) struct SpillConfig {
    /// The worker's own directory (see [`SpillDir`]).
    pub(crate) dir: PathBuf,
    /// Stored bytes in memory above this are spilled (60% of the memory limit).
    pub(crate) target: u64,
    /// Bytes on disk at most (`--max-spill`; `u64::MAX` for no cap).
    pub(crate) max_spill: u64,
}

/// A stored object's bytes, for a data server to send.
pub(crate) enum Body {
    /// In memory.
    Memory(Arc<Vec<u8>>),
    /// Spilled: its file, opened, and its length.
    File(std::fs::File, u64),
}

/// What the store holds and has done, for heartbeats and `chorus status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StoreFigures {
    /// Bytes of objects in memory.
    pub(crate) memory: u64,
    /// Bytes of objects whose only copy is on disk.
    pub(crate) spilled: u64,
    /// Objects written to disk so far.
    pub(crate) spills: u64,
    /// Objects read back from disk so far.
    pub(crate) unspills: u64,
    /// Bytes written to disk so far.
    pub(crate) spill_bytes: u64,
    /// Microseconds spent writing spill files.
    pub(crate) spill_micros: u64,
    /// Bytes read back from disk so far.
    pub(crate) unspill_bytes: u64,
    /// Microseconds spent reading spill files.
    pub(crate) unspill_micros: u64,
}

struct Entry {
    /// The bytes, while in memory.
    mem: Option<Arc<Vec<u8>>>,
    len: u64,
    /// Distinguishes this insert of the id from a later one (names its file).
    generation: u64,
    /// Its file holds the bytes.
    on_disk: bool,
    /// A spill of it is under way (it is out of the LRU order meanwhile).
    spilling: bool,
    /// Its place in the LRU order, while in memory and not being spilled.
    tick: u64,
}

#[derive(Default)]
struct State {
    objects: FxHashMap<TaskId, Entry>,
    /// In-memory objects by last use, oldest first.
    lru: BTreeMap<u64, TaskId>,
    clock: u64,
}

impl State {
    fn touch(&mut self, id: TaskId) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.objects.get_mut(&id) {
            if e.mem.is_some() && !e.spilling {
                self.lru.remove(&e.tick);
                e.tick = clock;
                self.lru.insert(clock, id);
            }
        }
    }
}

/// The objects a process holds (see the module documentation).
#[derive(Default)]
pub(crate) struct ObjectStore {
    state: Mutex<State>,
    memory: AtomicU64,
    /// Bytes of files in the spill directory.
    disk: AtomicU64,
    /// Bytes of objects whose only copy is on disk.
    spilled: AtomicU64,
    /// Bytes served to other processes (for tests of where data flows).
    pub(crate) served: AtomicU64,
    spills: AtomicU64,
    unspills: AtomicU64,
    spill_bytes: AtomicU64,
    spill_micros: AtomicU64,
    unspill_bytes: AtomicU64,
    unspill_micros: AtomicU64,
    spill: Option<SpillConfig>,
    /// A spill failed for a reason of the disk's: no more are tried.
    spill_broken: AtomicBool,
    /// The `--max-spill` cap was met (said once).
    cap_reported: AtomicBool,
    /// Why spilling stopped for good, for heartbeats.
    spill_error: Mutex<Option<String>>,
}

impl ObjectStore {
    /// A store that spills as `config` says.
    pub(crate) fn spilling(config: SpillConfig) -> ObjectStore {
        ObjectStore { spill: Some(config), ..ObjectStore::default() }
    }

    fn file(&self, id: TaskId, generation: u64) -> Option<PathBuf> {
        self.spill.as_ref().map(|s| s.dir.join(format!("{}-{generation}", id.0)))
    }

    /// The object for local use: read back from disk if it was spilled.
    #[cfg(test)]
    pub(crate) fn get(&self, id: TaskId) -> Option<Arc<Vec<u8>>> {
        self.get_read(id).map(|(bytes, _)| bytes)
    }

    /// [`get`](Self::get), with the microseconds spent reading it back from its spill
    /// file (0 when it was in memory).
    pub(crate) fn get_read(&self, id: TaskId) -> Option<(Arc<Vec<u8>>, u64)> {
        let (path, len, generation) = {
            let mut st = self.state.lock().expect("store lock");
            let e = st.objects.get(&id)?;
            if let Some(bytes) = &e.mem {
                let bytes = bytes.clone();
                // Only a store that spills needs the order of use.
                if self.spill.is_some() {
                    st.touch(id);
                }
                return Some((bytes, 0));
            }
            (self.file(id, e.generation)?, e.len, e.generation)
        };
        let t = Instant::now();
        let bytes = match std::fs::read(&path) {
            Ok(b) if b.len() as u64 == len => Arc::new(b),
            Ok(b) => {
                self.warn_read(&path, &format!("it holds {} bytes, {len} were written", b.len()));
                return None;
            }
            Err(e) => {
                // Removed meanwhile: the object is gone.
                if e.kind() != io::ErrorKind::NotFound {
                    self.warn_read(&path, &e.to_string());
                }
                return None;
            }
        };
        let micros = t.elapsed().as_micros() as u64;
        let kept = {
            let mut st = self.state.lock().expect("store lock");
            match st.objects.get_mut(&id) {
                Some(e) if e.generation == generation => {
                    match &e.mem {
                        // Another reader was first.
                        Some(b) => b.clone(),
                        None => {
                            e.mem = Some(bytes.clone());
                            self.memory.fetch_add(len, Ordering::Relaxed);
                            self.spilled.fetch_sub(len, Ordering::Relaxed);
                            self.unspills.fetch_add(1, Ordering::Relaxed);
                            self.unspill_bytes.fetch_add(len, Ordering::Relaxed);
                            self.unspill_micros.fetch_add(micros, Ordering::Relaxed);
                            e.tick = 0;
                            st.touch(id);
                            bytes
                        }
                    }
                }
                _ => bytes,
            }
        };
        self.spill_to_target();
        Some((kept, micros.max(1)))
    }

    fn warn_read(&self, path: &Path, why: &str) {
        chorus_comm::diag::error(&format!("could not read the spilled object {}: {why}; it will be recomputed", path.display()));
    }

    /// Whether `id` is held in memory (a task needing it would not wait for a disk).
    pub(crate) fn in_memory(&self, id: TaskId) -> bool {
        self.state.lock().expect("store lock").objects.get(&id).is_some_and(|e| e.mem.is_some())
    }

    /// The object for sending to another process: from memory, or straight from its
    /// file when it is spilled (it is not loaded).
    pub(crate) fn body(&self, id: TaskId) -> Option<Body> {
        let (path, len) = {
            let st = self.state.lock().expect("store lock");
            let e = st.objects.get(&id)?;
            if let Some(bytes) = &e.mem {
                return Some(Body::Memory(bytes.clone()));
            }
            (self.file(id, e.generation)?, e.len)
        };
        // An object removed since has lost its file: it is missing.
        std::fs::File::open(path).ok().map(|f| Body::File(f, len))
    }

    /// Keeps `bytes` as `id`, then spills down to the target if it is exceeded.
    pub(crate) fn insert(&self, id: TaskId, bytes: Arc<Vec<u8>>) {
        let len = bytes.len() as u64;
        let old = {
            let mut st = self.state.lock().expect("store lock");
            st.clock += 1;
            let clock = st.clock;
            if self.spill.is_some() {
                st.lru.insert(clock, id);
            }
            let entry = Entry { mem: Some(bytes), len, generation: clock, on_disk: false, spilling: false, tick: clock };
            let old = st.objects.insert(id, entry);
            if let Some(old) = &old {
                if old.mem.is_some() && !old.spilling {
                    st.lru.remove(&old.tick);
                }
            }
            self.memory.fetch_add(len, Ordering::Relaxed);
            old
        };
        if let Some(old) = old {
            self.forget(id, old);
        }
        self.spill_to_target();
    }

    /// Drops `id` from memory and disk.
    pub(crate) fn remove(&self, id: TaskId) {
        let old = {
            let mut st = self.state.lock().expect("store lock");
            let old = st.objects.remove(&id);
            if let Some(old) = &old {
                if old.mem.is_some() && !old.spilling {
                    st.lru.remove(&old.tick);
                }
            }
            old
        };
        if let Some(old) = old {
            self.forget(id, old);
        }
    }

    /// The accounting and file removal of an entry that left the map.
    fn forget(&self, id: TaskId, old: Entry) {
        if old.mem.is_some() {
            self.memory.fetch_sub(old.len, Ordering::Relaxed);
        } else {
            self.spilled.fetch_sub(old.len, Ordering::Relaxed);
        }
        // A spill under way removes its own file when it finds the entry gone.
        if old.on_disk {
            self.disk.fetch_sub(old.len, Ordering::Relaxed);
            if let Some(path) = self.file(id, old.generation) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Objects held, in memory or on disk.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().expect("store lock").objects.len()
    }

    /// What the store holds and has done.
    pub(crate) fn figures(&self) -> StoreFigures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreFigures {
            memory: get(&self.memory),
            spilled: get(&self.spilled),
            spills: get(&self.spills),
            unspills: get(&self.unspills),
            spill_bytes: get(&self.spill_bytes),
            spill_micros: get(&self.spill_micros),
            unspill_bytes: get(&self.unspill_bytes),
            unspill_micros: get(&self.unspill_micros),
        }
    }

    /// Spills least recently used objects while memory holds more than the target.
    fn spill_to_target(&self) {
        let Some(config) = &self.spill else { return };
        let target = config.target;
        while self.memory.load(Ordering::Relaxed) > target {
            if self.spill_one().is_none() {
                return;
            }
        }
    }

    /// Spills least recently used objects until `bytes` have left memory (or nothing
    /// more can go); the bytes that left. The memory monitor calls it when the process
    /// is above 70% of its limit.
    pub(crate) fn spill_bytes(&self, bytes: u64) -> u64 {
        let mut freed = 0;
        while freed < bytes {
            match self.spill_one() {
                Some(n) => freed += n,
                None => break,
            }
        }
        freed
    }

    /// Spills the least recently used object in memory; its size, or `None` when there
    /// is nothing to spill or spilling is off or broken.
    fn spill_one(&self) -> Option<u64> {
        let config = self.spill.as_ref()?;
        if self.spill_broken.load(Ordering::Relaxed) {
            return None;
        }
        let (id, bytes, generation, written) = {
            let mut st = self.state.lock().expect("store lock");
            let (_, id) = st.lru.pop_first()?;
            let e = st.objects.get_mut(&id).expect("an object in the LRU order is stored");
            e.spilling = true;
            (id, e.mem.clone().expect("an object in the LRU order is in memory"), e.generation, e.on_disk)
        };
        let len = bytes.len() as u64;
        let path = self.file(id, generation).expect("a spilling store has a directory");
        let mut micros = 0;
        if !written {
            let failure = if self.disk.load(Ordering::Relaxed) + len > config.max_spill {
                // Until objects on disk are removed.
                Some((false, format!("the spilled bytes would pass the cap of {} (--max-spill)", crate::settings::human(config.max_spill))))
            } else {
                let t = Instant::now();
                let r = std::fs::write(&path, &bytes[..]);
                micros = t.elapsed().as_micros() as u64;
                r.err().map(|e| {
                    let _ = std::fs::remove_file(&path);
                    (true, e.to_string())
                })
            };
            if let Some((for_good, why)) = failure {
                self.spill_failed(config, id, len, for_good, &why);
                let mut st = self.state.lock().expect("store lock");
                st.clock += 1;
                let clock = st.clock;
                if let Some(e) = st.objects.get_mut(&id).filter(|e| e.generation == generation) {
                    e.spilling = false;
                    e.tick = clock;
                    st.lru.insert(clock, id);
                }
                return None;
            }
        }
        let mut st = self.state.lock().expect("store lock");
        match st.objects.get_mut(&id) {
            Some(e) if e.generation == generation => {
                e.mem = None;
                e.spilling = false;
                e.on_disk = true;
                self.memory.fetch_sub(len, Ordering::Relaxed);
                self.spilled.fetch_add(len, Ordering::Relaxed);
                if !written {
                    self.disk.fetch_add(len, Ordering::Relaxed);
                    self.spills.fetch_add(1, Ordering::Relaxed);
                    self.spill_bytes.fetch_add(len, Ordering::Relaxed);
                    self.spill_micros.fetch_add(micros, Ordering::Relaxed);
                }
            }
            // Removed (or replaced) while it was written: the file is no one's.
            _ => {
                drop(st);
                if !written {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Some(len)
    }

    /// Says once why a spill failed; one that failed `for_good` (the disk) stops all
    /// spilling, one that met the cap stops only this round.
    fn spill_failed(&self, config: &SpillConfig, id: TaskId, len: u64, for_good: bool, why: &str) {
        let said = if for_good { self.spill_broken.swap(true, Ordering::Relaxed) } else { self.cap_reported.swap(true, Ordering::Relaxed) };
        if said {
            return;
        }
        let then = if for_good { "this worker spills no more" } else { "it spills again when spilled objects are released" };
        let message = format!(
            "could not spill {id} ({}) to {}: {why}; {then}, and keeps its results in memory meanwhile (it pauses at 80% of its memory limit and restarts at 95%)",
            crate::settings::human(len),
            config.dir.display()
        );
        chorus_comm::diag::error(&message);
        if for_good {
            *self.spill_error.lock().expect("spill error lock") = Some(message);
        }
    }

    /// Why spilling stopped for good, if it did.
    pub(crate) fn spill_error(&self) -> Option<String> {
        self.spill_error.lock().expect("spill error lock").clone()
    }
}

/// A worker's spill directory, `BASE/worker-PID`, removed when dropped. Creating one
/// first removes the directories of workers on this host that died without removing
/// theirs (their process is gone, or the pid now belongs to another process).
pub(crate) struct SpillDir {
    path: PathBuf,
}

/// The base of spill directories when none is given: `chorus-spill` in the system's
/// temporary directory.
pub(crate) fn default_base() -> PathBuf {
    std::env::temp_dir().join("chorus-spill")
}

/// The spill directory of worker process `pid` under `base`.
fn worker_dir(base: &Path, pid: u32) -> PathBuf {
    base.join(format!("worker-{pid}"))
}

/// Removes the spill directory that worker process `pid`, which has ended, may have
/// left under `base` (one that was killed could not remove it itself).
pub(crate) fn remove_ended(base: &Path, pid: u32) {
    let _ = std::fs::remove_dir_all(worker_dir(base, pid));
}

/// The error of a spill directory that cannot be made or written.
fn spill_dir_error(what: &str, path: &Path, source: io::Error) -> crate::Error {
    crate::Error::Io {
        context: format!(
            "{what} the spill directory {}; give the workers a writable one (chorus worker --spill-dir, LocalClusterBuilder::spill_dir)",
            path.display()
        ),
        source,
    }
}

/// Checks that spill directories can be made under `base`, as a cluster does before it
/// starts workers there (with a probe file of its own, since clusters of one process
/// may start side by side); the error names the directory.
pub(crate) fn check_base(base: &Path) -> crate::Result<()> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(base).map_err(|e| spill_dir_error("creating", base, e))?;
    let probe = base.join(format!(".probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&probe, b"").map_err(|e| spill_dir_error("writing in", base, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The file in a spill directory that names its owner: pid and process start time.
const OWNER_FILE: &str = "owner";

impl SpillDir {
    /// Creates this process's directory under `base`, checking that it can be written.
    pub(crate) fn create(base: &Path) -> crate::Result<SpillDir> {
        let failed = spill_dir_error;
        std::fs::create_dir_all(base).map_err(|e| failed("creating", base, e))?;
        remove_stale(base);
        let pid = std::process::id();
        let path = worker_dir(base, pid);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| failed("creating", &path, e))?;
        std::fs::write(path.join(OWNER_FILE), owner_tag(pid).unwrap_or_default()).map_err(|e| failed("writing in", &path, e))?;
        Ok(SpillDir { path })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `PID STARTTIME`: a process's identity, which a reused pid does not share.
fn owner_tag(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Removes the spill directories under `base` whose owner no longer runs.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("worker-")).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let now = owner_tag(pid);
        let alive = match std::fs::read_to_string(entry.path().join(OWNER_FILE)) {
            Ok(recorded) => now.is_some_and(|now| now == recorded),
            // Being made by a worker that has not written its owner file yet.
            Err(_) => now.is_some(),
        };
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, target: u64, max_spill: u64) -> ObjectStore {
        ObjectStore::spilling(SpillConfig { dir: dir.to_path_buf(), target, max_spill })
    }

    fn obj(n: usize, fill: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![fill; n])
    }

    #[test]
    fn the_least_recently_used_objects_spill_past_the_target_and_come_back_on_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 250, u64::MAX);
        for i in 0..5u64 {
            s.insert(TaskId(i), obj(100, i as u8));
            if i == 1 {
                // 0 is used after 1: 1 is now the oldest.
                assert_eq!(s.get(TaskId(0)).unwrap()[0], 0);
            }
        }
        let f = s.figures();
        assert!(f.memory <= 250, "{f:?}");
        assert_eq!(f.memory + f.spilled, 500, "nothing lost: {f:?}");
        assert_eq!(f.spills, 3);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "a file per spilled object");
        // 1, then 0 and 2 spilled (1 was the least recently used).
        assert!(matches!(s.body(TaskId(1)), Some(Body::File(_, 100))));
        assert!(matches!(s.body(TaskId(4)), Some(Body::Memory(_))));
        for i in 0..5u64 {
            assert_eq!(*s.get(TaskId(i)).unwrap(), vec![i as u8; 100], "object {i} reads back");
        }
        let f = s.figures();
        assert!(f.unspills >= 3 && f.memory <= 250, "{f:?}");
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn a_spilled_object_is_served_from_its_file_without_being_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, u64::MAX);
        s.insert(TaskId(1), obj(100, 7));
        s.insert(TaskId(2), obj(100, 8));
        let before = s.figures();
        let Some(Body::File(mut f, 100)) = s.body(TaskId(1)) else { panic!("object 1 should be on disk") };
        let mut read = Vec::new();
        io::Read::read_to_end(&mut f, &mut read).unwrap();
        assert_eq!(read, vec![7; 100]);
        assert_eq!(s.figures(), before, "serving did not load it");
    }

    #[test]
    fn removing_objects_removes_their_files_and_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, u64::MAX);
        for i in 0..4u64 {
            s.insert(TaskId(i), obj(100, 1));
        }
        for i in 0..4u64 {
            s.remove(TaskId(i));
        }
        let f = s.figures();
        assert_eq!((f.memory, f.spilled, s.len()), (0, 0, 0), "{f:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(s.get(TaskId(0)).is_none() && s.body(TaskId(0)).is_none());
    }

    #[test]
    fn an_unspilled_object_spills_again_without_a_second_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, u64::MAX);
        s.insert(TaskId(1), obj(100, 1));
        s.insert(TaskId(2), obj(100, 2));
        s.get(TaskId(1)).unwrap();
        s.get(TaskId(2)).unwrap();
        let f = s.figures();
        assert_eq!(f.spills, 2, "each written once: {f:?}");
        assert_eq!(f.spill_bytes, 200);
    }

    #[test]
    fn the_spill_cap_keeps_objects_in_memory_and_stops_spilling() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 150);
        for i in 0..4u64 {
            s.insert(TaskId(i), obj(100, i as u8));
        }
        let f = s.figures();
        assert_eq!((f.spills, f.spilled, f.memory), (1, 100, 300), "{f:?}");
        for i in 0..4u64 {
            assert_eq!(*s.get(TaskId(i)).unwrap(), vec![i as u8; 100]);
        }
    }

    #[test]
    fn an_unwritable_directory_keeps_objects_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("removed");
        let s = store(&gone, 100, u64::MAX);
        for i in 0..3u64 {
            s.insert(TaskId(i), obj(100, i as u8));
        }
        let f = s.figures();
        assert_eq!((f.spills, f.memory), (0, 300), "{f:?}");
        for i in 0..3u64 {
            assert_eq!(*s.get(TaskId(i)).unwrap(), vec![i as u8; 100]);
        }
    }

    #[test]
    fn a_spill_directory_is_removed_on_drop_and_a_dead_workers_by_the_next() {
        let base = tempfile::tempdir().unwrap();
        // A directory of a pid that cannot be running (above pid_max).
        let stale = base.path().join("worker-4194999");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("1-1"), b"old").unwrap();
        // One whose pid runs but is another process (this one, started at another time).
        let reused = base.path().join(format!("worker-{}", std::process::id()));
        std::fs::create_dir(&reused).unwrap();
        std::fs::write(reused.join(OWNER_FILE), format!("{} 1", std::process::id())).unwrap();
        // A live worker's (pid 1, whose tag is right) is kept.
        let live = base.path().join("worker-1");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join(OWNER_FILE), owner_tag(1).unwrap()).unwrap();
        let dir = SpillDir::create(base.path()).unwrap();
        assert!(!stale.exists(), "a dead worker's directory is removed");
        assert!(live.exists(), "a running worker's directory is kept");
        assert!(dir.path().join(OWNER_FILE).exists() && dir.path() == reused, "this process's directory is made anew");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_spill_directory_that_cannot_be_made_is_an_error_naming_it() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let e = SpillDir::create(&file).err().expect("a file is not a directory").to_string();
        assert!(e.contains(&file.display().to_string()) && e.contains("spill directory"), "{e}");
    }
}
