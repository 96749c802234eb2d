//! [`CommandStore`]: commands kept by id and idempotency key, their state
//! changed only from the states the caller expects.

use chrono::{DateTime, Utc};
use glassbox_store::{CommandRecord, CommandState};

use crate::Factory;

fn command(id: &str, key: Option<&str>, now: DateTime<Utc>) -> CommandRecord {
    CommandRecord {
        id: id.into(),
        device: "d1".into(),
        name: "reboot".into(),
        payload: Some("{\"delay\":1}".into()),
        issuer: "ops".into(),
        idempotency_key: key.map(str::to_string),
        state: CommandState::Queued,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(60),
        updated_at: now,
        correlationid: id.into(),
        response: None,
        reason: None,
    }
}

pub async fn commands_are_idempotent_by_key_and_change_state_only_from_expected_states(factory: &impl Factory) {
    let store = factory.commands().await;
    let now = Utc::now();
    let (first, created) = store.create_command(command("c1", Some("k"), now)).await.unwrap();
    assert!(created);
    let (again, created) = store.create_command(command("c2", Some("k"), now)).await.unwrap();
    assert_eq!((again.id.as_str(), created), ("c1", false), "same key: the first command");
    store.create_command(command("c3", None, now)).await.unwrap();

    let sent = store.advance_command("c1", &[CommandState::Queued], CommandState::InTransit, None, None).await.unwrap();
    assert_eq!(sent.unwrap().state, CommandState::InTransit);
    let stale =
        store.advance_command("c1", &[CommandState::Queued], CommandState::Cancelled, None, None).await.unwrap();
    assert!(stale.is_none(), "not queued any more");
    let done = store
        .advance_command("c1", &CommandState::OPEN, CommandState::Succeeded, Some("{\"ok\":true}".into()), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.state, done.response.as_deref()), (CommandState::Succeeded, Some("{\"ok\":true}")));
    assert_eq!(done.payload, first.payload);

    let listed = store.commands(Some("d1"), None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c3", "c1"], "newest first");
    let open = store.commands(Some("d1"), Some(CommandState::Queued), 10).await.unwrap();
    assert_eq!(open.len(), 1);
    let due = store.due_commands(now + chrono::Duration::seconds(61), 10).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c3"], "open and past its ttl");
}

pub async fn a_command_reads_back_by_id_and_by_its_devices_key(factory: &impl Factory) {
    let store = factory.commands().await;
    let now = Utc::now();
    let sent = command("c1", Some("k"), now);
    store.create_command(sent.clone()).await.unwrap();

    let got = store.command("c1").await.unwrap().expect("stored");
    assert_eq!((got.id.as_str(), got.device.as_str(), got.name.as_str()), ("c1", "d1", "reboot"));
    assert_eq!((got.payload, got.issuer, got.state), (sent.payload, sent.issuer, CommandState::Queued));
    assert_eq!(got.expires_at.timestamp(), sent.expires_at.timestamp());
    assert_eq!(store.command_by_key("d1", "k").await.unwrap().map(|c| c.id).as_deref(), Some("c1"));
    assert!(store.command_by_key("d2", "k").await.unwrap().is_none(), "a key is the device's own");
    assert!(store.command("c9").await.unwrap().is_none());
    let failed = store
        .advance_command("c1", &CommandState::OPEN, CommandState::Failed, None, Some("no power".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("no power"));
    assert!(store.due_commands(now + chrono::Duration::seconds(61), 10).await.unwrap().is_empty(), "ended");
}
