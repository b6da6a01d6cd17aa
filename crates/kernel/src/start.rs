//! Start a kernel and hand back a ready client: launch, connect once the kernel has bound its
//! ports, then wait for readiness (kernel_info reply + IOPub idle). Launches in this process are
//! serialised only around port reservation and spawn; the ports stay claimed (see `ports`)
//! until the kernel is connected, so two launches never hand the same freed port to two
//! kernels, and a slow kernel does not hold up the others.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::launch::{launch, log_tail, LaunchOptions, LaunchedKernel};
use crate::{KernelClient, KernelError, KernelSpec, Result};

static LAUNCH_LOCK: Mutex<()> = Mutex::const_new(());

/// A kernel that answered `kernel_info_request`.
pub struct StartedKernel {
    /// The process and its files.
    pub launched: LaunchedKernel,
    /// Connected client.
    pub client: KernelClient,
    /// Content of the `kernel_info_reply` (has `language_info`).
    pub kernel_info: Value,
}

/// Launch attempts when the kernel loses one of its ports to another process.
const PORT_RACE_ATTEMPTS: usize = 3;

/// Launches `spec` and waits up to `timeout` for it to be ready. If the process exits first,
/// the error carries the last lines of its log (stderr). The process is killed on failure.
/// A kernel that exits because another process bound one of its ports between our
/// reservation and its own bind (ipykernel: "Address already in use"; other programs pick
/// ports too, e.g. a Jupyter Server starting kernels on the same machine) is launched again
/// with fresh ports, up to 3 times.
pub async fn start_kernel(
    spec: &KernelSpec,
    opts: &LaunchOptions,
    timeout: Duration,
) -> Result<StartedKernel> {
    let mut attempt = 1;
    loop {
        match start_once(spec, opts, timeout).await {
            Err(KernelError::StartFailed {
                ref stderr_tail, ..
            }) if attempt < PORT_RACE_ATTEMPTS
                && stderr_tail
                    .iter()
                    .any(|l| l.contains("Address already in use")) =>
            {
                tracing::warn!(
                    "kernel '{}' lost a port to another process while starting; launching it again",
                    spec.name
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn start_once(
    spec: &KernelSpec,
    opts: &LaunchOptions,
    timeout: Duration,
) -> Result<StartedKernel> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut launched = {
        let _guard = LAUNCH_LOCK.lock().await;
        launch(spec, opts).await?
    };
    let client = loop {
        // A connect to a port nobody listens on yet may wait instead of failing: race each
        // attempt against the process exiting and a short timeout.
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            KernelClient::connect(&launched.connection),
        );
        let outcome = tokio::select! {
            r = attempt => r,
            status = launched.child.wait() => {
                let reason = match status {
                    Ok(s) => format!("the kernel process exited ({s})"),
                    Err(e) => format!("waiting for the kernel process failed: {e}"),
                };
                return Err(fail(spec, &launched, reason));
            }
        };
        match outcome {
            Ok(Ok(c)) => break c,
            Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                tracing::trace!("kernel not listening yet: {e}");
                // Startup only: the kernel binds within ~0.2 s; retry connecting shortly.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(_) if tokio::time::Instant::now() < deadline => {}
            other => {
                kill(&mut launched).await;
                let why = match other {
                    Ok(Err(e)) => format!("could not connect: {e}"),
                    _ => "could not connect before the start timeout".to_string(),
                };
                return Err(fail(spec, &launched, why));
            }
        }
    };
    // Connected: the kernel has bound its ports.
    launched.ports_claim = None;
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let ready = tokio::select! {
        r = client.wait_ready(remaining.max(Duration::from_secs(1))) => r,
        status = launched.child.wait() => Err(KernelError::StartFailed {
            name: spec.name.clone(),
            reason: match status {
                Ok(s) => format!("the kernel process exited ({s})"),
                Err(e) => format!("waiting for the kernel process failed: {e}"),
            },
            stderr_tail: vec![],
        }),
    };
    match ready {
        Ok(kernel_info) => Ok(StartedKernel {
            launched,
            client,
            kernel_info,
        }),
        Err(e) => {
            kill(&mut launched).await;
            let reason = match e {
                KernelError::StartFailed { reason, .. } => reason,
                other => other.to_string(),
            };
            Err(fail(spec, &launched, reason))
        }
    }
}

fn fail(spec: &KernelSpec, launched: &LaunchedKernel, reason: String) -> KernelError {
    KernelError::StartFailed {
        name: spec.name.clone(),
        reason,
        stderr_tail: log_tail(&launched.log_file, 20),
    }
}

async fn kill(launched: &mut LaunchedKernel) {
    let _ = crate::process::signal_group(launched.pid, libc::SIGKILL);
    let _ = launched.child.wait().await;
}
