//! `connect --spawn`: start the daemon when none answers, and find the one that won.
//!
//! The daemon is `jupyter-mcp serve --transport http --bind HOST:PORT --detach` (the URL's
//! address and port), with stdin closed and stdout/stderr appended to `DATA_DIR/daemon.log`;
//! `--detach` makes it call `setsid()` first, so it has its own session and process group and
//! outlives the bridge. Two bridges starting together both spawn one; `server.lock` lets
//! only one serve (the other exits non-zero), and both bridges then connect to the winner,
//! found through `DATA_DIR/daemon.json` (which also covers port 0) or the URL itself.

use std::path::Path;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};

use super::HttpClient;
use crate::cli::Shared;
use crate::http::daemon_file;

/// How long a spawned daemon may take to answer `/health/live`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long to look for another daemon after ours exited (it lost the lock race).
const LOSER_GRACE: Duration = Duration::from_secs(5);
/// Wait between looks.
const STEP: Duration = Duration::from_millis(50);

/// The base URL (scheme, host, port) of an MCP URL.
fn base(url: &str) -> &str {
    url.strip_suffix("/mcp")
        .unwrap_or(url.trim_end_matches('/'))
}

/// Whether `/health/live` of the daemon serving `url` answers 200 within a second.
pub(super) async fn live(client: &HttpClient, url: &str) -> bool {
    let Ok(req) = Request::get(format!("{}/health/live", base(url))).body(Full::new(Bytes::new()))
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), client.request(req)).await,
        Ok(Ok(r)) if r.status() == StatusCode::OK
    )
}

/// Starts a daemon bound to the URL's address and waits until one (ours or a rival's)
/// answers; returns its MCP URL.
pub(super) async fn start_and_wait(
    client: &HttpClient,
    url: &str,
    shared: &Shared,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let bind = bind_of(url)?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data dir {}: {e}", data_dir.display()))?;
    let log_path = data_dir.join("daemon.log");
    let log = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?
    };
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["serve", "--transport", "http", "--detach", "--bind"])
        .arg(bind.to_string())
        .arg("--data-dir")
        .arg(std::path::absolute(data_dir)?);
    if let Some(root) = &shared.root {
        cmd.arg("--root").arg(std::path::absolute(root)?);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the daemon: {e}"))?;
    tracing::info!(
        "started a jupyter-mcp daemon (PID {}) for {url}",
        child.id()
    );
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    let mut ours_exited: Option<tokio::time::Instant> = None;
    loop {
        if let Some(info) = daemon_file::read_live(data_dir) {
            if live(client, &info.url).await {
                return Ok(info.url);
            }
        }
        if bind.port() != 0 && live(client, url).await {
            return Ok(url.to_string());
        }
        let now = tokio::time::Instant::now();
        if ours_exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::info!(
                    "the spawned daemon exited ({status}); looking for the one that runs"
                );
                ours_exited = Some(now);
            }
        }
        let gave_up = ours_exited.is_some_and(|t| now >= t + LOSER_GRACE) || now >= deadline;
        if gave_up {
            anyhow::bail!(
                "the daemon did not start answering at {url}: see {} (last lines: {})",
                log_path.display(),
                tail(&log_path)
            );
        }
        tokio::time::sleep(STEP).await;
    }
}

/// The socket address an `http://HOST:PORT/...` URL names (HOST an IP or `localhost`).
fn bind_of(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        anyhow::anyhow!("connect --spawn needs an http:// URL to start a daemon on, not {url}")
    })?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.replacen("localhost", "127.0.0.1", 1);
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority
    } else {
        format!("{authority}:80")
    };
    with_port.parse().map_err(|e| {
        anyhow::anyhow!(
            "cannot start a daemon for {url}: its host must be an IP address or localhost ({e})"
        )
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_come_from_urls() {
        assert_eq!(
            bind_of("http://127.0.0.1:3000/mcp").unwrap().to_string(),
            "127.0.0.1:3000"
        );
        assert_eq!(
            bind_of("http://localhost:0/mcp").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(
            bind_of("http://[::1]:9/mcp").unwrap().to_string(),
            "[::1]:9"
        );
        assert!(bind_of("https://example.com/mcp").is_err());
        assert_eq!(base("http://127.0.0.1:3000/mcp"), "http://127.0.0.1:3000");
    }
}
