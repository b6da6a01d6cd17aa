//! Remote kernels (SPEC §10): a notebook's kernel started on the Jupyter Server / Kernel
//! Gateway of `--gateway-url`, recorded with its kernel id and WebSocket session id, and
//! reconnected to after a restart. The kernel runs wherever the server runs it: its working
//! directory is the server's business, and results say where it runs (`location`).
//!
//! Everything else (routing, outputs, the worker, recovery of `running` executions through the
//! completion hook) is the same as for a local kernel: only `jmcp_kernel`'s transport differs.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use jmcp_kernel::{Gateway, KernelClient, KernelSpec, RemoteKernel};
use tokio::sync::watch;

use super::session::{self, NotebookSession, Reattached, RunningKernel};
use super::{Engine, EngineResult};
use crate::store::{self, KernelSessionRecord, RemoteIds};

impl Engine {
    /// With `--gateway-url`: lists the gateway's kernelspecs again, so that the synchronous
    /// lookups of [`Engine::kernelspec_for`] see them, and so that a gateway that is down or
    /// refuses the token fails the call now with a clear error. Without: nothing.
    pub(crate) async fn refresh_gateway_kernelspecs(&self) -> EngineResult<()> {
        if let Some(gateway) = &self.config().gateway {
            gateway.kernelspecs().await?;
        }
        Ok(())
    }
}

/// Starts kernelspec `spec` on `gateway` for `session`: `POST /api/kernels`, the kernel
/// WebSocket, readiness (kernel_info + IOPub idle), the row in `state.db` (with the kernel id
/// and WebSocket session id), the completion hook. A kernel started but not usable is shut
/// down again.
pub(super) async fn launch(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    spec: &KernelSpec,
    gateway: &Gateway,
) -> EngineResult<Arc<RunningKernel>> {
    let cfg = engine.config();
    let id = uuid::Uuid::new_v4().to_string();
    let nb = session.path.rel.as_str();
    engine.kernel_state(nb, &id, "starting", None);
    let model = match gateway.start_kernel(&spec.name).await {
        Ok(m) => m,
        Err(e) => {
            engine.kernel_state(nb, &id, "dead", None);
            return Err(e.into());
        }
    };
    let remote = RemoteKernel {
        gateway: gateway.clone(),
        kernel_id: model.id.clone(),
        session: uuid::Uuid::new_v4().to_string(),
    };
    let ready = async {
        let client = gateway.connect(&remote.kernel_id, &remote.session).await?;
        let info = client.wait_ready(cfg.kernel_start_timeout).await?;
        Ok::<_, jmcp_kernel::KernelError>((client, info))
    };
    let (client, kernel_info) = match ready.await {
        Ok(x) => x,
        Err(e) => {
            let _ = gateway.shutdown(&remote.kernel_id).await;
            engine.kernel_state(nb, &id, "dead", None);
            return Err(e.into());
        }
    };
    let record = KernelSessionRecord {
        id: id.clone(),
        notebook: nb.to_string(),
        kernel_name: spec.name.clone(),
        pid: None,
        pid_start_time: None,
        connection_file: None,
        log_file: None,
        state: "idle".into(),
        started_at: store::now(),
        remote: Some(RemoteIds {
            gateway_url: gateway.url().to_string(),
            kernel_id: remote.kernel_id.clone(),
            ws_session: remote.session.clone(),
        }),
    };
    let rec = record.clone();
    if let Err(e) = engine.store().call(move |c| rec.insert(c)).await {
        let _ = gateway.shutdown(&remote.kernel_id).await;
        engine.kernel_state(nb, &id, "dead", None);
        return Err(e.into());
    }
    if spec.is_ipykernel() {
        session::install_done_hook(&client).await;
    }
    tracing::info!(notebook = %nb, at = %remote.location(), "remote kernel started");
    engine.kernel_state(nb, &id, "idle", None);
    Ok(install(
        engine,
        session,
        spec,
        &record,
        client,
        kernel_info,
        remote,
    ))
}

/// Wraps a connected remote kernel as the session's kernel and watches it: it is dead when its
/// client is (the server reported it dead or gone, or it was shut down).
fn install(
    engine: &Engine,
    session: &Arc<NotebookSession>,
    spec: &KernelSpec,
    record: &KernelSessionRecord,
    client: KernelClient,
    kernel_info: serde_json::Value,
    remote: RemoteKernel,
) -> Arc<RunningKernel> {
    let (exit_tx, exit_rx) = watch::channel(None);
    let kernel = Arc::new(RunningKernel {
        client: client.clone(),
        pid: 0,
        pid_start: None,
        spec: spec.clone(),
        session_id: record.id.clone(),
        started_at: record.started_at.clone(),
        log_file: Default::default(),
        connection_file: Default::default(),
        exited: exit_rx,
        stopping: AtomicBool::new(false),
        kernel_info,
        remote: Some(remote),
    });
    session::watch_kernel(engine, session, &kernel, exit_tx, async move {
        client.wait_dead().await
    });
    kernel
}

/// Reconnects to the remote kernel of `rec` after a restart: same gateway (it must still be
/// `--gateway-url`), kernel still known to the server, WebSocket reopened with the recorded
/// session id (the server replays what it buffered for that session), kernel_info answered on
/// the control channel.
pub(super) async fn reattach(
    engine: &Engine,
    rec: &KernelSessionRecord,
    timeout: Duration,
) -> Result<Reattached, String> {
    let ids = rec
        .remote
        .as_ref()
        .ok_or("no remote kernel id was recorded")?;
    let gateway = match &engine.config().gateway {
        Some(g) if g.url() == ids.gateway_url => g.clone(),
        Some(g) => {
            return Err(format!(
                "it ran on the gateway {} but --gateway-url is now {}",
                ids.gateway_url,
                g.url()
            ))
        }
        None => {
            return Err(format!(
                "it ran on the gateway {} but no --gateway-url is set",
                ids.gateway_url
            ))
        }
    };
    match gateway.kernel(&ids.kernel_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "kernel {} is gone from the gateway {}",
                ids.kernel_id, ids.gateway_url
            ))
        }
        Err(e) => return Err(e.to_string()),
    }
    let _ = gateway.kernelspecs().await;
    let spec = gateway
        .cached_kernelspec(&rec.kernel_name)
        .map_err(|e| e.to_string())?;
    let client = gateway
        .connect(&ids.kernel_id, &ids.ws_session)
        .await
        .map_err(|e| e.to_string())?;
    let remote = RemoteKernel {
        gateway,
        kernel_id: ids.kernel_id.clone(),
        session: ids.ws_session.clone(),
    };
    Reattached::confirm(rec, spec, client, timeout, Some(remote)).await
}

impl Engine {
    /// The client and location of the notebook's running kernel when it is a remote one
    /// (checkpoints then travel over its messaging protocol, `checkpoint/wire.rs`); `None` for
    /// a local kernel or none.
    pub(crate) fn remote_kernel_of(
        &self,
        path: &crate::paths::RootedPath,
    ) -> Option<(KernelClient, RemoteKernel)> {
        let kernel = self.existing_session(&path.rel)?.current_kernel()?;
        let remote = kernel.remote.clone()?;
        Some((kernel.client.clone(), remote))
    }
}
