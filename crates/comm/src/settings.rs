//! Every `CHORUS_*` environment variable, read once and checked in one place.
//!
//! [`settings()`] reads them all the first time it is called and keeps the result for
//! the life of the process; every layer (transport, launch, tasks, frames) takes its
//! settings from there. A value that does not parse is an error that names the variable,
//! the value and what is accepted — never silently replaced by a default. [`VARIABLES`]
//! lists them with their meaning; the README's table is that list.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::link::TransportPreference;
use crate::tls::TlsMode;
use crate::{Error, Result};

/// The settings of this process (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `CHORUS_PROCS`: processes for a program started directly (at least 1).
    pub procs: Option<usize>,
    /// `CHORUS_RANK`: this process's rank, set by `chorus run` and self-spawn.
    pub rank: Option<usize>,
    /// `CHORUS_SIZE`: the job's size, set with `CHORUS_RANK`.
    pub size: Option<usize>,
    /// `CHORUS_COORDINATOR`: `host:port` where rank 0 serves the rendezvous.
    pub coordinator: Option<String>,
    /// `CHORUS_SECRET`: the job or cluster secret, 64 hex digits (checked here).
    pub secret_hex: Option<String>,
    /// `CHORUS_SECRET_FILE`: a 0600 file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// `CHORUS_TRANSPORT`: `auto` or `shm` (shared memory between ranks on one host, TCP
    /// otherwise), `unix` (Unix sockets on one host) or `tcp` (TCP everywhere).
    pub transport: TransportPreference,
    /// `CHORUS_SINGLE_COPY`: `auto` (large messages between processes of one host are
    /// copied once, straight between their memories, where the kernel allows it) or `off`
    /// (they stream through shared memory in two copies).
    pub single_copy: SingleCopy,
    /// `CHORUS_SHM_RING`: bytes per direction of each shared-memory ring (a power of two,
    /// 4 KiB to 1 GiB); by default 2 MiB, less when many ranks share a host.
    pub shm_ring: Option<usize>,
    /// `CHORUS_TLS`: `auto` (TLS on every TCP connection that leaves the host), `on`
    /// (on every TCP connection, loopback too) or `off`.
    pub tls: TlsMode,
    /// `CHORUS_CONNECT_TIMEOUT`: how long ranks wait for each other at start-up.
    pub connect_timeout: Option<Duration>,
    /// `CHORUS_WARN_AFTER`: a call waiting this long logs whom it waits for.
    pub warn_after: Option<Duration>,
    /// `CHORUS_SPIN_US`: how long a waiting call polls before it sleeps, in µs (ranks'
    /// calls and the task layer's waits alike).
    pub spin_us: Option<u64>,
    /// `CHORUS_MAX_OBJECT`: the largest value a process accepts, in bytes.
    pub max_object: Option<u64>,
    /// `CHORUS_SEND_BUDGET`: bytes the scheduler queues for a peer that does not read.
    pub send_budget: Option<u64>,
    /// `CHORUS_FRAME_THREADS`: query threads per rank for DataFrames (at least 1).
    pub frame_threads: Option<usize>,
    /// `CHORUS_FRAME_MEMORY_LIMIT`: bytes each rank's DataFrame queries may hold (a
    /// size, or `none` for no limit, kept as `u64::MAX`).
    pub frame_memory_limit: Option<u64>,
    /// `CHORUS_DASHBOARD`: where a local cluster serves its dashboard.
    pub dashboard: DashboardSetting,
    /// `CHORUS_TRACE`: a file a local cluster writes its task stream to, as a Chrome
    /// trace, when it stops.
    pub trace: Option<PathBuf>,
    /// `CHORUS_PROGRESS`: draw a start-up bar of the ranks as they join a self-spawned
    /// job (`1`/`on`), as `chorus run --progress` does; only on a terminal.
    pub progress: bool,
    /// `CHORUS_RANK_STATE_DIR`: where each rank writes what it is doing, for the
    /// launcher's dashboard (set by `chorus run --dashboard`).
    pub rank_state_dir: Option<PathBuf>,
    /// The `CHORUS_WORKER_*` variables a cluster starts its worker processes with.
    pub worker: WorkerSettings,
}

