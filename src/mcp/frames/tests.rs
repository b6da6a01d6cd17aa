//! Unit tests of the frame reader and judge.

use super::*;

fn codes(v: &Verdict) -> Vec<(Value, i64)> {
    match v {
        Verdict::Reply(r) => r
            .iter()
            .map(|m| (m["id"].clone(), m["error"]["code"].as_i64().unwrap()))
            .collect(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn line(s: &[u8]) -> Verdict {
    judge(Frame::Line(s.to_vec()))
}

#[tokio::test]
async fn reader_splits_bounds_and_resumes() {
    let mut input = Vec::new();
    input.extend_from_slice(b"one\r\n");
    input.extend(std::iter::repeat_n(b'x', 100));
    input.extend_from_slice(b"\n\xff\ntwo");
    let mut r = LineReader::new(&input[..], 10);
    assert_eq!(r.next().await.unwrap(), Some(Frame::Line(b"one".to_vec())));
    assert_eq!(r.next().await.unwrap(), Some(Frame::TooLong(100)));
    assert_eq!(r.next().await.unwrap(), Some(Frame::Line(vec![0xff])));
    assert_eq!(r.next().await.unwrap(), Some(Frame::Line(b"two".to_vec())));
    assert_eq!(r.next().await.unwrap(), None);
}

#[test]
fn parse_errors_answer_with_null_id() {
    for bad in [
        &b"\xff"[..],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\0",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":NaN}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":1e400}}",
    ] {
        assert_eq!(
            codes(&line(bad)),
            vec![(Value::Null, PARSE_ERROR)],
            "{bad:?}"
        );
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        codes(&line(deep.as_bytes())),
        vec![(Value::Null, PARSE_ERROR)]
    );
    assert_eq!(
        codes(&judge(Frame::TooLong(1 << 25))),
        vec![(Value::Null, PARSE_ERROR)]
    );
}

#[test]
fn lone_surrogates_are_answered_with_the_request_id() {
    let text = br#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":"\ud800","b":"\\u00e9 \ud83d\ude00 \udcff"}}"#;
    assert_eq!(codes(&line(text)), vec![(json!(7), PARSE_ERROR)]);
    assert_eq!(
        replace_lone_surrogates(r#""\ud800 \\ud800 \ud83d\ude00 \n""#),
        r#""\ufffd \\ud800 \ud83d\ude00 \n""#
    );
}

#[test]
fn invalid_requests_are_answered() {
    let cases: [(&str, Value, i64); 9] = [
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            Value::Null,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            Value::Null,
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            Value::Null,
            INVALID_REQUEST,
        ),
        (r#"{"jsonrpc":"2.0","id":3}"#, json!(3), INVALID_REQUEST),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":7}"#,
            json!(4),
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#,
            json!(5),
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"ping","params":[1]}"#,
            json!(6),
            INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":"x"}"#,
            json!(7),
            INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":5}}"#,
            json!(8),
            INVALID_PARAMS,
        ),
    ];
    for (text, id, code) in cases {
        assert_eq!(codes(&line(text.as_bytes())), vec![(id, code)], "{text}");
    }
    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"b","method":"ping"}]"#;
    assert_eq!(
        codes(&line(batch.as_bytes())),
        vec![(json!(1), INVALID_REQUEST), (json!("b"), INVALID_REQUEST)]
    );
    assert_eq!(codes(&line(b"[]")), vec![(Value::Null, INVALID_REQUEST)]);
    assert_eq!(codes(&line(b"42")), vec![(Value::Null, INVALID_REQUEST)]);
}

#[test]
fn good_messages_and_notifications() {
    for ok in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"x","method":"tools/list","params":null}"#,
        r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","arguments":{}}}"#,
    ] {
        assert!(matches!(line(ok.as_bytes()), Verdict::Forward(..)), "{ok}");
    }
    assert!(matches!(line(b"  "), Verdict::Skip));
    assert!(matches!(
        line(br#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#),
        Verdict::Drop(_)
    ));
}
