//! Who a connecting client is: a registered device (client id = user name =
//! device id, password = its secret; or, over TLS, a client certificate
//! from the platform's CA whose common name is the client id), an operator
//! (user name `operator`, password the admin token), a backend client with a
//! named token (user name = the token's name, password = the token; its role
//! gives its topic rights, and a role with none is refused as not
//! authorised), or — in open mode only — anonymous.
//!
//! A certificate is accepted only if the certificate store holds it by
//! serial *and* fingerprint (so it is one the CA issued, byte for byte),
//! for this device, unrevoked, unexpired, and not replaced by a renewal the
//! device has used or whose grace period has ended.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use glassbox_core::access::MqttAccess;
use glassbox_core::secrets::{SecretHash, matches as secret_matches};
use glassbox_core::{AuthMethod, DisconnectReason, Principal};
use glassbox_pki::CertificateInfo;
use glassbox_store::{CertificateRecord, CertificateStore, DeviceRegistry};

use crate::acl::Role;

/// What a CONNECT presented.
#[derive(Debug)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The client certificate presented in the TLS handshake, if any.
    pub certificate: Option<&'a CertificateInfo>,
}

impl Credentials<'_> {
    /// Whether the client logs in with its certificate: it presented one
    /// and does not log in as an operator.
    pub fn by_certificate(&self) -> bool {
        self.certificate.is_some() && self.username != Some(OPERATOR_USERNAME)
    }
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Who the client is and until when, or why the connection is refused.
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Login, (DisconnectReason, String)>;
}

/// What a CONNECT's credentials came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub role: Role,
    /// When the credential lapses (a named token's expiry): the connection
    /// is closed then, with `token_expired`. None: it does not lapse.
    pub until: Option<DateTime<Utc>>,
}

impl From<Role> for Login {
    fn from(role: Role) -> Self {
        Self { role, until: None }
    }
}

/// The user name backend clients use with an operator token as password.
pub const OPERATOR_USERNAME: &str = "operator";

/// What a named-token login came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLogin {
    /// The password is not a token of that name's form: try it as a device.
    NotAToken,
    /// Its role, and when it expires (if it does).
    Accepted(glassbox_core::access::Role, Option<DateTime<Utc>>),
    /// A token of that name's form that is unknown, wrong, expired or revoked: why.
    Refused(String),
}

/// Checks a named token presented at CONNECT (the token service, in the
/// server); sees tokens created after start.
pub trait TokenLogins: Send + Sync + 'static {
    fn login(&self, name: &str, token: &[u8]) -> TokenLogin;
}

/// Who a client admitted as `role` from `peer` acts as, in the records of
/// what it changes: a device by its secret or its certificate
/// (`by_certificate`), an operator token as the admin (user `operator`), a
/// named token as itself. An anonymous client acts as no one: it can change
/// nothing through the platform.
pub fn principal(role: &Role, peer: SocketAddr, by_certificate: bool) -> Option<Principal> {
    let source = Some(peer.to_string());
    let method = if by_certificate { AuthMethod::ClientCertificate } else { AuthMethod::DeviceSecret };
    match role {
        Role::Device(id) => Some(Principal::device(id, method, source)),
        Role::Operator => Some(Principal::admin(AuthMethod::MqttToken, source)),
        Role::Token { name, .. } => Some(Principal::token(name, AuthMethod::MqttToken, source)),
        Role::Anonymous => None,
    }
}

/// Authenticates against the device registry and the operator tokens.
pub struct RegistryAuth {
    pub devices: Arc<dyn DeviceRegistry>,
    /// SHA-256 hashes of the accepted operator tokens (the admin token's among them).
    pub operator_tokens: Vec<SecretHash>,
    /// Named tokens; none: only the admin token logs in as an operator.
    pub tokens: Option<Arc<dyn TokenLogins>>,
    pub allow_anonymous: bool,
    /// Issued device certificates; none: certificates log no one in.
    pub certificates: Option<Arc<dyn CertificateStore>>,
}

