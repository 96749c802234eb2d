//! Topic access control: who may publish to and subscribe on what.
//!
//! Defaults: a device may publish and subscribe only under
//! `devices/<its id>/…`; an operator anywhere; a client logged in with a
//! named token as its role allows (`glassbox_core::access::Role::mqtt`:
//! admin and operator anywhere, viewer subscribe only, ingest publish only
//! outside `$glassbox/`); an anonymous client (open mode only) anywhere
//! except the configured deny-subscribe filters.
//! Extra rules grant devices more, with `%d` standing for the device's id.

use glassbox_core::access::{MqttAccess, Role as TokenRole};

use crate::topic::matches;

/// Topics under which the platform talks with each device (shadows,
/// commands): `$glassbox/devices/<id>/…`, open to that device.
pub use glassbox_link::RESERVED_PREFIX;

/// What a connected client is, for access control: a device (by its id),
/// an operator, or an anonymous client (open mode only). Who acts, for the
/// records of what it changes, is its `glassbox_core::Principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Device(String),
    Operator,
    /// A backend client logged in with named token `name` of `role`.
    Token {
        name: String,
        role: TokenRole,
    },
    Anonymous,
}

/// Topics only the platform and each device use: a publish-only token may not publish there.
const PLATFORM_PREFIX: &str = "$glassbox/";

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
    Both,
}

/// An extra grant for devices: `filter` may contain `%d` for the device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub filter: String,
}

/// Why access was refused; recorded as the `acl_denied` drop's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    deny_subscribe: Vec<String>,
}

impl Acl {
    pub fn new(rules: Vec<Rule>, deny_subscribe: Vec<String>) -> Self {
        Self { rules, deny_subscribe }
    }

    /// May `who` publish to topic name `topic`?
    pub fn check_publish(&self, who: &Role, topic: &str) -> Result<(), Denied> {
        match who {
            Role::Operator | Role::Anonymous => Ok(()),
            Role::Token { name, role } => token_publish(name, *role, topic),
            Role::Device(id) => match self.device_grants(id, Access::Publish).any(|g| matches(&g, topic)) {
                true => Ok(()),
                false => Err(Denied(format!(
                    "device {id:?} may not publish to {topic:?}; devices publish under devices/{id}/"
                ))),
            },
        }
    }

    /// May `who` subscribe to `filter` (a filter, possibly with wildcards)?
    /// Granted only if every topic it can match is allowed.
    pub fn check_subscribe(&self, who: &Role, filter: &str) -> Result<(), Denied> {
        match who {
            Role::Operator => Ok(()),
            Role::Token { name, role } => match role.mqtt() {
                MqttAccess::Any | MqttAccess::SubscribeOnly => Ok(()),
                MqttAccess::PublishOnly | MqttAccess::None => {
                    Err(Denied(format!("token {name:?} has role {role}, which may not subscribe (publish only)")))
                }
            },
            Role::Anonymous => match self.deny_subscribe.iter().find(|d| covers(d, filter)) {
                Some(denied) => {
                    Err(Denied(format!("subscribing to {filter:?} is denied by the deny-subscribe rule {denied:?}")))
                }
                None => Ok(()),
            },
            Role::Device(id) => match self.device_grants(id, Access::Subscribe).any(|g| covers(&g, filter)) {
                true => Ok(()),
                false => Err(Denied(format!(
                    "device {id:?} may not subscribe to {filter:?}; devices subscribe under devices/{id}/"
                ))),
            },
        }
    }

    fn device_grants<'a>(&'a self, id: &'a str, wanted: Access) -> impl Iterator<Item = String> + 'a {
        let own = [format!("devices/{id}/#"), format!("{RESERVED_PREFIX}{id}/#")].into_iter();
        let extra = self
            .rules
            .iter()
            .filter(move |r| r.access == wanted || r.access == Access::Both)
            .map(move |r| r.filter.replace("%d", id));
        own.chain(extra)
    }
}

