//! Kernel states as the engine last saw them: the `kernels{state}` gauges, `server_status`'s
//! kernels by state, and the `kernel` events of SPEC §7, all fed from one call,
//! [`Engine::kernel_state`], at the few places a state changes (launch, IOPub `status` of an
//! execution, restart, shutdown, death, the warm pool).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Engine;
use crate::events::Event;

/// States that end a kernel: it stops being counted, except `dead` (see [`KernelStates`]).
const ENDED: [&str; 3] = ["dead", "shutdown", "restarting"];

/// One counted kernel: its state, since when, and its notebook (empty until reported).
struct Entry {
    state: &'static str,
    since: Instant,
    notebook: String,
}

/// Kernel id (its `kernel_sessions` row id) -> counted state and since when.
///
/// A kernel that died on its own stays counted as `dead` (the `kernels{state="dead"}` gauge,
/// `server_status`) until its notebook starts another kernel; it does not count against the
/// kernel limit. Each notebook keeps at most one dead kernel, so the map stays bounded.
#[derive(Default)]
pub struct KernelStates {
    map: Mutex<HashMap<String, Entry>>,
}

impl KernelStates {
    /// Moves kernel `id` (of `notebook`, when known) to `state`; an ending state removes it,
    /// `dead` keeps it as dead. A kernel starting in a notebook stops counting the
    /// notebook's dead kernel. Updates the gauges.
    fn set(&self, id: &str, state: &str, notebook: Option<&str>) {
        let m = crate::metrics::execution();
        let Ok(mut map) = self.map.lock() else { return };
        let counted = crate::metrics::KERNEL_STATES
            .iter()
            .find(|s| **s == state && (**s == "dead" || !ENDED.contains(s)))
            .copied();
        let nb = notebook
            .map(str::to_string)
            .or_else(|| map.get(id).map(|e| e.notebook.clone()))
            .unwrap_or_default();
        // The notebook's earlier dead kernel is replaced (by a new kernel, or a newer death).
        if counted.is_some() && !nb.is_empty() {
            let old_dead: Vec<String> = map
                .iter()
                .filter(|(k, e)| e.state == "dead" && e.notebook == nb && k.as_str() != id)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old_dead {
                map.remove(&k);
                if let Some(g) = m.kernels_of("dead") {
                    g.dec();
                }
            }
        }
        let before = map.get(id).map(|e| e.state);
        if before == counted {
            if let Some(e) = map.get_mut(id) {
                e.notebook = nb;
            }
            return;
        }
        match counted {
            Some(state) => map.insert(
                id.to_string(),
                Entry {
                    state,
                    since: Instant::now(),
                    notebook: nb,
                },
            ),
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
        self.set(kernel_id, state, Some(notebook));
        if state != "pool" {
            events.publish_with(|| Event::kernel(notebook, state, pid));
        }
    }

    /// Counts kernel `id` as `starting` when fewer than `limit` kernels are counted now (all
    /// states but the ending ones and `dead`, the warm pool's included): the check and the count happen
    /// under one lock, so two starts racing for the last slot cannot both win. `Err(n)`: `n`
    /// kernels are counted, nothing changed. No event is published (the caller reports
    /// `starting` itself once it wins, which is then a no-op on the count).
    pub fn try_start(&self, id: &str, limit: usize) -> Result<(), usize> {
        let m = crate::metrics::execution();
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        if map.get(id).is_some_and(|e| e.state != "dead") {
            return Ok(());
        }
        let live = map.values().filter(|e| e.state != "dead").count();
        if live >= limit {
            return Err(live);
        }
        if map.remove(id).is_some() {
            if let Some(g) = m.kernels_of("dead") {
                g.dec();
            }
        }
        let entry = Entry {
            state: "starting",
            since: Instant::now(),
            notebook: String::new(),
        };
        map.insert(id.to_string(), entry);
        if let Some(g) = m.kernels_of("starting") {
            g.inc();
        }
        Ok(())
    }

    /// Stops counting kernel `id` (it ended; whoever ended it reported that).
    pub fn forget(&self, id: &str) {
        self.set(id, "shutdown", None);
    }

    /// How long kernel `id` has been `idle` (since its last state change), or `None` when
    /// it is in another state or not counted.
    pub fn idle_for(&self, id: &str) -> Option<Duration> {
        let map = self.map.lock().ok()?;
        let e = map.get(id)?;
        (e.state == "idle").then(|| e.since.elapsed())
    }

    /// Kernels by counted state.
    pub fn by_state(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if let Ok(map) = self.map.lock() {
            for e in map.values() {
                *out.entry(e.state.to_string()).or_default() += 1;
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
        k.set("a", "starting", Some("a.ipynb"));
        k.set("b", "pool", Some(""));
        assert_eq!(k.by_state().get("starting"), Some(&1));
        k.set("a", "idle", None);
        k.set("a", "busy", None);
        assert_eq!(k.by_state().get("busy"), Some(&1));
        assert_eq!(k.by_state().get("idle"), None);
        k.set("a", "shutdown", None);
        k.set("b", "shutdown", None);
        assert!(k.by_state().is_empty());
    }

    #[test]
    fn a_dead_kernel_counts_until_its_notebook_starts_another() {
        let k = KernelStates::default();
        k.set("a", "idle", Some("n.ipynb"));
        k.set("a", "dead", Some("n.ipynb"));
        assert_eq!(k.by_state().get("dead"), Some(&1));
        assert_eq!(
            k.try_start("x", 1),
            Ok(()),
            "a dead kernel is not under the limit"
        );
        k.set("x", "shutdown", None);
        k.set("a2", "starting", Some("other.ipynb"));
        assert_eq!(
            k.by_state().get("dead"),
            Some(&1),
            "another notebook's start"
        );
        k.set("a3", "starting", Some("n.ipynb"));
        assert_eq!(
            k.by_state().get("dead"),
            None,
            "replaced by the notebook's new kernel"
        );
        k.set("a3", "dead", Some("n.ipynb"));
        k.set("a2", "dead", Some("other.ipynb"));
        assert_eq!(k.by_state().get("dead"), Some(&2));
    }

    #[test]
    fn try_start_counts_every_live_kernel_against_the_limit() {
        let k = KernelStates::default();
        k.set("pool-1", "pool", Some(""));
        assert_eq!(k.try_start("a", 2), Ok(()));
        assert_eq!(k.try_start("b", 2), Err(2), "the pool kernel counts");
        assert_eq!(
            k.try_start("a", 2),
            Ok(()),
            "a kernel already counted passes"
        );
        k.set("a", "shutdown", None);
        assert_eq!(
            k.try_start("b", 2),
            Ok(()),
            "an ended kernel frees its slot"
        );
        assert_eq!(k.by_state().get("starting"), Some(&1));
    }
}
