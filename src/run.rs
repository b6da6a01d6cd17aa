//! `jupyter-mcp run NOTEBOOK`: the engine, headless. Queues every code cell as one batch (as
//! nbclient would run them), shows progress on stderr (a bar on a TTY, plain lines otherwise),
//! writes outputs into the notebook, and exits non-zero naming the cell that raised.
//!
//! Storage bounds (SPEC §8): the engine's calls are bounded as in the server, but resolving
//! the notebook path here is not: `run` serves one notebook and no other session, so on a
//! stale mount it hangs with its file system as `cp` or `nbconvert` would (end it with the
//! mount; the server is where a frozen folder must not stop others).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::RunArgs;
use crate::engine::{Engine, SubmitItem};
use crate::store::Status;

pub mod signals;

/// Exit code when a cell raised or was interrupted.
pub const EXIT_CELL_ERROR: i32 = 1;
/// Exit code when the notebook could not be run at all (bad file, missing kernel).
pub const EXIT_SETUP_ERROR: i32 = 2;

/// Runs the notebook; returns the process exit code.
///
/// A run is a server of its data dir like `serve` (SPEC §7): it holds `server.lock`, so a
/// `serve` cannot resume its rows or adopt its kernel while it runs (and a run next to a
/// server exits naming it). SIGINT/SIGTERM stop it cleanly: queued cells are cancelled, the
/// running one ends `interrupted`, the kernel is stopped, and the exit code is 128 + signal.
/// `input()` fails at once (`allow_stdin: false`), as under nbclient.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let nb_abs = cwd.join(&args.notebook);
    let default_root = nb_abs.parent().map(|p| p.to_path_buf()).unwrap_or(cwd);
    let mut config = args.shared.config(&default_root, true)?;
    config.limits.allow_stdin = false;
    let _lock = match crate::lock::ServerLock::acquire(&config.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot run: {e:#}");
            return Ok(EXIT_SETUP_ERROR);
        }
    };
    let engine = Engine::new(config)?;
    // --kernel-memory-limit (and the OOM report) apply to `run` as to `serve`.
    engine.spawn_limit_tasks();
    let config = engine.config();
    // Outputs over --offload-outputs-over go to the asset store, as under `serve`.
    crate::assets::install(crate::assets::Assets::new(
        &config.data_dir,
        config.root.path(),
        engine.store().clone(),
        crate::assets::AssetSettings::from_config(config),
    ));
    let path = match engine.notebook_path(&nb_abs.to_string_lossy()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_SETUP_ERROR);
        }
    };
    let submitted = Mutex::new(Vec::new());
    let code = tokio::select! {
        code = execute(&engine, &path, &args, &submitted) => code,
        sig = signals::termination() => {
            let ids = submitted.lock().map(|v| v.clone()).unwrap_or_default();
            stop_on_signal(&engine, &path, &ids, sig).await;
            Ok(128 + sig)
        }
    };
    engine.shutdown(true).await;
    code
}

/// After SIGINT/SIGTERM: cancel what is queued, stop the kernel (the running cell ends
/// `interrupted`), and wait until every execution of this run is recorded as ended.
async fn stop_on_signal(
    engine: &Engine,
    path: &crate::paths::RootedPath,
    ids: &[String],
    sig: i32,
) {
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!("{}: {name} received: stopping the kernel", path.rel);
    // Last first, so that the worker never picks up a cell about to be cancelled.
    for id in ids.iter().rev() {
        if let Ok(v) = engine.execution(id).await {
            if v.status() == Status::Pending {
                if let Err(e) = engine.cancel(id).await {
                    tracing::warn!(execution = %id, "could not cancel: {e}");
                }
            }
        }
    }
    if engine.has_live_kernel(path) {
        if let Err(e) = engine.shutdown_kernel(path).await {
            tracing::warn!("could not stop the kernel: {e}");
        }
    }
    for id in ids {
        let _ = engine.wait(id, Duration::from_secs(10)).await;
    }
}

