//! Device certificates: each change the built-in CA's service makes
//! (issued, renewed, revoked), each request it refuses, and each expiry
//! warning — all `device.certificate_*` events about the device — plus the
//! messages of renewal over MQTT: a device publishes a [`RenewRequest`] on
//! `$glassbox/devices/<id>/certificate/renew` and hears a [`RenewAccepted`]
//! on `…/renew/accepted` or a [`RenewRejected`] on `…/renew/rejected`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Payload;
use crate::Principal;

/// The CA signed a device's CSR (data: [`CertificateIssued`]).
pub const DEVICE_CERTIFICATE_ISSUED: &str = "device.certificate_issued";
/// A device renewed its certificate over MQTT (data: [`CertificateIssued`], `renews` set).
pub const DEVICE_CERTIFICATE_RENEWED: &str = "device.certificate_renewed";
/// Certificates of a device were revoked (data: [`CertificateRevoked`]).
pub const DEVICE_CERTIFICATE_REVOKED: &str = "device.certificate_revoked";
/// A certificate request was refused (data: [`CertificateRefused`]).
pub const DEVICE_CERTIFICATE_REFUSED: &str = "device.certificate_refused";
/// A certificate nears its expiry (data: [`CertificateExpiring`]).
pub const DEVICE_CERTIFICATE_EXPIRING: &str = "device.certificate_expiring";
/// The answer to a renewal on `certificate/renew/accepted` (data: [`RenewAccepted`]).
pub const DEVICE_CERTIFICATE_RENEW_ACCEPTED: &str = "device.certificate.renew_accepted";
/// The answer to a renewal on `certificate/renew/rejected` (data: [`RenewRejected`]).
pub const DEVICE_CERTIFICATE_RENEW_REJECTED: &str = "device.certificate.renew_rejected";

/// A certificate signed for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIssued {
    /// Who had it issued, as a label (`admin`, `device:th-1`).
    pub actor: String,
    pub principal: Principal,
    pub serial: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    pub not_after: DateTime<Utc>,
    /// The serial of the certificate a renewal replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
}

/// Certificates revoked at once (one serial, or all of a device's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRevoked {
    pub actor: String,
    pub principal: Principal,
    pub serials: Vec<String>,
    pub reason: String,
    /// Whether the device's live connection was closed.
    pub disconnected: bool,
}

/// A certificate request refused, and why (what the caller was told).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRefused {
    pub actor: String,
    pub principal: Principal,
    pub reason: String,
    /// Where the request came from: `api` or `mqtt` (a renewal).
    pub via: String,
}

/// A certificate crossed an expiry warning threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiring {
    pub serial: String,
    pub not_after: DateTime<Utc>,
    /// The threshold crossed, in days before `not_after`.
    pub threshold_days: u32,
    /// Whole days left when it was raised.
    pub days_left: i64,
}

/// What a device publishes on `certificate/renew`: a new CSR (PEM) whose
/// common name is its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr: String,
}

/// The renewed certificate, PEM, on `certificate/renew/accepted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewAccepted {
    pub certificate: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

/// Why a renewal was refused, on `certificate/renew/rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRejected {
    pub reason: String,
}

impl Payload for CertificateRevoked {
    const TYPE: &'static str = DEVICE_CERTIFICATE_REVOKED;
}

impl Payload for CertificateRefused {
    const TYPE: &'static str = DEVICE_CERTIFICATE_REFUSED;
}

impl Payload for CertificateExpiring {
    const TYPE: &'static str = DEVICE_CERTIFICATE_EXPIRING;
}

impl Payload for RenewAccepted {
    const TYPE: &'static str = DEVICE_CERTIFICATE_RENEW_ACCEPTED;
}

impl Payload for RenewRejected {
    const TYPE: &'static str = DEVICE_CERTIFICATE_RENEW_REJECTED;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renewal_messages_have_the_documented_keys() {
        let request: RenewRequest =
            serde_json::from_value(json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----"})).unwrap();
        assert!(request.csr.starts_with("-----BEGIN"));
        let not_after = DateTime::parse_from_rfc3339("2027-03-05T07:00:00Z").unwrap().to_utc();
        let accepted = RenewAccepted { certificate: "PEM".into(), serial: "1f".into(), not_after };
        let wire = json!({"certificate": "PEM", "serial": "1f", "not_after": "2027-03-05T07:00:00Z"});
        assert_eq!(serde_json::to_value(&accepted).unwrap(), wire);
        assert_eq!(serde_json::from_value::<RenewAccepted>(wire).unwrap(), accepted);
        assert_eq!(
            serde_json::to_value(RenewRejected { reason: "weak key".into() }).unwrap(),
            json!({"reason": "weak key"})
        );
    }

    #[test]
    fn an_issued_record_reads_back_without_renews() {
        let issued = CertificateIssued {
            actor: "admin".into(),
            principal: Principal::admin(crate::AuthMethod::BearerToken, None),
            serial: "1f".into(),
            fingerprint: "ab".into(),
            not_after: Utc::now(),
            renews: None,
        };
        let value = serde_json::to_value(&issued).unwrap();
        assert!(value.get("renews").is_none());
        assert_eq!(serde_json::from_value::<CertificateIssued>(value).unwrap(), issued);
    }
}
