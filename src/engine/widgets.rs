//! Live Jupyter widget state of one notebook's kernel, saved into the notebook as nbclient's
//! `store_widget_state` does (nbclient 0.11 `NotebookClient.handle_comm_msg`,
//! `set_widgets_metadata`, `_serialize_widget_state`, `_get_buffer_data`), so that saved
//! widgets render without a kernel (nbconvert, GitHub, a reopened notebook). SPEC §4.
//!
//! Input: the `comm_open`, `comm_msg` and `comm_close` IOPub messages that reach an
//! execution (their parent is its `execute_request`). Every `comm_open`/`comm_msg` whose
//! `data` has a `state` object updates that comm's state (key by key); binary buffers named
//! by `data.buffer_paths` are kept base64-encoded by path. Output: the value of
//! `metadata.widgets` (`{"application/vnd.jupyter.widget-state+json": {"state": {...},
//! "version_major": 2, "version_minor": 0}}`), holding the models that have a
//! `_model_name`.
//!
//! Output widgets (`OutputModel`, as `with out:` and `interact` use them) capture outputs as
//! nbclient's `OutputWidget` mimic does: while a widget's state names a request's `msg_id`,
//! that request's `stream`, `display_data`, `execute_result` and `error` outputs go into the
//! widget's `outputs` (consecutive same-name streams merged) instead of the cell, and its
//! `clear_output` clears them ([`WidgetState::capture`]). Unlike nbclient, the captured outputs
//! are not sent back to the kernel's widget (only the saved state holds them).
//!
//! Differences from nbclient: a `comm_close` drops the comm's state (nbclient keeps closed
//! widgets, which then render as stale views of models that no longer exist), and the state
//! is cleared when the notebook gets a new kernel (its models died with the old one).

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The MIME key under `metadata.widgets` (`@jupyter-widgets/schema` v2).
pub const WIDGET_STATE_MIME: &str = "application/vnd.jupyter.widget-state+json";

/// Widget models seen on one kernel, in the order they first appeared.
#[derive(Debug, Default)]
pub struct WidgetState {
    /// `kernel_sessions` row id of the kernel the state belongs to.
    kernel: Option<String>,
    /// comm_id -> merged `state` dict.
    state: Map<String, Value>,
    /// comm_id -> (buffer path as JSON text -> `{data, encoding, path}`), in first-seen order.
    buffers: Map<String, Value>,
    /// Request msg_id -> Output widgets (comm ids) capturing its outputs, innermost last.
    hooks: std::collections::HashMap<String, Vec<String>>,
    /// Output widgets whose next output first clears them (`clear_output(wait=True)`).
    clear_before_next: std::collections::HashSet<String>,
}

/// IOPub message types an Output widget captures (nbclient `NotebookClient.output`).
const CAPTURED: [&str; 4] = ["stream", "display_data", "execute_result", "error"];

impl WidgetState {
    /// Applies one IOPub message of kernel `kernel` (its `kernel_sessions` id): `comm_open`
    /// and `comm_msg` with a `data.state` object merge it (and its `buffers`, matched to
    /// `data.buffer_paths` in order); `comm_close` forgets the comm; anything else is
    /// ignored. Returns whether the state changed.
    pub fn apply(
        &mut self,
        kernel: &str,
        msg_type: &str,
        content: &Value,
        buffers: &[Vec<u8>],
    ) -> bool {
        if !msg_type.starts_with("comm_") {
            return false;
        }
        if self.kernel.as_deref() != Some(kernel) {
            self.state.clear();
            self.buffers.clear();
            self.hooks.clear();
            self.clear_before_next.clear();
            self.kernel = Some(kernel.to_string());
        }
        let Some(comm_id) = content.get("comm_id").and_then(Value::as_str) else {
            return false;
        };
        if msg_type == "comm_close" {
            self.unhook(comm_id);
            let had = self.state.remove(comm_id).is_some();
            return self.buffers.remove(comm_id).is_some() || had;
        }
        let Some(data) = content.get("data").and_then(Value::as_object) else {
            return false;
        };
        let Some(Value::Object(update)) = data.get("state") else {
            return false;
        };
        let entry = self
            .state
            .entry(comm_id.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(state) = entry {
            for (k, v) in update {
                state.insert(k.clone(), v.clone());
            }
        }
        let is_output_widget = self.state.get(comm_id).and_then(|s| s.get("_model_name"))
            == Some(&Value::from("OutputModel"));
        if let (true, Some(msg_id)) = (is_output_widget, update.get("msg_id")) {
            self.unhook(comm_id);
            if let Some(id) = msg_id.as_str().filter(|id| !id.is_empty()) {
                self.hooks
                    .entry(id.to_string())
                    .or_default()
                    .push(comm_id.to_string());
            }
        }
        let paths = data
            .get("buffer_paths")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty());
        if let Some(paths) = paths {
            let slot = self
                .buffers
                .entry(comm_id.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_path) = slot {
                for (path, bytes) in paths.iter().zip(buffers) {
                    by_path.insert(
                        path.to_string(),
                        json!({
                            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
                            "encoding": "base64",
                            "path": path,
                        }),
                    );
                }
            }
        }
        true
    }

