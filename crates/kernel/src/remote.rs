//! Remote kernels on a Jupyter Server, Jupyter Kernel Gateway or Jupyter Enterprise Gateway
//! (SPEC §10): the REST API (`/api/kernelspecs`, `/api/kernels`) for the kernel's lifecycle,
//! and its kernel WebSocket (`/api/kernels/{id}/channels`, in `ws`) for messages. The
//! [`crate::KernelClient`] of a remote kernel routes exactly as a local one does; only its
//! transport differs (`transport.rs`).
//!
//! Authentication is `Authorization: token T` (what Jupyter Server and Kernel Gateway accept).
//! The token is kept here and never appears in an error, a log line or a result.

pub mod ws;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::spec::{InterruptMode, KernelSpec};
use crate::{KernelClient, KernelError, Result};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Bound on one REST call (connect + answer): a slow or hung gateway fails fast.
pub const REST_TIMEOUT: Duration = Duration::from_secs(15);

/// A Jupyter Server / Kernel Gateway: base URL and token. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<GatewayInner>,
}

struct GatewayInner {
    /// `http://host:port[/base]`, without a trailing slash.
    base: String,
    token: Option<String>,
    http: HttpClient,
    /// The kernelspecs of the last successful [`Gateway::kernelspecs`].
    specs: std::sync::Mutex<Vec<KernelSpec>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Gateway")
            .field("url", &self.inner.base)
            .finish()
    }
}

/// The server's model of one kernel (`GET /api/kernels/{id}`).
#[derive(Debug, Clone)]
pub struct KernelModel {
    /// Kernel id (a UUID chosen by the server).
    pub id: String,
    /// Kernelspec name.
    pub name: String,
    /// `starting`, `idle`, `busy`, `restarting`, `dead`, ... as the server last saw it.
    pub execution_state: String,
}

impl Gateway {
    /// A gateway at `url` (`http://host:port`, optionally with a base path). Errors on a URL
    /// that is not plain `http://` (put a TLS-terminating proxy or `kubectl port-forward` in
    /// front of an `https://` gateway).
    pub fn new(url: &str, token: Option<String>) -> Result<Gateway> {
        let base = url.trim().trim_end_matches('/').to_string();
        let bad = |why: &str| KernelError::Gateway {
            url: base.clone(),
            message: format!(
                "{why}: --gateway-url must look like http://HOST:PORT (optionally with a base path)"
            ),
        };
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// gateways are supported (use a TLS-terminating proxy or kubectl port-forward for https)"))?;
        if rest.is_empty() || base.parse::<hyper::Uri>().is_err() {
            return Err(bad("not a valid URL"));
        }
        Ok(Gateway {
            inner: Arc::new(GatewayInner {
                base,
                token: token.filter(|t| !t.is_empty()),
                http: Client::builder(TokioExecutor::new()).build_http(),
                specs: Default::default(),
            }),
        })
    }

