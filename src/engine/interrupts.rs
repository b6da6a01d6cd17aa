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
use std::time::Duration;

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

    /// Whether the kernel has started the request (an interrupt now reaches the cell).
    pub fn started(&self) -> bool {
        self.state.lock().map(|s| s.started).unwrap_or(false)
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

/// How often an interrupt is repeated while its execution goes on ([`resend_until_ended`]).
const RESEND_EVERY: Duration = Duration::from_secs(1);
/// How long `interrupt_kernel` follows its execution before answering.
const FOLLOW_FOR: Duration = Duration::from_secs(10);

/// Follows execution `id` after an interrupt was asked for it, for at most [`FOLLOW_FOR`]:
/// while the kernel has started the request and the execution still runs after
/// [`RESEND_EVERY`], SIGINT is sent again. ipykernel can swallow a SIGINT that lands in its
/// own code between `execute_input` and the start of the cell (about 1 in 5 when the
/// interrupt follows `execute_code` at once); a repeat then lands in the cell. A repeat is
/// sent only while `id` is still the notebook's running execution, checked right before
/// sending; the next request is not sent before the worker has ended this one.
pub(super) async fn resend_until_ended(
    engine: &Engine,
    session: &NotebookSession,
    kernel: &super::session::RunningKernel,
    id: &str,
) -> EngineResult<()> {
    let deadline = tokio::time::Instant::now() + FOLLOW_FOR;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let view = engine.wait(id, left.min(RESEND_EVERY)).await?;
        if view.record.status.is_terminal() || left <= RESEND_EVERY {
            return Ok(());
        }
        let still_running = session
            .running()
            .is_some_and(|r| r.id == id && r.gate.started());
        if still_running {
            tracing::debug!(execution = %id, "the execution goes on after an interrupt: sending SIGINT again");
            super::session::interrupt(kernel).await?;
        }
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
