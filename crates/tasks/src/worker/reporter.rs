//! Reports to the scheduler, batched without a timer.
//!
//! Whoever adds a report to an empty queue writes it, and everything that piles up during
//! that write leaves with it in one message, so concurrent completions share a system
//! call. An executor running a stream of quick tasks does one better: it *holds* its
//! reports while the next task is known to be quick and sends them before anything that
//! may take long (a task of unknown or slow function, or waiting for work), when
//! [`HOLD_MAX`] pile up, or when the oldest has waited [`HOLD_FOR`]. A map of
//! microsecond tasks then costs one write per batch instead of one per task, and a
//! lone task's report is never delayed: the queue behind it is empty.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::Stream;
use crate::proto::{wire, FromWorker};

/// The most reports an executor holds before sending them.
pub(super) const HOLD_MAX: usize = 256;

/// The longest an executor holds a report while quick tasks run.
pub(super) const HOLD_FOR: Duration = Duration::from_micros(200);

#[derive(Default)]
struct Pending {
    msgs: Vec<FromWorker>,
    /// When the oldest report in `msgs` was added.
    since: Option<Instant>,
    /// A thread is writing and takes everything added before it finds `msgs` empty.
    writing: bool,
}

/// The worker's side of its scheduler connection for everything but registration.
pub(super) struct Reporter {
    pending: Mutex<Pending>,
    writer: Mutex<Stream>,
}

impl Reporter {
    pub(super) fn new(writer: Stream) -> Reporter {
        Reporter { pending: Mutex::default(), writer: Mutex::new(writer) }
    }

    /// Sends `msg` now, or with the write under way.
    pub(super) fn send(&self, msg: FromWorker) {
        self.add(msg, false)
    }

    /// Adds `msg` to the reports held by an executor; [`Self::flush_held`] or the next
    /// [`Self::send`] sends it.
    pub(super) fn hold(&self, msg: FromWorker) {
        self.add(msg, true)
    }

    fn add(&self, msg: FromWorker, hold: bool) {
        {
            let mut p = self.pending.lock().expect("reporter lock");
            p.msgs.push(msg);
            p.since.get_or_insert_with(Instant::now);
            if hold || p.writing {
                return;
            }
            p.writing = true;
        }
        self.write_out();
    }

    /// Whether held reports have waited long enough, or are enough, to go now.
    pub(super) fn held_enough(&self) -> bool {
        let p = self.pending.lock().expect("reporter lock");
        p.msgs.len() >= HOLD_MAX || p.since.is_some_and(|s| s.elapsed() >= HOLD_FOR)
    }

    /// Whether reports wait that no write under way will take: the ones
    /// [`Self::flush_held`] would send.
    pub(super) fn has_held(&self) -> bool {
        let p = self.pending.lock().expect("reporter lock");
        !p.msgs.is_empty() && !p.writing
    }

    /// Sends held reports, unless a write under way takes them.
    pub(super) fn flush_held(&self) {
        {
            let mut p = self.pending.lock().expect("reporter lock");
            if p.msgs.is_empty() || p.writing {
                return;
            }
            p.writing = true;
        }
        self.write_out();
    }

    /// Sends `msg`, with anything pending, and returns once it is written (or the
    /// connection has failed): for the last word of a process about to exit.
    pub(super) fn send_and_wait(&self, msg: FromWorker) {
        let mut w = self.writer.lock().expect("writer lock");
        let batch = {
            let mut p = self.pending.lock().expect("reporter lock");
            p.msgs.push(msg);
            p.since = None;
            std::mem::take(&mut p.msgs)
        };
        let _ = write_batch(&mut w, batch);
    }

    /// Writes until nothing is pending; the caller has set `writing`.
    fn write_out(&self) {
        let mut w = self.writer.lock().expect("writer lock");
        loop {
            let batch = {
                let mut p = self.pending.lock().expect("reporter lock");
                if p.msgs.is_empty() {
                    p.writing = false;
                    return;
                }
                p.since = None;
                std::mem::take(&mut p.msgs)
            };
            if write_batch(&mut w, batch).is_err() {
                // The scheduler is gone; the reader notices and ends the process.
                self.pending.lock().expect("reporter lock").writing = false;
                return;
            }
        }
    }
}

