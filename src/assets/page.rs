//! Paging a text asset by lines, as `read_asset(asset, offset, limit)` returns it: lines are the
//! pieces of the text ending in `"\n"` (plus a last unterminated piece), so concatenating the
//! pages from offset 0 to `eof` gives back the text byte for byte.

/// One page of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The lines of the page, with their line breaks.
    pub text: String,
    /// First line of the page (0-based).
    pub offset: usize,
    /// Offset of the next page (== `total_lines` at the end).
    pub next_offset: usize,
    /// Number of lines of the whole text.
    pub total_lines: usize,
    /// True when the page reaches the end of the text.
    pub eof: bool,
    /// True when the page is a single line longer than the byte cap, cut at the cap.
    pub line_cut: bool,
}

/// Lines `offset..offset + limit` of `text`, stopping early before the page would exceed
/// `max_bytes` (a first line longer than that is cut to `max_bytes` and flagged).
pub fn page(text: &str, offset: usize, limit: usize, max_bytes: usize) -> Page {
    let total_lines = jmcp_outputs::count_lines(text);
    let mut out = String::new();
    let mut n = 0;
    let mut line_cut = false;
    for line in text.split_inclusive('\n').skip(offset).take(limit.max(1)) {
        if out.len() + line.len() > max_bytes {
            if n == 0 {
                let mut end = max_bytes.min(line.len());
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&line[..end]);
                line_cut = true;
                n = 1;
            }
            break;
        }
        out.push_str(line);
        n += 1;
    }
    let start = offset.min(total_lines);
    let next_offset = (start + n).min(total_lines);
    Page {
        text: out,
        offset: start,
        next_offset,
        total_lines,
        eof: next_offset >= total_lines,
        line_cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_reassemble_byte_for_byte() {
        let text: String = (0..1000)
            .map(|i| format!("line {i} é\n"))
            .collect::<String>()
            + "tail";
        let mut offset = 0;
        let mut got = String::new();
        let mut pages = 0;
        loop {
            let p = page(&text, offset, 77, 1 << 20);
            assert_eq!(p.offset, offset);
            assert_eq!(p.total_lines, 1001);
            got.push_str(&p.text);
            pages += 1;
            offset = p.next_offset;
            if p.eof {
                break;
            }
        }
        assert_eq!(got, text);
        assert_eq!(pages, 13);
    }

    #[test]
    fn byte_cap_and_edges() {
        let text = "aaaa\nbbbb\ncccc\n";
        let p = page(text, 0, 10, 11);
        assert_eq!(
            (p.text.as_str(), p.next_offset, p.eof),
            ("aaaa\nbbbb\n", 2, false)
        );
        let p = page(text, 2, 10, 11);
        assert_eq!((p.text.as_str(), p.next_offset, p.eof), ("cccc\n", 3, true));
        // Past the end: empty, at eof.
        let p = page(text, 9, 10, 11);
        assert_eq!(
            (p.text.as_str(), p.offset, p.next_offset, p.eof),
            ("", 3, 3, true)
        );
        // A single line over the cap is cut, and the next page moves on.
        let long = format!("{}\nnext\n", "é".repeat(10));
        let p = page(&long, 0, 5, 5);
        assert_eq!(
            (p.text.as_str(), p.line_cut, p.next_offset),
            ("éé", true, 1)
        );
        // limit 0 still makes progress.
        assert_eq!(page(text, 0, 0, 100).next_offset, 1);
        let empty = page("", 0, 10, 10);
        assert_eq!((empty.total_lines, empty.eof), (0, true));
    }
}
