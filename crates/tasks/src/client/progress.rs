//! Progress bars in the terminal, like Dask's `progress()` and ipyparallel's `%px`.
//!
//! A bar is only drawn when stderr is a terminal: piped or redirected output stays
//! clean. It counts futures as they end, checking only those still pending, so a bar
//! over a million futures costs about one lookup per future in all.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Future, Slot};

/// How often a bar redraws, at most.
const TICK: Duration = Duration::from_millis(100);

/// Whether bars are drawn at all: only on a terminal.
pub(crate) fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `len` steps named `prefix` ("%px" style: `prefix: 42%|███   | 4/10 [..]`),
/// or a hidden one when stderr is not a terminal.
pub(crate) fn bar(len: u64, prefix: &str, unit: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10));
    let template = format!("{{prefix}}: {{percent:>3}}%|{{wide_bar}}| {{pos}}/{{len}} {unit} [{{elapsed}}<{{eta}}, {{msg}}]");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    bar.set_prefix(prefix.to_string());
    bar
}

/// Draws a bar until every one of `futures` has ended (well or not), then leaves it
/// at 100%. Nothing is drawn when stderr is not a terminal, but it still waits.
///
/// ```ignore
/// # #[chorus::remote] fn inc(x: i64) -> i64 { x + 1 }
/// # fn main() -> chorus::Result<()> {
/// let cluster = chorus::LocalCluster::new()?;
/// let client = cluster.client();
/// let futures = client.map(inc, 0..10_000i64);
/// chorus::progress(&futures); // progress: 100%|██████████| 10000/10000 tasks [00:01<00:00, 9.8k/s]
/// # Ok(()) }
/// ```
pub fn progress<T>(futures: &[Future<T>]) {
    let bar = bar(futures.len() as u64, "progress", "tasks");
    follow(&bar, futures, "tasks");
}

/// Moves `bar` as `futures` end, with their rate, and ends its line.
pub(crate) fn follow<T>(bar: &ProgressBar, futures: &[Future<T>], unit: &str) {
    let started = Instant::now();
    wait_all(futures, |done| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{rate:.0} {unit}/s"));
        bar.set_position(done);
    });
    bar.finish();
    if !bar.is_hidden() {
        eprintln!();
    }
}

/// Waits until all of `futures` ended, telling `step` how many have, at most every
/// [`TICK`].
fn wait_all<T>(futures: &[Future<T>], mut step: impl FnMut(u64)) {
    let Some(first) = futures.first() else { return };
    let client = first.handle.client.clone();
    let mut pending: Vec<usize> = (0..futures.len()).collect();
    let mut mail = client.mail.lock();
    loop {
        pending.retain(|i| matches!(mail.slots.get(&futures[*i].handle.id), Some(Slot::Pending)));
        step((futures.len() - pending.len()) as u64);
        if pending.is_empty() || mail.closed.is_some() {
            return;
        }
        // Results arrive in batches: let them pile up until the next redraw, unless
        // every future of the client has ended.
        let next = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if now >= next || mail.pending == 0 || mail.closed.is_some() {
                break;
            }
            mail = client.mail.cv.wait_timeout(mail, next - now).expect("client state lock").0;
        }
    }
}
