//! Settings of the task layer that come from the environment, read and checked in one
//! place. A value that does not parse is an error naming the variable, the value and
//! what is accepted; it is never ignored.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CHORUS_MAX_OBJECT` | the largest value (argument, result, scattered object) a process accepts | half the machine's memory |
//! | `CHORUS_SEND_BUDGET` | bytes the scheduler queues for one peer that is not reading before it drops that peer | 256 MiB |
//!
//! Sizes are bytes, optionally with a unit: `64MiB`, `2GiB`, `500kB`, `1.5GB`.

use std::sync::OnceLock;

use crate::{Error, Result};

/// Variable: the largest value a process accepts.
pub const MAX_OBJECT_ENV: &str = "CHORUS_MAX_OBJECT";
/// Variable: the scheduler's outgoing queue limit per peer.
pub const SEND_BUDGET_ENV: &str = "CHORUS_SEND_BUDGET";

/// Sizes that bound what one value or one peer may cost a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value accepted, in bytes: a larger argument, result or scattered
    /// value fails its own future with [`FailureKind::TooLarge`](crate::tasks::FailureKind::TooLarge).
    pub max_object: u64,
    /// Bytes the scheduler queues for one connection whose peer does not read; past it
    /// the peer is dropped with a reason, and nobody else waits for it.
    pub send_budget: usize,
}

/// By-value arguments larger than this stay in the driver's object store, and the
/// worker that runs the task fetches them from there.
pub const STORE_ARGS_ABOVE: usize = 1 << 20;
/// A by-value argument larger than this prints a warning, once per client, suggesting
/// `scatter`.
pub const WARN_ARGS_ABOVE: usize = 64 << 20;

impl Limits {
    /// The limits set in the environment, with the defaults for the others.
    pub fn from_env() -> Result<Limits> {
        let max_object = match var(MAX_OBJECT_ENV) {
            Some(v) => parse_size(MAX_OBJECT_ENV, &v)?,
            None => total_memory() / 2,
        };
        let send_budget = match var(SEND_BUDGET_ENV) {
            Some(v) => parse_size(SEND_BUDGET_ENV, &v)? as usize,
            None => 256 << 20,
        };
        Ok(Limits { max_object, send_budget })
    }

    /// The limits of this process, read once.
    pub fn get() -> Result<Limits> {
        static LIMITS: OnceLock<std::result::Result<Limits, String>> = OnceLock::new();
        LIMITS
            .get_or_init(|| Limits::from_env().map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Config)
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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `123`, `64MiB`, `1.5GB`, `500k` (k, M, G, T are powers of 1000 with `B` or
/// alone; Ki, Mi, Gi, Ti of 1024).
pub fn parse_size(name: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "kB" | "K" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "T" | "TB" => 1e12,
        "Ki" | "KiB" => 1024.0,
        "Mi" | "MiB" => 1048576.0,
        "Gi" | "GiB" => 1073741824.0,
        "Ti" | "TiB" => 1099511627776.0,
        _ => f64::NAN,
    };
    let n: f64 = num.parse().unwrap_or(f64::NAN) * scale;
    if n.is_finite() && n >= 1.0 && n < u64::MAX as f64 {
        Ok(n as u64)
    } else {
        Err(Error::Config(format!(
            "{name}={value:?} is not a size: give bytes, optionally with a unit (64MiB, 2GiB, 500kB)"
        )))
    }
}

/// `1.5 GiB`, `12 MiB`, `300 B`.
pub(crate) fn human(bytes: u64) -> String {
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
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The machine's memory, from /proc/meminfo (16 GiB when it cannot be read).
fn total_memory() -> u64 {
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
    fn sizes_parse_with_units_and_bad_ones_say_what_is_accepted() {
        assert_eq!(parse_size("X", "123").unwrap(), 123);
        assert_eq!(parse_size("X", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("X", "1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("X", " 2 GiB ").unwrap(), 2 << 30);
        for bad in ["", "lots", "-1", "0", "12 parsecs", "1e999"] {
            let e = parse_size("CHORUS_MAX_OBJECT", bad).unwrap_err().to_string();
            assert!(e.contains("CHORUS_MAX_OBJECT") && e.contains("64MiB"), "{e}");
        }
        assert_eq!(human(300), "300 B");
        assert_eq!(human(100 << 20), "100.0 MiB");
    }
}
