//! [`SessionStore`]: session state, subscriptions, offline queues and
//! retained messages, as opaque bytes committed in order and loaded back.

use glassbox_store::{SessionOp, SessionSnapshot};

use crate::Factory;

fn put(client: &str, state: &[u8]) -> SessionOp {
    SessionOp::PutSession { client_id: client.into(), state: state.to_vec() }
}

fn subscribe(client: &str, filter: &str) -> SessionOp {
    SessionOp::Subscribe { client_id: client.into(), filter: filter.into(), options: filter.as_bytes().to_vec() }
}

fn enqueue(client: &str, seq: u64) -> SessionOp {
    SessionOp::Enqueue { client_id: client.into(), seq, message: format!("{client}#{seq}").into_bytes() }
}

fn retain(topic: &str, message: Option<&str>) -> SessionOp {
    SessionOp::Retain { topic: topic.into(), message: message.map(|m| m.as_bytes().to_vec()) }
}

pub async fn committed_changes_load_back(factory: &impl Factory) {
    let store = factory.sessions().await;
    store.commit(Vec::new()).await.unwrap();
    assert_eq!(store.load().await.unwrap(), SessionSnapshot::default(), "empty at first");
    let ops = vec![
        put("d1", b"one"),
        put("d1", b"two"),
        subscribe("d1", "a/#"),
        subscribe("d1", "b/+"),
        SessionOp::Unsubscribe { client_id: "d1".into(), filter: "b/+".into() },
        enqueue("d1", 3),
        enqueue("d1", 1),
        enqueue("d1", 2),
        SessionOp::Dequeue { client_id: "d1".into(), seq: 2 },
        retain("t/1", Some("on")),
        retain("t/2", Some("off")),
        retain("t/2", None),
    ];
    store.commit(ops).await.unwrap();

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.sessions, [("d1".to_string(), b"two".to_vec())], "the last state wins");
    assert_eq!(loaded.subscriptions, [("d1".to_string(), "a/#".to_string(), b"a/#".to_vec())]);
    let queued: Vec<(&str, u64, &[u8])> = loaded.queued.iter().map(|(c, s, m)| (c.as_str(), *s, &m[..])).collect();
    assert_eq!(queued, [("d1", 1, &b"d1#1"[..]), ("d1", 3, &b"d1#3"[..])], "in seq order, without the dequeued");
    assert_eq!(loaded.retained, [("t/1".to_string(), b"on".to_vec())], "a cleared topic is gone");
}

pub async fn deleting_a_session_removes_its_subscriptions_and_queue(factory: &impl Factory) {
    let store = factory.sessions().await;
    let mut ops = Vec::new();
    for client in ["d1", "d2"] {
        ops.extend([put(client, client.as_bytes()), subscribe(client, "a/#"), enqueue(client, 1)]);
    }
    store.commit(ops).await.unwrap();
    store.commit(vec![SessionOp::DeleteSession { client_id: "d1".into() }]).await.unwrap();

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.sessions, [("d2".to_string(), b"d2".to_vec())]);
    assert_eq!(loaded.subscriptions.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["d2"]);
    assert_eq!(loaded.queued.iter().map(|q| (q.0.as_str(), q.1)).collect::<Vec<_>>(), [("d2", 1)]);
}

pub async fn flush_waits_for_changes_applied_before_it(factory: &impl Factory) {
    let store = factory.sessions().await;
    for seq in 1..=100 {
        store.apply(vec![enqueue("d1", seq)]).await.unwrap();
    }
    store.flush().await.unwrap();
    let loaded = store.load().await.unwrap();
    let seqs: Vec<u64> = loaded.queued.iter().map(|q| q.1).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}
