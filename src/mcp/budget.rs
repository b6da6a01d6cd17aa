//! The total byte budget of one tool result (issue 9 item 8, `--max-result-bytes`).
//!
//! The per-cell text bound (`--max-text-bytes`) alone does not bound a result: 100,000 tiny
//! outputs, a notebook of many cells or a `run_all_cells` of 50,000 cells each stay under it
//! and still make megabytes. So every result also gets a total budget, counted as the JSON of
//! its `structuredContent` plus its text content plus its resource links (images are bounded
//! apart: at most [`MAX_IMAGES`] per result, each downscaled past `--image-max-bytes`).
//!
//! - An execution shows at most a window of its outputs: the first and the last ones when
//!   there are too many ([`Window::head_tail`]), or a page from `output_offset`
//!   ([`Window::page`]); the result says which ranges it shows and where to page on.
//! - When the rendering is still too big, it is redone with half the text per cell and half
//!   the outputs, until it fits or reaches the floor (256 bytes of text, 2 outputs).
//! - Lists (cells of `read_notebook`, executions of `run_all_cells`) are filled in order
//!   while budget remains; the result says where to continue.

use std::ops::Range;

use rmcp::model::ContentBlock as Content;
use serde::Serialize;

/// Images returned per result at most (each is already downscaled).
pub const MAX_IMAGES: usize = 8;
/// Smallest per-cell text bound the shrinking goes down to.
pub const MIN_TEXT_BYTES: usize = 256;
/// Fewest outputs per execution the shrinking goes down to.
pub const MIN_OUTPUTS: usize = 2;

/// The bounds of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Total bytes (structured content + text + links).
    pub total: usize,
    /// Text per cell (`--max-text-bytes`, never above a third of `total`).
    pub text: usize,
    /// Outputs per execution or cell.
    pub outputs: usize,
}

impl Budget {
    /// The budget for `total` bytes with `max_text_bytes` of text per cell.
    pub fn new(total: usize, max_text_bytes: usize) -> Budget {
        Budget {
            total,
            text: max_text_bytes.min(total / 3).max(MIN_TEXT_BYTES),
            outputs: (total / 512).clamp(MIN_OUTPUTS, 1024),
        }
    }

    /// Half of each bound (not below the floors); `None` when already at the floors.
    pub fn shrink(self) -> Option<Budget> {
        if self.text <= MIN_TEXT_BYTES && self.outputs <= MIN_OUTPUTS {
            return None;
        }
        Some(Budget {
            total: self.total,
            text: (self.text / 2).max(MIN_TEXT_BYTES),
            outputs: (self.outputs / 2).max(MIN_OUTPUTS),
        })
    }

    /// The same bounds for what is left of the total.
    pub fn with_total(self, total: usize) -> Budget {
        Budget::new(total, self.text)
    }
}

/// Which outputs of `total` are shown: one or two ranges of indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Ranges shown, in order, not overlapping.
    pub ranges: Vec<Range<usize>>,
    /// Number of outputs in all.
    pub total: usize,
}

impl Window {
    /// Everything if `total <= max`; else the first `max / 2` and the last `max - max / 2`.
    pub fn head_tail(total: usize, max: usize) -> Window {
        let max = max.max(1);
        if total <= max {
            return Window {
                ranges: std::iter::once(0..total).collect(),
                total,
            };
        }
        let head = max / 2;
        let tail = max - head;
        let mut ranges = vec![];
        if head > 0 {
            ranges.push(0..head);
        }
        ranges.push(total - tail..total);
        Window { ranges, total }
    }

    /// At most `max` outputs from `offset` on.
    pub fn page(total: usize, offset: usize, max: usize) -> Window {
        let start = offset.min(total);
        Window {
            ranges: std::iter::once(start..(start + max.max(1)).min(total)).collect(),
            total,
        }
    }

    /// Also shows output `i` (e.g. the marker of outputs moved out of memory), as a range of
    /// its own when it is not shown yet.
    pub fn include(&mut self, i: usize) {
        if i >= self.total || self.ranges.iter().any(|r| r.contains(&i)) {
            return;
        }
        self.ranges.push(i..i + 1);
        self.ranges.sort_by_key(|r| r.start);
    }

    /// True when every output is shown.
    pub fn is_whole(&self) -> bool {
        self.ranges.iter().map(|r| r.len()).sum::<usize>() == self.total
    }

    /// The first output not shown, after the first range (where paging goes on).
    pub fn next_offset(&self) -> Option<usize> {
        let first = self.ranges.first()?;
        if first.end < self.total && !self.ranges.iter().skip(1).any(|r| r.start == first.end) {
            Some(first.end)
        } else {
            None
        }
    }
}

/// Bytes a result costs against the budget: the JSON of `structured`, the text, and every
/// non-image content block.
pub fn measure<T: Serialize>(structured: &T, text: &str, extra: &[Content]) -> usize {
    let s = serde_json::to_vec(structured).map_or(0, |v| v.len());
    let links: usize = extra
        .iter()
        .filter(|c| c.as_image().is_none())
        .map(|c| serde_json::to_vec(c).map_or(0, |v| v.len()))
        .sum();
    s + text.len() + links
}

/// Keeps at most [`MAX_IMAGES`] image blocks (the first ones) and every other block.
pub fn cap_images(extra: Vec<Content>) -> Vec<Content> {
    let mut n = 0;
    extra
        .into_iter()
        .filter(|c| {
            if c.as_image().is_some() {
                n += 1;
                n <= MAX_IMAGES
            } else {
                true
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let w = Window::head_tail(10, 20);
        assert!(w.is_whole());
        assert_eq!(w.next_offset(), None);
        let w = Window::head_tail(100_000, 96);
        assert_eq!(w.ranges, vec![0..48, 99_952..100_000]);
        assert_eq!(w.next_offset(), Some(48));
        let p = Window::page(100_000, 48, 96);
        assert_eq!(p.ranges, vec![48..144]);
        assert_eq!(p.next_offset(), Some(144));
        let mut m = Window::head_tail(1000, 10);
        m.include(500);
        assert_eq!(m.ranges, vec![0..5, 500..501, 995..1000]);
        assert_eq!(m.next_offset(), Some(5));
        let last = Window::page(100, 90, 96);
        assert_eq!(last.ranges, vec![90..100]);
        assert_eq!(last.next_offset(), None);
    }

    #[test]
    fn budgets_shrink_to_a_floor() {
        let mut b = Budget::new(48 * 1024, 8192);
        assert_eq!(b.text, 8192);
        let mut steps = 0;
        while let Some(s) = b.shrink() {
            b = s;
            steps += 1;
        }
        assert!(steps < 20);
        assert_eq!((b.text, b.outputs), (MIN_TEXT_BYTES, MIN_OUTPUTS));
        assert_eq!(
            Budget::new(6000, 8192).text,
            2000,
            "text never above a third"
        );
    }
}
