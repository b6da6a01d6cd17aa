//! Messages whose parent request is not (yet) known to this client — e.g. output of a cell
//! that kept running while the server restarted — are held here until someone claims that
//! parent `msg_id` (SPEC §5). Bounded: at most [`Limits::per_parent`] messages per parent,
//! [`Limits::total`] overall and [`Limits::max_bytes`] of message content overall (so a few
//! huge outputs cannot hold gigabytes), each kept at most [`Limits::ttl`]. Exact `msg_id`
//! match only.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::wire::WireMessage;

/// Bounds of the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages kept per parent; the oldest are dropped past it.
    pub per_parent: usize,
    /// Messages kept overall; the parent with the oldest message loses it first.
    pub total: usize,
    /// Bytes kept overall (JSON size of header and content); the oldest go first past it.
    /// A single message larger than this is dropped at once.
    pub max_bytes: usize,
    /// How long a message is kept.
    pub ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_parent: 10_000,
            total: 50_000,
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(600),
        }
    }
}

/// The buffer. Not thread-safe by itself; the client keeps it behind its routing mutex.
#[derive(Debug, Default)]
pub struct OrphanBuffer {
    limits: Limits,
    by_parent: HashMap<String, VecDeque<(Instant, usize, WireMessage)>>,
    total: usize,
    bytes: usize,
    dropped: u64,
}

impl OrphanBuffer {
    /// An empty buffer with these limits.
    pub fn new(limits: Limits) -> Self {
        OrphanBuffer {
            limits,
            ..Default::default()
        }
    }

    /// Holds a message for `parent` (received at `now`).
    pub fn push(&mut self, parent: &str, msg: WireMessage, now: Instant) {
        self.expire(now);
        let size = message_bytes(&msg);
        if size > self.limits.max_bytes {
            self.dropped += 1;
            return;
        }
        let queue = self.by_parent.entry(parent.to_string()).or_default();
        queue.push_back((now, size, msg));
        self.total += 1;
        self.bytes += size;
        if queue.len() > self.limits.per_parent {
            if let Some((_, n, _)) = queue.pop_front() {
                self.bytes -= n;
            }
            self.total -= 1;
            self.dropped += 1;
        }
        while self.total > self.limits.total || self.bytes > self.limits.max_bytes {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    /// Removes and returns everything held for `parent`, oldest first.
    pub fn claim(&mut self, parent: &str, now: Instant) -> Vec<WireMessage> {
        self.expire(now);
        let msgs: Vec<WireMessage> = self
            .by_parent
            .remove(parent)
            .map(|q| {
                q.into_iter()
                    .map(|(_, n, m)| {
                        self.bytes -= n;
                        m
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.total -= msgs.len();
        msgs
    }

    /// Messages currently held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Bytes currently held (JSON size of headers and contents).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Messages dropped because of the bounds or expiry.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        let mut removed = 0usize;
        let mut removed_bytes = 0usize;
        self.by_parent.retain(|_, q| {
            while q
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > ttl)
            {
                if let Some((_, n, _)) = q.pop_front() {
                    removed_bytes += n;
                }
                removed += 1;
            }
            !q.is_empty()
        });
        self.total -= removed;
        self.bytes -= removed_bytes;
        self.dropped += removed as u64;
    }

    /// Drops the oldest message of all; false when nothing is held.
    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .by_parent
            .iter()
            .filter_map(|(k, q)| q.front().map(|(t, _, _)| (*t, k.clone())))
            .min();
        let Some((_, key)) = oldest else {
            return false;
        };
        if let Some(q) = self.by_parent.get_mut(&key) {
            if let Some((_, n, _)) = q.pop_front() {
                self.bytes -= n;
            }
            self.total -= 1;
            self.dropped += 1;
            if q.is_empty() {
                self.by_parent.remove(&key);
            }
        }
        true
    }
}

/// JSON size of a message's header and content (what it costs to hold, roughly).
fn message_bytes(msg: &WireMessage) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(msg.msg_id.len() + msg.msg_type.len() + 64);
    let _ = serde_json::to_writer(&mut c, &msg.header);
    let _ = serde_json::to_writer(&mut c, &msg.content);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Channel;
    use serde_json::json;

    fn msg(n: u64) -> WireMessage {
        WireMessage {
            channel: Channel::IoPub,
            msg_id: format!("m{n}"),
            msg_type: "stream".into(),
            parent_msg_id: Some("p".into()),
            header: json!({}),
            content: json!({ "n": n }),
            buffers: vec![],
        }
    }

    #[test]
    fn claim_returns_messages_in_order_exact_parent_only() {
        let mut b = OrphanBuffer::new(Limits::default());
        let t = Instant::now();
        b.push("p-1", msg(1), t);
        b.push("p-10", msg(2), t);
        b.push("p-1", msg(3), t);
        let got: Vec<u64> = b
            .claim("p-1", t)
            .iter()
            .map(|m| m.content["n"].as_u64().unwrap())
            .collect();
        assert_eq!(got, vec![1, 3]);
        assert_eq!(b.len(), 1, "p-10 is not a match for p-1");
        assert!(b.claim("p-1", t).is_empty());
    }

    #[test]
    fn bounds_and_expiry_hold() {
        let limits = Limits {
            per_parent: 3,
            total: 5,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(10),
        };
        let mut b = OrphanBuffer::new(limits);
        let t = Instant::now();
        for n in 0..5 {
            b.push("a", msg(n), t);
        }
        assert_eq!(b.len(), 3, "per-parent cap keeps the newest");
        for n in 0..4 {
            b.push("b", msg(n), t + Duration::from_secs(1));
        }
        assert_eq!(b.len(), 5, "total cap");
        // b2 pushed the total over the cap: a's oldest message went first.
        assert_eq!(b.claim("a", t + Duration::from_secs(1)).len(), 2);
        b.push("c", msg(9), t + Duration::from_secs(30));
        assert_eq!(b.len(), 1, "older messages expired");
        assert!(b.dropped() > 0);
    }

    #[test]
    fn bytes_are_bounded_too() {
        let limits = Limits {
            per_parent: 10_000,
            total: 50_000,
            max_bytes: 100_000,
            ttl: Duration::from_secs(600),
        };
        let mut b = OrphanBuffer::new(limits);
        let t = Instant::now();
        let big = |n: u64| {
            let mut m = msg(n);
            m.content = json!({ "n": n, "text": "x".repeat(30_000) });
            m
        };
        for n in 0..10 {
            b.push("a", big(n), t);
        }
        assert!(b.bytes() <= 100_000, "{} bytes held", b.bytes());
        assert_eq!(b.len(), 3, "only the newest that fit are kept");
        let kept: Vec<u64> = b
            .claim("a", t)
            .iter()
            .map(|m| m.content["n"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, vec![7, 8, 9]);
        assert_eq!(b.bytes(), 0);
        // One message larger than the whole budget is not held at all.
        let mut huge = msg(99);
        huge.content = json!({ "text": "y".repeat(200_000) });
        b.push("h", huge, t);
        assert!(b.is_empty());
        assert_eq!(b.dropped(), 8);
    }
}
