//! Kernel states as the engine last saw them: the `kernels{state}` gauges, `server_status`'s
//! kernels by state, and the `kernel` events of SPEC §7, all fed from one call,
//! [`Engine::kernel_state`], at the few places a state changes (launch, IOPub `status` of an
//! execution, restart, shutdown, death, the warm pool).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::Engine;
use crate::events::Event;

/// States that end a kernel: it stops being counted.
const ENDED: [&str; 3] = ["dead", "shutdown", "restarting"];

/// Kernel id (its `kernel_sessions` row id) -> counted state.
#[derive(Default)]
pub struct KernelStates {
    map: Mutex<HashMap<String, &'static str>>,
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
        let before = match counted {
            Some(s) => map.insert(id.to_string(), s),
            None => map.remove(id),
        };
        if before == counted {
            return;
        }
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

    /// Stops counting kernel `id` (it ended; whoever ended it reported that).
    pub fn forget(&self, id: &str) {
        self.set(id, "shutdown");
    }

    /// Kernels by counted state.
    pub fn by_state(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(map) = self.map.lock() {
            for s in map.values() {
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
}
