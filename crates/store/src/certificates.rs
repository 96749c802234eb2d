//! Device certificates the built-in CA issued: kept by serial, listed per
//! device, revoked, superseded by a renewal, and flagged as their expiry
//! nears. The certificate itself is public; no private key is ever stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// One issued certificate and what happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateRecord {
    /// The serial number, lowercase hex.
    pub serial: String,
    pub device: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Who had it issued (a principal's label: `admin`, `device:th-1`).
    pub issued_by: String,
    /// The certificate, PEM.
    pub pem: String,
    /// The serial of the certificate this one renews.
    pub renews: Option<String>,
    /// The certificate that renewed this one; this one stays valid until
    /// the device connects with that one or `grace_until` passes.
    pub renewed_by: Option<String>,
    pub grace_until: Option<DateTime<Utc>>,
    /// When the device first connected with it.
    pub first_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// The smallest expiry warning (in days before `not_after`) already raised.
    pub expiry_warned_days: Option<u32>,
}

/// Storage of issued certificates; implemented by every store.
#[async_trait]
pub trait CertificateStore: Send + Sync + 'static {
    /// Stores a new certificate; [`StoreError::Conflict`] if its serial is taken.
    async fn add_certificate(&self, record: CertificateRecord) -> Result<(), StoreError>;

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;

    /// The device's certificates, newest first.
    async fn certificates(&self, device: &str) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Revokes the device's certificate `serial`, or all of its certificates
    /// when `None`, at `at` for `reason`; answers those revoked now (not
    /// those revoked before, nor another device's).
    async fn revoke_certificates(
        &self,
        device: &str,
        serial: Option<&str>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Notes that `renewed_by` renews `serial`, which stays valid until
    /// `grace_until`; `None` if there is no such certificate.
    async fn supersede_certificate(
        &self,
        serial: &str,
        renewed_by: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<Option<CertificateRecord>, StoreError>;

    /// Notes the first connection made with `serial`; true if this was it.
    async fn certificate_used(&self, serial: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Certificates neither revoked nor renewed whose `not_after` is before
    /// `before`, soonest first, at most `limit`.
    async fn expiring_certificates(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Notes that the warning `days` before expiry was raised for `serial`.
    async fn certificate_warned(&self, serial: &str, days: u32) -> Result<(), StoreError>;
}
