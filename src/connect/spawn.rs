//! `connect --spawn`: start the daemon when none answers, and find the one that won.
//!
//! The daemon is `jupyter-mcp serve --transport http --bind HOST:PORT --detach` (the URL's
//! address and port), with stdin closed and stdout/stderr appended to `DATA_DIR/daemon.log`;
//! `--detach` makes it call `setsid()` first, so it has its own session and process group and
//! outlives the bridge. Two bridges starting together both spawn one; `server.lock` lets
//! only one serve (the other exits non-zero), and both bridges then connect to the winner,
//! found through `DATA_DIR/daemon.json` (which also covers port 0) or the URL itself.
//! The bridge calls it again when the daemon it talks to dies (see `connect.rs`).

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
///
/// The daemon gets `--root`, `--data-dir`, every other option of [`Shared`] as the bridge
/// has it (given or default; [`shared_options`]), then `serve_args` (the user's
/// `--serve-arg`s) verbatim; the token and the gateway token through the environment.
pub(super) async fn start_and_wait(
    client: &HttpClient,
    url: &str,
    shared: &Shared,
    serve_args: &[String],
    token: Option<&str>,
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
    cmd.args(shared_options(shared)).args(serve_args);
    // Secrets go through the environment, never the command line (`ps` shows it).
    if let Some(t) = token {
        cmd.env("JUPYTER_MCP_TOKEN", t);
    }
    if let Some(t) = &shared.gateway_token {
        cmd.env("JUPYTER_MCP_GATEWAY_TOKEN", t);
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

/// The options every command takes, except `--root`, `--data-dir` and the gateway token,
/// as `serve` arguments with the values the bridge was given (or their defaults).
pub(super) fn shared_options(s: &Shared) -> Vec<String> {
    let log_format = match s.log_format {
        crate::cli::LogFormat::Text => "text",
        crate::cli::LogFormat::Json => "json",
    };
    let mut out: Vec<String> = vec![
        format!("--log-format={log_format}"),
        format!("--max-text-bytes={}", s.max_text_bytes),
        format!("--kernel-start-timeout={}", s.kernel_start_timeout),
        format!("--input-timeout={}", s.input_timeout),
        format!("--image-max-bytes={}", s.image_max_bytes),
        format!("--image-max-dim={}", s.image_max_dim),
        format!("--asset-lease-hours={}", s.asset_lease_hours),
        format!("--max-result-bytes={}", s.max_result_bytes),
        format!(
            "--max-execution-output-bytes={}",
            s.max_execution_output_bytes
        ),
        format!("--max-notebook-bytes={}", s.max_notebook_bytes),
        format!("--keep-executions-days={}", s.keep_executions_days),
        format!("--keep-executions={}", s.keep_executions),
    ];
    if let Some(v) = s.max_cell_seconds {
        out.push(format!("--max-cell-seconds={v}"));
    }
    if let Some(v) = s.offload_outputs_over {
        out.push(format!("--offload-outputs-over={v}"));
    }
    if let Some(v) = s.kernel_memory_limit {
        out.push(format!("--kernel-memory-limit={v}"));
    }
    if let Some(v) = &s.gateway_url {
        out.push(format!("--gateway-url={v}"));
    }
    out
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
    fn shared_options_parse_back_to_the_same_values() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "jupyter-mcp",
            "connect",
            "--spawn",
            "--max-text-bytes=100",
            "--kernel-start-timeout=12.5",
            "--max-cell-seconds=7",
            "--kernel-memory-limit=1G",
            "--serve-arg=--kernel-pool=1",
        ])
        .unwrap();
        let crate::cli::Command::Connect(c) = cli.command else {
            panic!("not connect")
        };
        assert_eq!(c.serve_args, ["--kernel-pool=1"]);
        let mut argv = vec!["jupyter-mcp".to_string(), "serve".to_string()];
        argv.extend(shared_options(&c.shared));
        argv.extend(c.serve_args.iter().cloned());
        let back = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Serve(s) = back.command else {
            panic!("not serve")
        };
        assert_eq!(s.shared.max_text_bytes, 100);
        assert_eq!(s.shared.kernel_start_timeout, 12.5);
        assert_eq!(s.shared.max_cell_seconds, Some(7.0));
        assert_eq!(s.shared.kernel_memory_limit, c.shared.kernel_memory_limit);
        assert_eq!(s.kernel_pool, 1);
    }

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
