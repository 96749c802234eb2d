//! Who acts: the principal behind every change the platform records.
//!
//! The transports resolve it (the API's auth layer from a bearer token, the
//! MQTT gateway from a CONNECT), services take it in every method that
//! changes something, and the records of those changes carry it, so "who
//! changed what, from where" is answered from the event stream alone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An authenticated actor, with how it proved who it is and from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The admin's, token's, device's, function's or platform component's name.
    pub name: String,
    /// How it authenticated.
    pub auth: AuthMethod,
    /// The peer address it acted from (`ip:port`); none for the platform itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What sort of actor a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The operator holding the admin token.
    Admin,
    /// A named, scoped API token.
    Token,
    /// A device, by its id.
    Device,
    /// A deployed function, by its name (its host calls act for it).
    Function,
    /// The platform itself: a scheduler, retention, recovery, a watcher.
    System,
}

/// How a [`Principal`] proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `Authorization: Bearer` with the admin token or a named token.
    BearerToken,
    /// An MQTT CONNECT whose password is an operator token.
    MqttToken,
    /// An MQTT CONNECT with the device's secret.
    DeviceSecret,
    /// A TLS client certificate.
    ClientCertificate,
    /// The platform's own code; nothing to present.
    Internal,
}

impl Principal {
    /// The operator holding the admin token, over `auth`, from `source`.
    pub fn admin(auth: AuthMethod, source: Option<String>) -> Self {
        Self { kind: PrincipalKind::Admin, name: PrincipalKind::Admin.as_str().into(), auth, source }
    }

    /// The holder of named token `name`, over `auth`, from `source`.
    pub fn token(name: &str, auth: AuthMethod, source: Option<String>) -> Self {
        Self { kind: PrincipalKind::Token, name: name.into(), auth, source }
    }

    /// A device that authenticated with `auth` from `source`.
    pub fn device(id: &str, auth: AuthMethod, source: Option<String>) -> Self {
        Self { kind: PrincipalKind::Device, name: id.into(), auth, source }
    }

    /// A function acting through its host services.
    pub fn function(name: &str) -> Self {
        Self { kind: PrincipalKind::Function, name: name.into(), auth: AuthMethod::Internal, source: None }
    }

    /// The platform's own `component` (`scheduler`, `recovery`, …).
    pub fn system(component: &str) -> Self {
        Self { kind: PrincipalKind::System, name: component.into(), auth: AuthMethod::Internal, source: None }
    }

    /// Who, without where: `admin`, `token:ci`, `device:th-1`,
    /// `function:fan`, `system:scheduler`. Records that always named their
    /// actor as a string (`by`, `actor`, `issuer`) hold this.
    pub fn label(&self) -> String {
        match self.kind {
            PrincipalKind::Admin => self.kind.as_str().to_string(),
            kind => format!("{}:{}", kind.as_str(), self.name),
        }
    }

    /// Whether this is an operator (the admin or a token), not a device,
    /// function or the platform.
    pub fn is_operator(&self) -> bool {
        matches!(self.kind, PrincipalKind::Admin | PrincipalKind::Token)
    }
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Token => "token",
            Self::Device => "device",
            Self::Function => "function",
            Self::System => "system",
        }
    }
}

/// The principal's label, then ` from <address>` when known.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())?;
        match &self.source {
            Some(source) => write!(f, " from {source}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_flat_record() {
        let admin = Principal::admin(AuthMethod::BearerToken, Some("127.0.0.1:5123".into()));
        let json = serde_json::to_value(&admin).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "admin", "name": "admin", "auth": "bearer_token", "source": "127.0.0.1:5123"})
        );
        assert_eq!(serde_json::from_value::<Principal>(json).unwrap(), admin);
        let system = serde_json::to_value(Principal::system("scheduler")).unwrap();
        assert!(system.get("source").is_none(), "{system}");
    }

    #[test]
    fn displays_who_and_where() {
        assert_eq!(
            Principal::admin(AuthMethod::BearerToken, Some("10.0.0.2:4000".into())).to_string(),
            "admin from 10.0.0.2:4000"
        );
        assert_eq!(Principal::device("th-1", AuthMethod::DeviceSecret, None).to_string(), "device:th-1");
        assert_eq!(Principal::function("fan").to_string(), "function:fan");
        assert_eq!(Principal::admin(AuthMethod::MqttToken, Some("10.0.0.2:4000".into())).label(), "admin");
        assert!(!Principal::system("recovery").is_operator());
    }
}
