//! The built-in certificate authority (decision: rcgen + rustls, no
//! OpenSSL linkage).
//!
//! [`Authority`] is the CA: created at first start under the data
//! directory's `ca/` (key files 0600), or an operator's own intermediate
//! imported from PEM files. It signs device certificates from CSRs
//! ([`Authority::sign_request`], which refuses weak or malformed requests
//! with a [`RequestError`] naming why) and server certificates for the
//! platform's TLS listeners ([`Authority::issue_server`]).
//! [`inspect`] reads what the platform needs of a certificate (common
//! name, serial, fingerprint, validity); the gateway calls it on the
//! certificate a client presented.
//!
//! Owns: the CA's files and the X.509 rules. Must not: record events,
//! store issued certificates (`glassbox-control` does, through the store
//! port) or serve the CA key to anyone.

mod authority;
mod certificate;
mod request;

pub use authority::{Authority, AuthorityError, Issued, ServerCertificate};
pub use certificate::{CertificateInfo, inspect};
pub use request::RequestError;

/// The longest a device certificate may be issued for, in days.
pub const DEVICE_DAYS_MAX: u32 = 825;

/// How long a device certificate is issued for when the caller names no
/// duration, in days.
pub const DEVICE_DAYS_DEFAULT: u32 = 90;
