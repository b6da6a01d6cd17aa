//! The engine with a real ipykernel (the `python3` kernelspec on `PATH`, e.g. the project's
//! `.venv`): one execution is published on the event hub (execution statuses, outputs, kernel
//! states, SPEC §7) and counted in the metrics (`executions_total{status}`,
//! `execution_duration_seconds`, `execution_queue_depth`, `kernels{state}`, ...); the warm
//! pool's kernel is claimed by a new notebook and moved to its folder. One test: the metrics
//! are process-wide, so nothing else in this binary may run executions meanwhile.

use std::time::Duration;

use clap::Parser as _;
use jupyter_mcp::cli::{Cli, Command};
use jupyter_mcp::engine::{Engine, SubmitItem};
use jupyter_mcp::events::Next;
use jupyter_mcp::store::Status;
use serde_json::Value;

fn engine(root: &std::path::Path, data: &std::path::Path) -> Engine {
    let cli = Cli::parse_from([
        "jupyter-mcp",
        "serve",
        "--root",
        root.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let Command::Serve(args) = cli.command else {
        unreachable!()
    };
    let config = args.shared.config(root, true).unwrap();
    Engine::new(config).unwrap()
}

async fn run(engine: &Engine, notebook: &str, code: &str) -> jupyter_mcp::engine::ExecutionView {
    let path = engine.notebook_path(notebook).unwrap();
    let item = SubmitItem {
        cell_id: None,
        code: code.into(),
        allow_error: false,
    };
    let ids = engine.submit(&path, vec![item], false, true).await.unwrap();
    let view = engine
        .wait(&ids[0], Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.status(), Status::Completed, "{:?}", view.record);
    view
}

/// The value of the sample line starting with `name ` (or `name{labels} `).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_published_and_counted_and_the_pool_is_claimed() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = engine(root.path(), data.path());
    let mut sub = engine.events().subscribe(None);
    let before = jupyter_mcp::metrics::encode_text();
    let completed_before = sample(&before, "executions_total{status=\"completed\"}");

    let view = run(&engine, "m.ipynb", "print('hello')\n40 + 2").await;
    let id = view.record.id.clone();

    // Events, in order: pending, kernel starting/idle, running, busy, outputs, idle, completed.
    let mut seen: Vec<Value> = Vec::new();
    while !seen
        .iter()
        .any(|e| e["type"] == "execution" && e["status"] == "completed")
    {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(Next::Event(ev)) => seen.push(serde_json::from_str(ev.json.as_str()).unwrap()),
            other => panic!("expected an event, got {other:?} after {seen:?}"),
        }
    }
    let statuses: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "execution")
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "running", "completed"]);
    for e in seen.iter().filter(|e| e["type"] == "execution") {
        assert_eq!(e["execution_id"], id.as_str());
        assert_eq!(e["notebook"], "m.ipynb");
    }
    assert_eq!(seen.last().unwrap()["execution_count"], 1);
    let kernel_states: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "kernel")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(kernel_states, ["starting", "idle", "busy", "idle"]);
    let outputs: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "output")
        .map(|e| &e["output"])
        .collect();
    assert_eq!(outputs.len(), 2, "{seen:?}");
    assert_eq!(outputs[0]["text"], "hello\n");
    assert_eq!(outputs[1]["output_type"], "execute_result");
    assert_eq!(outputs[1]["text"], "42");

    let text = jupyter_mcp::metrics::encode_text();
    assert_eq!(
        sample(&text, "executions_total{status=\"completed\"}"),
        completed_before + 1.0
    );
    assert!(sample(&text, "execution_duration_seconds_count") >= 1.0);
    assert!(sample(&text, "execution_duration_seconds_sum") > 0.0);
    assert_eq!(sample(&text, "execution_queue_depth"), 0.0);
    assert_eq!(sample(&text, "kernels{state=\"idle\"}"), 1.0);
    assert_eq!(sample(&text, "kernels{state=\"busy\"}"), 0.0);
    assert!(sample(&text, "events_clients") >= 1.0);
    assert!(sample(&text, "events_dropped_total") >= 0.0);
    assert_eq!(sample(&text, "storage_breaker_open"), 0.0);
    assert!(text.contains("checkpoint_save_duration_seconds"));
    assert_eq!(engine.queue_depth(), 0);

    // The warm pool: one kernel ready, then claimed by a new notebook in a sub folder.
    std::fs::create_dir(root.path().join("sub")).unwrap();
    engine.start_kernel_pool(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.pool_ready() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no pool kernel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = jupyter_mcp::metrics::encode_text();
    assert_eq!(sample(&text, "kernels{state=\"pool\"}"), 1.0);
    let view = run(&engine, "sub/n.ipynb", "import os; print(os.getcwd())").await;
    let out = &view.record.outputs[0]["text"];
    let cwd = root.path().join("sub").canonicalize().unwrap();
    assert_eq!(out.as_str().unwrap().trim(), cwd.to_str().unwrap());
    engine.shutdown(true).await;
    let text = jupyter_mcp::metrics::encode_text();
    assert_eq!(sample(&text, "kernels{state=\"idle\"}"), 0.0);
    assert_eq!(sample(&text, "kernels{state=\"pool\"}"), 0.0);
}
