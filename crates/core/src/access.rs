//! Who may do what: the roles a named token holds and the permissions a
//! call needs. [`Role::allows`] is the one table every transport consults
//! (the API per route, the MQTT gateway per topic through [`Role::mqtt`]),
//! so what a role may do is read in one place and documented once
//! (`docs/security.md` mirrors it).
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything, including tokens and certificates |
//! | `operator` | read, control, clear, replay |
//! | `deployer` | read, deploy (deploy, roll back, promote, retire functions) |
//! | `viewer` | read |
//! | `ingest` | ingest (POST events) |
//! | `device-provisioner` | provision devices, issue certificates |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A named token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Operator,
    Deployer,
    Viewer,
    Ingest,
    DeviceProvisioner,
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read anything: events, traces, logs, metrics, devices, functions.
    Read,
    /// Act on devices: commands, shadows, disable and enable.
    Control,
    /// Drop waiting data: a device's session queue.
    Clear,
    /// Replay recorded events against a function.
    Replay,
    /// Deploy, roll back, promote and delete functions.
    Deploy,
    /// Send events in (`POST /api/v1/events`, MQTT publishes).
    Ingest,
    /// Register, change, re-key and delete devices.
    ProvisionDevices,
    /// Issue and revoke device certificates.
    IssueCertificates,
    /// Create, list and revoke tokens.
    ManageTokens,
    /// Read the audit log: who changed what, from which address.
    Audit,
}

/// What a role may do on MQTT topics, as a backend client logged in with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttAccess {
    /// Publish and subscribe on any topic.
    Any,
    /// Subscribe on any topic; publish on none.
    SubscribeOnly,
    /// Publish on any topic outside the platform's reserved `$glassbox/`; subscribe on none.
    PublishOnly,
    /// Refused at CONNECT.
    None,
}

/// Why a role name was not accepted: names the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use one of admin, operator, deployer, viewer, ingest, device-provisioner")]
pub struct UnknownRole(pub String);

impl Role {
    /// Every role, least powerful first (the order refusals list them in).
    pub const ALL: [Role; 6] =
        [Role::Viewer, Role::Ingest, Role::Deployer, Role::DeviceProvisioner, Role::Operator, Role::Admin];

    /// Whether this role may do what `permission` guards: the one table.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(permission, P::Read | P::Control | P::Clear | P::Replay | P::Audit),
            Role::Deployer => matches!(permission, P::Read | P::Deploy),
            Role::Viewer => permission == P::Read,
            Role::Ingest => permission == P::Ingest,
            Role::DeviceProvisioner => matches!(permission, P::ProvisionDevices | P::IssueCertificates),
        }
    }

    /// What a client logged in to MQTT with a token of this role may do on topics.
    pub fn mqtt(self) -> MqttAccess {
        match self {
            // An operator controls devices: it publishes to them as well as reads.
            Role::Admin | Role::Operator => MqttAccess::Any,
            Role::Viewer => MqttAccess::SubscribeOnly,
            Role::Ingest => MqttAccess::PublishOnly,
            Role::Deployer | Role::DeviceProvisioner => MqttAccess::None,
        }
    }

    /// The roles that may do what `permission` guards, least powerful first.
    pub fn allowing(permission: Permission) -> Vec<Role> {
        Self::ALL.into_iter().filter(|r| r.allows(permission)).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
            Role::DeviceProvisioner => "device-provisioner",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_string()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Permission {
    /// The permission as a verb phrase: "may not {verb}".
    pub fn verb(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Control => "control devices",
            Permission::Clear => "clear queues",
            Permission::Replay => "replay events",
            Permission::Deploy => "deploy",
            Permission::Ingest => "ingest events",
            Permission::ProvisionDevices => "provision devices",
            Permission::IssueCertificates => "issue certificates",
            Permission::ManageTokens => "manage tokens",
            Permission::Audit => "read the audit log",
        }
    }
}

/// Why `who` (`token "ci"`) holding `role` may not do what `permission`
/// guards, naming the roles that may: `token "ci" has role viewer, which
/// may not deploy (needs deployer or admin)`.
pub fn refusal(who: &str, role: Role, permission: Permission) -> String {
    let allowed: Vec<&str> = Role::allowing(permission).into_iter().map(Role::as_str).collect();
    let needs = match allowed.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "no role".to_string(),
    };
    format!("{who} has role {role}, which may not {} (needs {needs})", permission.verb())
}

/// Longest token name.
pub const TOKEN_NAME_BYTES_MAX: usize = 63;

/// A token name is `[a-z0-9][a-z0-9._-]{0,62}`: it is also an MQTT user name
/// and appears in the token itself.
pub fn validate_token_name(name: &str) -> Result<(), String> {
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    match first_ok && rest_ok && name.len() <= TOKEN_NAME_BYTES_MAX {
        true => Ok(()),
        false => Err(format!(
            "token name {name:?} is not valid: 1 to {TOKEN_NAME_BYTES_MAX} characters, lowercase letters, digits, \
             . _ or -, starting with a letter or digit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_print_and_refuse_unknown_names_listing_the_valid_ones() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), serde_json::json!(role.as_str()));
        }
        let error = "root".parse::<Role>().unwrap_err().to_string();
        assert!(error.contains("\"root\"") && error.contains("device-provisioner"), "{error}");
    }

    #[test]
    fn the_table_grants_each_role_its_own() {
        assert!(Role::Admin.allows(Permission::ManageTokens));
        assert!(!Role::Operator.allows(Permission::ManageTokens));
        assert!(Role::Viewer.allows(Permission::Read) && !Role::Viewer.allows(Permission::Deploy));
        assert!(Role::Ingest.allows(Permission::Ingest) && !Role::Ingest.allows(Permission::Read));
        assert!(Role::DeviceProvisioner.allows(Permission::IssueCertificates));
        assert_eq!(Role::Operator.mqtt(), MqttAccess::Any);
        assert_eq!(Role::Viewer.mqtt(), MqttAccess::SubscribeOnly);
        assert_eq!(Role::Ingest.mqtt(), MqttAccess::PublishOnly);
        assert_eq!(Role::Deployer.mqtt(), MqttAccess::None);
        assert_eq!(Role::DeviceProvisioner.mqtt(), MqttAccess::None);
    }

    #[test]
    fn a_refusal_names_the_role_and_who_may() {
        assert_eq!(
            refusal("token \"ci\"", Role::Viewer, Permission::Deploy),
            "token \"ci\" has role viewer, which may not deploy (needs deployer or admin)"
        );
        assert_eq!(
            refusal("token \"ci\"", Role::Viewer, Permission::ManageTokens),
            "token \"ci\" has role viewer, which may not manage tokens (needs admin)"
        );
    }

    #[test]
    fn token_names_are_lowercase_words() {
        for ok in ["ci", "0", "grafana.read-only_2", &"a".repeat(63)] {
            assert!(validate_token_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "CI", "-ci", ".ci", "c i", "c/i", &"a".repeat(64)] {
            assert!(validate_token_name(bad).is_err(), "{bad}");
        }
    }
}
