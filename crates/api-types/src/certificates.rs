//! `/api/v1/ca` and `/api/v1/devices/{id}/certificates`: the CA's
//! certificate, and a device's certificates issued, listed and revoked.
//! Generic over the certificate record `C` (the server fills them with
//! `glassbox_store::CertificateRecord`, which a client reads them into too).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/ca`: the CA certificate (chain, PEM) devices and clients
/// trust; never its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateAuthority {
    /// PEM: the CA certificate, then (an imported intermediate) the rest of its chain.
    pub certificate: String,
    pub subject: Option<String>,
    pub serial: String,
    /// SHA-256 of the CA certificate's DER, lowercase hex.
    pub fingerprint: String,
    pub not_after: DateTime<Utc>,
    /// Whether it is the operator's own (`ca.cert`), not the generated one.
    pub imported: bool,
}

/// `POST /api/v1/devices/{id}/certificates`: the device's CSR (PEM, common
/// name = the device id) and how many days the certificate should last
/// (default `ca.device_days`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCertificate {
    pub csr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

/// `GET /api/v1/devices/{id}/certificates`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateList<C> {
    pub device: String,
    pub certificates: Vec<C>,
}

/// `DELETE /api/v1/devices/{id}/certificates[/{serial}]`: the certificates
/// revoked now, and whether the device's live connection was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificatesRevoked<C> {
    pub device: String,
    pub revoked: Vec<C>,
    pub disconnected: bool,
}
