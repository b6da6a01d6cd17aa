//! Unit tests for [`super::render`]: the compact text, the per-cell budget,
//! images and errors.

use super::*;
use serde_json::json;

// 1x1 transparent PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

fn opts(max: usize) -> RenderOptions {
    RenderOptions {
        max_text_bytes: max,
    }
}

/// Renders `outputs` with the default budget and compares the compact text.
fn check(outputs: Value, expected_text: &str) -> Rendered {
    let outputs = outputs.as_array().cloned().unwrap_or_default();
    let r = render(&outputs, &RenderOptions::default());
    assert_eq!(r.text, expected_text);
    r
}

#[test]
fn compact_text_per_output_type() {
    let r = check(
        json!([
            {"output_type": "stream", "name": "stdout", "text": "hello\nworld\n"},
            {"output_type": "stream", "name": "stderr", "text": ["\u{1b}[31mwarn", "ing\n"]},
            {"output_type": "execute_result", "execution_count": 3, "metadata": {},
             "data": {"text/plain": "42"}},
            {"output_type": "display_data", "metadata": {},
             "data": {"text/html": "x".repeat(3277), "text/plain": "<HTML>"}},
            {"output_type": "display_data", "metadata": {}, "data": {"application/json": {"a": 1}}},
            {"output_type": "error", "ename": "NameError", "evalue": "name 'x' is not defined",
             "traceback": ["\u{1b}[0;31m---------\u{1b}[0m", "\u{1b}[0;31mNameError\u{1b}[0m: name 'x' is not defined"]},
            {"output_type": "weird"}
        ]),
        "[stdout]\nhello\nworld\n[stderr]\nwarning\n[result]\n42\n\
         [display: text/html 3.2 KiB]\n<HTML>\n[display: application/json 7 B]\n\
         [error] NameError: name 'x' is not defined\n---------\nNameError: name 'x' is not defined\n[weird]",
    );
    assert_eq!(r.outputs.len(), 7);
    assert_eq!(r.outputs[1].text.as_deref(), Some("warning\n"));
    assert_eq!(r.outputs[2].execution_count, Some(3));
    assert_eq!(r.outputs[3].mime_types, vec!["text/html", "text/plain"]);
    assert_eq!(r.outputs[4].text, None);
    assert_eq!(
        r.error,
        Some(ErrorInfo {
            ename: "NameError".into(),
            evalue: "name 'x' is not defined".into(),
            traceback: vec![
                "---------".into(),
                "NameError: name 'x' is not defined".into()
            ],
        })
    );
    assert!(r.images.is_empty());
}

#[test]
fn structured_entries_serialize_compactly() {
    let r = check(
        json!([{"output_type": "stream", "name": "stdout", "text": "a\n"}]),
        "[stdout]\na",
    );
    assert_eq!(
        serde_json::to_value(&r.outputs).ok(),
        Some(json!([{"output_type": "stream", "name": "stdout", "text": "a\n"}]))
    );
    let r = check(json!([]), "");
    assert!(r.outputs.is_empty() && r.error.is_none());
}

#[test]
fn images_are_extracted_without_whitespace() {
    let split = format!("{}\n{}\n", &PNG[..40], &PNG[40..]);
    let r = check(
        json!([
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": split, "text/plain": "<Figure size 640x480 with 1 Axes>"}},
            {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"image/jpeg": [PNG]}},
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": "not base64!"}},
            {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": "<svg/>"}}
        ]),
        "[display: image/png 68 B]\n<Figure size 640x480 with 1 Axes>\n[result: image/jpeg 68 B]\n\
         [display: image/png 11 B]\n[display: image/svg+xml 6 B]",
    );
    assert_eq!(
        r.images,
        vec![
            ImageContent {
                mime_type: "image/png".into(),
                data_base64: PNG.into()
            },
            ImageContent {
                mime_type: "image/jpeg".into(),
                data_base64: PNG.into()
            },
        ]
    );
}