    /// Routes one output message of request `parent` to the Output widget capturing that
    /// request, if any: `stream`, `display_data`, `execute_result` and `error` are appended to
    /// its `outputs` (as nbformat outputs; a stream merged into a last stream of the same
    /// name), `clear_output` empties them (at the next output if `wait`). True when the message
    /// was captured: it must not reach the cell.
    pub fn capture(&mut self, parent: &str, msg_type: &str, content: &Value) -> bool {
        if msg_type != "clear_output" && !CAPTURED.contains(&msg_type) {
            return false;
        }
        let Some(comm_id) = self.hooks.get(parent).and_then(|h| h.last()).cloned() else {
            return false;
        };
        let Some(Value::Object(state)) = self.state.get_mut(&comm_id) else {
            return false;
        };
        let outputs = state
            .entry("outputs")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !outputs.is_array() {
            *outputs = Value::Array(Vec::new());
        }
        let Value::Array(outputs) = outputs else {
            return false;
        };
        if msg_type == "clear_output" {
            if content.get("wait").and_then(Value::as_bool) == Some(true) {
                self.clear_before_next.insert(comm_id);
            } else {
                outputs.clear();
            }
            return true;
        }
        if self.clear_before_next.remove(&comm_id) {
            outputs.clear();
        }
        let output = nbformat_output(msg_type, content);
        if let (Some(last), Some(text)) = (outputs.last_mut(), output.get("text")) {
            let same_stream = last.get("output_type") == Some(&Value::from("stream"))
                && output.get("output_type") == Some(&Value::from("stream"))
                && last.get("name") == output.get("name");
            if same_stream {
                let joined = format!(
                    "{}{}",
                    last.get("text").and_then(Value::as_str).unwrap_or(""),
                    text.as_str().unwrap_or("")
                );
                last["text"] = Value::String(joined);
                return true;
            }
        }
        outputs.push(output);
        true
    }

    /// Stops `comm_id` capturing for any request.
    fn unhook(&mut self, comm_id: &str) {
        self.hooks.retain(|_, stack| {
            stack.retain(|c| c != comm_id);
            !stack.is_empty()
        });
    }

    /// The value for `metadata.widgets`, or `None` when no widget state was seen (the
    /// notebook's metadata is then left as it is, as nbclient does).
    pub fn metadata(&self) -> Option<Value> {
        if self.state.is_empty() {
            return None;
        }
        let mut models = Map::new();
        for (comm_id, state) in &self.state {
            if state.get("_model_name").is_none() {
                continue;
            }
            let field = |k: &str| state.get(k).cloned().unwrap_or(Value::Null);
            let mut model = json!({
                "model_name": field("_model_name"),
                "model_module": field("_model_module"),
                "model_module_version": field("_model_module_version"),
                "state": state,
            });
            if let Some(Value::Object(by_path)) = self.buffers.get(comm_id) {
                if !by_path.is_empty() {
                    model["buffers"] = Value::Array(by_path.values().cloned().collect());
                }
            }
            models.insert(comm_id.clone(), model);
        }
        Some(json!({
            WIDGET_STATE_MIME: {
                "state": models,
                "version_major": 2,
                "version_minor": 0,
            }
        }))
    }
}