    /// The base URL (no token), for messages and results.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    fn err(&self, message: impl Into<String>) -> KernelError {
        KernelError::Gateway {
            url: self.inner.base.clone(),
            message: message.into(),
        }
    }

    /// One REST call bounded by [`REST_TIMEOUT`]. Errors name the URL and say what to do;
    /// 401/403 become a token error. Returns the status and the body for the caller to judge.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let uri = format!("{}{path}", self.inner.base);
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        if let Some(t) = self.token() {
            req = req.header(hyper::header::AUTHORIZATION, format!("token {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| self.err(format!("cannot build the request {method} {path}: {e}")))?;
        let call = async {
            let resp = self.inner.http.request(req).await.map_err(|e| {
                self.err(format!(
                    "cannot reach the gateway ({method} {path}: {e}); check that it runs and that --gateway-url is right"
                ))
            })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.err(format!("the answer to {method} {path} was cut: {e}")))?
                .to_bytes();
            Ok::<_, KernelError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REST_TIMEOUT, call)
            .await
            .map_err(|_| {
                self.err(format!(
                    "{method} {path} got no answer within {} s; the gateway is down or overloaded",
                    REST_TIMEOUT.as_secs()
                ))
            })??;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.err(format!(
                "{method} {path} was refused ({status}): the gateway token is missing or wrong; set --gateway-token / JUPYTER_MCP_GATEWAY_TOKEN to the server's token"
            )));
        }
        Ok((status, bytes))
    }

    fn fail(&self, what: &str, status: StatusCode, body: &Bytes) -> KernelError {
        let text = String::from_utf8_lossy(body);
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("reason"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        self.err(format!("{what} failed ({status}): {detail}"))
    }

    /// The gateway's kernelspecs (`GET /api/kernelspecs`) and its default kernelspec name.
    /// `resource_dir` of each is the URL of its REST resource; `argv`, `interrupt_mode` and
    /// `metadata` are the server's.
    pub async fn kernelspecs(&self) -> Result<(String, Vec<KernelSpec>)> {
        let (status, body) = self.call(Method::GET, "/api/kernelspecs", None).await?;
        if !status.is_success() {
            return Err(self.fail("listing kernelspecs", status, &body));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| self.err(format!("/api/kernelspecs is not JSON: {e}")))?;
        let default = v
            .get("default")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut specs = Vec::new();
        if let Some(map) = v.get("kernelspecs").and_then(Value::as_object) {
            for (name, entry) in map {
                specs.push(self.spec_from(name, entry.get("spec").unwrap_or(&Value::Null)));
            }
        }
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        if let Ok(mut cache) = self.inner.specs.lock() {
            cache.clone_from(&specs);
        }
        Ok((default, specs))
    }

    /// Kernelspec `name` from the last [`Gateway::kernelspecs`] answer (no I/O, for callers
    /// that cannot wait). Errors list what the gateway offered.
    pub fn cached_kernelspec(&self, name: &str) -> Result<KernelSpec> {
        let cache = self
            .inner
            .specs
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        if let Some(spec) = cache.iter().find(|s| s.name == name) {
            return Ok(spec.clone());
        }
        Err(self.err(if cache.is_empty() {
            format!("kernelspec '{name}' is unknown: the gateway's kernelspecs could not be listed yet (is it running?)")
        } else {
            format!(
                "the gateway has no kernelspec '{name}'. Its kernelspecs: {}",
                cache.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        }))
    }

    fn spec_from(&self, name: &str, spec: &Value) -> KernelSpec {
        let s = |k: &str| {
            spec.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        KernelSpec {
            name: name.to_string(),
            display_name: s("display_name"),
            language: s("language"),
            argv: spec
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            env: HashMap::new(),
            // The server interrupts its kernel as its kernelspec says; we always ask the server.
            interrupt_mode: InterruptMode::Message,
            resource_dir: PathBuf::from(format!("{}/api/kernelspecs/{name}", self.url())),
            metadata: spec.get("metadata").cloned().unwrap_or(Value::Null),
        }
    }

    /// Starts a kernel from kernelspec `name` (`POST /api/kernels`).
    pub async fn start_kernel(&self, name: &str) -> Result<KernelModel> {
        let (status, body) = self
            .call(Method::POST, "/api/kernels", Some(json!({ "name": name })))
            .await?;
        if !status.is_success() {
            return Err(self.fail(&format!("starting a '{name}' kernel"), status, &body));
        }
        self.model(&body)
    }

    /// The server's model of kernel `id`; `None` when the server does not know it (404).
    pub async fn kernel(&self, id: &str) -> Result<Option<KernelModel>> {
        let (status, body) = self
            .call(Method::GET, &format!("/api/kernels/{id}"), None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.fail(&format!("looking up kernel {id}"), status, &body));
        }
        self.model(&body).map(Some)
    }

    /// Interrupts kernel `id` (`POST /api/kernels/{id}/interrupt`).
    pub async fn interrupt(&self, id: &str) -> Result<()> {
        self.post_action(id, "interrupt").await
    }

    /// Restarts kernel `id` in place (`POST /api/kernels/{id}/restart`): same id, fresh state.
    pub async fn restart(&self, id: &str) -> Result<()> {
        self.post_action(id, "restart").await
    }

    async fn post_action(&self, id: &str, action: &str) -> Result<()> {
        let path = format!("/api/kernels/{id}/{action}");
        let (status, body) = self.call(Method::POST, &path, Some(json!({}))).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(self.err(format!(
                "kernel {id} is gone from the server (404 on {action})"
            )));
        }
        if !status.is_success() {
            return Err(self.fail(&format!("{action} of kernel {id}"), status, &body));
        }
        Ok(())
    }

    /// Shuts kernel `id` down (`DELETE /api/kernels/{id}`); a kernel already gone is fine.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        let (status, body) = self
            .call(Method::DELETE, &format!("/api/kernels/{id}"), None)
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.fail(&format!("shutting down kernel {id}"), status, &body))
    }

    fn model(&self, body: &Bytes) -> Result<KernelModel> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| self.err(format!("a kernel model is not JSON: {e}")))?;
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let id = s("id");
        if id.is_empty() {
            return Err(self.err("a kernel model has no id"));
        }
        Ok(KernelModel {
            id,
            name: s("name"),
            execution_state: s("execution_state"),
        })
    }

    /// Connects a [`KernelClient`] to kernel `kernel_id` over its WebSocket, as client session
    /// `session` (reuse the session id of an earlier connection to get the messages the
    /// server buffered meanwhile). Does not wait for readiness. The connection is re-made
    /// with backoff when it drops; a kernel the server no longer knows is marked dead.
    pub async fn connect(&self, kernel_id: &str, session: &str) -> Result<KernelClient> {
        ws::connect(self.clone(), kernel_id.to_string(), session.to_string()).await
    }
}

/// Where a remote kernel runs, and what is needed to reconnect to it after a restart.
#[derive(Debug, Clone)]
pub struct RemoteKernel {
    /// The gateway serving it.
    pub gateway: Gateway,
    /// The server's kernel id.
    pub kernel_id: String,
    /// Our WebSocket client session id.
    pub session: String,
}

impl RemoteKernel {
    /// `<gateway url> kernel <id>`: where the kernel runs, for results (never the token).
    pub fn location(&self) -> String {
        format!("{} kernel {}", self.gateway.url(), self.kernel_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_the_token_is_never_shown() {
        let g = Gateway::new("http://127.0.0.1:8888/", Some("s3cret".into())).unwrap();
        assert_eq!(g.url(), "http://127.0.0.1:8888");
        assert!(!format!("{g:?}").contains("s3cret"));
        let e = Gateway::new("https://example.org", None).unwrap_err();
        assert!(e.to_string().contains("https://example.org"), "{e}");
        assert!(Gateway::new("ftp://x", None).is_err());
        assert!(Gateway::new("http://", None).is_err());
    }
}
