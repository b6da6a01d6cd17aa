//! Interrupts that cannot be lost to timing (issue 9 item 7).
//!
//! ipykernel ignores SIGINT while it waits for a request (`SIG_IGN`), and a SIGINT that lands
//! after it took the `execute_request` but before the cell started is swallowed in its
//! dispatcher: no `execute_reply` is ever sent, only `status: idle`. So an interrupt is
//! delivered only once the kernel has *started* the request (its IOPub `execute_input`, or any
//! output); one that arrives earlier — before the worker even sent the request, or while the
//! execution was still queued — is remembered and delivered then. The worker settles a request
//! that went idle without a reply after a shell barrier (see `KernelClient::shell_barrier`).

use std::sync::Mutex;

use super::session::NotebookSession;
use super::{Engine, EngineResult};
use crate::store::{self, Status};

/// When an interrupt of one running execution may reach the kernel. Every request is
/// delivered exactly once: at once if the kernel has started the request, else when it does.
#[derive(Debug, Default)]
pub struct InterruptGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The kernel has started this execution's request.
    started: bool,
    /// An interrupt was asked for before that and waits for it.
    waiting: bool,
}

impl InterruptGate {
    /// Asks for an interrupt. True when the caller must deliver it now; false when it is
    /// remembered until [`InterruptGate::kernel_started`].
    pub fn request(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        if s.started {
            true
        } else {
            s.waiting = true;
            false
        }
    }

    /// Marks the request as started by the kernel. True when an interrupt was waiting: the
    /// caller (the worker) must deliver it now. Only the first call can return true.
    pub fn kernel_started(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.started {
            return false;
        }
        s.started = true;
        std::mem::take(&mut s.waiting)
    }
}

impl Engine {
    /// An interrupt for a notebook whose queue has no execution in the kernel yet: it is
    /// remembered for the oldest pending execution of the notebook (the one `execute_code`
    /// just queued) and delivered once that one runs. Returns its id, or `None` when nothing is
    /// queued (then there is nothing to interrupt).
    pub(super) async fn interrupt_next_pending(
        &self,
        session: &NotebookSession,
    ) -> EngineResult<Option<String>> {
        let notebook = session.path.rel.clone();
        let oldest = self
            .store()
            .call(move |c| {
                store::executions::list(c, Some(&notebook), Some(Status::Pending), 10_000)
                    .map(|rows| rows.last().map(|r| r.id.clone()))
            })
            .await?;
        if let Some(id) = &oldest {
            if let Ok(mut next) = session.interrupt_next.lock() {
                *next = Some(id.clone());
            }
        }
        Ok(oldest)
    }
}

/// Takes the remembered interrupt if it was meant for execution `id`.
pub(super) fn take_interrupt_for(session: &NotebookSession, id: &str) -> bool {
    let Ok(mut next) = session.interrupt_next.lock() else {
        return false;
    };
    if next.as_deref() == Some(id) {
        *next = None;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_request_waits_for_the_start_and_is_delivered_once() {
        let g = InterruptGate::default();
        assert!(!g.request(), "not started: remembered, not delivered");
        assert!(g.kernel_started(), "delivered when the kernel starts");
        assert!(!g.kernel_started(), "only once");
        assert!(
            g.request(),
            "after the start, requests are delivered at once"
        );
    }

    #[test]
    fn start_without_request_delivers_nothing() {
        let g = InterruptGate::default();
        assert!(!g.kernel_started());
        assert!(g.request(), "started: delivered at once");
    }
}