/// The nbformat v4 output of an IOPub output message (nbformat `output_from_msg`).
fn nbformat_output(msg_type: &str, content: &Value) -> Value {
    let field = |k: &str, default: Value| content.get(k).cloned().unwrap_or(default);
    match msg_type {
        "stream" => json!({
            "output_type": "stream",
            "name": field("name", Value::from("stdout")),
            "text": field("text", Value::from("")),
        }),
        "error" => json!({
            "output_type": "error",
            "ename": field("ename", Value::from("")),
            "evalue": field("evalue", Value::from("")),
            "traceback": field("traceback", json!([])),
        }),
        "execute_result" => json!({
            "output_type": "execute_result",
            "data": field("data", json!({})),
            "metadata": field("metadata", json!({})),
            "execution_count": field("execution_count", Value::Null),
        }),
        _ => json!({
            "output_type": "display_data",
            "data": field("data", json!({})),
            "metadata": field("metadata", json!({})),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str, state: Value) -> Value {
        json!({"comm_id": id, "target_name": "jupyter.widget", "data": {"state": state, "buffer_paths": []}})
    }

    #[test]
    fn an_output_widget_captures_its_requests_outputs_until_released() {
        let mut w = WidgetState::default();
        let out = json!({"_model_name": "OutputModel", "outputs": [], "msg_id": ""});
        w.apply("k", "comm_open", &open("o", out), &[]);
        let hook = |id: &str| json!({"comm_id": "o", "data": {"method": "update", "state": {"msg_id": id}}});
        let stream = |t: &str| json!({"name": "stdout", "text": t});
        assert!(
            !w.capture("req", "stream", &stream("before\n")),
            "not capturing yet"
        );
        w.apply("k", "comm_msg", &hook("req"), &[]);
        assert!(
            !w.capture("other", "stream", &stream("x")),
            "only its request"
        );
        assert!(w.capture("req", "stream", &stream("a")));
        assert!(w.capture("req", "stream", &stream("b\n")));
        assert!(w.capture(
            "req",
            "display_data",
            &json!({"data": {"text/plain": "d"}, "metadata": {}})
        ));
        assert!(!w.capture("req", "execute_reply", &json!({})));
        w.apply("k", "comm_msg", &hook(""), &[]);
        assert!(!w.capture("req", "stream", &stream("after")), "released");
        let state = &w.metadata().unwrap()[WIDGET_STATE_MIME]["state"]["o"]["state"];
        assert_eq!(
            state["outputs"],
            json!([
                {"output_type": "stream", "name": "stdout", "text": "ab\n"},
                {"output_type": "display_data", "data": {"text/plain": "d"}, "metadata": {}},
            ])
        );
        w.apply("k", "comm_msg", &hook("req2"), &[]);
        assert!(w.capture("req2", "clear_output", &json!({"wait": true})));
        assert!(w.capture("req2", "stream", &stream("new")));
        let state = &w.metadata().unwrap()[WIDGET_STATE_MIME]["state"]["o"]["state"];
        assert_eq!(
            state["outputs"],
            json!([{"output_type": "stream", "name": "stdout", "text": "new"}])
        );
    }

    #[test]
    fn state_is_merged_serialised_and_closed() {
        let mut w = WidgetState::default();
        assert!(w.metadata().is_none());
        assert!(w.apply("k1", "comm_open", &open("a", json!({"_model_name": "IntSliderModel", "_model_module": "@jupyter-widgets/controls", "_model_module_version": "2.0.0", "value": 1})), &[]));
        assert!(w.apply(
            "k1",
            "comm_open",
            &open("layout", json!({"width": "1px"})),
            &[]
        ));
        assert!(w.apply(
            "k1",
            "comm_msg",
            &json!({"comm_id": "a", "data": {"method": "update", "state": {"value": 7, "arr": null}, "buffer_paths": [["arr"]]}}),
            &[vec![1, 2, 3]],
        ));
        assert!(!w.apply(
            "k1",
            "comm_msg",
            &json!({"comm_id": "a", "data": {"method": "custom"}}),
            &[]
        ));
        let meta = w.metadata().expect("state");
        let state = &meta[WIDGET_STATE_MIME];
        assert_eq!(state["version_major"], 2);
        assert_eq!(state["version_minor"], 0);
        let a = &state["state"]["a"];
        assert_eq!(a["model_name"], "IntSliderModel");
        assert_eq!(a["model_module_version"], "2.0.0");
        assert_eq!(a["state"]["value"], 7);
        assert_eq!(
            a["buffers"],
            json!([{"data": "AQID", "encoding": "base64", "path": ["arr"]}])
        );
        // No _model_name: not saved.
        assert!(state["state"].get("layout").is_none());
        assert!(w.apply(
            "k1",
            "comm_close",
            &json!({"comm_id": "a", "data": {}}),
            &[]
        ));
        assert!(
            w.metadata().expect("layout remains")[WIDGET_STATE_MIME]["state"]
                .as_object()
                .is_some_and(Map::is_empty)
        );
        // A new kernel starts from nothing.
        w.apply("k2", "comm_msg", &json!({"comm_id": "x", "data": {}}), &[]);
        assert!(w.metadata().is_none());
    }
}