#[async_trait]
impl Authenticator for RegistryAuth {
    async fn authenticate(&self, c: &Credentials<'_>) -> Result<Login, (DisconnectReason, String)> {
        let refuse = |why: &str| Err((DisconnectReason::AuthFailure, why.to_string()));
        if let (true, Some(certificate)) = (c.by_certificate(), c.certificate) {
            return self.certificate(c.client_id, c.username, certificate).await.map(Login::from);
        }
        match (c.username, c.password) {
            (Some(OPERATOR_USERNAME), Some(token)) => {
                match self.operator_tokens.iter().any(|h| secret_matches(token, h)) {
                    true => Ok(Role::Operator.into()),
                    false => refuse("operator token not recognised"),
                }
            }
            (Some(user), Some(secret)) => match self.token(user, secret) {
                TokenLogin::NotAToken => self.device(c.client_id, user, secret).await.map(Login::from),
                TokenLogin::Accepted(role, _) if role.mqtt() == MqttAccess::None => Err((
                    DisconnectReason::NotAuthorized,
                    format!("token {user:?} has role {role}, which has no MQTT rights"),
                )),
                TokenLogin::Accepted(role, until) => {
                    Ok(Login { role: Role::Token { name: user.to_string(), role }, until })
                }
                TokenLogin::Refused(why) => refuse(&why),
            },
            (None, None) if self.allow_anonymous => self.anonymous(c.client_id).await.map(Login::from),
            (None, None) => refuse("no credentials: connect with user name = device id and password = its secret"),
            (Some(_), None) => refuse("a user name without a password"),
            (None, Some(_)) => refuse("a password without a user name"),
        }
    }
}

impl RegistryAuth {
    fn token(&self, user: &str, secret: &[u8]) -> TokenLogin {
        self.tokens.as_ref().map_or(TokenLogin::NotAToken, |tokens| tokens.login(user, secret))
    }

    /// Open mode: anyone, but not as a registered device (it would take over
    /// the device's session and receive what is queued for it).
    async fn anonymous(&self, client_id: &str) -> Result<Role, (DisconnectReason, String)> {
        let found = self
            .devices
            .device_credentials(client_id)
            .await
            .map_err(|e| (DisconnectReason::ServerBusy, e.to_string()))?;
        match found {
            Some(_) => Err((
                DisconnectReason::AuthFailure,
                format!(
                    "client id {client_id:?} is a registered device: connect with its credentials, or use another id"
                ),
            )),
            None => Ok(Role::Anonymous),
        }
    }

    async fn device(&self, client_id: &str, user: &str, secret: &[u8]) -> Result<Role, (DisconnectReason, String)> {
        if user != client_id {
            return Err((
                DisconnectReason::AuthFailure,
                format!("user name {user:?} differs from client id {client_id:?}; both must be the device id"),
            ));
        }
        let found =
            self.devices.device_credentials(user).await.map_err(|e| (DisconnectReason::ServerBusy, e.to_string()))?;
        match found {
            None => Err((DisconnectReason::AuthFailure, format!("unknown device {user:?}"))),
            Some((_, hash)) if !secret_matches(secret, &hash) => {
                Err((DisconnectReason::AuthFailure, format!("wrong secret for device {user:?}")))
            }
            Some((device, _)) if device.disabled => {
                Err((DisconnectReason::DeviceDisabled, format!("device {user:?} is disabled")))
            }
            Some((device, _)) if device.meta.certificate_only => Err((
                DisconnectReason::AuthFailure,
                format!("device {user:?} is certificate-only: connect over TLS with its client certificate"),
            )),
            Some((device, _)) => Ok(Role::Device(device.id)),
        }
    }