/// Where a cluster serves its dashboard (`CHORUS_DASHBOARD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DashboardSetting {
    /// `auto` (the default): `127.0.0.1:8787`, or the next free port.
    #[default]
    Default,
    /// `off`: no dashboard.
    Off,
    /// `HOST:PORT`, `:PORT` or `PORT` (loopback): exactly there.
    At(std::net::SocketAddr),
}

impl DashboardSetting {
    /// Parses a `CHORUS_DASHBOARD` or `--dashboard` value.
    pub fn parse(name: &str, value: &str) -> Result<DashboardSetting> {
        let v = value.trim();
        match v {
            "auto" | "" => return Ok(DashboardSetting::Default),
            "off" | "none" => return Ok(DashboardSetting::Off),
            _ => {}
        }
        if let Ok(port) = v.trim_start_matches(':').parse::<u16>() {
            return Ok(DashboardSetting::At(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
        }
        use std::net::ToSocketAddrs;
        v.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(DashboardSetting::At)
            .ok_or_else(|| invalid(name, value, "auto, off, HOST:PORT, :PORT or PORT"))
    }
}

/// What a cluster tells the worker processes it starts.
#[derive(Debug, Clone, Default)]
pub struct WorkerSettings {
    /// `CHORUS_WORKER_SCHEDULER`: the scheduler's address; its presence makes
    /// `#[chorus::main]` run the worker loop instead of the program.
    pub scheduler: Option<String>,
    /// `CHORUS_WORKER_NTHREADS`: threads that run tasks (at least 1).
    pub nthreads: Option<u32>,
    /// `CHORUS_WORKER_MEMORY_LIMIT`: bytes; above 80% of it no task starts.
    pub memory_limit: Option<u64>,
    /// `CHORUS_WORKER_RESOURCES`: custom resources, `NAME=AMOUNT,…` (parsed by the task
    /// layer).
    pub resources: Option<String>,
    /// `CHORUS_WORKER_LISTEN`: the IP address the worker's data server binds.
    pub listen: Option<String>,
    /// `CHORUS_WORKER_SPILL_DIR`: where the worker makes its spill directory.
    pub spill_dir: Option<PathBuf>,
    /// `CHORUS_WORKER_MAX_SPILL`: bytes the worker may spill at most.
    pub max_spill: Option<u64>,
}

/// Whether large messages between processes of one host may be copied once, straight
/// from one's memory into the other's (`CHORUS_SINGLE_COPY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SingleCopy {
    /// Where the kernel allows it (`process_vm_readv` between the two processes).
    #[default]
    Auto,
    /// Never: large messages stream through shared memory, in two copies made at once by
    /// the two sides.
    Off,
}

/// Every variable: its name and what it sets.
pub const VARIABLES: &[(&str, &str)] = &[
    ("CHORUS_PROCS", "processes for a program started directly (overrides `WorldBuilder::procs`)"),
    ("CHORUS_RANK", "this process's rank; set by `chorus run` and self-spawn"),
    ("CHORUS_SIZE", "the job's size; set by `chorus run` and self-spawn"),
    ("CHORUS_COORDINATOR", "`HOST:PORT` where rank 0 serves the rendezvous (under `mpiexec`/`srun`)"),
    ("CHORUS_SECRET", "the job or cluster secret, 64 hex digits"),
    ("CHORUS_SECRET_FILE", "a 0600 file holding the secret"),
    ("CHORUS_TRANSPORT", "`auto` or `shm` (default: shared memory between processes on one host, for ranks and for task objects), `unix` (Unix sockets only), or `tcp` everywhere"),
    ("CHORUS_SINGLE_COPY", "`auto` (default: large messages between processes of one host are copied once, from one's memory into the other's, where the kernel allows it) or `off` (two copies through shared memory, both sides copying at once)"),
    ("CHORUS_TLS", "`auto` (default: TLS on every TCP connection between hosts), `on` (loopback TCP too), or `off`"),
    ("CHORUS_CONNECT_TIMEOUT", "seconds ranks wait for each other at start-up (60)"),
    ("CHORUS_WARN_AFTER", "seconds a call waits before it logs whom it waits for (60)"),
    ("CHORUS_SPIN_US", "microseconds a waiting call polls before it sleeps: a rank's (50, or 200 when ranks share cores), and the task layer's idle workers, scheduler and drivers (50); 0 never polls"),
    ("CHORUS_DASHBOARD", "where a local cluster serves its dashboard: `auto` (default: 127.0.0.1:8787 or the next free port), `off`, or `HOST:PORT`"),
    ("CHORUS_TRACE", "a file a local cluster writes its task stream to when it stops, as a Chrome trace (Perfetto opens it)"),
    ("CHORUS_PROGRESS", "`1` or `on`: a program that starts its own ranks draws `ranks started: N/M` on a terminal (`0`/`off`, the default: none)"),
    ("CHORUS_RANK_STATE_DIR", "where each rank writes what it is doing, for `chorus run --dashboard` (set by `chorus run`)"),
    ("CHORUS_MAX_OBJECT", "the largest value (argument, result, scattered object) a process accepts; a size (half the memory)"),
    ("CHORUS_SEND_BUDGET", "bytes the scheduler queues for a peer that stops reading before it drops it; a size (256MiB)"),
    ("CHORUS_FRAME_THREADS", "DataFrame query threads per rank (the cores divided among the ranks)"),
    ("CHORUS_FRAME_MEMORY_LIMIT", "bytes each rank's DataFrame queries may hold before they spill; a size, or `none` (half the rank's share of memory)"),
    ("CHORUS_WORKER_SCHEDULER", "set by clusters for their workers: the scheduler's address"),
    ("CHORUS_WORKER_NTHREADS", "set by clusters for their workers: threads that run tasks"),
    ("CHORUS_WORKER_MEMORY_LIMIT", "set by clusters for their workers: memory limit in bytes"),
    ("CHORUS_WORKER_RESOURCES", "set by clusters for their workers: `NAME=AMOUNT,…`"),
    ("CHORUS_WORKER_LISTEN", "set by clusters for their workers: the IP their data server binds"),
    ("CHORUS_WORKER_SPILL_DIR", "set by clusters for their workers: where each makes its spill directory (`worker-PID`)"),
    ("CHORUS_WORKER_MAX_SPILL", "set by clusters for their workers: bytes each may spill to disk at most"),
];

/// The settings of this process, read from the environment the first time.
pub fn settings() -> Result<&'static Settings> {
    static SETTINGS: OnceLock<std::result::Result<Settings, String>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| Settings::from_env().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Config(e.clone()))
}

