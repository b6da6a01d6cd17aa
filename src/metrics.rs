//! Prometheus metrics (prometheus-client): one process-wide [`Registry`] and typed handles to
//! the metrics the server records. The `/metrics` HTTP endpoint (daemon mode, SPEC §7) renders
//! [`encode_text`]. Other modules register their own metrics with [`register`] (the HTTP layer
//! registers `mcp_sessions` that way).
//!
//! Every handle is an atomic (`Counter`, `Gauge`) or a histogram behind the crate's own small
//! lock; label families are resolved to handles once, at start, so recording takes no map
//! lookup. SPEC §7 names registered here: the checkpoint metrics, `executions_total{status}`,
//! `execution_duration_seconds`, `execution_queue_depth`, `kernels{state}`, `events_clients`,
//! `events_dropped_total`, `storage_breaker_open` (plus `events_disconnected_total`).
//!
//! Names follow SPEC §7. A counter is registered without its `_total` suffix: the text
//! encoder appends it (`security_signature_failures` is exposed as
//! `security_signature_failures_total`).

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::store::Status;

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

/// Terminal execution states, in the order of [`ExecutionMetrics::total`].
pub const TERMINAL: [Status; 4] = [
    Status::Completed,
    Status::Failed,
    Status::Cancelled,
    Status::Interrupted,
];

/// Kernel states counted by `kernels{state}`, in the order of [`ExecutionMetrics::kernels`].
/// `pool` counts the idle kernels of the warm pool (`--kernel-pool`), not yet any notebook's.
pub const KERNEL_STATES: [&str; 5] = ["starting", "idle", "busy", "dead", "pool"];

/// Handles to the execution and kernel metrics (SPEC §7).
pub struct ExecutionMetrics {
    /// `executions_total{status}`: executions that reached each terminal state, in the order
    /// of [`TERMINAL`].
    pub total: [Counter; 4],
    /// `execution_duration_seconds`: from `running` to the terminal state, of executions that
    /// reached a kernel.
    pub duration_seconds: Histogram,
    /// `execution_queue_depth`: executions `pending` in this process, all notebooks.
    pub queue_depth: Gauge,
    /// `kernels{state}`: kernels of this process by state, in the order of [`KERNEL_STATES`].
    pub kernels: [Gauge; 5],
}

impl ExecutionMetrics {
    /// The `executions_total` counter of a terminal `status` (`None` for a non-terminal one).
    pub fn total_of(&self, status: Status) -> Option<&Counter> {
        TERMINAL
            .iter()
            .position(|s| *s == status)
            .map(|i| &self.total[i])
    }

    /// The `kernels` gauge of `state` (`None` for a state not counted, e.g. `shutdown`).
    pub fn kernels_of(&self, state: &str) -> Option<&Gauge> {
        KERNEL_STATES
            .iter()
            .position(|s| *s == state)
            .map(|i| &self.kernels[i])
    }
}

/// Handles to the `/events` metrics (SPEC §7).
pub struct EventMetrics {
    /// `events_clients`: subscribers connected now.
    pub clients: Gauge,
    /// `events_dropped_total`: events lost by subscribers that fell behind.
    pub dropped: Counter,
    /// `events_disconnected_total`: subscribers disconnected for being too slow.
    pub disconnected: Counter,
}

/// Handles to the storage metrics (SPEC §7, §8).
pub struct StorageMetrics {
    /// `storage_breaker_open`: 1 while a storage breaker (data dir or root) is open; set by
    /// the storage probe after each round (`crate::storage`).
    pub breaker_open: Gauge,
}

struct Metrics {
    registry: Mutex<Registry>,
    checkpoint: CheckpointMetrics,
    execution: ExecutionMetrics,
    events: EventMetrics,
    storage: StorageMetrics,
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
        type Labels = [(&'static str, &'static str); 1];
        let executions_total = Family::<Labels, Counter>::default();
        let kernels = Family::<Labels, Gauge>::default();
        // Handles share their value with the family's entry (both are `Arc`s).
        let execution = ExecutionMetrics {
            total: TERMINAL.map(|s| {
                executions_total
                    .get_or_create(&[("status", s.as_str())])
                    .clone()
            }),
            // 1 ms .. ~4.6 h
            duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 24)),
            queue_depth: Gauge::default(),
            kernels: KERNEL_STATES.map(|s| kernels.get_or_create(&[("state", s)]).clone()),
        };
        registry.register(
            "executions",
            "Executions that reached a terminal state, by status",
            executions_total,
        );
        registry.register(
            "execution_duration_seconds",
            "Time from running to the terminal state of executions that reached a kernel",
            execution.duration_seconds.clone(),
        );
        registry.register(
            "execution_queue_depth",
            "Executions pending (queued, not yet sent to a kernel), all notebooks",
            execution.queue_depth.clone(),
        );
        registry.register("kernels", "Kernels of this server by state", kernels);
        let events = EventMetrics {
            clients: Gauge::default(),
            dropped: Counter::default(),
            disconnected: Counter::default(),
        };
        registry.register(
            "events_clients",
            "Subscribers of /events connected now",
            events.clients.clone(),
        );
        registry.register(
            "events_dropped",
            "Events lost by /events subscribers that fell behind",
            events.dropped.clone(),
        );
        registry.register(
            "events_disconnected",
            "/events subscribers disconnected for being too slow",
            events.disconnected.clone(),
        );
        let storage = StorageMetrics {
            breaker_open: Gauge::default(),
        };
        registry.register(
            "storage_breaker_open",
            "1 while a storage breaker (data dir or notebook root) is open (SPEC 8)",
            storage.breaker_open.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            checkpoint,
            execution,
            events,
            storage,
        }
    })
}

/// The checkpoint metrics.
pub fn checkpoint() -> &'static CheckpointMetrics {
    &metrics().checkpoint
}

/// The execution and kernel metrics.
pub fn execution() -> &'static ExecutionMetrics {
    &metrics().execution
}

/// The `/events` metrics.
pub fn events() -> &'static EventMetrics {
    &metrics().events
}

/// The storage metrics.
pub fn storage() -> &'static StorageMetrics {
    &metrics().storage
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