/// May token `name` of `role` publish to `topic`?
fn token_publish(name: &str, role: TokenRole, topic: &str) -> Result<(), Denied> {
    match role.mqtt() {
        MqttAccess::Any => Ok(()),
        MqttAccess::PublishOnly if !topic.starts_with(PLATFORM_PREFIX) => Ok(()),
        MqttAccess::PublishOnly => Err(Denied(format!(
            "token {name:?} has role {role}, which may not publish under {PLATFORM_PREFIX} (the platform's topics)"
        ))),
        MqttAccess::SubscribeOnly | MqttAccess::None => {
            Err(Denied(format!("token {name:?} has role {role}, which may not publish (subscribe only)")))
        }
    }
}

/// Whether every topic matched by filter `inner` is matched by `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut inner_levels = inner.split('/');
    for level in outer.split('/') {
        match (level, inner_levels.next()) {
            ("#", _) => return true,
            (_, Some("#")) => return false,
            ("+", Some(_)) => {}
            (literal, Some(other)) if literal == other => {}
            _ => return false,
        }
    }
    inner_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Role {
        Role::Device(id.into())
    }

    #[test]
    fn devices_stay_under_their_own_prefix_by_default() {
        let acl = Acl::default();
        assert!(acl.check_publish(&device("d1"), "devices/d1/telemetry").is_ok());
        assert!(acl.check_publish(&device("d1"), "devices/d2/telemetry").is_err());
        assert!(acl.check_publish(&device("d1"), "devices/d1").is_ok(), "# matches the parent level");
        assert!(acl.check_subscribe(&device("d1"), "devices/d1/commands/+").is_ok());
        assert!(acl.check_subscribe(&device("d1"), "devices/+/commands").is_err(), "+ would reach other devices");
        assert!(acl.check_subscribe(&device("d1"), "#").is_err());
        let denied = acl.check_publish(&device("d1"), "fleet/all").unwrap_err();
        assert!(denied.0.contains("devices/d1/"));
    }

    #[test]
    fn operators_go_anywhere_and_anonymous_clients_meet_the_deny_list() {
        let acl = Acl::new(vec![], vec!["test/nosubscribe".into()]);
        assert!(acl.check_subscribe(&Role::Operator, "#").is_ok());
        assert!(acl.check_publish(&Role::Anonymous, "anything/at/all").is_ok());
        assert!(acl.check_subscribe(&Role::Anonymous, "test/nosubscribe").is_err());
        assert!(acl.check_subscribe(&Role::Anonymous, "test/#").is_ok());
    }

    #[test]
    fn tokens_get_their_roles_topic_rights() {
        let acl = Acl::default();
        let token = |role| Role::Token { name: "t".into(), role };
        assert!(acl.check_subscribe(&token(TokenRole::Viewer), "#").is_ok());
        assert!(acl.check_publish(&token(TokenRole::Viewer), "a/b").is_err());
        assert!(acl.check_publish(&token(TokenRole::Ingest), "sensors/1").is_ok());
        assert!(acl.check_publish(&token(TokenRole::Ingest), "$glassbox/devices/d1/commands").is_err());
        assert!(acl.check_subscribe(&token(TokenRole::Ingest), "sensors/#").is_err());
        assert!(acl.check_publish(&token(TokenRole::Operator), "$glassbox/x").is_ok());
    }

    #[test]
    fn extra_rules_grant_devices_more_with_their_id_substituted() {
        let rules = vec![
            Rule { access: Access::Subscribe, filter: "broadcast/#".into() },
            Rule { access: Access::Publish, filter: "fleet/%d/status".into() },
        ];
        let acl = Acl::new(rules, vec![]);
        assert!(acl.check_subscribe(&device("d1"), "broadcast/firmware").is_ok());
        assert!(acl.check_publish(&device("d1"), "broadcast/firmware").is_err(), "subscribe-only rule");
        assert!(acl.check_publish(&device("d1"), "fleet/d1/status").is_ok());
        assert!(acl.check_publish(&device("d1"), "fleet/d2/status").is_err());
    }

    #[test]
    fn coverage_of_filters() {
        for (outer, inner, expected) in [
            ("a/#", "a/b/c", true),
            ("a/#", "a/+/c", true),
            ("a/#", "a/#", true),
            ("a/#", "a", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+", "a/b/c", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b", true),
            ("#", "anything/#", true),
        ] {
            assert_eq!(covers(outer, inner), expected, "{outer} covers {inner}");
        }
    }
}
