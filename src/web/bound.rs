//! Outputs as the web view shows them: nbformat outputs with multiline strings joined, long
//! text cut to its head and tail (as agents see it, but with a larger bound: a human scrolls),
//! and rich payloads past a size left out, each with a link to the whole output
//! (`/api/view/output`).

use serde_json::{json, Map, Value};

/// Text kept per output (stream text, `text/plain`, traceback): head and tail.
pub const MAX_TEXT: usize = 64 * 1024;
/// Largest rich payload (HTML, SVG, image, JSON…) sent inline, per MIME type.
pub const MAX_RICH: usize = 4 * 1024 * 1024;
/// Head share of a cut text (the rest is the tail).
const HEAD: usize = 16 * 1024;

/// nbformat multiline string (a string or a list of strings) as one string.
pub fn joined(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Cuts `text` to head and tail around a marker; `None` when it fits.
pub fn cut(text: &str, max: usize) -> Option<String> {
    if text.len() <= max {
        return None;
    }
    let head_end = floor_char(text, HEAD.min(max));
    let tail_start = ceil_char(text, text.len() - (max - HEAD.min(max)));
    let omitted = tail_start - head_end;
    Some(format!(
        "{}\n… {omitted} bytes not shown (open the whole output) …\n{}",
        &text[..head_end],
        &text[tail_start..]
    ))
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The outputs bounded for the page; `link(i)` is the URL of the whole output `i`.
pub fn outputs(outputs: &[Value], link: &dyn Fn(usize) -> String) -> Vec<Value> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, o)| one(o, &|| link(i)))
        .collect()
}

fn one(o: &Value, link: &dyn Fn() -> String) -> Value {
    let Some(obj) = o.as_object() else {
        return o.clone();
    };
    let mut out = Map::new();
    let kind = obj.get("output_type").and_then(Value::as_str).unwrap_or("");
    out.insert("output_type".into(), json!(kind));
    let mut cut_any = false;
    match kind {
        "stream" => {
            out.insert("name".into(), obj.get("name").cloned().unwrap_or(json!("")));
            let text = joined(obj.get("text").unwrap_or(&Value::Null));
            let total = text.len();
            let shown = match cut(&text, MAX_TEXT) {
                Some(c) => {
                    cut_any = true;
                    out.insert("total_bytes".into(), json!(total));
                    c
                }
                None => text,
            };
            out.insert("text".into(), json!(shown));
        }
        "error" => {
            for k in ["ename", "evalue"] {
                out.insert(k.into(), obj.get(k).cloned().unwrap_or(json!("")));
            }
            let tb: Vec<String> = obj
                .get("traceback")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(joined).collect())
                .unwrap_or_default();
            let text = tb.join("\n");
            let shown = match cut(&text, MAX_TEXT) {
                Some(c) => {
                    cut_any = true;
                    c
                }
                None => text,
            };
            out.insert("traceback".into(), json!(shown));
        }
        _ => {
            if let Some(n) = obj.get("execution_count") {
                out.insert("execution_count".into(), n.clone());
            }
            let mut data = Map::new();
            let mut omitted = Vec::new();
            if let Some(d) = obj.get("data").and_then(Value::as_object) {
                for (mime, v) in d {
                    let text = if mime.ends_with("json") && !v.is_string() && !v.is_array() {
                        v.to_string()
                    } else {
                        joined(v)
                    };
                    if mime == "text/plain" {
                        match cut(&text, MAX_TEXT) {
                            Some(c) => {
                                cut_any = true;
                                data.insert(mime.clone(), json!(c));
                            }
                            None => {
                                data.insert(mime.clone(), json!(text));
                            }
                        }
                    } else if text.len() > MAX_RICH {
                        omitted.push(json!({"mime": mime, "bytes": text.len()}));
                    } else {
                        data.insert(mime.clone(), json!(text));
                    }
                }
            }
            if !omitted.is_empty() {
                cut_any = true;
                out.insert("omitted".into(), json!(omitted));
            }
            out.insert("data".into(), Value::Object(data));
            if let Some(m) = obj.get("metadata") {
                out.insert("metadata".into(), m.clone());
            }
        }
    }
    if cut_any {
        out.insert("full".into(), json!(link()));
    }
    Value::Object(out)
}

/// The whole text of one output (for the "whole output" link): a stream's text, an error's
/// traceback, else the `mime` entry (default `text/plain`, else the first).
pub fn whole(o: &Value, mime: Option<&str>) -> Option<(String, String)> {
    let kind = o.get("output_type")?.as_str()?;
    match kind {
        "stream" => Some(("text/plain".into(), joined(o.get("text")?))),
        "error" => {
            let tb: Vec<String> = o.get("traceback")?.as_array()?.iter().map(joined).collect();
            Some(("text/plain".into(), tb.join("\n")))
        }
        _ => {
            let data = o.get("data")?.as_object()?;
            let (m, v) = match mime.and_then(|m| data.get_key_value(m)) {
                Some(kv) => kv,
                None => data
                    .get_key_value("text/plain")
                    .or_else(|| data.iter().next())?,
            };
            let text = if m.ends_with("json") && !v.is_string() && !v.is_array() {
                v.to_string()
            } else {
                joined(v)
            };
            Some((m.clone(), text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_keeps_head_and_tail_and_links_the_whole() {
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let o = json!({"output_type": "stream", "name": "stdout", "text": text});
        let b = outputs(std::slice::from_ref(&o), &|i| format!("/whole/{i}"));
        let shown = b[0]["text"].as_str().unwrap();
        assert!(shown.len() < MAX_TEXT + 100, "{}", shown.len());
        assert!(shown.starts_with("line 0\n"));
        assert!(shown.ends_with("line 19999\n"));
        assert!(shown.contains("bytes not shown"));
        assert_eq!(b[0]["full"], "/whole/0");
        assert_eq!(whole(&o, None).unwrap().1, text);
    }

    #[test]
    fn small_outputs_pass_joined_and_unmarked() {
        let o = json!({"output_type": "execute_result", "execution_count": 1,
            "data": {"text/plain": ["a\n", "b"], "text/html": ["<b>", "x</b>"]}, "metadata": {}});
        let b = outputs(&[o], &|_| unreachable!());
        assert_eq!(b[0]["data"]["text/plain"], "a\nb");
        assert_eq!(b[0]["data"]["text/html"], "<b>x</b>");
        assert!(b[0].get("full").is_none());
    }

    #[test]
    fn huge_rich_payloads_are_left_out_with_a_link() {
        let big = "x".repeat(MAX_RICH + 1);
        let o =
            json!({"output_type": "display_data", "data": {"text/html": big, "text/plain": "t"}});
        let b = outputs(&[o], &|_| "/w".into());
        assert!(b[0]["data"].get("text/html").is_none());
        assert_eq!(b[0]["omitted"][0]["mime"], "text/html");
        assert_eq!(b[0]["full"], "/w");
    }
}
