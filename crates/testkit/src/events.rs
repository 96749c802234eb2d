//! [`EventStore`]: append, then read back by id, query, chain, lineage and
//! position; record transitions; settings; status.

use std::time::Duration;

use chrono::Utc;
use glassbox_core::{Data, Draft, Event, EventId, EventQuery, IdMinter, State, TypePattern};
use glassbox_store::{COMMIT_SECONDS_BUCKETS, Ingress, StoreError, Transition};
use serde_json::value::RawValue;

use crate::{Factory, NODE};

/// A recorded-to-be event of `ty` from `source`, with a small JSON body.
pub fn event(minter: &IdMinter, source: &str, ty: &str, device: Option<&str>) -> Event {
    let draft = Draft {
        source: source.into(),
        ty: ty.into(),
        device: device.map(Into::into),
        data: Data::Json(RawValue::from_string(r#"{"temperature":21.5}"#.into()).unwrap()),
        ..Draft::default()
    };
    draft.into_event(minter.mint(), Utc::now(), None)
}

/// `event` as received now by a test ingress on [`NODE`].
pub fn ingress(event: Event) -> Ingress {
    Ingress::new(event, Utc::now(), "test", NODE)
}

fn ids(events: &[glassbox_core::RecordedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event.id).collect()
}

pub async fn appended_event_reads_back_with_its_received_state(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let sent = event(&minter, "sensors", "telemetry", Some("d1"));
    let appended = store.append(vec![ingress(sent.clone())]).await.unwrap();
    assert_eq!(appended[0].id, sent.id);
    assert!(!appended[0].duplicate);

    let got = store.get(sent.id).await.unwrap().expect("recorded");
    assert_eq!(got.event, sent);
    assert_eq!(got.states.len(), 1);
    assert_eq!(got.states[0].state, State::Received);
    assert_eq!(got.states[0].detail.as_deref(), Some("test"));
}

pub async fn every_state_transition_is_recorded_in_order(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let e = event(&minter, "s", "t", None);
    store.append(vec![ingress(e.clone())]).await.unwrap();
    let all_but_received: Vec<State> = State::ALL.into_iter().filter(|s| *s != State::Received).collect();
    let transitions = all_but_received
        .iter()
        .map(|state| Transition {
            event: e.id,
            state: *state,
            at: Utc::now(),
            target: Some("fn:thermostat".into()),
            detail: Some(format!("{state} detail")),
            in_transit_at: None,
        })
        .collect();
    store.record(transitions).await.unwrap();

    let got = store.get(e.id).await.unwrap().unwrap();
    let states: Vec<State> = got.states.iter().map(|s| s.state).collect();
    assert_eq!(states, State::ALL);
    assert_eq!(got.states[3].target.as_deref(), Some("fn:thermostat"));
    assert_eq!(got.states[3].node.as_deref(), Some(NODE));
}

/// A delivery's end may carry when it went in transit: the event then
/// reads back with both states, and is found by either.
pub async fn a_delivery_end_with_its_in_transit_time_reads_back_as_both_states(factory: &impl Factory) {
    let store = factory.events().await;
    let e = event(&IdMinter::new(), "s", "t", None);
    store.append(vec![ingress(e.clone())]).await.unwrap();
    let sent_at = Utc::now() - chrono::Duration::milliseconds(3);
    let delivered = Transition {
        in_transit_at: Some(sent_at),
        ..Transition::new(e.id, State::Delivered, Some("sub".into()), Some("qos 1".into()))
    };
    store.record(vec![delivered.clone()]).await.unwrap();

    let got = store.get(e.id).await.unwrap().unwrap();
    let states: Vec<_> = got.states.iter().map(|s| (s.state, s.target.as_deref(), s.detail.as_deref())).collect();
    let expected = [
        (State::Received, None, Some("test")),
        (State::InTransit, Some("sub"), None),
        (State::Delivered, Some("sub"), Some("qos 1")),
    ];
    assert_eq!(states, expected);
    assert_eq!(got.states[1].at.timestamp_micros(), sent_at.timestamp_micros());
    assert_eq!(got.states[2].at.timestamp_micros(), delivered.at.timestamp_micros());
    for state in [State::InTransit, State::Delivered] {
        let found = store.query(&EventQuery { state: Some(state), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&found.events), [e.id], "found by {state}");
    }
}

pub async fn transition_for_an_unknown_event_is_refused(factory: &impl Factory) {
    let store = factory.events().await;
    let id = IdMinter::new().mint();
    let t = Transition::new(id, State::InTransit, None, None);
    assert!(matches!(store.record(vec![t]).await, Err(StoreError::UnknownEvent(got)) if got == id));
}

pub async fn retry_with_same_source_and_originid_returns_the_first_event(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let with_origin =
        |source: &str| Event { originid: Some("producer-42".into()), ..event(&minter, source, "t", None) };
    let first = store.append(vec![ingress(with_origin("a"))]).await.unwrap().remove(0);
    // Same batch and later batches both see the first one.
    let again = store.append(vec![ingress(with_origin("a")), ingress(with_origin("a"))]).await.unwrap();
    assert!(again.iter().all(|a| a.duplicate && a.id == first.id));
    // Another source with the same origin id is a different event.
    let other = store.append(vec![ingress(with_origin("b"))]).await.unwrap().remove(0);
    assert!(!other.duplicate);
    let page = store.query(&EventQuery::default()).await.unwrap();
    assert_eq!(page.events.len(), 2);
}

pub async fn query_filters_newest_first_and_pages(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let mut batch = Vec::new();
    for i in 0..25 {
        let device = format!("d{}", i % 3);
        let ty = if i % 2 == 0 { "device.message" } else { "device.connected" };
        batch.push(ingress(event(&minter, "mqtt", ty, Some(&device))));
    }
    batch.push(ingress(event(&minter, "http", "order.created", None)));
    store.append(batch).await.unwrap();

    let by_device = EventQuery { device: Some("d1".into()), ..Default::default() };
    let page = store.query(&by_device).await.unwrap();
    assert_eq!(page.events.len(), 8);
    assert!(page.events.windows(2).all(|w| w[0].event.id > w[1].event.id), "newest first");

    let prefix = EventQuery { ty: Some(TypePattern::parse("device.*")), ..Default::default() };
    assert_eq!(store.query(&prefix).await.unwrap().events.len(), 25);
    let exact = EventQuery { ty: Some(TypePattern::parse("device.message")), ..Default::default() };
    assert_eq!(store.query(&exact).await.unwrap().events.len(), 13);
    let source = EventQuery { source: Some("http".into()), ..Default::default() };
    assert_eq!(store.query(&source).await.unwrap().events[0].event.ty, "order.created");

    let mut seen = Vec::new();
    let mut q = EventQuery { limit: 10, ..Default::default() };
    loop {
        let page = store.query(&q).await.unwrap();
        seen.extend(page.events.into_iter().map(|e| e.event.id));
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 26);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "pages continue without gaps or repeats");

    let bad = EventQuery { cursor: Some("nope".into()), ..Default::default() };
    assert!(matches!(store.query(&bad).await, Err(StoreError::InvalidQuery(_))));
}

pub async fn query_by_state_and_time_range(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let early = event(&minter, "s", "t", None);
    store.append(vec![ingress(early.clone())]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late: Vec<Event> = (0..3).map(|_| event(&minter, "s", "t", None)).collect();
    store.append(late.iter().cloned().map(ingress).collect()).await.unwrap();
    let dropped = Transition {
        event: late[1].id,
        state: State::Dropped,
        at: Utc::now(),
        target: Some("sub".into()),
        detail: Some("queue_full".into()),
        in_transit_at: None,
    };
    store.record(vec![dropped.clone(), Transition { target: Some("sub2".into()), ..dropped }]).await.unwrap();
    // A delivery's end carrying when it went in transit reads back as two states.
    let queued_at = Utc::now() - chrono::Duration::milliseconds(3);
    let delivered = Transition {
        in_transit_at: Some(queued_at),
        ..Transition::new(late[2].id, State::Delivered, Some("sub".into()), None)
    };
    store.record(vec![delivered]).await.unwrap();

    let since = store.query(&EventQuery { since: Some(boundary), ..Default::default() }).await.unwrap();
    assert_eq!(since.events.len(), 3);
    let until = store.query(&EventQuery { until: Some(boundary), ..Default::default() }).await.unwrap();
    assert_eq!(ids(&until.events), [early.id]);

    let by_state = store.query(&EventQuery { state: Some(State::Dropped), ..Default::default() }).await.unwrap();
    assert_eq!(by_state.events.len(), 1, "one event even with two dropped deliveries");
    assert_eq!(by_state.events[0].event.id, late[1].id);
    assert_eq!(by_state.events[0].states.len(), 3);
    let received = store.query(&EventQuery { state: Some(State::Received), ..Default::default() }).await.unwrap();
    assert_eq!(received.events.len(), 4);
    let in_transit = store.query(&EventQuery { state: Some(State::InTransit), ..Default::default() }).await.unwrap();
    assert_eq!(ids(&in_transit.events), [late[2].id]);
    let states: Vec<_> = in_transit.events[0].states.iter().map(|s| (s.state, s.target.clone())).collect();
    let sub = Some("sub".to_string());
    assert_eq!(states, [(State::Received, None), (State::InTransit, sub.clone()), (State::Delivered, sub)]);
    assert_eq!(in_transit.events[0].states[1].at.timestamp_micros(), queued_at.timestamp_micros());
}

pub async fn chain_returns_the_whole_correlation_oldest_first(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let origin = event(&minter, "s", "t", None);
    let child = Event {
        correlationid: origin.correlationid.clone(),
        causationid: Some(origin.id.to_string()),
        hop: 1,
        ..event(&minter, "fn", "out", None)
    };
    let unrelated = event(&minter, "s", "t", None);
    store.append(vec![ingress(origin.clone()), ingress(unrelated), ingress(child.clone())]).await.unwrap();
    let chain = store.chain(&origin.correlationid, 100).await.unwrap();
    assert_eq!(ids(&chain.events), [origin.id, child.id]);
    assert!(!chain.truncated);
    let short = store.chain(&origin.correlationid, 1).await.unwrap();
    assert!(short.truncated);
    let lineage = store.lineage(&child.id.to_string()).await.unwrap().unwrap();
    assert_eq!((lineage.correlationid, lineage.hop), (origin.correlationid, 1));
}

pub async fn lineage_of_an_unknown_event_is_none(factory: &impl Factory) {
    let store = factory.events().await;
    let known = event(&IdMinter::new(), "s", "t", None);
    store.append(vec![ingress(known.clone())]).await.unwrap();
    assert!(store.lineage(&IdMinter::new().mint().to_string()).await.unwrap().is_none());
    assert!(store.get(IdMinter::new().mint()).await.unwrap().is_none());
    let lineage = store.lineage(&known.id.to_string()).await.unwrap().expect("known");
    assert_eq!((lineage.correlationid, lineage.hop), (known.correlationid, 0));
    assert!(store.chain("no-such-chain", 10).await.unwrap().events.is_empty());
}

pub async fn get_many_returns_the_events_that_exist_in_id_order_without_states(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let events: Vec<Event> = (0..4).map(|_| event(&minter, "s", "t", None)).collect();
    store.append(events.iter().cloned().map(ingress).collect()).await.unwrap();
    let processed = Transition::new(events[2].id, State::Processed, Some("fn:f".into()), None);
    store.record(vec![processed]).await.unwrap();

    let unknown = minter.mint();
    let asked = vec![events[3].id, unknown, events[0].id, events[2].id];
    let got = store.get_many(asked).await.unwrap();
    assert_eq!(ids(&got), [events[0].id, events[2].id, events[3].id]);
    assert_eq!(got[1].event, events[2]);
    assert!(got.iter().all(|e| e.states.iter().all(|s| s.state == State::Received)), "no transitions");
    assert!(store.get_many(Vec::new()).await.unwrap().is_empty());
}

pub async fn read_after_walks_forward_oldest_first_without_states(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let before = minter.mint();
    let events: Vec<Event> = (0..5).map(|_| event(&minter, "s", "t", None)).collect();
    store.append(events.iter().cloned().map(ingress).collect()).await.unwrap();
    let processed = Transition::new(events[1].id, State::Processed, Some("fn:f".into()), None);
    store.record(vec![processed]).await.unwrap();

    let first = store.read_after(before, 3).await.unwrap();
    assert_eq!(ids(&first), [events[0].id, events[1].id, events[2].id]);
    assert_eq!(first[1].event, events[1]);
    assert!(first.iter().all(|e| e.states.iter().all(|s| s.state == State::Received)), "no transitions");
    let rest = store.read_after(events[2].id, 3).await.unwrap();
    assert_eq!(ids(&rest), [events[3].id, events[4].id]);
    assert!(store.read_after(events[4].id, 3).await.unwrap().is_empty(), "nothing after the last");
}

pub async fn ids_after_lists_ids_oldest_first(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let before = minter.mint();
    let events: Vec<Event> = (0..5).map(|_| event(&minter, "s", "t", None)).collect();
    store.append(events.iter().cloned().map(ingress).collect()).await.unwrap();

    let want: Vec<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(store.ids_after(before, 3).await.unwrap(), want[..3]);
    assert_eq!(store.ids_after(events[1].id, 10).await.unwrap(), want[2..]);
    assert!(store.ids_after(events[4].id, 10).await.unwrap().is_empty(), "nothing after the last");
}

pub async fn queries_see_every_acknowledged_append_at_once(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    for round in 0..20 {
        let e = event(&minter, "s", "t", Some("busy"));
        store.append(vec![ingress(e.clone())]).await.unwrap();
        let page =
            store.query(&EventQuery { device: Some("busy".into()), limit: 1, ..Default::default() }).await.unwrap();
        assert_eq!(page.events[0].event.id, e.id, "round {round}: a query missed an acknowledged append");
    }
}

pub async fn status_names_the_backend_and_counts_what_was_recorded(factory: &impl Factory) {
    let store = factory.events().await;
    let minter = IdMinter::new();
    let retry = || Event { originid: Some("o-1".into()), ..event(&minter, "s", "t", None) };
    store.append(vec![ingress(retry()), ingress(event(&minter, "s", "t", None))]).await.unwrap();
    store.append(vec![ingress(retry())]).await.unwrap();

    let status = store.status().await;
    assert!(!status.backend.is_empty(), "names its backend");
    assert!(status.writable && status.last_error.is_none(), "{status:?}");
    assert_eq!(status.events_appended, 2, "a duplicate is not a new event");
    assert!(status.commits >= 1, "{status:?}");
    assert_eq!(status.commit_seconds_buckets.len(), COMMIT_SECONDS_BUCKETS.len() + 1, "one beyond the last bound");
    assert_eq!(status.commit_seconds_buckets.iter().sum::<u64>(), status.commits, "each commit timed once");
    assert_eq!((status.events_expired, status.query_error.clone()), (0, None));
}
