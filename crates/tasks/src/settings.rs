//! The size limits of the task layer, and how long it polls. They come from
//! [`chorus_comm::settings`], where every `CHORUS_*` variable is read and checked:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CHORUS_MAX_OBJECT` | the largest value (argument, result, scattered object) a process accepts | half the machine's memory |
//! | `CHORUS_SEND_BUDGET` | bytes the scheduler queues for one peer that is not reading before it drops that peer | 256 MiB |
//! | `CHORUS_SPIN_US` | microseconds an idle worker, the scheduler's reader of a worker and a driver awaiting a result poll before they sleep (0: never) | 50 |
//!
//! Sizes are bytes, optionally with a unit: `64MiB`, `2GiB`, `500kB`, `1.5GB`.

use std::time::Duration;

use crate::Result;

/// Variable: the largest value a process accepts.
pub const MAX_OBJECT_ENV: &str = "CHORUS_MAX_OBJECT";

/// Sizes that bound what one value or one peer may cost a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value accepted, in bytes: a larger argument, result or scattered
    /// value fails its own future with [`FailureKind::TooLarge`](crate::FailureKind::TooLarge).
    pub max_object: u64,
    /// Bytes the scheduler queues for one connection whose peer does not read; past it
    /// the peer is dropped with a reason, and nobody else waits for it.
    pub send_budget: usize,
    /// Whether large objects between processes of one host are copied once, from one
    /// process's memory into the other's (`process_vm_readv`), rather than streamed
    /// through their Unix socket: on unless `CHORUS_TRANSPORT` is `unix` or `tcp`, or
    /// `CHORUS_SINGLE_COPY` is `off`.
    pub same_host_copy: bool,
    /// How long a thread expecting a message soon polls for it before it sleeps: a
    /// worker with nothing to do, the scheduler's reader of a worker after one report,
    /// a driver awaiting one result ([`DEFAULT_SPIN`], or `CHORUS_SPIN_US`; zero never
    /// polls). A wake-up from sleep costs tens of microseconds on a virtual machine,
    /// more than a round trip's own work.
    pub spin: Duration,
}

/// How long the task layer polls before it sleeps unless `CHORUS_SPIN_US` says otherwise:
/// a round trip on one host takes less, and the wake-up it saves costs about as much.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// By-value arguments larger than this stay in the driver's object store, and the
/// worker that runs the task fetches them from there.
pub const STORE_ARGS_ABOVE: usize = 1 << 20;
/// A by-value argument larger than this prints a warning, once per client, suggesting
/// `scatter`.
pub const WARN_ARGS_ABOVE: usize = 64 << 20;

impl Limits {
    /// The limits of this process: those set in the environment, the defaults for the
    /// others.
    pub fn get() -> Result<Limits> {
        Ok(Limits::from_settings(chorus_comm::settings::settings()?))
    }

    /// The limits `s` sets, the defaults for the others.
    fn from_settings(s: &chorus_comm::settings::Settings) -> Limits {
        Limits {
            max_object: s.max_object.unwrap_or_else(|| total_memory() / 2),
            send_budget: s.send_budget.map_or(256 << 20, |b| b as usize),
            same_host_copy: s.transport == chorus_comm::TransportPreference::Auto
                && s.single_copy == chorus_comm::settings::SingleCopy::Auto,
            spin: s.spin_us.map_or(DEFAULT_SPIN, Duration::from_micros),
        }
    }

    /// What to say of a value of `size` bytes over [`max_object`](Limits::max_object).
    pub fn too_large(&self, size: u64) -> String {
        format!(
            "a value of {} is larger than the limit of {} ({MAX_OBJECT_ENV}); split it into parts, or raise the limit",
            human(size),
            human(self.max_object)
        )
    }
}

/// `1.5 GiB`, `12.0 MiB`, `300 B`.
pub(crate) fn human(bytes: u64) -> String {
    human_with(bytes, 1)
}

/// A size for people with `decimals` digits after the point: `18.63 GiB` for 2,
/// `300 B` below a KiB.
pub fn human_with(bytes: u64, decimals: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.decimals$} {}", UNITS[u])
    }
}

/// The machine's memory, from /proc/meminfo (16 GiB when it cannot be read).
pub(crate) fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(16 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(human(300), "300 B");
        assert_eq!(human(100 << 20), "100.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn chorus_spin_us_sets_how_long_the_task_layer_polls_and_zero_turns_it_off() {
        let limits = |vars: &[(&str, &str)]| {
            let s = chorus_comm::settings::Settings::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()));
            Limits::from_settings(&s.unwrap())
        };
        assert_eq!(limits(&[]).spin, DEFAULT_SPIN);
        assert_eq!(limits(&[("CHORUS_SPIN_US", "0")]).spin, Duration::ZERO);
        assert_eq!(limits(&[("CHORUS_SPIN_US", "300")]).spin, Duration::from_micros(300));
    }
}
