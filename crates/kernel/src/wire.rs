//! The message shape the rest of jupyter-mcp sees: header, parent and content kept as JSON
//! exactly as the kernel sent them (Jupyter messaging spec v5.3, "General Message Format").
//! Framing and HMAC verification come from `jupyter-zmq-client`'s `RawMessage`; we parse the
//! four JSON frames ourselves so that MIME bundles reach the notebook byte-for-byte.

use jupyter_zmq_client::RawMessage;
use serde_json::Value;

/// Which socket a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Replies to execute/kernel_info/... requests.
    Shell,
    /// Broadcast side effects: status, stream, display_data, execute_result, error, ...
    IoPub,
    /// `input_request` from `input()` / `getpass()`.
    Stdin,
    /// Replies to interrupt/shutdown requests.
    Control,
}

/// One received Jupyter message.
#[derive(Debug, Clone)]
pub struct WireMessage {
    /// The socket it came from.
    pub channel: Channel,
    /// `header.msg_id`.
    pub msg_id: String,
    /// `header.msg_type`, e.g. `stream`, `execute_reply`.
    pub msg_type: String,
    /// `parent_header.msg_id`; `None` when the parent header is empty.
    pub parent_msg_id: Option<String>,
    /// The whole header (kept for replies that must name it as their parent).
    pub header: Value,
    /// The content object, untouched.
    pub content: Value,
    /// Binary buffers after the content frame (widget `comm_msg` data, for instance).
    pub buffers: Vec<Vec<u8>>,
}

impl WireMessage {
    /// Parses the JSON frames of a verified raw message.
    ///
    /// Bytes that are not UTF-8 (Python's `surrogateescape` lets a kernel send them, e.g. a
    /// file name with a `\xe9` byte in a traceback) become U+FFFD instead of failing the whole
    /// message: a dropped `execute_reply` would leave its execution running forever. A content
    /// frame that is still not JSON is replaced by an object naming the problem, so the
    /// message is still routed by its header. Errors only when the header or parent header
    /// cannot be read (then the message cannot be routed at all).
    pub fn from_raw(channel: Channel, raw: &RawMessage) -> Result<WireMessage, String> {
        Ok(Self::decode(channel, raw)?.0)
    }

    /// Like [`WireMessage::from_raw`], also telling whether any frame needed a lossy decode
    /// or a replacement content (so that the caller can count and log it).
    pub fn decode(channel: Channel, raw: &RawMessage) -> Result<(WireMessage, bool), String> {
        Self::decode_parts(channel, &raw.jparts)
    }

    /// [`WireMessage::decode`] of the parts after the signature: header, parent header,
    /// metadata, content, then binary buffers (the ZeroMQ frames, or the parts of a
    /// `v1.kernel.websocket.jupyter.org` WebSocket message).
    pub fn decode_parts<B: AsRef<[u8]>>(
        channel: Channel,
        jparts: &[B],
    ) -> Result<(WireMessage, bool), String> {
        let mut lossy = false;
        let mut frame = |i: usize| -> Result<Value, String> {
            let bytes = jparts
                .get(i)
                .map(AsRef::as_ref)
                .ok_or_else(|| format!("missing frame {i}"))?;
            let text = String::from_utf8_lossy(bytes);
            if matches!(text, std::borrow::Cow::Owned(_)) {
                lossy = true;
            }
            serde_json::from_str(&text).map_err(|e| format!("frame {i} is not JSON: {e}"))
        };
        let header = frame(0)?;
        let parent = frame(1)?;
        let content = match frame(3) {
            Ok(c) => c,
            Err(e) => {
                lossy = true;
                serde_json::json!({ "jmcp_unreadable_content": e })
            }
        };
        let msg_id = header
            .get("msg_id")
            .and_then(Value::as_str)
            .ok_or("header has no msg_id")?
            .to_string();
        let msg_type = header
            .get("msg_type")
            .and_then(Value::as_str)
            .ok_or("header has no msg_type")?
            .to_string();
        let parent_msg_id = parent
            .get("msg_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let msg = WireMessage {
            channel,
            msg_id,
            msg_type,
            parent_msg_id,
            header,
            content,
            buffers: jparts.iter().skip(4).map(|b| b.as_ref().to_vec()).collect(),
        };
        Ok((msg, lossy))
    }

    /// `content.execution_state` of a `status` message.
    pub fn execution_state(&self) -> Option<&str> {
        if self.msg_type == "status" {
            self.content.get("execution_state").and_then(Value::as_str)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn raw(header: &str, parent: &str, content: &str) -> RawMessage {
        RawMessage {
            zmq_identities: vec![],
            jparts: vec![
                Bytes::from(header.to_string()),
                Bytes::from(parent.to_string()),
                Bytes::from_static(b"{}"),
                Bytes::from(content.to_string()),
            ],
        }
    }

    #[test]
    fn parses_parent_and_content_losslessly() {
        let m = WireMessage::from_raw(
            Channel::IoPub,
            &raw(
                r#"{"msg_id":"a","msg_type":"display_data"}"#,
                r#"{"msg_id":"p-1"}"#,
                r#"{"data":{"application/vnd.custom+json":{"z":1,"a":[1,2]}},"metadata":{}}"#,
            ),
        )
        .unwrap();
        assert_eq!(m.parent_msg_id.as_deref(), Some("p-1"));
        assert_eq!(m.content["data"]["application/vnd.custom+json"]["a"][1], 2);
    }

    #[test]
    fn empty_parent_header_has_no_parent() {
        let m = WireMessage::from_raw(
            Channel::IoPub,
            &raw(
                r#"{"msg_id":"a","msg_type":"status"}"#,
                "{}",
                r#"{"execution_state":"starting"}"#,
            ),
        )
        .unwrap();
        assert_eq!(m.parent_msg_id, None);
        assert_eq!(m.execution_state(), Some("starting"));
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        let mut r = raw(
            r#"{"msg_id":"a","msg_type":"stream"}"#,
            r#"{"msg_id":"p-1"}"#,
            "",
        );
        r.jparts[3] = Bytes::from_static(b"{\"name\":\"stdout\",\"text\":\"a\xffb\"}");
        let (m, lossy) = WireMessage::decode(Channel::IoPub, &r).unwrap();
        assert!(lossy);
        assert_eq!(m.content["text"], "a\u{fffd}b");
    }

    #[test]
    fn unreadable_content_still_routes_by_header() {
        let (m, lossy) = WireMessage::decode(
            Channel::Shell,
            &raw(
                r#"{"msg_id":"a","msg_type":"execute_reply"}"#,
                r#"{"msg_id":"p-1"}"#,
                "{not json",
            ),
        )
        .unwrap();
        assert!(lossy);
        assert_eq!(m.parent_msg_id.as_deref(), Some("p-1"));
        assert!(m.content.get("jmcp_unreadable_content").is_some());
    }

    #[test]
    fn header_without_msg_type_is_rejected() {
        let err = WireMessage::from_raw(Channel::Shell, &raw(r#"{"msg_id":"a"}"#, "{}", "{}"));
        assert!(err.is_err());
    }
}
