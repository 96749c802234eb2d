//! Who a connecting client is: a registered device (client id = user name =
//! device id, password = its secret), an operator (user name `operator`,
//! password the admin token), a backend client with a named token (user
//! name = the token's name, password = the token; its role gives its topic
//! rights, and a role with none is refused as not authorised), or — in
//! open mode only — anonymous.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use glassbox_core::access::MqttAccess;
use glassbox_core::secrets::{SecretHash, matches as secret_matches};
use glassbox_core::{AuthMethod, DisconnectReason, Principal};
use glassbox_store::DeviceRegistry;

use crate::acl::Role;

/// What a CONNECT presented.
#[derive(Debug)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The client's role, or why the connection is refused.
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Role, (DisconnectReason, String)>;
}

/// The user name backend clients use with an operator token as password.
pub const OPERATOR_USERNAME: &str = "operator";

/// What a named-token login came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLogin {
    /// The password is not a token of that name's form: try it as a device.
    NotAToken,
    Accepted(glassbox_core::access::Role),
    /// A token of that name's form that is unknown, wrong, expired or revoked: why.
    Refused(String),
}

/// Checks a named token presented at CONNECT (the token service, in the
/// server); sees tokens created after start.
pub trait TokenLogins: Send + Sync + 'static {
    fn login(&self, name: &str, token: &[u8]) -> TokenLogin;
}

/// Who a client admitted as `role` from `peer` acts as, in the records of
/// what it changes: a device by its secret, an operator token as the admin
/// (user `operator`), a named token as itself. An anonymous client acts as
/// no one: it can change nothing through the platform.
pub fn principal(role: &Role, peer: SocketAddr) -> Option<Principal> {
    let source = Some(peer.to_string());
    match role {
        Role::Device(id) => Some(Principal::device(id, AuthMethod::DeviceSecret, source)),
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
}

#[async_trait]
impl Authenticator for RegistryAuth {
    async fn authenticate(&self, c: &Credentials<'_>) -> Result<Role, (DisconnectReason, String)> {
        let refuse = |why: &str| Err((DisconnectReason::AuthFailure, why.to_string()));
        match (c.username, c.password) {
            (Some(OPERATOR_USERNAME), Some(token)) => {
                match self.operator_tokens.iter().any(|h| secret_matches(token, h)) {
                    true => Ok(Role::Operator),
                    false => refuse("operator token not recognised"),
                }
            }
            (Some(user), Some(secret)) => match self.token(user, secret) {
                TokenLogin::NotAToken => self.device(c.client_id, user, secret).await,
                TokenLogin::Accepted(role) if role.mqtt() == MqttAccess::None => Err((
                    DisconnectReason::NotAuthorized,
                    format!("token {user:?} has role {role}, which has no MQTT rights"),
                )),
                TokenLogin::Accepted(role) => Ok(Role::Token { name: user.to_string(), role }),
                TokenLogin::Refused(why) => refuse(&why),
            },
            (None, None) if self.allow_anonymous => self.anonymous(c.client_id).await,
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
            Some((device, _)) => Ok(Role::Device(device.id)),
        }
    }
}