impl Settings {
    /// Reads and checks every variable now (see [`settings()`] for the kept copy).
    pub fn from_env() -> Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the environment, or a table in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let count = |name: &str| get(name).map(|v| parse_count(name, &v)).transpose();
        let seconds = |name: &str| get(name).map(|v| parse_seconds(name, &v)).transpose();
        let size = |name: &str| get(name).map(|v| parse_size(name, &v)).transpose();
        let secret_hex = get("CHORUS_SECRET");
        if let Some(hex) = &secret_hex {
            let h = hex.trim();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("CHORUS_SECRET", "<hidden>", "64 hex digits (`chorus` makes one per job or cluster)"));
            }
        }
        let transport = match get("CHORUS_TRANSPORT").as_deref().map(str::trim) {
            None | Some("auto") | Some("shm") => TransportPreference::Auto,
            Some("unix") => TransportPreference::Unix,
            Some("tcp") => TransportPreference::Tcp,
            Some(other) => return Err(invalid("CHORUS_TRANSPORT", other, "auto, shm, unix or tcp")),
        };
        let single_copy = match get("CHORUS_SINGLE_COPY").as_deref().map(str::trim) {
            None | Some("auto") => SingleCopy::Auto,
            Some("off") => SingleCopy::Off,
            Some(other) => return Err(invalid("CHORUS_SINGLE_COPY", other, "auto or off")),
        };
        let tls = match get("CHORUS_TLS").as_deref().map(str::trim) {
            None | Some("auto") => TlsMode::Auto,
            Some("on") => TlsMode::On,
            Some("off") => TlsMode::Off,
            Some(other) => return Err(invalid("CHORUS_TLS", other, "auto, on or off")),
        };
        let shm_ring = get("CHORUS_SHM_RING")
            .map(|v| match usize::try_from(parse_size("CHORUS_SHM_RING", &v)?) {
                Ok(n) if n.is_power_of_two() && (4 << 10..=1 << 30).contains(&n) => Ok(n),
                _ => Err(invalid("CHORUS_SHM_RING", &v, "a power of two from 4KiB to 1GiB")),
            })
            .transpose()?;
        let procs = count("CHORUS_PROCS")?;
        let rank = get("CHORUS_RANK").map(|v| parse_index("CHORUS_RANK", &v)).transpose()?;
        let spin_us = get("CHORUS_SPIN_US")
            .map(|v| v.trim().parse::<u64>().map_err(|_| invalid("CHORUS_SPIN_US", &v, "a whole number of microseconds")))
            .transpose()?;
        let nthreads = count("CHORUS_WORKER_NTHREADS")?
            .map(|n| u32::try_from(n).map_err(|_| invalid("CHORUS_WORKER_NTHREADS", &n.to_string(), "at most 4294967295")))
            .transpose()?;
        let memory_limit = get("CHORUS_WORKER_MEMORY_LIMIT")
            .map(|v| v.trim().parse::<u64>().map_err(|_| invalid("CHORUS_WORKER_MEMORY_LIMIT", &v, "a number of bytes (0 for none)")))
            .transpose()?;
        Ok(Settings {
            procs,
            rank,
            size: count("CHORUS_SIZE")?,
            coordinator: get("CHORUS_COORDINATOR"),
            secret_hex,
            secret_file: get("CHORUS_SECRET_FILE").map(PathBuf::from),
            transport,
            single_copy,
            shm_ring,
            tls,
            connect_timeout: seconds("CHORUS_CONNECT_TIMEOUT")?,
            warn_after: seconds("CHORUS_WARN_AFTER")?,
            spin_us,
            max_object: size("CHORUS_MAX_OBJECT")?,
            send_budget: size("CHORUS_SEND_BUDGET")?,
            frame_threads: count("CHORUS_FRAME_THREADS")?,
            frame_memory_limit: match get("CHORUS_FRAME_MEMORY_LIMIT") {
                Some(v) if v.trim() == "none" => Some(u64::MAX),
                other => other.map(|v| parse_size("CHORUS_FRAME_MEMORY_LIMIT", &v)).transpose()?,
            },
            progress: match get("CHORUS_PROGRESS").as_deref().map(str::trim) {
                None | Some("0" | "off" | "false" | "no") => false,
                Some("1" | "on" | "true" | "yes") => true,
                Some(other) => return Err(invalid("CHORUS_PROGRESS", other, "1, on, 0 or off")),
            },
            rank_state_dir: get("CHORUS_RANK_STATE_DIR").map(PathBuf::from),
            trace: get("CHORUS_TRACE").map(PathBuf::from),
            dashboard: get("CHORUS_DASHBOARD")
                .map(|v| DashboardSetting::parse("CHORUS_DASHBOARD", &v))
                .transpose()?
                .unwrap_or_default(),
            worker: WorkerSettings {
                scheduler: get("CHORUS_WORKER_SCHEDULER"),
                nthreads,
                memory_limit,
                resources: get("CHORUS_WORKER_RESOURCES"),
                listen: get("CHORUS_WORKER_LISTEN"),
                spill_dir: get("CHORUS_WORKER_SPILL_DIR").map(PathBuf::from),
                max_spill: size("CHORUS_WORKER_MAX_SPILL")?,
            },
        })
    }
}