#[test]
fn ten_thousand_lines_are_bounded_with_head_and_tail() {
    let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
    let outputs = vec![json!({"output_type": "stream", "name": "stdout", "text": text})];
    let r = render(&outputs, &RenderOptions::default());
    let shown = r.outputs[0].text.clone().unwrap_or_default();
    assert!(
        shown.len() <= DEFAULT_MAX_TEXT_BYTES + MARKER_MAX_BYTES,
        "{}",
        shown.len()
    );
    assert!(shown.starts_with("line 0\nline 1\n"));
    assert!(shown.ends_with("line 9998\nline 9999\n"));
    let t = r.outputs[0].truncated.unwrap_or(Truncated {
        shown_bytes: 0,
        total_bytes: 0,
    });
    assert_eq!(t.total_bytes, text.len());
    assert!(t.shown_bytes <= DEFAULT_MAX_TEXT_BYTES && t.shown_bytes > DEFAULT_MAX_TEXT_BYTES - 20);
    let omitted = format!(
        "... {} bytes omitted (total {} bytes) ...\n",
        text.len() - t.shown_bytes,
        text.len()
    );
    assert!(shown.contains(&omitted));
    // Whole lines only on both sides of the marker.
    assert!(shown.contains(&format!("\n{omitted}line ")));
    assert!(r.text.len() <= DEFAULT_MAX_TEXT_BYTES + MARKER_MAX_BYTES + "[stdout]\n".len());
}

#[test]
fn budget_is_shared_per_cell() {
    let big = "b".repeat(5000);
    let outputs = vec![
        json!({"output_type": "stream", "name": "stdout", "text": "small\n"}),
        json!({"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": big}}),
        json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["c".repeat(5000)]}),
    ];
    let r = render(&outputs, &opts(1000));
    assert_eq!(r.outputs[0].text.as_deref(), Some("small\n"));
    assert_eq!(r.outputs[0].truncated, None);
    let shown: usize = r
        .outputs
        .iter()
        .map(|o| {
            o.truncated
                .map_or(o.text.as_ref().map_or(0, String::len), |t| t.shown_bytes)
        })
        .sum();
    assert_eq!(shown, 1000);
    for o in &r.outputs[1..] {
        let t = o.truncated.unwrap_or(Truncated {
            shown_bytes: 0,
            total_bytes: 0,
        });
        assert_eq!((t.shown_bytes, t.total_bytes), (497, 5000));
        assert!(o.text.as_ref().map_or(0, String::len) <= 497 + MARKER_MAX_BYTES);
    }
    // Everything fits: nothing is cut.
    let r = render(&outputs, &opts(20_000));
    assert!(r.outputs.iter().all(|o| o.truncated.is_none()));
    // Zero budget: only markers.
    let r = render(&outputs, &opts(0));
    assert_eq!(
        r.outputs[0].text.as_deref(),
        Some("... 6 bytes omitted (total 6 bytes) ...\n")
    );
}

#[test]
fn fair_shares_cases() {
    let check_shares = |lens: &[usize], budget: usize, expected: &[usize]| {
        assert_eq!(fair_shares(lens, budget), expected, "{lens:?} {budget}");
    };
    check_shares(&[], 10, &[]);
    check_shares(&[3, 4], 7, &[3, 4]);
    check_shares(&[3, 100, 50], 60, &[3, 29, 28]);
    check_shares(&[10, 10, 10], 10, &[3, 3, 4]);
    check_shares(&[0, 100], 10, &[0, 10]);
}

#[test]
fn size_formatting() {
    assert_eq!(format_size(0), "0 B");
    assert_eq!(format_size(1023), "1023 B");
    assert_eq!(format_size(1024), "1.0 KiB");
    assert_eq!(format_size(12_595), "12.3 KiB");
    assert_eq!(format_size(3 * 1024 * 1024 / 2), "1.5 MiB");
}
