//! Diagnostics that must reach a person even when the program installed no `tracing`
//! subscriber: they go to `tracing` when one is set, and to stderr otherwise.

/// Emits a warning.
pub fn warn(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        eprintln!("chorus: warning: {message}");
    }
}
