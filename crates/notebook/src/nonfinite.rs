//! `NaN`, `Infinity` and `-Infinity` in `.ipynb` files.
//!
//! Python's `json` module (which nbformat uses) reads and writes these three bare
//! tokens, so notebooks written by Python tools can hold them (in metadata such as
//! a library's saved settings, or in outputs). They are not JSON, and
//! `serde_json::Value` cannot hold a non-finite number, so [`protect`] rewrites each
//! token found outside a string into a sentinel string before parsing, and the
//! writer ([`crate::pyjson`]) writes a sentinel string back as the bare token, as
//! Python's `json.dumps` (with its default `allow_nan=True`) does.
//!
//! The sentinels start and end with the Unicode noncharacter U+FDD0, which no
//! notebook written by a tool carries in a string.

/// The sentinel string that stands for Python's `float("nan")` (`NaN` in the file).
pub const NAN: &str = "\u{fdd0}NaN\u{fdd0}";
/// The sentinel string that stands for `float("inf")` (`Infinity` in the file).
pub const INFINITY: &str = "\u{fdd0}Infinity\u{fdd0}";
/// The sentinel string that stands for `float("-inf")` (`-Infinity` in the file).
pub const NEG_INFINITY: &str = "\u{fdd0}-Infinity\u{fdd0}";

/// The bare token to write for `s` if `s` is one of the three sentinels.
pub(crate) fn token_for(s: &str) -> Option<&'static str> {
    match s {
        NAN => Some("NaN"),
        INFINITY => Some("Infinity"),
        NEG_INFINITY => Some("-Infinity"),
        _ => None,
    }
}

/// Returns `bytes` with every `NaN`, `Infinity` and `-Infinity` token outside a JSON
/// string replaced by its quoted sentinel, or `None` when there is none (the common
/// case: the caller parses the original bytes). Anything else is left as it is, so
/// that invalid JSON is still reported by the parser at the same line.
pub(crate) fn protect(bytes: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [(&[u8], &str); 3] = [
        (b"-Infinity", NEG_INFINITY),
        (b"Infinity", INFINITY),
        (b"NaN", NAN),
    ];
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut copied = 0; // bytes[..copied] are in `out` already
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if let Some((token, sentinel)) = TOKENS.iter().find(|(t, _)| bytes[i..].starts_with(t)) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 64));
            buf.extend_from_slice(&bytes[copied..i]);
            buf.push(b'"');
            buf.extend_from_slice(sentinel.as_bytes());
            buf.push(b'"');
            i += token.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    let mut buf = out?;
    buf.extend_from_slice(&bytes[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(s: &str) -> String {
        protect(s.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn tokens_outside_strings_become_sentinels() {
        assert_eq!(
            protected(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \" Infinity"}"#),
            format!(
                r#"{{"a": "{NAN}", "b": ["{INFINITY}", "{NEG_INFINITY}"], "c": "NaN \" Infinity"}}"#
            )
        );
        assert!(protect(br#"{"a": 1.5, "b": "NaN"}"#).is_none());
        assert_eq!(token_for(NAN), Some("NaN"));
        assert_eq!(token_for("NaN"), None);
    }
}
