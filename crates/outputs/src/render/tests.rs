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
    // The marker counts against the budget: the inline text is within 8 KiB.
    assert!(shown.len() <= DEFAULT_MAX_TEXT_BYTES, "{}", shown.len());
    assert!(shown.starts_with("line 0\nline 1\n"));
    assert!(shown.ends_with("line 9998\nline 9999\n"));
    let t = r.outputs[0].truncated.unwrap_or(Truncated {
        shown_bytes: 0,
        total_bytes: 0,
    });
    assert_eq!(t.total_bytes, text.len());
    let bound = DEFAULT_MAX_TEXT_BYTES - MARKER_MAX_BYTES;
    assert!(t.shown_bytes <= bound && t.shown_bytes > bound - 20);
    let omitted = format!(
        "... {} bytes omitted (total {} bytes) ...\n",
        text.len() - t.shown_bytes,
        text.len()
    );
    assert!(shown.contains(&omitted));
    // Whole lines only on both sides of the marker.
    assert!(shown.contains(&format!("\n{omitted}line ")));
    assert!(r.text.len() <= DEFAULT_MAX_TEXT_BYTES + "[stdout]\n".len());
    // Without a sink there is no asset and no paging hint.
    assert_eq!(r.outputs[0].asset, None);
    assert_eq!(r.outputs[0].next_offset, None);
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
    assert_eq!(shown, 1000 - 2 * MARKER_MAX_BYTES);
    for o in &r.outputs[1..] {
        let t = o.truncated.unwrap_or(Truncated {
            shown_bytes: 0,
            total_bytes: 0,
        });
        assert_eq!(
            (t.shown_bytes, t.total_bytes),
            (497 - MARKER_MAX_BYTES, 5000)
        );
        assert!(o.text.as_ref().map_or(0, String::len) <= 497);
    }
    let total: usize = r
        .outputs
        .iter()
        .map(|o| o.text.as_ref().map_or(0, String::len))
        .sum();
    assert!(total <= 1000, "{total}");
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

/// A sink that records what it was offered and links everything but widgets.
#[derive(Default)]
struct Recorder {
    rich: Vec<(usize, String)>,
    texts: Vec<(usize, String)>,
}

impl AssetSink for Recorder {
    fn rich(&mut self, index: usize, mime: &str, _value: &Value) -> Option<AssetLink> {
        self.rich.push((index, mime.to_owned()));
        if mime.contains("widget") {
            return None;
        }
        Some(AssetLink {
            uri: format!("asset://{index}/{mime}"),
            bytes: 7,
            preview: (mime == "image/png").then(|| ImageContent {
                mime_type: "image/png".into(),
                data_base64: "c21hbGw=".into(),
            }),
            detail: (mime == "image/png").then(|| "1x1".to_owned()),
        })
    }
    fn text(&mut self, index: usize, text: &str) -> Option<AssetLink> {
        self.texts.push((index, text.to_owned()));
        Some(AssetLink {
            uri: format!("asset://{index}/text"),
            bytes: text.len(),
            ..AssetLink::default()
        })
    }
}

#[test]
fn sink_links_rich_entries_and_cut_texts() {
    let long: String = (0..1000).map(|i| format!("row {i}\n")).collect();
    let outputs = vec![
        json!({"output_type": "display_data", "metadata": {},
               "data": {"image/png": PNG, "text/plain": "<Figure>"}}),
        json!({"output_type": "execute_result", "execution_count": 2, "metadata": {},
               "data": {"text/html": "<table class=\"dataframe\"></table>", "text/plain": "df"}}),
        json!({"output_type": "stream", "name": "stdout", "text": long}),
        json!({"output_type": "display_data", "metadata": {},
               "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "w"}}),
    ];
    let mut sink = Recorder::default();
    let r = render_with(&outputs, &opts(2000), &mut sink);
    assert_eq!(
        sink.rich,
        vec![
            (0, "image/png".to_owned()),
            (1, "text/html".to_owned()),
            (3, "application/vnd.jupyter.widget-view+json".to_owned())
        ]
    );
    // Only the cut text is offered, whole and unmodified.
    assert_eq!(sink.texts, vec![(2, long.clone())]);
    // The preview replaces the bundle's image.
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].data_base64, "c21hbGw=");
    assert_eq!(r.outputs[0].asset.as_deref(), Some("asset://0/image/png"));
    assert_eq!(r.outputs[1].asset.as_deref(), Some("asset://1/text/html"));
    assert_eq!(r.outputs[3].asset, None);
    let cut = &r.outputs[2];
    assert_eq!(cut.asset.as_deref(), Some("asset://2/text"));
    assert_eq!(cut.total_lines, Some(1000));
    // next_offset is the first line not shown in the head.
    let shown = cut.text.clone().unwrap_or_default();
    let k = cut.next_offset.unwrap_or(0);
    assert!(shown.starts_with(&long.split_inclusive('\n').take(k).collect::<String>()));
    assert!(!shown.contains(&format!("row {k}\n")));
    assert!(r
        .text
        .contains("  image/png (PNG image, 1x1, 68 B): asset://0/image/png"));
    assert!(r
        .text
        .contains("  text/html (pandas DataFrame table (HTML), 33 B): asset://1/text/html"));
    assert!(r.text.contains(&format!(
        "read_asset(asset=\"asset://2/text\", offset={k}) for the rest (1,000 lines in all)]"
    )));
    assert_eq!(
        serde_json::to_value(&r.outputs[1].assets).ok(),
        Some(json!([{"mime_type": "text/html", "uri": "asset://1/text/html", "bytes": 7}]))
    );
}

#[test]
fn helpers() {
    assert_eq!(group_digits(0), "0");
    assert_eq!(group_digits(999), "999");
    assert_eq!(group_digits(251_888), "251,888");
    assert_eq!(group_digits(1_234_567), "1,234,567");
    assert_eq!(count_lines(""), 0);
    assert_eq!(count_lines("a"), 1);
    assert_eq!(count_lines("a\nb\n"), 2);
    assert_eq!(count_lines("a\nb"), 2);
    assert_eq!(
        full_text(&json!({"output_type": "error", "traceback": ["\u{1b}[31ma\u{1b}[0m", "b"]})),
        Some("a\nb".to_owned())
    );
    assert_eq!(
        describe("text/html", &json!("<div id=\"plotly-x\">"), None),
        "Plotly figure (HTML)"
    );
    assert_eq!(
        describe("application/vnd.foo+json", &json!({}), None),
        "JSON"
    );
}
