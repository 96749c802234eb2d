//! What the platform reads from a certificate: who it names, its serial,
//! its fingerprint and when it is valid.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The parts of a certificate the platform checks and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's common name (a device certificate's device id).
    pub common_name: Option<String>,
    /// The serial number in lowercase hex, as `openssl x509 -serial` prints it (case aside).
    pub serial: String,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Reads `der`; an error names what could not be parsed.
pub fn inspect(der: &[u8]) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let validity = cert.validity();
    Ok(CertificateInfo {
        common_name,
        serial: serial_hex(cert.raw_serial()),
        fingerprint: hex::encode(Sha256::digest(der)),
        not_before: timestamp(validity.not_before.timestamp()),
        not_after: timestamp(validity.not_after.timestamp()),
    })
}

/// A serial's bytes as hex without the sign byte DER may add.
fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    hex::encode(trimmed)
}

fn timestamp(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
