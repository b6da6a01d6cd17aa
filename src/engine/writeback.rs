//! Writing execution outputs back into the notebook file. Writes are batched per notebook:
//! while more executions of the notebook are queued, finished outputs wait (at most
//! [`MAX_DELAY`], at most [`MAX_ITEMS`]) and are written in one read-modify-write; when the
//! queue is empty they are written before the execution is reported finished. The execution
//! record in `state.db` always holds the outputs, whatever the file write does. Each write
//! also stores the kernel's live widget state in `metadata.widgets` (see `super::widgets`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jmcp_outputs::apply_display_update;
use serde_json::Value;

use super::notebook_ops;
use super::session::NotebookSession;
use super::EngineError;

/// Longest a finished execution's outputs wait before reaching the file.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// When the root did not answer, how long until the held outputs are tried again.
pub const RETRY_AFTER_STORAGE: Duration = Duration::from_secs(1);
/// Most executions folded into one notebook write.
pub const MAX_ITEMS: usize = 64;

/// Outputs of one finished execution, to be written into its cell.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    /// Target cell.
    pub cell_id: String,
    /// nbformat outputs.
    pub outputs: Vec<Value>,
    /// Prompt number.
    pub execution_count: Option<i64>,
    /// `update_display_data` aimed at other cells: (display_id, data, metadata).
    pub foreign: Vec<(String, Value, Value)>,
    /// display_id -> output indices of this cell.
    pub display_ids: HashMap<String, Vec<usize>>,
}

/// Writes waiting for the next flush.
#[derive(Debug, Default)]
pub struct Pending {
    items: Vec<PendingWrite>,
    since: Option<Instant>,
}

impl Pending {
    /// Queues a write.
    pub fn push(&mut self, w: PendingWrite) {
        self.since.get_or_insert_with(Instant::now);
        self.items.push(w);
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the oldest waiting write must be flushed.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        self.since
            .map(|t| tokio::time::Instant::from_std(t + MAX_DELAY))
    }

    /// True when the batch is full or old enough.
    pub fn should_flush(&self) -> bool {
        self.items.len() >= MAX_ITEMS || self.since.is_some_and(|t| t.elapsed() >= MAX_DELAY)
    }
}

/// Writes every pending item in one notebook update; returns notes (cell deleted meanwhile,
/// merged with edits made on disk). When storage does not answer
/// ([`EngineError::Storage`]) the items stay queued and are retried after
/// [`RETRY_AFTER_STORAGE`]; on any other error they are dropped from the queue: their outputs
/// stay in the execution records.
pub async fn flush(
    session: &Arc<NotebookSession>,
    pending: &mut Pending,
) -> Result<Vec<String>, EngineError> {
    let items = std::mem::take(&mut pending.items);
    pending.since = None;
    if items.is_empty() {
        return Ok(vec![]);
    }
    // Display targets are resolved against the map as it was before these executions.
    let mut displays = session
        .displays
        .lock()
        .map_err(|_| EngineError::InvalidArgument("display map poisoned".into()))?
        .clone();
    let mut plan = Vec::with_capacity(items.len());
    for w in &items {
        let targets: Vec<(HashMap<String, Vec<usize>>, Value, Value)> = w
            .foreign
            .iter()
            .filter_map(|(id, data, meta)| {
                displays
                    .get(id)
                    .map(|c| (c.clone(), data.clone(), meta.clone()))
            })
            .collect();
        for cells in displays.values_mut() {
            cells.remove(&w.cell_id);
        }
        for (id, idx) in &w.display_ids {
            displays
                .entry(id.clone())
                .or_default()
                .insert(w.cell_id.clone(), idx.clone());
        }
        plan.push((w.clone(), targets));
    }
    let widgets = session.widgets.lock().ok().and_then(|w| w.metadata());
    let (path, lock) = (session.path.clone(), session.file_lock.clone());
    let abs = path.abs.clone();
    let result = notebook_ops::blocking_io(&abs, "writing outputs into the notebook", move || {
        notebook_ops::update(&path, &lock, |nb| {
            let mut notes = Vec::new();
            if let Some(widgets) = widgets {
                // nbclient's store_widget_state (SPEC §4), see `super::widgets`.
                nb.metadata.insert("widgets".into(), widgets);
            }
            for (w, targets) in plan {
                match nb.cell_index(&w.cell_id) {
                    Some(i) => {
                        nb.cells[i].outputs = crate::assets::offload_for_file(&path.rel, w.outputs);
                        nb.cells[i].execution_count = w.execution_count;
                    }
                    None => notes.push(format!(
                        "cell '{}' was deleted from the notebook while it ran; its outputs are kept only in its execution record",
                        w.cell_id
                    )),
                }
                for (cells, data, meta) in &targets {
                    for (other, idx) in cells {
                        if *other == w.cell_id {
                            continue;
                        }
                        if let Some(i) = nb.cell_index(other) {
                            apply_display_update(&mut nb.cells[i].outputs, idx, data, meta);
                        }
                    }
                }
            }
            Ok(notes)
        })
    })
    .await;
    if let Err(EngineError::Storage(e)) = &result {
        // The root did not answer (SPEC §8): the outputs stay queued here and are written
        // when it answers again (retried every RETRY_AFTER_STORAGE); records have them.
        tracing::warn!(notebook = %session.path.rel, "outputs wait in memory for the notebook file: {e}");
        pending.items = items;
        pending.since = Some(Instant::now() + RETRY_AFTER_STORAGE.saturating_sub(MAX_DELAY));
    }
    let (mut notes, merge_notes) = result?;
    notes.extend(merge_notes);
    if let Ok(mut current) = session.displays.lock() {
        *current = displays;
    }
    Ok(notes)
}
