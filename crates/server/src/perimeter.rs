//! The perimeter the configuration opens: each bound listener and each
//! risky setting, judged once at start for `GET /api/v1/perimeter`.

use std::net::SocketAddr;

use glassbox_api::perimeter::Surface;
use glassbox_api_types::perimeter::{Listener, Note, RiskySetting};

use crate::Config;

/// The bound listeners' addresses.
pub struct Bound {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub mqtts: Option<SocketAddr>,
}

/// Judges what `config` opens on the `bound` addresses.
pub fn surface(config: &Config, bound: &Bound) -> Surface {
    let mut listeners = vec![http(bound.http), mqtt(config, bound.mqtt)];
    listeners.extend(bound.mqtts.map(mqtts));
    Surface {
        listeners,
        settings: settings(config),
        routes_listener: "http".into(),
        route_requests_per_second: config.http.route_requests_per_second,
    }
}

/// Who reaches an address: this machine only, or the network.
fn reach(addr: SocketAddr) -> &'static str {
    match addr.ip().is_loopback() {
        true => "this machine only",
        false => "the network",
    }
}

fn http(addr: SocketAddr) -> Listener {
    let note = match addr.ip().is_loopback() {
        true => Note::ok("loopback only: reached from this machine (or through a TLS proxy you run)"),
        false => Note::high(
            "bearer tokens cross the network in plaintext, and the admin API faces whoever may call a public route",
        ),
    };
    Listener {
        name: "http".into(),
        address: addr.to_string(),
        protocol: "http".into(),
        tls: false,
        serves: vec!["admin API".into(), "public function routes".into(), format!("reached from {}", reach(addr))],
        authentication: vec!["bearer token (admin API)".into(), "none (public routes: the function checks)".into()],
        note,
    }
}

fn mqtt(config: &Config, addr: SocketAddr) -> Listener {
    let mut authentication = vec!["device id + secret".into(), "user operator + admin token".into()];
    if config.mqtt.allow_anonymous {
        authentication.push("anonymous (open mode)".into());
    }
    let note = match (config.mqtt.allow_anonymous, addr.ip().is_loopback()) {
        (true, _) => Note::high("open mode: anyone who connects may publish and subscribe"),
        (false, false) => Note::warn("device secrets cross the network in plaintext: serve --mqtts for devices"),
        (false, true) => Note::ok("loopback only"),
    };
    Listener {
        name: "mqtt".into(),
        address: addr.to_string(),
        protocol: "mqtt".into(),
        tls: false,
        serves: vec!["devices and backend clients".into(), format!("reached from {}", reach(addr))],
        authentication,
        note,
    }
}

fn mqtts(addr: SocketAddr) -> Listener {
    Listener {
        name: "mqtts".into(),
        address: addr.to_string(),
        protocol: "mqtt".into(),
        tls: true,
        serves: vec!["devices and backend clients".into(), format!("reached from {}", reach(addr))],
        authentication: vec!["device id + secret".into(), "user operator + admin token".into()],
        note: Note::ok("TLS: credentials are encrypted on the way"),
    }
}

/// The settings that widen the perimeter, when they do.
fn settings(config: &Config) -> Vec<RiskySetting> {
    let setting = |key: &str, value: String, note: Note| RiskySetting { key: key.into(), value, note };
    let mut risky = Vec::new();
    if config.mqtt.allow_anonymous {
        let note = Note::high("clients without credentials may publish and subscribe on any topic");
        risky.push(setting("mqtt.allow_anonymous", "true".into(), note));
    }
    if config.metrics.public {
        let note = Note::warn("/metrics answers without a token: device ids and function names are readable");
        risky.push(setting("metrics.public", "true".into(), note));
    }
    if config.http.route_requests_per_second == 0 {
        let note = Note::warn("public function routes take requests without limit: a flood runs up cost");
        risky.push(setting("http.route_requests_per_second", "0".into(), note));
    }
    if config.http.client_requests_per_second == 0 {
        let note = Note::warn("one client may send requests without limit");
        risky.push(setting("http.client_requests_per_second", "0".into(), note));
    }
    if config.mqtt.publish_rate_max == 0 {
        let note = Note::warn("one device may publish without limit");
        risky.push(setting("mqtt.publish_rate_max", "0".into(), note));
    }
    risky
}
