//! [`glassbox_store::CertificateStore`]: issued certificates kept by serial and listed per
//! device, revoked once, superseded by a renewal, and found as their expiry
//! nears until revoked or renewed.

use chrono::{DateTime, Duration, Utc};
use glassbox_store::{CertificateRecord, StoreError};

use crate::Factory;

fn certificate(serial: &str, device: &str, issued_at: DateTime<Utc>, days: i64) -> CertificateRecord {
    CertificateRecord {
        serial: serial.into(),
        device: device.into(),
        fingerprint: format!("{serial}-sha256"),
        not_before: issued_at,
        not_after: issued_at + Duration::days(days),
        issued_at,
        issued_by: "admin".into(),
        pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        renews: None,
        renewed_by: None,
        grace_until: None,
        first_used_at: None,
        revoked_at: None,
        revoked_reason: None,
        expiry_warned_days: None,
    }
}

pub async fn certificates_are_kept_by_serial_and_revoked_once(factory: &impl Factory) {
    let store = factory.certificates().await;
    let now = Utc::now();
    store.add_certificate(certificate("a1", "d1", now - Duration::seconds(2), 30)).await.unwrap();
    store.add_certificate(certificate("a2", "d1", now - Duration::seconds(1), 30)).await.unwrap();
    store.add_certificate(certificate("b1", "d2", now, 30)).await.unwrap();
    let taken = store.add_certificate(certificate("a1", "d2", now, 30)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "a serial is unique: {taken:?}");
    let listed = store.certificates("d1").await.unwrap();
    assert_eq!(listed.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), ["a2", "a1"], "newest first");
    assert_eq!(store.certificate("b1").await.unwrap().unwrap(), certificate("b1", "d2", now, 30).with_micros());

    let one = store.revoke_certificates("d1", Some("a1"), now, "key lost").await.unwrap();
    assert_eq!(one.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), ["a1"]);
    assert_eq!(one[0].revoked_reason.as_deref(), Some("key lost"));
    let foreign = store.revoke_certificates("d1", Some("b1"), now, "x").await.unwrap();
    assert!(foreign.is_empty(), "another device's certificate is not revoked");
    let rest = store.revoke_certificates("d1", None, now, "device retired").await.unwrap();
    assert_eq!(rest.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), ["a2"], "a1 was revoked before");
    let a1 = store.certificate("a1").await.unwrap().unwrap();
    assert_eq!(a1.revoked_reason.as_deref(), Some("key lost"), "the first revocation stands");
}

pub async fn renewal_supersedes_and_first_use_is_noted_once(factory: &impl Factory) {
    let store = factory.certificates().await;
    let now = Utc::now();
    store.add_certificate(certificate("old", "d1", now, 3)).await.unwrap();
    store
        .add_certificate(CertificateRecord { renews: Some("old".into()), ..certificate("new", "d1", now, 30) })
        .await
        .unwrap();
    let grace = now + Duration::days(7);
    let old = store.supersede_certificate("old", "new", grace).await.unwrap().unwrap();
    assert_eq!((old.renewed_by.as_deref(), old.grace_until.is_some()), (Some("new"), true));
    assert!(store.supersede_certificate("nope", "new", grace).await.unwrap().is_none());
    assert!(store.certificate_used("new", now).await.unwrap(), "first use");
    assert!(!store.certificate_used("new", now + Duration::seconds(1)).await.unwrap(), "noted once");
    assert!(store.certificate("new").await.unwrap().unwrap().first_used_at.is_some());
}

pub async fn expiring_certificates_exclude_revoked_and_renewed_ones(factory: &impl Factory) {
    let store = factory.certificates().await;
    let now = Utc::now();
    for (serial, days) in [("soon", 2), ("later", 20), ("far", 200), ("revoked", 1), ("renewed", 1)] {
        store.add_certificate(certificate(serial, "d1", now, days)).await.unwrap();
    }
    store.revoke_certificates("d1", Some("revoked"), now, "x").await.unwrap();
    store.supersede_certificate("renewed", "far", now).await.unwrap();
    let due = store.expiring_certificates(now + Duration::days(30), 10).await.unwrap();
    assert_eq!(due.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), ["soon", "later"], "soonest first");
    store.certificate_warned("soon", 7).await.unwrap();
    assert_eq!(store.certificate("soon").await.unwrap().unwrap().expiry_warned_days, Some(7));
}

trait WithMicros {
    fn with_micros(self) -> Self;
}

impl WithMicros for CertificateRecord {
    /// The record as a store that keeps microseconds reads it back.
    fn with_micros(self) -> Self {
        let cut = |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
        Self {
            not_before: cut(self.not_before),
            not_after: cut(self.not_after),
            issued_at: cut(self.issued_at),
            ..self
        }
    }
}
