//! Plain-text helpers for rendering outputs to an agent: ANSI escape stripping
//! ([`strip_ansi`]) and head-and-tail bounding of long texts ([`bound_text`]).
//!
//! These do not follow nbclient (which never alters text this way); they only
//! shape what the model reads. Notebook files keep the untouched text.

use serde::{Deserialize, Serialize};

/// Upper bound, in bytes, of the marker line [`bound_text`] inserts where it
/// cuts: `"\n"` (only when the kept head does not already end a line) +
/// `"... {omitted} bytes omitted (total {total} bytes) ...\n"`, with both
/// numbers at most 20 digits (`u64::MAX`), i.e. 1 + 37 + 40 = 78 <= 80.
pub const MARKER_MAX_BYTES: usize = 80;

/// How a text was cut by [`bound_text`]: `shown_bytes` of the original
/// `total_bytes` (UTF-8 bytes, after ANSI stripping when rendering) are kept.
/// Serialized as `{"shown_bytes": n, "total_bytes": n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    /// Bytes of the original text present in the bounded text (head + tail).
    pub shown_bytes: usize,
    /// Bytes of the whole original text.
    pub total_bytes: usize,
}

/// Removes ANSI/VT100 escape sequences (as ipykernel uses to colour
/// tracebacks): CSI (`ESC [ ... final`, also the C1 form `U+009B`), OSC
/// (`ESC ] ... BEL` or `... ESC \`), DCS/SOS/PM/APC strings (`ESC P|X|^|_ ...
/// ST`), charset designations (`ESC ( B`, ...) and two-character escapes
/// (`ESC 7`, `ESC M`, ...). A sequence cut off by the end of the text is
/// dropped. All other characters, including `\r`, `\t` and `\n`, are kept.
pub fn strip_ansi(s: &str) -> String {
    if !s.contains(['\u{1b}', '\u{9b}']) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{9b}' => skip_csi(&mut chars),
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                Some(' '..='/') => {
                    // Intermediate bytes, then one final byte.
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if !(' '..='/').contains(&n) {
                            break;
                        }
                    }
                }
                // Two-character escape, or ESC at the very end.
                Some(_) | None => {}
            },
            _ => out.push(c),
        }
    }
    out
}

/// Skips the rest of a CSI sequence: parameter and intermediate bytes up to
/// and including the final byte (`@`..=`~`).
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for n in chars.by_ref() {
        if ('@'..='~').contains(&n) {
            break;
        }
    }
}

/// Skips a control string terminated by BEL or ST (`ESC \`).
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(n) = chars.next() {
        if n == '\u{7}' {
            break;
        }
        if n == '\u{1b}' {
            if chars.peek() == Some(&'\\') {
                chars.next();
            }
            break;
        }
    }
}

/// Bounds `s` to `max_bytes` bytes of its own text, keeping the head and the
/// tail.
///
/// If `s.len() <= max_bytes`, returns `(s, None)` unchanged. Otherwise keeps a
/// head of at most `max_bytes / 2` bytes and a tail of at most
/// `max_bytes - max_bytes / 2` bytes, both cut on UTF-8 character boundaries
/// and moved to a line break when that keeps at least half of the respective
/// window, and puts between them one marker line
/// `"... {omitted} bytes omitted (total {total} bytes) ...\n"` (preceded by
/// `"\n"` when the head does not end a line).
///
/// Exact bound: `out.len() == shown_bytes + marker.len()` with
/// `shown_bytes <= max_bytes` and `marker.len() <= MARKER_MAX_BYTES`, so
/// `out.len() <= max_bytes + MARKER_MAX_BYTES`.
pub fn bound_text(s: &str, max_bytes: usize) -> (String, Option<Truncated>) {
    let total = s.len();
    let Some((head_end, tail_start)) = cut_points(s, max_bytes) else {
        return (s.to_owned(), None);
    };
    let head = &s[..head_end];
    let tail = &s[tail_start..];
    let shown = head.len() + tail.len();
    let mut out = String::with_capacity(shown + MARKER_MAX_BYTES);
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "... {} bytes omitted (total {total} bytes) ...\n",
        total - shown
    ));
    out.push_str(tail);
    (
        out,
        Some(Truncated {
            shown_bytes: shown,
            total_bytes: total,
        }),
    )
}

/// Where [`bound_text`] cuts `s`: `Some((head_end, tail_start))` (the head is
/// `s[..head_end]`, the tail `s[tail_start..]`), or `None` when `s` fits in
/// `max_bytes`.
pub fn cut_points(s: &str, max_bytes: usize) -> Option<(usize, usize)> {
    if s.len() <= max_bytes {
        return None;
    }
    let head_budget = max_bytes / 2;
    let tail_budget = max_bytes - head_budget;
    let head_end = head_cut(s, head_budget);
    // len > max_bytes, so the windows cannot overlap; max() is a safeguard.
    let tail_start = tail_cut(s, tail_budget).max(head_end);
    Some((head_end, tail_start))
}

