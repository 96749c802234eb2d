//! Device certificates as a service: the built-in CA signs a device's CSR
//! (over the API, or over MQTT as a renewal on
//! `$glassbox/devices/<id>/certificate/renew`), lists and revokes them, and
//! warns as their expiry nears. Every change and every refusal is a
//! `device.certificate_*` event carrying the principal who asked; a
//! revocation closes the device's live connection at once.
//!
//! A renewal keeps the old certificate valid until the device first
//! connects with the new one, or `renewal_grace` passes (the gateway checks
//! both at CONNECT, from the store).

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use glassbox_core::{
    CertificateExpiring, CertificateIssued, CertificateRefused, CertificateRevoked, DEVICE_CERTIFICATE_ISSUED,
    DEVICE_CERTIFICATE_RENEWED, DisconnectReason, Draft, EventId, Payload, Principal, RenewAccepted, RenewRejected,
    RenewRequest,
};
use glassbox_link::DeviceLink;
use glassbox_pipeline::Pipeline;
use glassbox_pki::{Authority, AuthorityError};
use glassbox_store::{CertificateRecord, CertificateStore, DeviceRegistry, StoreError};
use serde::{Deserialize, Serialize};

use super::Control;
use crate::record::{Changed, record_change};

/// Certificates the expiry sweep reads at once; the rest wait for its next round.
const EXPIRY_SWEEP_MAX: usize = 1000;

/// `[ca]`: the built-in certificate authority and device certificates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// An operator's own CA or intermediate certificate (PEM) to sign with
    /// instead of the generated one; with `key`. Default "" (generate one in
    /// `<data_dir>/ca/`).
    pub cert: String,
    /// The private key (PEM) of `cert`. Default "".
    pub key: String,
    /// How long a device certificate is valid when the request names no
    /// duration, in days. Default 90.
    pub device_days: u32,
    /// How long a renewed certificate's predecessor stays valid if the
    /// device does not connect with the new one first. Default `7d`.
    #[serde(with = "glassbox_core::human_duration")]
    pub renewal_grace: Duration,
    /// Days before expiry at which `device.certificate_expiring` is raised
    /// (once per threshold per certificate). Default [30, 7, 1].
    pub expiry_warnings: Vec<u32>,
    /// How often certificates are checked for nearing expiry. Default `1m`.
    #[serde(with = "glassbox_core::human_duration")]
    pub expiry_check: Duration,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            cert: String::new(),
            key: String::new(),
            device_days: glassbox_pki::DEVICE_DAYS_DEFAULT,
            renewal_grace: Duration::from_secs(7 * 24 * 3600),
            expiry_warnings: vec![30, 7, 1],
            expiry_check: Duration::from_secs(60),
        }
    }
}

