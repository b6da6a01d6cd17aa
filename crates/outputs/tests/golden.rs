//! Golden test against nbclient itself: the same recorded IOPub message lists
//! go through `tests/nbclient_golden.py` (nbclient 0.11's real
//! `NotebookClient.execute_cell` with its defaults and a fake kernel client,
//! then consecutive streams merged as JupyterLab does) and through
//! [`OutputAccumulator`]; outputs (values AND key
//! order) and execution counts must match. Skipped (prints "skipped") when
//! the project's `.venv/bin/python` (made by scripts/setup.sh) does not exist.

use jmcp_outputs::{apply_display_update, Applied, Finished, OutputAccumulator};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");

type Cell = Vec<(&'static str, Value)>;

fn stream(name: &str, text: &str) -> (&'static str, Value) {
    ("stream", json!({"name": name, "text": text}))
}

fn display(text: &str, id: Option<&str>) -> (&'static str, Value) {
    let mut c = json!({"data": {"text/plain": text, "text/html": format!("<b>{text}</b>")}, "metadata": {"k": text}});
    if let Some(id) = id {
        c["transient"] = json!({"display_id": id});
    }
    ("display_data", c)
}

fn update(text: &str, id: &str) -> (&'static str, Value) {
    (
        "update_display_data",
        json!({"data": {"text/plain": text}, "metadata": {"updated": true}, "transient": {"display_id": id}}),
    )
}

fn clear(wait: Value) -> (&'static str, Value) {
    ("clear_output", json!({ "wait": wait }))
}

fn result(count: i64, text: &str, id: Option<&str>) -> (&'static str, Value) {
    let mut c = json!({"data": {"text/plain": text}, "metadata": {}, "execution_count": count});
    if let Some(id) = id {
        c["transient"] = json!({"display_id": id});
    }
    ("execute_result", c)
}

fn scenarios() -> Vec<Vec<Cell>> {
    let tqdm: Cell = (0..200)
        .flat_map(|i| {
            [
                clear(json!(true)),
                stream("stderr", &format!("\r{i:3}/199 |{}|", "#".repeat(i / 10))),
            ]
        })
        .chain([stream("stderr", "\n"), stream("stdout", "done\n")])
        .collect();
    let many: Cell = (0..2000)
        .map(|i| {
            stream(
                if i % 7 == 0 { "stderr" } else { "stdout" },
                &format!("{i}\r{i}%\n"),
            )
        })
        .collect();
    vec![
        vec![vec![
            ("status", json!({"execution_state": "busy"})),
            ("execute_input", json!({"code": "x", "execution_count": 4})),
            stream("stdout", "hello\n"),
            result(4, "42", None),
            (
                "error",
                json!({"ename": "E", "evalue": "v", "traceback": ["\u{1b}[31mt1", "t2"]}),
            ),
        ]],
        vec![tqdm],
        vec![many],
        vec![vec![
            stream("stdout", "a\n"),
            clear(json!(false)),
            stream("stdout", "b\n"),
        ]],
        vec![vec![stream("stdout", "a\n"), clear(json!(true))]],
        vec![vec![
            stream("stdout", "a"),
            clear(json!(0)),
            stream("stdout", "b"),
            clear(json!(null)),
            display("d", None),
        ]],
        vec![vec![
            stream("stdout", "a"),
            clear(json!("w")),
            stream("stdout", "b"),
        ]],
        vec![vec![
            display("v1", Some("X")),
            display("other", None),
            display("v2", Some("X")),
            update("v3", "X"),
            update("nobody", "Y"),
        ]],
        vec![vec![
            display("a", Some("X")),
            clear(json!(false)),
            display("b", None),
            update("new", "X"),
        ]],
        vec![vec![
            display("a", Some("X")),
            clear(json!(true)),
            update("new", "X"),
            display("c", None),
            update("z", "X"),
        ]],
        vec![vec![
            stream("stderr", "e1\n"),
            stream("stdout", "10%\r20%\r"),
            display("d", None),
            stream("stdout", "100%\n"),
            stream("stderr", "x\u{8}y\r\n"),
        ]],
        vec![vec![
            display("d", None),
            stream("stderr", "e"),
            stream("stdout", "o"),
            stream("stderr", "f"),
        ]],
        vec![vec![
            stream("stderr", "e"),
            display("d", None),
            stream("stdout", "o"),
        ]],
        // Issue 8 item 14: interleaved streams keep their arrival order.
        vec![vec![
            stream("stderr", "Bar!\n"),
            stream("stdout", "Combo breaker!\n"),
            stream("stderr", "Foo!\n"),
        ]],
        vec![vec![stream("stdout", "ab\u{8}\u{8}c\n\u{8}x\u{8}")]],
        vec![
            vec![display("first", Some("X")), result(1, "r", Some("R"))],
            vec![
                update("second", "X"),
                stream("stdout", "s\n"),
                display("third", Some("X")),
            ],
            vec![result(3, "fourth", Some("X")), update("r2", "R")],
        ],
        vec![vec![
            (
                "comm_open",
                json!({"comm_id": "c1", "target_name": "custom", "data": {}}),
            ),
            (
                "comm_msg",
                json!({"comm_id": "c1", "data": {"method": "custom"}}),
            ),
            ("shutdown_reply", json!({"status": "ok"})),
            ("execute_input", json!({"code": "x", "execution_count": 9})),
            stream("stdout", "z"),
        ]],
    ]
}

/// Runs one scenario through the accumulator; foreign display updates are
/// applied to the earlier cells through their remapped display ids.
fn run_rust(cells: &[Cell]) -> Vec<Finished> {
    let mut done: Vec<Finished> = Vec::new();
    for cell in cells {
        let mut acc = OutputAccumulator::new();
        for (t, c) in cell {
            for effect in acc.apply(t, c) {
                if let Applied::ForeignDisplay {
                    display_id,
                    data,
                    metadata,
                } = effect
                {
                    for f in &mut done {
                        if let Some(ix) = f.display_ids.get(&display_id) {
                            apply_display_update(&mut f.outputs, ix, &data, &metadata);
                        }
                    }
                }
            }
        }
        done.push(acc.finish());
    }
    done
}

fn run_python(input: &Value) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nbclient_golden.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let bytes = serde_json::to_vec(input).ok()?;
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    assert!(
        out.status.success(),
        "nbclient harness failed: {:?}",
        out.status
    );
    serde_json::from_slice(&out.stdout).ok()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn matches_nbclient() {
    if !Path::new(PYTHON).exists() {
        println!("skipped: {PYTHON} not found");
        return;
    }
    let scenarios = scenarios();
    let input: Value = scenarios
        .iter()
        .map(|cells| {
            cells
                .iter()
                .map(|cell| cell.iter().map(|(t, c)| json!([t, c])).collect::<Value>())
                .collect::<Value>()
        })
        .collect();
    let expected = run_python(&input).expect("running the nbclient harness");
    let expected = expected.as_array().expect("harness output is a list");
    assert_eq!(expected.len(), scenarios.len());
    for (n, (cells, want)) in scenarios.iter().zip(expected).enumerate() {
        let got = run_rust(cells);
        let want = want.as_array().expect("scenario result is a list");
        assert_eq!(got.len(), want.len(), "scenario {n}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                Value::Array(g.outputs.clone()),
                w["outputs"],
                "scenario {n} cell {i}"
            );
            assert_eq!(
                g.execution_count.map(Value::from).unwrap_or_default(),
                w["execution_count"],
                "scenario {n} cell {i}"
            );
            let want_keys: Vec<Vec<String>> = w["outputs"]
                .as_array()
                .map(|o| o.iter().map(keys).collect())
                .unwrap_or_default();
            let got_keys: Vec<Vec<String>> = g.outputs.iter().map(keys).collect();
            assert_eq!(got_keys, want_keys, "key order, scenario {n} cell {i}");
        }
    }
}
