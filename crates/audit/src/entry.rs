//! One audit entry, its canonical encoding and its leaf hash.
//!
//! The leaf covers every field but the personal ones (`source`, `detail`),
//! which it covers through a salted digest: erasing a data subject removes
//! those two fields and the salt and leaves the digest, so the chain and the
//! tree still verify, and nothing erased can be guessed back from the digest.

use chrono::{DateTime, SubsecRound, Utc};
use glassbox_core::{AuthMethod, PrincipalKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Hash;
use crate::merkle::leaf_hash;

/// The version of the canonical encoding, first in every encoded entry.
pub const ENCODING_VERSION: u8 = 1;

/// How the actor authenticated, and with which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub method: AuthMethod,
    /// The credential's name: the token's name, the certificate's device,
    /// `admin` for the admin token; none for the platform itself.
    pub key_id: Option<String>,
}

/// A change's entry before it has its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// When the change was recorded, to the microsecond.
    pub time: DateTime<Utc>,
    /// The principal's name (`admin`, the token's, the device's, …).
    pub actor: String,
    pub actor_kind: PrincipalKind,
    pub auth: Auth,
    /// The address, user agent or MQTT client it acted from.
    pub source: Option<String>,
    /// The node that recorded it.
    pub node: String,
    /// `<noun>.<verb>`: `device.create`, `function.deploy`, `token.revoke`, …
    pub action: String,
    /// What was changed: `device:th-1`, `function:fan`, `token:ci`, …
    pub target: String,
    /// A hash of the state before the change, where there is one.
    pub before: Option<String>,
    /// A hash of the state after the change, where there is one.
    pub after: Option<String>,
    /// The id of the change's event in the recorder.
    pub event: String,
    /// The change's own record (its event's data).
    pub detail: serde_json::Value,
    /// The salt of the personal fields' digest, 16 random bytes in hex.
    pub salt: String,
}

/// An entry as the log keeps it: a [`Draft`] sealed with its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Dense from 1: entry `seq` is leaf `seq - 1` of the tree.
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub actor_kind: PrincipalKind,
    pub auth: Auth,
    /// None once erased.
    pub source: Option<String>,
    pub node: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub event: String,
    /// None once erased.
    pub detail: Option<serde_json::Value>,
    /// True once `source` and `detail` were erased.
    #[serde(default)]
    pub erased: bool,
    /// None once erased.
    pub salt: Option<String>,
    /// The salted digest of `source` and `detail`, kept through erasure.
    pub personal: Hash,
    /// The previous entry's hash (zeros before the first).
    pub prev: Hash,
    /// This entry's leaf hash: `SHA-256(0x00 || canonical encoding)`.
    pub hash: Hash,
}

/// The fields the leaf hash covers, in this order, as compact JSON: what a
/// verifier written in another language recomputes (`docs/audit.md`).
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    seq: u64,
    time: i64,
    actor: &'a str,
    actor_kind: PrincipalKind,
    auth_method: AuthMethod,
    key_id: Option<&'a str>,
    node: &'a str,
    action: &'a str,
    target: &'a str,
    before: Option<&'a str>,
    after: Option<&'a str>,
    event: &'a str,
    personal: Hash,
    prev: Hash,
}

/// The personal fields, as their digest covers them.
#[derive(Serialize)]
struct Personal<'a> {
    source: Option<&'a str>,
    detail: &'a serde_json::Value,
}

/// `SHA-256(salt || {"source":…,"detail":…})`.
fn personal_digest(salt: &str, source: Option<&str>, detail: &serde_json::Value) -> Hash {
    let text = serde_json::to_vec(&Personal { source, detail }).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(&text);
    Hash(h.finalize().into())
}

impl Draft {
    /// Truncates `time` to what the log keeps (microseconds).
    pub fn at(time: DateTime<Utc>) -> DateTime<Utc> {
        time.trunc_subsecs(6)
    }

