//! Unit tests for [`super::OutputAccumulator`]: each nbclient behaviour as a
//! message list and the outputs nbclient leaves (checked against nbclient 0.11
//! itself by `tests/golden.rs` for the same kinds of cases).

use super::*;
use serde_json::json;

fn stream(name: &str, text: &str) -> (&'static str, Value) {
    ("stream", json!({"name": name, "text": text}))
}

fn display(text: &str, id: Option<&str>) -> (&'static str, Value) {
    let mut c = json!({"data": {"text/plain": text}, "metadata": {}});
    if let Some(id) = id {
        c["transient"] = json!({"display_id": id});
    }
    ("display_data", c)
}

fn update(text: &str, id: &str) -> (&'static str, Value) {
    (
        "update_display_data",
        json!({"data": {"text/plain": text}, "metadata": {"u": 1}, "transient": {"display_id": id}}),
    )
}

fn clear(wait: bool) -> (&'static str, Value) {
    ("clear_output", json!({"wait": wait}))
}

fn out_stream(name: &str, text: &str) -> Value {
    json!({"output_type": "stream", "name": name, "text": text})
}

fn out_display(text: &str, metadata: Value) -> Value {
    json!({"output_type": "display_data", "metadata": metadata, "data": {"text/plain": text}})
}

fn run(messages: &[(&str, Value)]) -> OutputAccumulator {
    let mut acc = OutputAccumulator::new();
    for (t, c) in messages {
        acc.apply(t, c);
    }
    acc
}

/// Feeds `messages`, then checks the finished outputs and execution count,
/// and that `snapshot()` agreed with `finish()`.
fn check(messages: &[(&str, Value)], expected: Value, count: Option<i64>) {
    let acc = run(messages);
    let snapshot = acc.snapshot();
    let finished = acc.finish();
    assert_eq!(Value::Array(finished.outputs.clone()), expected);
    assert_eq!(finished.execution_count, count);
    assert_eq!(snapshot, finished.outputs);
}

#[test]
fn basic_outputs_and_execution_count() {
    check(
        &[
            ("status", json!({"execution_state": "busy"})),
            ("execute_input", json!({"code": "1", "execution_count": 7})),
            stream("stdout", "hi\n"),
            (
                "execute_result",
                json!({"data": {"text/plain": "1"}, "metadata": {}, "execution_count": 7, "transient": {}}),
            ),
            (
                "error",
                json!({"ename": "E", "evalue": "v", "traceback": ["t1", "t2"], "extra": 1}),
            ),
            ("status", json!({"execution_state": "idle"})),
        ],
        json!([
            {"output_type": "stream", "name": "stdout", "text": "hi\n"},
            {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "1"}, "execution_count": 7},
            {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}
        ]),
        Some(7),
    );
    // A later content with `"execution_count": null` resets it, as nbclient does.
    check(
        &[
            ("execute_input", json!({"execution_count": 3})),
            ("execute_reply_like", json!({"execution_count": null})),
        ],
        json!([]),
        None,
    );
}

#[test]
fn key_order_follows_nbformat() {
    let acc = run(&[
        display("d", Some("x")),
        (
            "execute_result",
            json!({"execution_count": 1, "data": {}, "metadata": {}}),
        ),
    ]);
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        keys(&acc.outputs()[0]),
        Some(vec!["output_type".into(), "metadata".into(), "data".into()])
    );
    assert_eq!(
        keys(&acc.outputs()[1]),
        Some(vec![
            "output_type".into(),
            "metadata".into(),
            "data".into(),
            "execution_count".into()
        ])
    );
}

#[test]
fn ignored_messages() {
    let mut acc = OutputAccumulator::new();
    let cases = [
        ("status", json!({"execution_state": "idle"})),
        ("execute_input", json!({"code": "x"})),
        ("comm_open", json!({"comm_id": "c", "data": {}})),
        ("comm_msg", json!({"comm_id": "c", "data": {"state": {}}})),
        ("shutdown_reply", json!({})),
        ("stream", json!({"name": "stdout"})),
        ("stream", json!({"name": 3, "text": "x"})),
        ("display_data", json!({"metadata": {}})),
        ("error", json!({"traceback": []})),
        ("update_display_data", json!({"data": {}, "metadata": {}})),
        (
            "update_display_data",
            json!({"data": {}, "transient": {"display_id": "none"}}),
        ),
        ("stream", Value::Null),
    ];
    for (t, c) in &cases {
        let effects = acc.apply(t, c);
        assert_eq!(effects[0], Applied::Unchanged, "{t} {c}");
    }
    assert!(acc.outputs().is_empty());
    assert_eq!(acc.len_messages(), cases.len() as u64);
}

