//! The perimeter the configuration opens: each bound listener and each
//! risky setting, judged once at start for `GET /api/v1/perimeter`.

use std::net::SocketAddr;

use glassbox_api::perimeter::Surface;
use glassbox_api_types::perimeter::{Listener, Note, RiskySetting};

use crate::Config;

/// The bound listeners' addresses.
pub struct Bound {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    /// The public function routes' own listener.
    pub public: Option<SocketAddr>,
    pub mqtt: SocketAddr,
    pub mqtts: Option<SocketAddr>,
}

/// Judges what `config` opens on the `bound` addresses.
pub fn surface(config: &Config, bound: &Bound) -> Surface {
    let routes_apart = bound.public.is_some();
    let mut listeners = vec![http(bound.http, routes_apart)];
    listeners.extend(bound.https.map(|addr| https(addr, routes_apart)));
    listeners.extend(bound.public.map(public));
    listeners.push(mqtt(config, bound.mqtt));
    listeners.extend(bound.mqtts.map(mqtts));
    let routes_listener = if routes_apart { "public-http" } else { "http" };
    Surface {
        listeners,
        settings: settings(config),
        routes_listener: routes_listener.into(),
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

/// What an API listener serves: the admin API, and the public routes unless they have their own listener.
fn api_serves(addr: SocketAddr, routes_apart: bool) -> (Vec<String>, Vec<String>) {
    let mut serves = vec!["admin API".to_string()];
    let mut authentication = vec!["bearer token: the admin token or a named token (its role)".to_string()];
    if !routes_apart {
        serves.push("public function routes".into());
        authentication.push("none (public routes: the function checks)".into());
    }
    serves.push(format!("reached from {}", reach(addr)));
    (serves, authentication)
}

fn http(addr: SocketAddr, routes_apart: bool) -> Listener {
    let note = match (addr.ip().is_loopback(), routes_apart) {
        (true, _) => Note::ok("loopback only: reached from this machine (or through a TLS proxy you run)"),
        (false, true) => Note::high("bearer tokens cross the network in plaintext: serve the API with --https"),
        (false, false) => Note::high(
            "bearer tokens cross the network in plaintext, and the admin API faces whoever may call a public \
             route: serve --https and --public-http",
        ),
    };
    let (serves, authentication) = api_serves(addr, routes_apart);
    Listener {
        name: "http".into(),
        address: addr.to_string(),
        protocol: "http".into(),
        tls: false,
        serves,
        authentication,
        note,
    }
}

fn https(addr: SocketAddr, routes_apart: bool) -> Listener {
    let note = match (addr.ip().is_loopback(), routes_apart) {
        (false, false) => Note::warn("the admin API faces whoever may call a public route: serve --public-http"),
        _ => Note::ok("TLS: tokens are encrypted on the way"),
    };
    let (serves, authentication) = api_serves(addr, routes_apart);
    Listener {
        name: "https".into(),
        address: addr.to_string(),
        protocol: "http".into(),
        tls: true,
        serves,
        authentication,
        note,
    }
}

fn public(addr: SocketAddr) -> Listener {
    Listener {
        name: "public-http".into(),
        address: addr.to_string(),
        protocol: "http".into(),
        tls: false,
        serves: vec!["public function routes only".into(), format!("reached from {}", reach(addr))],
        authentication: vec!["none (the function checks)".into()],
        note: Note::ok("function routes only: no token is accepted or needed here, the admin API is elsewhere"),
    }
}

fn mqtt(config: &Config, addr: SocketAddr) -> Listener {
    let mut authentication = vec![
        "device id + secret".into(),
        "user operator + admin token".into(),
        "token name + named token (its role)".into(),
    ];
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
        authentication: vec![
            "device client certificate from the CA (common name = client id)".into(),
            "device id + secret (unless certificate-only)".into(),
            "user operator + admin token".into(),
            "token name + named token (its role)".into(),
        ],
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
