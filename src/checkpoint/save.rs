//! `save_environment`: the kernel writes its variables to a temp file, the server signs and
//! commits it (see `files.rs` for the commit order).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::files::{self, Package, SavedVariable, SkippedVariable};
use super::{blocking, check_name, index, parse, path_str, python, service, wire};
use super::{CheckpointError, CheckpointPaths, Result, SaveReport};
use crate::engine::{Engine, EngineError};
use crate::metrics;

#[derive(Deserialize)]
struct SaveAnswer {
    saved: Vec<SavedVariable>,
    skipped: Vec<SkippedVariable>,
    python_version: String,
    python_executable: String,
    packages: Vec<Package>,
    /// Where the kernel wrote the file (its own temp directory for a remote kernel).
    #[serde(default)]
    path: Option<String>,
}

/// Saves the kernel's variables (`variables`, or every user global) as checkpoint `name` of
/// `notebook`, replacing an older one of that name atomically.
pub async fn save(
    engine: &Engine,
    notebook: &str,
    name: &str,
    variables: Option<Vec<String>>,
    timeout: Duration,
) -> Result<SaveReport> {
    check_name(name)?;
    let path = engine.resolve_notebook(notebook).await?;
    if !engine.has_live_kernel(&path) {
        return Err(CheckpointError::Kernel(format!(
            "no kernel is running for '{}', so there are no variables to save: run the notebook's \
             cells first (execute_cell / run_all_cells)",
            path.rel
        )));
    }
    let svc = service(engine);
    let key = svc.key().await?;
    let paths = CheckpointPaths::new(&svc.root, &path.rel, name);
    let file_lock = svc.file_lock(&paths.stem);
    let _guard = file_lock.lock().await;
    let started = Instant::now();
    let dir = paths.dir.clone();
    blocking(move || {
        files::ensure_dir(&dir)?;
        files::collect_garbage(&dir);
        Ok(())
    })
    .await?;
    let temp = paths.temp_data();
    // A remote kernel writes into its own temp directory; the bytes then travel over the wire.
    let remote = engine.remote_kernel_of(&path);
    let code = match &remote {
        Some(_) => python::save_code_in_kernel_tempdir(
            &format!("jmcp-checkpoint-{}.dill", uuid::Uuid::new_v4().simple()),
            variables.as_deref(),
        ),
        None => python::save_code(path_str(&temp)?, variables.as_deref()),
    };
    // On a thread of its own: the data dir may not answer (SPEC §8); never on the runtime.
    let remove_temp = |temp: &Path| {
        let temp = temp.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("jmcp-checkpoint-cleanup".into())
            .spawn(move || {
                let _ = std::fs::remove_file(temp);
            });
    };
    // The kernel writes the data file into the data dir: if that stops answering meanwhile
    // (the breaker opens), stop waiting; the kernel's temp file is collected later.
    let mut opened =
        crate::storage::current().map(|s| s.breaker(crate::storage::Place::DataDir).subscribe());
    let breaker_opened = async {
        match opened.as_mut() {
            Some(rx) => {
                let _ = rx.wait_for(|open| *open).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let internal = tokio::select! {
        r = engine.run_internal(&path, &code, timeout) => r,
        _ = breaker_opened => Err(EngineError::Storage(crate::storage::StorageUnavailable {
            path: temp.clone(),
            what: "the kernel writing the checkpoint".into(),
            detail: "stopped waiting: the data dir failed its storage probe meanwhile (the kernel finishes the write when it answers again; the partial file is collected later)".into(),
        })),
    };
    let run = match internal {
        Ok(r) => r,
        Err(e) => {
            // After a timeout the kernel may still be writing: the file is collected later.
            if !matches!(e, EngineError::Timeout(_) | EngineError::Storage(_)) {
                remove_temp(&temp);
            }
            return Err(e.into());
        }
    };
    let kernel_time = started.elapsed();
    let answer: SaveAnswer = match python::answer(&run, "save its variables")
        .and_then(|v| parse(v, "save_environment"))
    {
        Ok(a) => a,
        Err(e) => {
            remove_temp(&temp);
            return Err(e);
        }
    };
    if answer.saved.is_empty() {
        remove_temp(&temp);
        if let (Some(_), Some(file)) = (&remote, &answer.path) {
            wire::discard(engine, &path, file, timeout).await;
        }
        let why = if answer.skipped.is_empty() {
            "the kernel has no user variables".to_string()
        } else {
            answer
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(CheckpointError::NothingSaved(format!(
            "nothing was saved ({why}); checkpoint '{name}' was left as it was"
        )));
    }
    let answer_path = answer.path.clone();
    let unsigned = files::Unsigned {
        name: name.to_string(),
        notebook: path.rel.clone(),
        created_at: crate::store::now(),
        python_version: answer.python_version,
        python_executable: answer.python_executable,
        packages: answer.packages,
        variables: answer.saved,
        skipped: answer.skipped,
    };
    let (commit_paths, commit_temp) = (paths.clone(), temp.clone());
    let committed = match (&remote, &answer_path) {
        (Some((client, _)), Some(file)) => {
            let t = Instant::now();
            let streamed =
                wire::download(engine, &path, client, file, &temp, &key, timeout).await?;
            let hash = t.elapsed();
            blocking(move || {
                let t = Instant::now();
                let meta =
                    files::commit_hashed(&commit_paths, &key, &commit_temp, streamed, unsigned)?;
                Ok((
                    meta,
                    files::CommitTimes {
                        hash,
                        write: t.elapsed(),
                    },
                ))
            })
            .await
        }
        (Some(_), None) => Err(CheckpointError::Kernel(
            "the remote kernel did not say where it wrote the checkpoint".into(),
        )),
        (None, _) => {
            blocking(move || files::commit(&commit_paths, &key, &commit_temp, unsigned)).await
        }
    };
    let (meta, times) = match committed {
        Ok(c) => c,
        Err(e) => {
            remove_temp(&temp);
            return Err(e);
        }
    };
    let row = index::Row {
        notebook: meta.notebook.clone(),
        name: meta.name.clone(),
        dir: paths.dir.to_string_lossy().into_owned(),
        created_at: meta.created_at.clone(),
        bytes: meta.bytes,
    };
    if let Err(e) = engine.store().call(move |c| index::upsert(c, &row)).await {
        tracing::warn!("checkpoint saved but not indexed (list_checkpoints repairs this): {e}");
    }
    let m = metrics::checkpoint();
    m.save_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    m.size_bytes.observe(meta.bytes as f64);
    Ok(SaveReport {
        notebook: meta.notebook.clone(),
        name: meta.name.clone(),
        path: paths.data(&meta.generation),
        metadata_path: paths.meta(),
        bytes: meta.bytes,
        sha256: meta.sha256.clone(),
        created_at: meta.created_at.clone(),
        python_version: meta.python_version.clone(),
        packages: meta.packages.len(),
        saved: meta.variables,
        skipped: meta.skipped,
        kernel_seconds: kernel_time.as_secs_f64(),
        hash_seconds: times.hash.as_secs_f64(),
        server_seconds: (times.hash + times.write).as_secs_f64(),
    })
}
