//! Kernel states as the engine last saw them: the `kernels{state}` gauges, `server_status`'s
//! kernels by state, and the `kernel` events of SPEC §7, all fed from one call,
//! [`Engine::kernel_state`], at the few places a state changes (launch, IOPub `status` of an
//! execution, restart, shutdown, death, the warm pool).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Engine;
use crate::events::Event;

/// States that end a kernel: it stops being counted.
const ENDED: [&str; 3] = ["dead", "shutdown", "restarting"];

/// Kernel id (its `kernel_sessions` row id) -> counted state and since when.
#[derive(Default)]
pub struct KernelStates {
    map: Mutex<HashMap<String, (&'static str, Instant)>>,
}

impl KernelStates {
    /// Moves kernel `id` to `state`; an ending state removes it. Updates the gauges.
    fn set(&self, id: &str, state: &str) {
        let m = crate::metrics::execution();
        let Ok(mut map) = self.map.lock() else { return };
        let counted = crate::metrics::KERNEL_STATES
            .iter()
            .find(|s| **s == state && !ENDED.contains(s))
            .copied();
        let before = map.get(id).map(|(s, _)| *s);
        if before == counted {
            return;
        }
        match counted {
            Some(s) => map.insert(id.to_string(), (s, Instant::now())),
            None => map.remove(id),
        };
        if let Some(g) = before.and_then(|b| m.kernels_of(b)) {
            g.dec();
        }
        if let Some(g) = counted.and_then(|s| m.kernels_of(s)) {
            g.inc();
        }
    }

    /// Moves kernel `kernel_id` of `notebook` to `state` and publishes the `kernel` event
    /// (none for `pool`: a pool kernel belongs to no notebook yet).
    pub fn report(
        &self,
        events: &crate::events::EventHub,
        notebook: &str,
        kernel_id: &str,
        state: &str,
        pid: Option<u32>,
    ) {
        self.set(kernel_id, state);
        if state != "pool" {
            events.publish_with(|| Event::kernel(notebook, state, pid));
        }
    }

    /// Counts kernel `id` as `starting` when fewer than `limit` kernels are counted now (all
    /// states but the ending ones, the warm pool's included): the check and the count happen
    /// under one lock, so two starts racing for the last slot cannot both win. `Err(n)`: `n`
    /// kernels are counted, nothing changed. No event is published (the caller reports
    /// `starting` itself once it wins, which is then a no-op on the count).
    pub fn try_start(&self, id: &str, limit: usize) -> Result<(), usize> {
        let m = crate::metrics::execution();
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        if map.contains_key(id) {
            return Ok(());
        }
        if map.len() >= limit {
            return Err(map.len());
        }
        map.insert(id.to_string(), ("starting", Instant::now()));
        if let Some(g) = m.kernels_of("starting") {
            g.inc();
        }
        Ok(())
    }

    /// Stops counting kernel `id` (it ended; whoever ended it reported that).
    pub fn forget(&self, id: &str) {
        self.set(id, "shutdown");
    }

    /// How long kernel `id` has been `idle` (since its last state change), or `None` when
    /// it is in another state or not counted.
    pub fn idle_for(&self, id: &str) -> Option<Duration> {
        let map = self.map.lock().ok()?;
        match map.get(id)? {
            ("idle", since) => Some(since.elapsed()),
            _ => None,
        }
    }

    /// Kernels by counted state.
    pub fn by_state(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(map) = self.map.lock() {
            for (s, _) in map.values() {
                *out.entry(s.to_string()).or_default() += 1;
            }
        }
        out
    }
}

impl Engine {
    /// Records that kernel `kernel_id` of `notebook` is now in `state` (`starting`, `idle`,
    /// `busy`, `pool`, or the ending `restarting`, `shutdown`, `dead`) and publishes the
    /// `kernel` event. Cheap: one short lock, no allocation without subscribers.
    pub(crate) fn kernel_state(
        &self,
        notebook: &str,
        kernel_id: &str,
        state: &str,
        pid: Option<u32>,
    ) {
        self.kernel_states()
            .report(self.events(), notebook, kernel_id, state, pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_and_end() {
        let k = KernelStates::default();
        k.set("a", "starting");
        k.set("b", "pool");
        assert_eq!(k.by_state().get("starting"), Some(&1));
        k.set("a", "idle");
        k.set("a", "busy");
        assert_eq!(k.by_state().get("busy"), Some(&1));
        assert_eq!(k.by_state().get("idle"), None);
        k.set("a", "dead");
        k.set("b", "shutdown");
        assert!(k.by_state().is_empty());
    }

    #[test]
    fn try_start_counts_every_live_kernel_against_the_limit() {
        let k = KernelStates::default();
        k.set("pool-1", "pool");
        assert_eq!(k.try_start("a", 2), Ok(()));
        assert_eq!(k.try_start("b", 2), Err(2), "the pool kernel counts");
        assert_eq!(
            k.try_start("a", 2),
            Ok(()),
            "a kernel already counted passes"
        );
        k.set("a", "dead");
        assert_eq!(
            k.try_start("b", 2),
            Ok(()),
            "an ended kernel frees its slot"
        );
        assert_eq!(k.by_state().get("starting"), Some(&1));
    }
}