#[test]
fn clear_output_now_and_deferred() {
    check(
        &[stream("stdout", "a"), clear(false), stream("stdout", "b")],
        json!([out_stream("stdout", "b")]),
        None,
    );
    // wait=True: outputs stay until the next output arrives.
    let mut acc = run(&[stream("stdout", "a"), clear(true)]);
    assert_eq!(acc.outputs().len(), 1);
    assert!(acc.clear_pending());
    let (t, c) = display("d", None);
    assert_eq!(acc.apply(t, &c)[0], Applied::Changed);
    assert_eq!(acc.outputs(), &[out_display("d", json!({}))]);
    // A pending clear with no later output is dropped at the end of the cell.
    check(
        &[
            stream("stdout", "a"),
            clear(true),
            ("status", json!({"execution_state": "idle"})),
        ],
        json!([out_stream("stdout", "a")]),
        None,
    );
    // Python truthiness of `wait`.
    check(
        &[
            stream("stdout", "a"),
            ("clear_output", json!({"wait": 0})),
            stream("stdout", "b"),
        ],
        json!([out_stream("stdout", "b")]),
        None,
    );
    check(
        &[
            stream("stdout", "a"),
            ("clear_output", json!({"wait": "yes"})),
        ],
        json!([out_stream("stdout", "a")]),
        None,
    );
}

#[test]
fn tqdm_like_loop_keeps_final_state() {
    let mut acc = OutputAccumulator::new();
    for i in 0..200 {
        acc.apply("clear_output", &json!({"wait": true}));
        acc.apply(
            "stream",
            &json!({"name": "stderr", "text": format!("\r{i:3}/199 [{}]", "#".repeat(i / 10))}),
        );
        assert_eq!(acc.outputs().len(), 1);
    }
    acc.apply("stream", &json!({"name": "stderr", "text": "\n"}));
    let finished = acc.finish();
    assert_eq!(
        finished.outputs,
        vec![out_stream(
            "stderr",
            &format!("199/199 [{}]\n", "#".repeat(19))
        )]
    );
}

#[test]
fn update_display_data_updates_and_never_appends() {
    let mut acc = run(&[display("v1", Some("X")), stream("stdout", "s\n")]);
    let (t, c) = update("v2", "X");
    let effects = acc.apply(t, &c);
    assert_eq!(
        effects,
        vec![
            Applied::Changed,
            Applied::ForeignDisplay {
                display_id: "X".into(),
                data: json!({"text/plain": "v2"}),
                metadata: json!({"u": 1}),
            }
        ]
    );
    let (t, c) = update("v3", "other");
    assert_eq!(acc.apply(t, &c)[0], Applied::Unchanged);
    let finished = acc.finish();
    assert_eq!(
        finished.outputs,
        vec![
            out_display("v2", json!({"u": 1})),
            out_stream("stdout", "s\n")
        ]
    );
    assert_eq!(finished.display_ids.get("X"), Some(&vec![0]));
}

#[test]
fn display_data_with_id_updates_earlier_and_appends() {
    check(
        &[
            display("a", Some("X")),
            display("other", None),
            display("b", Some("X")),
        ],
        json!([
            out_display("b", json!({})),
            out_display("other", json!({})),
            out_display("b", json!({}))
        ]),
        None,
    );
    // `transient` is never stored, and execute_result ids behave the same.
    let acc = run(&[(
        "execute_result",
        json!({"data": {"text/plain": "r"}, "metadata": {}, "execution_count": 2, "transient": {"display_id": "R"}}),
    )]);
    assert!(acc.outputs()[0].get("transient").is_none());
    assert_eq!(acc.display_ids().get("R"), Some(&vec![0]));
}

#[test]
fn clear_resets_display_id_mapping() {
    // After clear(wait=False) the old index no longer refers to anything.
    check(
        &[
            display("a", Some("X")),
            clear(false),
            display("b", None),
            update("new", "X"),
        ],
        json!([out_display("b", json!({}))]),
        None,
    );
    // Deferred clear: the update still hits the old output, then the clear runs.
    let acc = run(&[display("a", Some("X")), clear(true), update("new", "X")]);
    assert_eq!(acc.outputs(), &[out_display("new", json!({"u": 1}))]);
    let acc = run(&[
        display("a", Some("X")),
        clear(true),
        update("new", "X"),
        display("c", None),
        update("z", "X"),
    ]);
    assert_eq!(acc.outputs(), &[out_display("c", json!({}))]);
    assert_eq!(acc.display_ids().get("X"), Some(&vec![]));
    assert!(acc.finish().display_ids.is_empty());
}