    /// The entry at `seq`, chained to `prev`.
    pub fn seal(self, seq: u64, prev: Hash) -> Entry {
        let personal = personal_digest(&self.salt, self.source.as_deref(), &self.detail);
        let mut entry = Entry {
            seq,
            time: Self::at(self.time),
            actor: self.actor,
            actor_kind: self.actor_kind,
            auth: self.auth,
            source: self.source,
            node: self.node,
            action: self.action,
            target: self.target,
            before: self.before,
            after: self.after,
            event: self.event,
            detail: Some(self.detail),
            erased: false,
            salt: Some(self.salt),
            personal,
            prev,
            hash: Hash::default(),
        };
        entry.hash = entry.expected_hash();
        entry
    }
}

impl Entry {
    /// The canonical encoding the leaf hash is taken over.
    pub fn canonical(&self) -> Vec<u8> {
        let body = Canonical {
            v: ENCODING_VERSION,
            seq: self.seq,
            time: self.time.timestamp_micros(),
            actor: &self.actor,
            actor_kind: self.actor_kind,
            auth_method: self.auth.method,
            key_id: self.auth.key_id.as_deref(),
            node: &self.node,
            action: &self.action,
            target: &self.target,
            before: self.before.as_deref(),
            after: self.after.as_deref(),
            event: &self.event,
            personal: self.personal,
            prev: self.prev,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The leaf hash its fields give now: equal to `hash` unless changed.
    pub fn expected_hash(&self) -> Hash {
        leaf_hash(&self.canonical())
    }

    /// Whether `source` and `detail` are the ones the digest was taken
    /// over (always, once erased: the digest alone is left).
    pub fn personal_holds(&self) -> bool {
        if self.erased {
            return self.source.is_none() && self.detail.is_none() && self.salt.is_none();
        }
        match (&self.salt, &self.detail) {
            (Some(salt), Some(detail)) => personal_digest(salt, self.source.as_deref(), detail) == self.personal,
            _ => false,
        }
    }

    /// The entry with its personal fields removed: what erasing a data
    /// subject leaves of it, still verifiable.
    pub fn erase(&mut self) {
        self.source = None;
        self.detail = None;
        self.salt = None;
        self.erased = true;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn draft(action: &str) -> Draft {
        Draft {
            time: Utc::now(),
            actor: "ci".into(),
            actor_kind: PrincipalKind::Token,
            auth: Auth { method: AuthMethod::BearerToken, key_id: Some("ci".into()) },
            source: Some("10.0.0.7:51234".into()),
            node: "node-1".into(),
            action: action.into(),
            target: "device:th-1".into(),
            before: None,
            after: None,
            event: "01JABC".into(),
            detail: serde_json::json!({"reason": "test"}),
            salt: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn a_sealed_entry_verifies_and_any_edit_shows() {
        let entry = draft("device.create").seal(1, Hash::default());
        assert_eq!(entry.hash, entry.expected_hash());
        assert!(entry.personal_holds());
        let mut edited = entry.clone();
        edited.actor = "someone-else".into();
        assert_ne!(edited.hash, edited.expected_hash());
        let mut moved = entry.clone();
        moved.seq = 2;
        assert_ne!(moved.hash, moved.expected_hash());
        let mut detail = entry.clone();
        detail.detail = Some(serde_json::json!({"reason": "other"}));
        assert!(!detail.personal_holds());
    }

    #[test]
    fn an_erased_entry_still_verifies() {
        let mut entry = draft("device.delete").seal(3, Hash([7; 32]));
        entry.erase();
        assert_eq!(entry.hash, entry.expected_hash());
        assert!(entry.personal_holds());
        assert!(entry.source.is_none() && entry.detail.is_none());
    }

    #[test]
    fn the_encoding_round_trips_through_json() {
        let entry = draft("token.create").seal(9, Hash([1; 32]));
        let back: Entry = serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.expected_hash(), entry.hash);
        assert!(back.personal_holds());
    }
}
