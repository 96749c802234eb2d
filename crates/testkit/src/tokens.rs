//! [`glassbox_store::TokenStore`]: a token is created once per name, reads
//! back whole, is revoked once and notes when it was last used.

use chrono::{Duration, TimeZone, Utc};
use glassbox_core::access::Role;
use glassbox_store::TokenRecord;

use crate::Factory;

fn token(name: &str, role: Role) -> TokenRecord {
    TokenRecord {
        name: name.into(),
        role,
        salt: [7; 16],
        hash: [9; 32],
        created_at: Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap(),
        created_by: "admin".into(),
        expires_at: Some(Utc.with_ymd_and_hms(2027, 3, 5, 10, 0, 0).unwrap()),
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
    }
}

pub async fn tokens_are_created_once_per_name_and_revoked_once(factory: &impl Factory) {
    let store = factory.tokens().await;
    let ci = token("ci", Role::Viewer);
    assert!(store.create_token(&ci).await.unwrap());
    assert!(!store.create_token(&token("ci", Role::Admin)).await.unwrap(), "a name is taken once");
    let ingest = TokenRecord { expires_at: None, ..token("a-ingest", Role::Ingest) };
    assert!(store.create_token(&ingest).await.unwrap());
    assert_eq!(store.tokens().await.unwrap(), vec![ingest.clone(), ci.clone()], "whole, by name");

    let at = ci.created_at + Duration::hours(1);
    let revoked = store.revoke_token("ci", at, "token:ops").await.unwrap().expect("ci exists");
    assert_eq!((revoked.revoked_at, revoked.revoked_by.as_deref()), (Some(at), Some("token:ops")));
    let again = store.revoke_token("ci", at + Duration::hours(1), "admin").await.unwrap().unwrap();
    assert_eq!(again, revoked, "the first revocation stands");
    assert_eq!(store.revoke_token("nobody", at, "admin").await.unwrap(), None);
    assert!(!store.create_token(&ci).await.unwrap(), "a revoked token keeps its name");
}

pub async fn a_token_notes_when_it_was_last_used(factory: &impl Factory) {
    let store = factory.tokens().await;
    let ci = token("ci", Role::Deployer);
    store.create_token(&ci).await.unwrap();
    let later = ci.created_at + Duration::minutes(5);
    store.touch_token("ci", later).await.unwrap();
    store.touch_token("ci", ci.created_at).await.unwrap();
    store.touch_token("nobody", later).await.unwrap();
    let read = store.tokens().await.unwrap();
    assert_eq!(read[0].last_used_at, Some(later), "an older time does not move it back");
}