    /// A device logging in with the client certificate `presented`.
    async fn certificate(
        &self,
        client_id: &str,
        username: Option<&str>,
        presented: &CertificateInfo,
    ) -> Result<Role, (DisconnectReason, String)> {
        let refuse = |why: String| Err((DisconnectReason::AuthFailure, why));
        let serial = &presented.serial;
        let cn = presented.common_name.as_deref().unwrap_or("");
        if cn != client_id {
            return refuse(format!("the client certificate is for {cn:?}, not client id {client_id:?}"));
        }
        if let Some(user) = username.filter(|u| *u != client_id) {
            return refuse(format!(
                "user name {user:?} differs from client id {client_id:?}; omit it or use the device id"
            ));
        }
        let busy = |e: glassbox_store::StoreError| (DisconnectReason::ServerBusy, e.to_string());
        let Some(store) = &self.certificates else { return refuse("client certificates are not accepted here".into()) };
        let record = store.certificate(serial).await.map_err(busy)?;
        let record = match record {
            Some(r) if r.fingerprint == presented.fingerprint && r.device == client_id => r,
            _ => {
                return refuse(format!("certificate {serial} was not issued to device {client_id:?} by this platform"));
            }
        };
        let now = chrono::Utc::now();
        let successor = match &record.renewed_by {
            Some(serial) => store.certificate(serial).await.map_err(busy)?,
            None => None,
        };
        if let Some(why) = unusable(&record, successor.as_ref(), now) {
            return refuse(why);
        }
        let device = self.devices.device(client_id).await.map_err(busy)?;
        match device {
            None => refuse(format!("unknown device {client_id:?}")),
            Some(device) if device.disabled => {
                Err((DisconnectReason::DeviceDisabled, format!("device {client_id:?} is disabled")))
            }
            Some(device) => {
                if record.first_used_at.is_none() {
                    store.certificate_used(serial, now).await.map_err(busy)?;
                }
                Ok(Role::Device(device.id))
            }
        }
    }
}

/// Why the issued certificate `record` no longer logs its device in at
/// `now`, if it does not; `successor` is the certificate that renewed it
/// (read by the caller when `record.renewed_by` names one).
fn unusable(
    record: &CertificateRecord,
    successor: Option<&CertificateRecord>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let serial = &record.serial;
    if let Some(at) = record.revoked_at {
        let reason = record.revoked_reason.as_deref().unwrap_or("revoked");
        return Some(format!("certificate {serial} was revoked at {at} ({reason})"));
    }
    if record.not_after <= now {
        return Some(format!("certificate {serial} expired at {}", record.not_after));
    }
    let successor_serial = record.renewed_by.as_ref()?;
    if let Some(used) = successor.and_then(|s| s.first_used_at) {
        return Some(format!("certificate {serial} was renewed as {successor_serial}, in use since {used}"));
    }
    record.grace_until.filter(|until| *until <= now).map(|until| {
        format!("certificate {serial} was renewed as {successor_serial}; its grace period ended at {until}")
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn record(serial: &str, not_after: DateTime<Utc>) -> CertificateRecord {
        CertificateRecord {
            serial: serial.into(),
            device: "th-1".into(),
            fingerprint: "f".into(),
            not_before: not_after - Duration::days(30),
            not_after,
            issued_at: not_after - Duration::days(30),
            issued_by: "admin".into(),
            pem: String::new(),
            renews: None,
            renewed_by: None,
            grace_until: None,
            first_used_at: None,
            revoked_at: None,
            revoked_reason: None,
            expiry_warned_days: None,
        }
    }

    #[test]
    fn expired_revoked_and_renewed_certificates_no_longer_log_in_each_saying_why() {
        let now = Utc::now();
        let why = |r: &CertificateRecord| unusable(r, None, now);
        assert_eq!(why(&record("a1", now + Duration::days(1))), None, "valid");
        let expired = why(&record("a2", now - Duration::seconds(1))).unwrap();
        assert!(expired.starts_with("certificate a2 expired at "), "{expired}");
        let revoked = CertificateRecord {
            revoked_at: Some(now),
            revoked_reason: Some("revoked by admin".into()),
            ..record("a3", now + Duration::days(1))
        };
        assert!(why(&revoked).unwrap().ends_with("(revoked by admin)"));
        let renewed = |grace: Duration| CertificateRecord {
            renewed_by: Some("b1".into()),
            grace_until: Some(now + grace),
            ..record("a4", now + Duration::days(1))
        };
        let unused = record("b1", now + Duration::days(90));
        assert_eq!(unusable(&renewed(Duration::days(7)), Some(&unused), now), None, "in its grace period, unused");
        let ended = unusable(&renewed(-Duration::seconds(1)), Some(&unused), now).unwrap();
        assert!(ended.contains("its grace period ended at"), "{ended}");
        let used = CertificateRecord { first_used_at: Some(now), ..record("b1", now) };
        let used = unusable(&renewed(Duration::days(7)), Some(&used), now).unwrap();
        assert!(used.starts_with("certificate a4 was renewed as b1, in use since"), "{used}");
    }
}
