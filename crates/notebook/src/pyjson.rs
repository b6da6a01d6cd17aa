//! A JSON writer that produces exactly what Python's
//! `json.dumps(obj, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False)`
//! produces, which is the layout `nbformat.v4.nbjson.JSONWriter.writes` uses for `.ipynb`
//! files.
//!
//! Differences from `serde_json::to_string_pretty` that matter for byte-identical files:
//! one-space indentation, keys sorted by code point, and floats in Python's `repr` form
//! (`1e-05`, `1e+16`, `100000.0`) rather than Rust's. Python's non-finite floats, held as
//! sentinel strings (see [`crate::nonfinite`]), are written as `NaN`, `Infinity`, `-Infinity`.

use serde_json::{Number, Value};
use std::fmt::Write as _;

/// Serialises `value` the way Python's `json.dumps` does with nbformat's writer settings.
/// No trailing newline is added (nbformat's `write` adds one; see `Notebook::to_json`).
pub(crate) fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => match crate::nonfinite::token_for(s) {
            Some(token) => out.push_str(token),
            None => write_str(out, s),
        },
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, level + 1);
                write_value(out, item, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Rust orders `str` by UTF-8 bytes, which is the same as Python's code-point order.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, level + 1);
                write_str(out, key);
                out.push_str(": ");
                write_value(out, item, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push('}');
        }
    }
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n(' ', level));
}

/// Python's `json` string escaping with `ensure_ascii=False`: only `"`, `\` and the C0
/// control characters are escaped; everything else (including U+007F, U+2028) is written raw.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    } else {
        // Only reachable with serde_json's `arbitrary_precision`; its Display is the source text.
        let _ = write!(out, "{n}");
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in `-4..16`, otherwise `d.ddde±XX` with at least two exponent digits.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // `{:e}` gives the shortest round-trip digits as `d[.ddd]e[-]x`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exp) {
        fixed_notation(&digits, exp)
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    };
    format!("{sign}{body}")
}

/// `digits` × 10^(exp - len + 1) in fixed notation, always with a fractional part.
fn fixed_notation(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat(exp.unsigned_abs() as usize - 1);
        return format!("0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
    } else {
        let (int, frac) = digits.split_at(int_len);
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_float(input: f64, expected: &str) {
        assert_eq!(python_float_repr(input), expected, "repr({input:?})");
    }

    fn check(input: Value, expected: &str) {
        assert_eq!(dumps(&input), expected);
    }

    #[test]
    fn floats_match_python_repr() {
        for (input, expected) in [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.5e300, "1.5e+300"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.1, "0.1"),
            (100000.0, "100000.0"),
            (-2.5, "-2.5"),
            (1.5e-7, "1.5e-07"),
            (12.375, "12.375"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            check_float(input, expected);
        }
    }

    #[test]
    fn layout_matches_python_json_dumps() {
        check(json!({}), "{}");
        check(json!([]), "[]");
        check(
            json!({"b": [1, {"x": 1.0}], "a": "\u{7f}\u{2028}\u{1b}\0é😀 \"\\ \u{8}\u{c}", "c": {}}),
            "{\n \"a\": \"\u{7f}\u{2028}\\u001b\\u0000é😀 \\\"\\\\ \\b\\f\",\n \"b\": [\n  1,\n  {\n   \"x\": 1.0\n  }\n ],\n \"c\": {}\n}",
        );
        check(
            json!([true, false, null, -3, 18446744073709551615u64]),
            "[\n true,\n false,\n null,\n -3,\n 18446744073709551615\n]",
        );
        check(
            json!({"é": 1, "z": 2, "B": 3}),
            "{\n \"B\": 3,\n \"z\": 2,\n \"é\": 1\n}",
        );
    }
}
