//! [`glassbox_store::AuditStore`] with [`glassbox_store::EventStore::append`]:
//! an event carrying an audit draft gets its entry in the same append, with
//! the next dense `seq` and chained to the last; a duplicate gets none;
//! entries filter and page; checkpoints are kept once per size.

use chrono::{TimeZone, Utc};
use glassbox_audit::merkle::CompactTree;
use glassbox_audit::{Auth, Draft as AuditDraft, Hash};
use glassbox_core::{AuthMethod, Draft, IdMinter, PrincipalKind};
use glassbox_store::{AuditQuery, Ingress, StoredCheckpoint};

use crate::Factory;

fn change(minter: &IdMinter, actor: &str, action: &str, target: &str, origin: Option<&str>) -> Ingress {
    let now = Utc::now();
    let draft = Draft { source: "glassbox/registry".into(), originid: origin.map(str::to_string), ..Draft::default() };
    let event = draft.into_event(minter.mint(), now, None);
    let entry = AuditDraft {
        time: now,
        actor: actor.into(),
        actor_kind: PrincipalKind::Token,
        auth: Auth { method: AuthMethod::BearerToken, key_id: Some(actor.into()) },
        source: Some("10.0.0.7:4000".into()),
        node: crate::NODE.into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: Some("ab".into()),
        event: event.id.to_string(),
        detail: serde_json::json!({"actor": actor}),
        salt: "0123456789abcdef0123456789abcdef".into(),
    };
    Ingress::new(event, now, "api", crate::NODE).with_audit(entry)
}

fn plain(minter: &IdMinter) -> Ingress {
    let now = Utc::now();
    Ingress::new(
        Draft { source: "devices/th-1".into(), ..Draft::default() }.into_event(minter.mint(), now, None),
        now,
        "mqtt",
        crate::NODE,
    )
}

pub async fn changes_are_sealed_dense_and_chained_with_their_events(factory: &impl Factory) {
    let store = factory.audit().await;
    let minter = IdMinter::new();
    let first = change(&minter, "ci", "device.create", "device:th-1", Some("once"));
    let first_event = first.event().id.to_string();
    let batch = vec![first, plain(&minter), change(&minter, "ops", "device.disable", "device:th-1", None)];
    store.events.append(batch).await.unwrap();
    let retry = change(&minter, "ci", "device.create", "device:th-1", Some("once"));
    let appended = store.events.append(vec![retry]).await.unwrap();
    assert!(appended[0].duplicate, "a retry is the first event");
    store.events.append(vec![change(&minter, "ci", "token.create", "token:x", None)]).await.unwrap();

    let all = AuditQuery { limit: 100, ..AuditQuery::default() };
    let entries = store.audit.audit_entries(&all).await.unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "dense, one per change, none for a duplicate or a plain event");
    assert_eq!(entries[0].event, first_event);
    let mut prev = Hash::default();
    let mut tree = CompactTree::default();
    for entry in &entries {
        assert_eq!(entry.prev, prev, "entry {} chained to the one before", entry.seq);
        assert_eq!(entry.hash, entry.expected_hash(), "entry {} reads back as sealed", entry.seq);
        assert!(entry.personal_holds());
        prev = entry.hash;
        tree.push(entry.hash);
    }
    let leaves = store.audit.audit_leaves(0, 10).await.unwrap();
    assert_eq!(leaves, entries.iter().map(|e| e.hash).collect::<Vec<_>>());
    assert_eq!(store.audit.audit_leaves(2, 10).await.unwrap(), leaves[2..]);
}

pub async fn entries_filter_and_page(factory: &impl Factory) {
    let store = factory.audit().await;
    let minter = IdMinter::new();
    let changes = vec![
        change(&minter, "ci", "device.create", "device:a", None),
        change(&minter, "ops", "device.disable", "device:a", None),
        change(&minter, "ci", "function.deploy", "function:fan", None),
        change(&minter, "ci", "device_x.weird", "device:b", None),
    ];
    store.events.append(changes).await.unwrap();
    let seqs = |q: AuditQuery| {
        let audit = store.audit.clone();
        async move { audit.audit_entries(&q).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    let base = AuditQuery { limit: 100, ..AuditQuery::default() };
    assert_eq!(seqs(AuditQuery { actor: Some("ci".into()), ..base.clone() }).await, [1, 3, 4]);
    assert_eq!(
        seqs(AuditQuery { action: Some("device.*".into()), ..base.clone() }).await,
        [1, 2],
        "a noun, not a prefix"
    );
    assert_eq!(seqs(AuditQuery { action: Some("function.deploy".into()), ..base.clone() }).await, [3]);
    assert_eq!(seqs(AuditQuery { target: Some("device:a".into()), ..base.clone() }).await, [1, 2]);
    assert_eq!(seqs(AuditQuery { after: Some(1), limit: 2, ..base.clone() }).await, [2, 3]);
    assert_eq!(seqs(AuditQuery { newest_first: true, limit: 2, ..base.clone() }).await, [4, 3]);
    assert_eq!(seqs(AuditQuery { before: Some(3), newest_first: true, ..base.clone() }).await, [2, 1]);
    let future = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    assert!(seqs(AuditQuery { since: Some(future), ..base }).await.is_empty());
}

pub async fn checkpoints_are_kept_once_per_size(factory: &impl Factory) {
    let store = factory.audit().await;
    assert_eq!(store.audit.latest_checkpoint().await.unwrap(), None);
    let at = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
    let checkpoint =
        |size: u64, note: &str| StoredCheckpoint { size, root: Hash([size as u8; 32]), at, note: note.into() };
    store.audit.add_checkpoint(&checkpoint(5, "five")).await.unwrap();
    store.audit.add_checkpoint(&checkpoint(5, "another five")).await.unwrap();
    store.audit.add_checkpoint(&checkpoint(9, "nine")).await.unwrap();
    let kept = store.audit.checkpoints(0, 10).await.unwrap();
    assert_eq!(kept, vec![checkpoint(5, "five"), checkpoint(9, "nine")], "the first of a size stands");
    assert_eq!(store.audit.checkpoints(5, 10).await.unwrap(), vec![checkpoint(9, "nine")]);
    assert_eq!(store.audit.latest_checkpoint().await.unwrap(), Some(checkpoint(9, "nine")));
}