fn invalid(name: &str, value: &str, accepted: &str) -> Error {
    Error::Config(format!("{name}={value:?} is not valid: expected {accepted}"))
}

/// A positive whole number.
fn parse_count(name: &str, value: &str) -> Result<usize> {
    value.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| invalid(name, value, "a positive whole number"))
}

/// A whole number from 0.
fn parse_index(name: &str, value: &str) -> Result<usize> {
    value.trim().parse::<usize>().map_err(|_| invalid(name, value, "a whole number"))
}

/// A positive number of seconds, fractions allowed.
fn parse_seconds(name: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| invalid(name, value, "a positive number of seconds"))
}

/// Parses `123`, `64MiB`, `1.5GB`, `500k` (k, M, G, T are powers of 1000, with `B` or
/// alone; Ki, Mi, Gi, Ti powers of 1024).
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
        Err(invalid(name, value, "a size in bytes, optionally with a unit (64MiB, 2GiB, 500kB)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Settings> {
        Settings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn good_values_parse_and_unset_ones_are_none() {
        let s = with(&[
            ("CHORUS_PROCS", "4"),
            ("CHORUS_TLS", "off"),
            ("CHORUS_CONNECT_TIMEOUT", "2.5"),
            ("CHORUS_DASHBOARD", ":9999"),
            ("CHORUS_MAX_OBJECT", "64MiB"),
            ("CHORUS_TRANSPORT", "tcp"),
            ("CHORUS_SPIN_US", "0"),
            ("CHORUS_FRAME_MEMORY_LIMIT", "2GiB"),
        ])
        .unwrap();
        assert_eq!(s.procs, Some(4));
        assert_eq!(s.dashboard, DashboardSetting::At(std::net::SocketAddr::from(([127, 0, 0, 1], 9999))));
        assert_eq!(with(&[("CHORUS_DASHBOARD", "off")]).unwrap().dashboard, DashboardSetting::Off);
        assert_eq!(with(&[]).unwrap().dashboard, DashboardSetting::Default);
        assert_eq!(s.connect_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.max_object, Some(64 << 20));
        assert_eq!(s.transport, TransportPreference::Tcp);
        assert_eq!(s.tls, TlsMode::Off);
        assert_eq!(s.single_copy, SingleCopy::Auto);
        assert_eq!(with(&[("CHORUS_SINGLE_COPY", "off")]).unwrap().single_copy, SingleCopy::Off);
        assert_eq!(s.spin_us, Some(0));
        assert_eq!(s.frame_memory_limit, Some(2 << 30));
        assert_eq!(with(&[("CHORUS_FRAME_MEMORY_LIMIT", "none")]).unwrap().frame_memory_limit, Some(u64::MAX));
        assert!(s.send_budget.is_none() && s.coordinator.is_none() && s.worker.scheduler.is_none());
        assert_eq!(parse_size("X", "1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("X", " 2 GiB ").unwrap(), 2 << 30);
    }

    /// `CHORUS_SPIN_US=abc` and a bad worker transport used to be ignored silently.
    #[test]
    fn bad_values_are_errors_that_name_the_variable_the_value_and_what_is_accepted() {
        for (name, value, accepted) in [
            ("CHORUS_SPIN_US", "abc", "microseconds"),
            ("CHORUS_TRANSPORT", "ib", "auto, shm, unix or tcp"),
            ("CHORUS_SHM_RING", "3000", "a power of two"),
            ("CHORUS_SHM_RING", "8GiB", "a power of two"),
            ("CHORUS_PROCS", "0", "positive whole number"),
            ("CHORUS_PROCS", "many", "positive whole number"),
            ("CHORUS_TLS", "yes", "auto, on or off"),
            ("CHORUS_SINGLE_COPY", "no", "auto or off"),
            ("CHORUS_CONNECT_TIMEOUT", "-1", "seconds"),
            ("CHORUS_MAX_OBJECT", "12 parsecs", "64MiB"),
            ("CHORUS_MAX_OBJECT", "0", "a size"),
            ("CHORUS_DASHBOARD", "everywhere", "auto, off, HOST:PORT"),
            ("CHORUS_SECRET", "abc", "64 hex digits"),
            ("CHORUS_FRAME_THREADS", "0", "positive whole number"),
            ("CHORUS_FRAME_MEMORY_LIMIT", "lots", "2GiB"),
            ("CHORUS_WORKER_MEMORY_LIMIT", "lots", "bytes"),
        ] {
            let e = with(&[(name, value)]).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(accepted), "{name}={value}: {e}");
            if name != "CHORUS_SECRET" {
                assert!(e.contains(value), "{e}");
            }
        }
        let e = with(&[("CHORUS_SECRET", "00ff")]).unwrap_err().to_string();
        assert!(!e.contains("00ff"), "a secret is never printed: {e}");
    }
}
