//! Who may log in, as the composition root wires it: named-token logins
//! and revocations between the token service and the MQTT broker, and the
//! certificate authority (the operator's own, or the built-in one) with the
//! names its server certificates hold.

use std::sync::Arc;

use anyhow::Context;

use crate::Config;

/// MQTT logins with a named token, checked by the token service.
pub(crate) struct TokenLogins(pub(crate) Arc<glassbox_control::NamedTokens>);

impl glassbox_gateway::broker::TokenLogins for TokenLogins {
    fn login(&self, name: &str, token: &[u8]) -> glassbox_gateway::broker::TokenLogin {
        use glassbox_gateway::broker::TokenLogin;
        let named = std::str::from_utf8(token).ok().and_then(glassbox_control::name_in);
        if named != Some(name) {
            return TokenLogin::NotAToken;
        }
        match self.0.login(name, token) {
            Ok(accepted) => TokenLogin::Accepted(accepted.role, accepted.expires_at),
            Err(refused) => TokenLogin::Refused(refused.to_string()),
        }
    }
}

/// A revoked token's MQTT connections, closed by the broker. Weak: the
/// broker holds the token service (its logins), which holds this.
pub(crate) struct TokenSessions(pub(crate) glassbox_gateway::broker::WeakBroker);

impl glassbox_control::TokenSessions for TokenSessions {
    fn close(&self, name: &str) -> usize {
        self.0.upgrade().map_or(0, |broker| broker.close_token(name))
    }
}

/// The names a server certificate from the built-in CA holds: `localhost`,
/// `127.0.0.1` and the configured ones.
pub(crate) fn server_names(configured: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(configured.iter().filter(|n| !names.contains(n)).cloned().collect::<Vec<_>>());
    names
}

/// The certificate authority: the operator's own (`ca.cert`, `ca.key`), or
/// the built-in one in `<data_dir>/ca/`, created on first start.
pub(crate) fn open_authority(config: &Config) -> anyhow::Result<glassbox_pki::Authority> {
    let import = match (config.ca.cert.as_str(), config.ca.key.as_str()) {
        ("", _) | (_, "") => None,
        (cert, key) => Some((std::path::Path::new(cert), std::path::Path::new(key))),
    };
    glassbox_pki::Authority::open(&config.data_dir.join("ca"), import).context("opening the certificate authority (ca)")
}
