//! Unit tests of the hub: ordering, a stalled subscriber (lagged count, never blocking the
//! publisher), filters, the stall limit, and no work without subscribers.

use super::*;

fn seq_of(ev: &Arc<Event>) -> i64 {
    let v: Value = serde_json::from_str(ev.json.as_str()).unwrap();
    v["execution_count"].as_i64().unwrap()
}

fn numbered(nb: &str, i: i64) -> Event {
    Event::execution("x", nb, None, Status::Running, Some(i))
}

async fn expect_event(sub: &mut Subscriber) -> Arc<Event> {
    match sub.next().await {
        Next::Event(ev) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn events_arrive_in_order_with_the_spec_shapes() {
    let hub = EventHub::new(16);
    let mut sub = hub.subscribe(None);
    hub.publish(Event::execution(
        "e1",
        "a.ipynb",
        Some("c1"),
        Status::Completed,
        Some(3),
    ));
    hub.publish(Event::kernel("a.ipynb", "idle", Some(42)));
    let out = serde_json::json!({"output_type": "stream", "name": "stdout", "text": "\u{1b}[31mhi\u{1b}[0m\n"});
    hub.publish(Event::output("e1", "a.ipynb", out, 8192));
    let v: Vec<Value> = [
        expect_event(&mut sub).await,
        expect_event(&mut sub).await,
        expect_event(&mut sub).await,
    ]
    .iter()
    .map(|e| serde_json::from_str(e.json.as_str()).unwrap())
    .collect();
    assert_eq!(v[0]["type"], "execution");
    assert_eq!(v[0]["execution_id"], "e1");
    assert_eq!(v[0]["notebook"], "a.ipynb");
    assert_eq!(v[0]["cell_id"], "c1");
    assert_eq!(v[0]["status"], "completed");
    assert_eq!(v[0]["execution_count"], 3);
    assert!(chrono::DateTime::parse_from_rfc3339(v[0]["at"].as_str().unwrap()).is_ok());
    assert_eq!(
        v[1],
        serde_json::json!({"type": "kernel", "notebook": "a.ipynb", "state": "idle", "pid": 42})
    );
    assert_eq!(v[2]["type"], "output");
    assert_eq!(v[2]["output"]["output_type"], "stream");
    assert_eq!(v[2]["output"]["name"], "stdout");
    assert_eq!(
        v[2]["output"]["text"], "hi\n",
        "ANSI stripped as for agents"
    );
}

#[tokio::test]
async fn output_text_is_bounded_as_for_agents() {
    let text = "line\n".repeat(100_000);
    let out = serde_json::json!({"output_type": "stream", "name": "stdout", "text": text});
    let ev = Event::output("e", "a.ipynb", out, 8192);
    assert!(
        ev.json.len() < 12 * 1024,
        "event is {} bytes",
        ev.json.len()
    );
    let v: Value = serde_json::from_str(ev.json.as_str()).unwrap();
    assert_eq!(v["output"]["truncated"]["total_bytes"], 500_000);
}

#[tokio::test]
async fn a_stalled_subscriber_loses_its_own_oldest_events_and_is_told() {
    let hub = EventHub::new(64);
    let mut stalled = hub.subscribe(None);
    let mut fast = hub.subscribe(None);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 1000 {
            match fast.next().await {
                Next::Event(ev) => seen.push(seq_of(&ev)),
                other => panic!("the fast subscriber got {other:?}"),
            }
        }
        seen
    });
    // Publishing never waits for anyone: the stalled subscriber reads nothing meanwhile.
    for i in 0..1000 {
        hub.publish(numbered("a.ipynb", i));
        if i % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "fast: all, in order");
    match stalled.next().await {
        Next::Lagged(n) => assert_eq!(n, 1000 - 64),
        other => panic!("expected lagged, got {other:?}"),
    }
    for i in (1000 - 64)..1000 {
        assert_eq!(seq_of(&expect_event(&mut stalled).await), i);
    }
    assert_eq!(hub.dropped(), 1000 - 64);
}

#[tokio::test]
async fn a_filter_keeps_one_notebook() {
    let hub = EventHub::new(64);
    let mut only_b = hub.subscribe(Some("dir/b.ipynb".into()));
    for i in 0..10 {
        hub.publish(numbered(
            if i % 2 == 0 { "a.ipynb" } else { "dir/b.ipynb" },
            i,
        ));
    }
    for i in [1, 3, 5, 7, 9] {
        let ev = expect_event(&mut only_b).await;
        assert_eq!(ev.notebook, "dir/b.ipynb");
        assert_eq!(seq_of(&ev), i);
    }
}

/// Stall limit of the tests below; they wait for twice as long (a lower bound on time passed,
/// so the outcome does not depend on the machine's speed).
const LIMIT: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_subscriber_behind_past_the_stall_limit_is_disconnected() {
    let hub = EventHub::with_stall_limit(8, LIMIT);
    let mut slow = hub.subscribe(None);
    for i in 0..20 {
        hub.publish(numbered("a.ipynb", i));
    }
    assert!(matches!(slow.next().await, Next::Lagged(12)));
    // It reads one event, then stays behind past the limit while the flood goes on.
    expect_event(&mut slow).await;
    std::thread::sleep(LIMIT * 2);
    for i in 20..40 {
        hub.publish(numbered("a.ipynb", i));
    }
    assert!(matches!(slow.next().await, Next::TooSlow));
    assert_eq!(hub.disconnected(), 1);
}

#[tokio::test]
async fn catching_up_resets_the_stall_clock() {
    let hub = EventHub::with_stall_limit(8, LIMIT);
    let mut sub = hub.subscribe(None);
    for i in 0..20 {
        hub.publish(numbered("a.ipynb", i));
    }
    assert!(matches!(sub.next().await, Next::Lagged(12)));
    for _ in 0..8 {
        expect_event(&mut sub).await;
    }
    std::thread::sleep(LIMIT * 2);
    for i in 20..40 {
        hub.publish(numbered("a.ipynb", i));
    }
    assert!(
        matches!(sub.next().await, Next::Lagged(12)),
        "caught up: lagged again, not cut"
    );
}

#[test]
fn nothing_is_built_without_subscribers() {
    let hub = EventHub::new(8);
    hub.publish_with(|| panic!("built an event nobody reads"));
    assert!(!hub.wanted());
    let sub = hub.subscribe(None);
    assert!(hub.wanted());
    assert_eq!(hub.subscribers(), 1);
    drop(sub);
    assert!(!hub.wanted());
}