/// Writes reports as one buffer, completions and failures batched into few messages.
fn write_batch(w: &mut Stream, batch: Vec<FromWorker>) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut finished = Vec::new();
    let mut failed = Vec::new();
    for m in batch {
        match m {
            FromWorker::Finished(f) => finished.extend(f),
            FromWorker::Failed(f) => failed.extend(f),
            other => wire::encode_into(&other, &mut out),
        }
    }
    // Inline results are at most INLINE_MAX and error texts MAX_ERROR_TEXT, so no
    // single report is too large for a frame.
    wire::encode_batched(&finished, FromWorker::Finished, &mut out, wire::BATCH_BYTES);
    wire::encode_batched(&failed, FromWorker::Failed, &mut out, wire::BATCH_BYTES);
    std::io::Write::write_all(w, &out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::{Reporter, HOLD_MAX};
    use crate::net::Stream;
    use crate::proto::{wire, Finished, FromWorker, Instance, TaskId, Timing};

    fn finished(i: u64) -> FromWorker {
        FromWorker::Finished(vec![Finished { id: TaskId(i), instance: Instance(0), size: 0, inline: None, timing: Timing::default() }])
    }

    /// Messages from `r` until nothing more has arrived for a while.
    fn arrived(r: &mut std::io::BufReader<UnixStream>) -> Vec<FromWorker> {
        r.get_ref().set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
        let mut buf = Vec::new();
        std::iter::from_fn(|| wire::read::<FromWorker>(r, &mut buf).ok()).collect()
    }

    fn ids(msgs: &[FromWorker]) -> Vec<Vec<u64>> {
        msgs.iter()
            .map(|m| match m {
                FromWorker::Finished(f) => f.iter().map(|f| f.id.0).collect(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    /// An executor with held reports and nothing to run flushes them before it waits; a
    /// write under way on another thread takes them instead, so they must not count as
    /// held meanwhile, or the executor would loop until that write ended.
    #[test]
    fn reports_held_during_another_threads_write_are_left_to_that_write() {
        let (a, b) = UnixStream::pair().unwrap();
        let reporter = std::sync::Arc::new(Reporter::new(Stream::Unix(a)));
        // More than the socket buffer holds: the write blocks until the peer reads.
        let many = FromWorker::Finished((0..100_000).map(|i| match finished(i) {
            FromWorker::Finished(mut f) => f.remove(0),
            _ => unreachable!(),
        }).collect());
        let writer = {
            let reporter = reporter.clone();
            std::thread::spawn(move || reporter.send(many))
        };
        while !reporter.pending.lock().unwrap().writing {
            std::thread::yield_now();
        }
        reporter.hold(finished(100_000));
        assert!(!reporter.has_held(), "the write under way takes it");
        let mut from = std::io::BufReader::new(b);
        let got: usize = ids(&arrived(&mut from)).iter().map(Vec::len).sum();
        writer.join().unwrap();
        assert_eq!(got, 100_001, "every report arrives, the held one with the write's next batch");
    }

    #[test]
    fn held_reports_leave_together_when_flushed_or_with_the_next_sent_one() {
        let (a, b) = UnixStream::pair().unwrap();
        let reporter = Reporter::new(Stream::Unix(a));
        let mut from = std::io::BufReader::new(b);
        for i in 0..10 {
            reporter.hold(finished(i));
        }
        assert!(reporter.has_held() && !reporter.held_enough());
        assert!(arrived(&mut from).is_empty(), "held reports wait");
        reporter.flush_held();
        assert_eq!(ids(&arrived(&mut from)), vec![(0..10).collect::<Vec<_>>()], "one message for all ten");
        assert!(!reporter.has_held());
        reporter.hold(finished(10));
        reporter.send(finished(11));
        assert_eq!(ids(&arrived(&mut from)), vec![vec![10, 11]], "a report sent takes the held ones along");
        for i in 0..HOLD_MAX as u64 {
            reporter.hold(finished(i));
        }
        assert!(reporter.held_enough(), "{HOLD_MAX} held reports are enough to send");
    }
}