#[test]
fn many_stream_messages_make_one_output() {
    let mut acc = OutputAccumulator::new();
    let mut expected = String::new();
    for i in 0..20_000 {
        let text = format!("line {i}\n");
        expected.push_str(&text);
        acc.apply("stream", &json!({"name": "stdout", "text": text}));
        assert_eq!(acc.outputs().len(), 1);
    }
    assert_eq!(acc.len_messages(), 20_000);
    let finished = acc.finish();
    assert_eq!(finished.outputs, vec![out_stream("stdout", &expected)]);
}

#[test]
fn carriage_returns_and_backspaces() {
    check(
        &[
            stream("stdout", "10%\r"),
            stream("stdout", "20%\r"),
            stream("stdout", "100%\n"),
        ],
        json!([out_stream("stdout", "100%\n")]),
        None,
    );
    check(
        &[stream("stdout", "ab\u{8}c\r\n"), stream("stdout", "x\r")],
        json!([out_stream("stdout", "ac\r\nx\r")]),
        None,
    );
}

#[test]
fn streams_keep_arrival_order_across_other_outputs() {
    check(
        &[
            stream("stderr", "warn\n"),
            stream("stdout", "a\n"),
            display("d", None),
            stream("stdout", "b\n"),
            stream("stderr", "warn2\n"),
        ],
        json!([
            out_stream("stderr", "warn\n"),
            out_stream("stdout", "a\n"),
            out_display("d", json!({})),
            out_stream("stdout", "b\n"),
            out_stream("stderr", "warn2\n"),
        ]),
        None,
    );
}

#[test]
fn display_ids_are_remapped_through_coalescing() {
    let acc = run(&[
        stream("stderr", "e\n"),
        display("x", None),
        stream("stderr", "f\n"),
        display("d", Some("D")),
        stream("stdout", "o\n"),
    ]);
    assert_eq!(acc.display_ids().get("D"), Some(&vec![3]));
    let finished = acc.finish();
    assert_eq!(finished.display_ids.get("D"), Some(&vec![3]));
    // A later cell's update is applied to this cell by the caller.
    let mut outputs = finished.outputs;
    let mut later = OutputAccumulator::new();
    let (t, c) = update("new", "D");
    for effect in later.apply(t, &c) {
        if let Applied::ForeignDisplay {
            display_id,
            data,
            metadata,
        } = effect
        {
            if let Some(indices) = finished.display_ids.get(&display_id) {
                apply_display_update(&mut outputs, indices, &data, &metadata);
            }
        }
    }
    assert_eq!(outputs[3], out_display("new", json!({"u": 1})));
    assert_eq!(outputs[0], out_stream("stderr", "e\n"));
    assert!(later.outputs().is_empty());
}

#[test]
fn apply_display_update_skips_bad_indices() {
    let mut outputs = vec![out_stream("stdout", "s"), json!(null)];
    apply_display_update(&mut outputs, &[0, 1, 5], &json!({"a": "b"}), &json!({}));
    assert_eq!(
        outputs[0],
        json!({"output_type": "stream", "name": "stdout", "text": "s", "data": {"a": "b"}, "metadata": {}})
    );
    assert_eq!(outputs[1], json!(null));
}

#[test]
fn output_from_msg_shapes() {
    let check_msg = |t: &str, c: Value, expected: Option<Value>| {
        assert_eq!(output_from_msg(t, &c), expected, "{t} {c}");
    };
    check_msg(
        "stream",
        json!({"name": "stdout", "text": ["a", "b"]}),
        Some(out_stream("stdout", "ab")),
    );
    check_msg(
        "display_data",
        json!({"data": {"text/plain": "x"}}),
        Some(out_display("x", json!({}))),
    );
    check_msg(
        "execute_result",
        json!({"data": {}, "metadata": {"m": 1}}),
        Some(
            json!({"output_type": "execute_result", "metadata": {"m": 1}, "data": {}, "execution_count": null}),
        ),
    );
    check_msg(
        "error",
        json!({"ename": "E", "evalue": ""}),
        Some(json!({"output_type": "error", "ename": "E", "evalue": "", "traceback": []})),
    );
    check_msg("update_display_data", json!({"data": {}}), None);
    check_msg("clear_output", json!({}), None);
}
