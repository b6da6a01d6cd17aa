//! Prometheus metrics (prometheus-client): one process-wide [`Registry`] and typed handles to
//! the metrics the server records. The `/metrics` HTTP endpoint arrives with daemon mode
//! (SPEC §7); it renders [`encode_text`]. Other modules register their own metrics with
//! [`register`].
//!
//! Names follow SPEC §7. A counter is registered without its `_total` suffix: the text
//! encoder appends it (`security_signature_failures` is exposed as
//! `security_signature_failures_total`).

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// Handles to the checkpoint metrics (SPEC §6, §7). Cloning a handle shares its value.
pub struct CheckpointMetrics {
    /// Seconds from `save_environment` call to committed files (kernel + server time).
    pub save_duration_seconds: Histogram,
    /// Seconds from `load_environment` call to restored variables (verification included).
    pub load_duration_seconds: Histogram,
    /// Size of each saved checkpoint data file in bytes.
    pub size_bytes: Histogram,
    /// Packages needed by a checkpoint's variables that the kernel still lacked at the end of
    /// the last `load_environment`.
    pub missing_dependencies_count: Gauge,
    /// Checkpoint files refused because a signature, digest, size or identity did not match.
    pub security_signature_failures: Counter,
}

struct Metrics {
    registry: Mutex<Registry>,
    checkpoint: CheckpointMetrics,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let checkpoint = CheckpointMetrics {
            // 10 ms .. ~1.5 h
            save_duration_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 20)),
            load_duration_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 20)),
            // 1 KiB .. 64 GiB
            size_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 14)),
            missing_dependencies_count: Gauge::default(),
            security_signature_failures: Counter::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "checkpoint_save_duration_seconds",
            "Time to save a checkpoint (kernel serialization plus server signing and writing)",
            checkpoint.save_duration_seconds.clone(),
        );
        registry.register(
            "checkpoint_load_duration_seconds",
            "Time to load a checkpoint (verification plus kernel restore)",
            checkpoint.load_duration_seconds.clone(),
        );
        registry.register(
            "checkpoint_size_bytes",
            "Size of saved checkpoint data files",
            checkpoint.size_bytes.clone(),
        );
        registry.register(
            "missing_dependencies_count",
            "Packages a checkpoint needs that the kernel lacked after the last load",
            checkpoint.missing_dependencies_count.clone(),
        );
        registry.register(
            "security_signature_failures",
            "Checkpoint files refused by signature, digest, size or identity checks",
            checkpoint.security_signature_failures.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            checkpoint,
        }
    })
}

/// The checkpoint metrics.
pub fn checkpoint() -> &'static CheckpointMetrics {
    &metrics().checkpoint
}

/// Registers another metric in the process-wide registry.
pub fn register(name: &str, help: &str, metric: impl Metric) {
    let mut registry = match metrics().registry.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    registry.register(name, help, metric);
}

/// The registry in the Prometheus / OpenMetrics text format.
pub fn encode_text() -> String {
    let registry = match metrics().registry.lock() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exposed_as_the_spec_says() {
        checkpoint().security_signature_failures.inc();
        checkpoint().size_bytes.observe(2048.0);
        let text = encode_text();
        for name in [
            "checkpoint_save_duration_seconds_bucket",
            "checkpoint_load_duration_seconds_count",
            "checkpoint_size_bytes_sum",
            "missing_dependencies_count ",
            "security_signature_failures_total ",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