async fn execute(
    engine: &Engine,
    path: &crate::paths::RootedPath,
    args: &RunArgs,
    submitted: &Mutex<Vec<String>>,
) -> anyhow::Result<i32> {
    let cells = match engine.all_cells(path).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_SETUP_ERROR);
        }
    };
    let mut items = Vec::new();
    let mut index_of = Vec::new();
    for c in cells {
        if c.cell_type != "code"
            || c.source.trim().is_empty()
            || c.tags.iter().any(|t| t == "skip-execution")
        {
            continue;
        }
        index_of.push((c.index, c.id.clone()));
        items.push(SubmitItem {
            allow_error: args.allow_errors || c.tags.iter().any(|t| t == "raises-exception"),
            cell_id: Some(c.id),
            code: c.source,
        });
    }
    if items.is_empty() {
        // nbclient starts the kernel anyway and records its language_info (issue 8 item 16).
        if let Err(e) = engine
            .record_kernel_info(path, args.kernel.as_deref())
            .await
        {
            eprintln!(
                "{}: no code cells to run; kernel metadata not recorded: {e}",
                path.rel
            );
            println!("{}", path.abs.display());
            return Ok(0);
        }
        eprintln!("{}: no code cells to run", path.rel);
        println!("{}", path.abs.display());
        return Ok(0);
    }
    if let Err(e) = engine.start_kernel(path, args.kernel.as_deref()).await {
        let hint = if e.to_string().contains("is not installed") && args.kernel.is_none() {
            "\nhint: run it with another installed kernel: --kernel NAME (see `jupyter kernelspec list`)"
        } else {
            ""
        };
        eprintln!("error: cannot run {}: {e}{hint}", path.rel);
        return Ok(EXIT_SETUP_ERROR);
    }
    let ids = engine.submit(path, items, true, !args.allow_errors).await?;
    if let Ok(mut s) = submitted.lock() {
        s.clone_from(&ids);
    }
    let bar = progress(ids.len() as u64);
    let per_cell = args.timeout.map(Duration::from_secs_f64);
    let mut code = 0;
    for (n, id) in ids.iter().enumerate() {
        let (index, cell_id) = &index_of[n];
        bar.set_message(format!("cell {index} ({cell_id})"));
        let mut view = engine
            .wait(id, per_cell.unwrap_or(Duration::from_secs(u64::MAX / 4)))
            .await?;
        let mut timed_out = false;
        if !view.status().is_terminal() {
            timed_out = true;
            say(
                &bar,
                format!(
                    "cell {index} ({cell_id}) timed out after {} s (--timeout): interrupting it",
                    args.timeout.unwrap_or_default()
                ),
            );
            view = engine.cancel(id).await?;
        }
        let line = match view.status() {
            Status::Completed => format!("cell {index} ({cell_id}): ok"),
            Status::Failed | Status::Interrupted => {
                let err = view.record.error.as_ref();
                let ename = err.and_then(|e| e["ename"].as_str()).unwrap_or("error");
                let evalue = err.and_then(|e| e["evalue"].as_str()).unwrap_or("");
                let allowed = view.record.allow_error && view.status() == Status::Failed;
                if !allowed {
                    code = EXIT_CELL_ERROR;
                }
                let mut l = format!(
                    "cell {index} ({cell_id}) {}: {ename}: {}",
                    if allowed {
                        "raised (allowed)"
                    } else {
                        view.status().as_str()
                    },
                    evalue.lines().next().unwrap_or("")
                );
                if timed_out {
                    l.push_str(&format!(
                        " [timed out after {} s]",
                        args.timeout.unwrap_or_default()
                    ));
                } else if let Some(note) = &view.record.note {
                    l.push_str(&format!(" [{}]", note.lines().next().unwrap_or("")));
                }
                l
            }
            other => format!("cell {index} ({cell_id}): {}", other.as_str()),
        };
        say(&bar, line);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if code != 0 {
        eprintln!(
            "{}: stopped at a cell error (outputs written up to it)",
            path.rel
        );
    } else {
        eprintln!("{}: all cells ran", path.rel);
    }
    println!("{}", path.abs.display());
    Ok(code)
}

/// A line on stderr, above the bar when there is one.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}") {
        bar.set_style(style);
    }
    bar
}