/// Largest char boundary `<= i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Smallest char boundary `>= i`.
fn ceil_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// End of the head: at most `budget` bytes, preferably just after a `\n`.
fn head_cut(s: &str, budget: usize) -> usize {
    let end = floor_boundary(s, budget);
    match s[..end].rfind('\n') {
        Some(p) if p + 1 >= budget - budget / 2 => p + 1,
        _ => end,
    }
}

/// Start of the tail: at most `budget` bytes, preferably just after a `\n`.
fn tail_cut(s: &str, budget: usize) -> usize {
    let start = ceil_boundary(s, s.len() - budget.min(s.len()));
    if start == 0 || s.as_bytes()[start - 1] == b'\n' {
        return start;
    }
    match s[start..].find('\n') {
        Some(q) if q < budget / 2 && start + q + 1 < s.len() => start + q + 1,
        _ => start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_strip(input: &str, expected: &str) {
        assert_eq!(strip_ansi(input), expected, "input {input:?}");
    }

    #[test]
    fn strips_ansi_sequences() {
        check_strip("plain\ttext\r\n", "plain\ttext\r\n");
        check_strip("\u{1b}[0;31mNameError\u{1b}[0m: x", "NameError: x");
        check_strip("\u{1b}[1;32m\u{1b}[K->\u{1b}[39;49m", "->");
        check_strip("a\u{1b}]0;title\u{7}b", "ab");
        check_strip(
            "a\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\b",
            "alinkb",
        );
        check_strip("\u{1b}(Bx\u{1b}7y\u{1b}8", "xy");
        check_strip("\u{9b}31mred", "red");
        check_strip("é\u{1b}[31mü\u{1b}", "éü");
        check_strip("cut \u{1b}[38;5", "cut ");
    }

    /// Checks `bound_text(input, max)` against the expected text and truncation.
    fn check_bound(input: &str, max: usize, expected: &str, truncated: Option<(usize, usize)>) {
        let (out, t) = bound_text(input, max);
        assert_eq!(out, expected, "input {input:?} max {max}");
        assert_eq!(
            t.map(|t| (t.shown_bytes, t.total_bytes)),
            truncated,
            "input {input:?} max {max}"
        );
        if let Some(t) = t {
            assert!(t.shown_bytes <= max);
            assert!(out.len() <= max + MARKER_MAX_BYTES);
        }
    }

    #[test]
    fn bound_text_boundaries() {
        check_bound("", 0, "", None);
        check_bound("abc", 3, "abc", None);
        check_bound(
            "abcd",
            3,
            "a\n... 1 bytes omitted (total 4 bytes) ...\ncd",
            Some((3, 4)),
        );
        check_bound(
            "abcd",
            0,
            "... 4 bytes omitted (total 4 bytes) ...\n",
            Some((0, 4)),
        );
        check_bound(
            "abcd",
            1,
            "... 3 bytes omitted (total 4 bytes) ...\nd",
            Some((1, 4)),
        );
        // Multi-byte characters are never split: "é" is 2 bytes, "€" is 3.
        check_bound(
            "éééé",
            5,
            "é\n... 4 bytes omitted (total 8 bytes) ...\né",
            Some((4, 8)),
        );
        check_bound(
            "€€€",
            4,
            "... 9 bytes omitted (total 9 bytes) ...\n",
            Some((0, 9)),
        );
        check_bound(
            "€€€",
            6,
            "€\n... 3 bytes omitted (total 9 bytes) ...\n€",
            Some((6, 9)),
        );
        // Line breaks preferred when they keep at least half of each window.
        check_bound(
            "line1\nline2\nline3\nline4\n",
            16,
            "line1\n... 12 bytes omitted (total 24 bytes) ...\nline4\n",
            Some((12, 24)),
        );
        check_bound(
            "aaaaaaaaaaaaaaaaaaaa",
            10,
            "aaaaa\n... 10 bytes omitted (total 20 bytes) ...\naaaaa",
            Some((10, 20)),
        );
    }

    #[test]
    fn bound_text_never_exceeds_bound() {
        let s = "ab€\ncdé\n".repeat(50);
        for max in 0..s.len() + 2 {
            let (out, t) = bound_text(&s, max);
            match t {
                None => assert_eq!(out, s),
                Some(t) => {
                    assert!(t.shown_bytes <= max, "max {max}");
                    assert_eq!(t.total_bytes, s.len());
                    assert!(out.len() <= max + MARKER_MAX_BYTES);
                }
            }
        }
        let (out, _) = bound_text(&"x".repeat(100), 10);
        assert!(out.len() - 10 <= MARKER_MAX_BYTES);
        let marker = format!(
            "\n... {} bytes omitted (total {} bytes) ...\n",
            u64::MAX,
            u64::MAX
        );
        assert!(marker.len() <= MARKER_MAX_BYTES);
    }
}
