//! Diagnostics: chorus's warnings and errors go through `tracing`.
//!
//! [`init_logging`] (called by `#[chorus::main]` and the `chorus` command) installs one
//! subscriber that writes to stderr, filtered by `RUST_LOG` (default: warnings and
//! errors), each line tagged with what this process is — `[rank 2]`, `[worker 3]`,
//! `[scheduler]`, `[driver]` — so that lines forwarded from many processes say where
//! they come from. A program that installs a subscriber of its own gets chorus's events
//! there instead; one that installs none still sees warnings and errors on stderr, in
//! the same format.

use std::sync::RwLock;

static TAG: RwLock<String> = RwLock::new(String::new());

/// This host's name, for people (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// The time now, in microseconds since the Unix epoch: what task timings, dashboards
/// and traces are stamped with.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Names this process in its log lines ("rank 2", "worker 3", "scheduler"…). The
/// latest call wins.
pub fn set_process_tag(tag: impl Into<String>) {
    *TAG.write().unwrap_or_else(|p| p.into_inner()) = tag.into();
}

/// Names this process unless something already did (a worker that joins an SPMD job
/// stays "worker 3").
pub fn set_process_tag_if_unnamed(tag: impl Into<String>) {
    let mut t = TAG.write().unwrap_or_else(|p| p.into_inner());
    if t.is_empty() || *t == "driver" {
        *t = tag.into();
    }
}

fn tag() -> String {
    let t = TAG.read().unwrap_or_else(|p| p.into_inner());
    if t.is_empty() {
        format!("pid {}", std::process::id())
    } else {
        t.clone()
    }
}

/// Says something a person starting the program wants to know (a dashboard's link):
/// through the log when it shows `info` messages, else on stderr.
pub fn info(message: &str) {
    if tracing::dispatcher::has_been_set() && tracing::enabled!(target: "chorus", tracing::Level::INFO) {
        tracing::info!(target: "chorus", "{message}");
    } else {
        eprintln!("[{}] chorus: {message}", tag());
    }
}

/// Emits a warning.
pub fn warn(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(target: "chorus", "{message}");
    } else {
        eprintln!("[{}] WARN chorus: {message}", tag());
    }
}

/// Emits an error (for failures that end a process or a connection).
pub fn error(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::error!(target: "chorus", "{message}");
    } else {
        eprintln!("[{}] ERROR chorus: {message}", tag());
    }
}

/// Installs the subscriber described in the module documentation, unless the program
/// installed one already. `tag` names this process until [`set_process_tag`] changes it.
pub fn init_logging(tag: &str) {
    set_process_tag(tag);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Tagged)
        .try_init();
}

/// `[tag] LEVEL target: message`.
struct Tagged;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Tagged
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        write!(writer, "[{}] {} {}: ", tag(), meta.level(), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