/// Why a certificate request was refused, or could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("no device {0:?}; `glassbox devices list` shows the registered ones")]
    UnknownDevice(String),
    #[error("device {device:?} has no certificate {serial}")]
    UnknownSerial { device: String, serial: String },
    /// The request itself is wrong: a malformed CSR, another common name, a weak key, bad days.
    #[error("{0}")]
    Refused(String),
    #[error("the CA could not sign: {0}")]
    Authority(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a revocation did.
#[derive(Debug)]
pub struct Revoked {
    pub certificates: Vec<CertificateRecord>,
    /// Whether the device's live connection was closed.
    pub disconnected: bool,
}

/// The device certificate service.
pub struct Certificates {
    authority: Arc<Authority>,
    store: Arc<dyn CertificateStore>,
    devices: Arc<dyn DeviceRegistry>,
    link: Arc<dyn DeviceLink>,
    control: Arc<Control>,
    pipeline: Arc<Pipeline>,
    config: CaConfig,
}

impl Certificates {
    /// The service, answering renewals through `control` and sweeping for
    /// nearing expiry while it lives.
    pub fn start(
        authority: Arc<Authority>,
        store: Arc<dyn CertificateStore>,
        devices: Arc<dyn DeviceRegistry>,
        link: Arc<dyn DeviceLink>,
        control: Arc<Control>,
        pipeline: Arc<Pipeline>,
        config: CaConfig,
    ) -> Arc<Self> {
        let service = Arc::new(Self { authority, store, devices, link, control, pipeline, config });
        service.control.set_certificates(Arc::downgrade(&service));
        tokio::spawn(sweep(Arc::downgrade(&service), service.config.expiry_check));
        service
    }

    /// The CA (its certificate is public; its key never leaves it).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Signs device `device`'s CSR for `days` (default `ca.device_days`).
    pub async fn issue(
        &self,
        device: &str,
        csr: &str,
        days: Option<u32>,
        by: &Principal,
    ) -> Result<Changed<CertificateRecord>, CertificateError> {
        self.known(device).await?;
        let days = days.unwrap_or(self.config.device_days);
        let issued = match self.authority.sign_request(csr, device, days) {
            Ok(issued) => issued,
            Err(e) => return Err(self.refused(device, by, e, "api").await),
        };
        let record = self.store_issued(device, issued, by, None).await?;
        let unrecorded = self.record_issued(DEVICE_CERTIFICATE_ISSUED, &record, by, None).await;
        Ok(Changed { value: record, unrecorded })
    }

    /// The device's certificates, newest first.
    pub async fn list(&self, device: &str) -> Result<Vec<CertificateRecord>, CertificateError> {
        self.known(device).await?;
        Ok(self.store.certificates(device).await?)
    }

    /// Revokes certificate `serial` of the device, or all of them; closes
    /// its live connection.
    pub async fn revoke(
        &self,
        device: &str,
        serial: Option<&str>,
        by: &Principal,
    ) -> Result<Changed<Revoked>, CertificateError> {
        self.known(device).await?;
        if let Some(serial) = serial
            && self.store.certificate(serial).await?.is_none_or(|c| c.device != device)
        {
            return Err(CertificateError::UnknownSerial { device: device.into(), serial: serial.into() });
        }
        let reason = format!("revoked by {}", by.label());
        let certificates = self.store.revoke_certificates(device, serial, Utc::now(), &reason).await?;
        let disconnected = !certificates.is_empty() && self.link.disconnect(device, DisconnectReason::Administrative);
        let data = CertificateRevoked {
            actor: by.label(),
            principal: by.clone(),
            serials: certificates.iter().map(|c| c.serial.clone()).collect(),
            reason,
            disconnected,
        };
        let unrecorded = self.record(device, CertificateRevoked::TYPE, &data, None).await;
        Ok(Changed { value: Revoked { certificates, disconnected }, unrecorded })
    }

    /// Certificates neither revoked nor renewed that end within the widest
    /// expiry warning, soonest first, at most `limit` (for diagnosis).
    pub async fn expiring_soon(&self, limit: usize) -> Result<Vec<CertificateRecord>, StoreError> {
        let widest = self.config.expiry_warnings.iter().max().copied().unwrap_or(0);
        let before = Utc::now() + chrono::Duration::days(i64::from(widest));
        self.store.expiring_certificates(before, limit).await
    }

    /// Certificates in force (neither revoked, renewed nor expired), soonest
    /// end first, at most `limit` (for the perimeter view).
    pub async fn in_force(&self, limit: usize) -> Result<Vec<CertificateRecord>, StoreError> {
        let now = Utc::now();
        let all = self.store.expiring_certificates(now + chrono::Duration::days(36_500), limit).await?;
        Ok(all.into_iter().filter(|c| c.not_after > now).collect())
    }

    /// A renewal published on `certificate/renew` by the device's own
    /// session (recorded as `cause`); answered on `renew/accepted` or
    /// `renew/rejected`.
    pub(crate) async fn renew(&self, device: &str, by: &Principal, payload: &[u8], cause: EventId) {
        let cause = cause.to_string();
        match self.renewed(device, by, payload).await {
            Ok(accepted) => self.control.send(device, "certificate/renew/accepted", &accepted, Some(&cause)).await,
            Err(reason) => {
                let rejected = RenewRejected { reason };
                self.control.send(device, "certificate/renew/rejected", &rejected, Some(&cause)).await;
            }
        }
    }

    async fn renewed(&self, device: &str, by: &Principal, payload: &[u8]) -> Result<RenewAccepted, String> {
        let refuse = async |reason: String| {
            self.record_refusal(device, by, &reason, "mqtt").await;
            Err(reason)
        };
        if by.name != device {
            return refuse(format!("{} may not renew the certificate of device {device:?}", by.label())).await;
        }
        let request: RenewRequest = match serde_json::from_slice(payload) {
            Ok(request) => request,
            Err(e) => return refuse(format!("the payload must be {{\"csr\": \"<PEM>\"}}: {e}")).await,
        };
        let issued = match self.authority.sign_request(&request.csr, device, self.config.device_days) {
            Ok(issued) => issued,
            Err(e) => return refuse(e.to_string()).await,
        };
        let current = self.current(device).await;
        let record = self.store_issued(device, issued, by, current.clone()).await.map_err(|e| e.to_string())?;
        if let Some(old) = &current {
            let grace = Utc::now() + chrono::Duration::from_std(self.config.renewal_grace).unwrap_or_default();
            if let Err(e) = self.store.supersede_certificate(old, &record.serial, grace).await {
                tracing::error!(device, serial = %old, error = %e, "could not mark a renewed certificate superseded");
            }
        }
        self.record_issued(DEVICE_CERTIFICATE_RENEWED, &record, by, current).await;
        Ok(RenewAccepted { certificate: record.pem, serial: record.serial, not_after: record.not_after })
    }

    /// The device's newest certificate still in force (the one a renewal replaces).
    async fn current(&self, device: &str) -> Option<String> {
        let all = self.store.certificates(device).await.ok()?;
        all.into_iter().find(|c| c.revoked_at.is_none() && c.renewed_by.is_none()).map(|c| c.serial)
    }

    async fn store_issued(
        &self,
        device: &str,
        issued: glassbox_pki::Issued,
        by: &Principal,
        renews: Option<String>,
    ) -> Result<CertificateRecord, CertificateError> {
        let info = issued.info;
        let record = CertificateRecord {
            serial: info.serial,
            device: device.into(),
            fingerprint: info.fingerprint,
            not_before: info.not_before,
            not_after: info.not_after,
            issued_at: Utc::now(),
            issued_by: by.label(),
            pem: issued.pem,
            renews,
            renewed_by: None,
            grace_until: None,
            first_used_at: None,
            revoked_at: None,
            revoked_reason: None,
            expiry_warned_days: None,
        };
        self.store.add_certificate(record.clone()).await?;
        Ok(record)
    }

    async fn known(&self, device: &str) -> Result<(), CertificateError> {
        match self.devices.device(device).await? {
            Some(_) => Ok(()),
            None => Err(CertificateError::UnknownDevice(device.into())),
        }
    }

    /// Records a refused request and turns the CA's answer into the error the caller sees.
    async fn refused(&self, device: &str, by: &Principal, error: AuthorityError, via: &str) -> CertificateError {
        let refused = match error {
            AuthorityError::Request(e) => CertificateError::Refused(e.to_string()),
            e @ AuthorityError::Days { .. } => CertificateError::Refused(e.to_string()),
            e => CertificateError::Authority(e.to_string()),
        };
        self.record_refusal(device, by, &refused.to_string(), via).await;
        refused
    }

    async fn record_refusal(&self, device: &str, by: &Principal, reason: &str, via: &str) {
        let data =
            CertificateRefused { actor: by.label(), principal: by.clone(), reason: reason.into(), via: via.into() };
        self.record(device, CertificateRefused::TYPE, &data, None).await;
    }

    async fn record_issued(
        &self,
        ty: &str,
        record: &CertificateRecord,
        by: &Principal,
        renews: Option<String>,
    ) -> Option<String> {
        let data = CertificateIssued {
            actor: by.label(),
            principal: by.clone(),
            serial: record.serial.clone(),
            fingerprint: record.fingerprint.clone(),
            not_after: record.not_after,
            renews,
        };
        self.record(&record.device, ty, &data, None).await
    }

    /// Records an event about the device, retrying a failure; returns why
    /// it could not, if it could not.
    async fn record(&self, device: &str, ty: &str, data: &impl Serialize, cause: Option<&str>) -> Option<String> {
        let draft = Draft {
            device: Some(device.into()),
            causationid: cause.map(str::to_string),
            ..Draft::json("glassbox/certificates", ty, data)
        };
        record_change(&self.pipeline, draft, "platform").await
    }

    /// Raises `device.certificate_expiring` for each certificate past a
    /// threshold it was not warned at yet (only the smallest one crossed).
    async fn warn_expiring(&self) {
        let Some(widest) = self.config.expiry_warnings.iter().max().copied() else { return };
        let now = Utc::now();
        let before = now + chrono::Duration::days(i64::from(widest));
        let due = match self.store.expiring_certificates(before, EXPIRY_SWEEP_MAX).await {
            Ok(due) => due,
            Err(e) => return tracing::warn!(error = %e, "could not read certificates nearing expiry"),
        };
        for certificate in due.into_iter().filter(|c| c.not_after > now) {
            let left = certificate.not_after - now;
            let crossed = self
                .config
                .expiry_warnings
                .iter()
                .copied()
                .filter(|days| left <= chrono::Duration::days(i64::from(*days)))
                .min();
            let Some(threshold) = crossed.filter(|t| certificate.expiry_warned_days.is_none_or(|w| *t < w)) else {
                continue;
            };
            let data = CertificateExpiring {
                serial: certificate.serial.clone(),
                not_after: certificate.not_after,
                threshold_days: threshold,
                days_left: left.num_days(),
            };
            self.record(&certificate.device, CertificateExpiring::TYPE, &data, None).await;
            if let Err(e) = self.store.certificate_warned(&certificate.serial, threshold).await {
                tracing::warn!(serial = %certificate.serial, error = %e, "could not note an expiry warning");
            }
        }
    }
}

/// Checks for nearing expiry every `every` while the service lives.
async fn sweep(service: Weak<Certificates>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let Some(service) = service.upgrade() else { return };
        service.warn_expiring().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_section_defaults_to_the_documented_values() {
        let config = CaConfig::default();
        assert_eq!((config.device_days, config.expiry_warnings.as_slice()), (90, &[30, 7, 1][..]));
        assert_eq!(config.renewal_grace, Duration::from_secs(604_800));
    }
}
