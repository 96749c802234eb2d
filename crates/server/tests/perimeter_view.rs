//! `GET /api/v1/perimeter` (issue 20): every listener, public route,
//! token, device credential, egress rule and risky setting, each judged.

mod common;

use glassbox_api_types::perimeter::{Perimeter, Risk};
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{Server, fixture, start_with};

const TOKEN: &str = "gbx_perimeter_view_token";

impl Server {
    async fn perimeter(&self) -> Perimeter {
        let (status, body) = self.call(Method::GET, "/api/v1/perimeter", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn deploy(&self, name: &str, fixture_name: &str, query: &str) {
        let path = format!("/api/v1/functions/{name}?{query}");
        let (status, body) = self.call(Method::POST, &path, Some(fixture(fixture_name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

#[tokio::test]
async fn the_perimeter_lists_routes_egress_devices_and_judges_each() {
    let server = start_with(TOKEN, |c| c.http.route_requests_per_second = 0).await;
    server.deploy("button", "http-command", "trigger=http:POST%20/button,http:*%20/hooks/*").await;
    server.deploy("meta", "echo", "trigger=mqtt:devices/%2B/t&egress=169.254.0.0/16").await;
    server.deploy("plain", "echo", "trigger=mqtt:devices/%2B/t&egress=api.example.com").await;
    for id in ["d1", "d2"] {
        let (status, body) =
            server.call(Method::POST, "/api/v1/devices", Some(json!({ "id": id }).to_string().into_bytes())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    server.call(Method::POST, "/api/v1/devices/d2/disable", None).await;

    let p = server.perimeter().await;
    let names: Vec<&str> = p.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["http", "mqtt"], "no TLS listener is configured");
    assert!(p.listeners.iter().all(|l| l.note.risk == Risk::Ok && !l.tls), "loopback only: {:?}", p.listeners);

    let routes: Vec<(&str, &str, Risk)> =
        p.routes.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.note.risk)).collect();
    assert_eq!(routes, [("POST", "/button", Risk::High), ("*", "/hooks/*", Risk::High)], "no limit at all");
    assert!(p.routes.iter().all(|r| r.function == "button" && r.rate_limit_per_second.is_none()));

    let egress = |f: &str| p.egress.iter().find(|e| e.function == f).unwrap();
    assert_eq!(egress("button").note.risk, Risk::Ok, "no rules: denied");
    assert_eq!(egress("meta").note.risk, Risk::High, "{:?}", egress("meta").note);
    assert!(egress("meta").note.note.contains("metadata"));
    assert_eq!(
        (egress("plain").rules.as_slice(), egress("plain").note.risk),
        (&["api.example.com".into()][..], Risk::Ok)
    );

    assert_eq!((p.devices.total, p.devices.disabled, p.devices.secret_only), (2, 1, 2));
    assert_eq!(p.devices.note.risk, Risk::Warn, "one device logs in with a secret: {:?}", p.devices.note);
    assert!(p.tokens.iter().any(|t| t.name == "admin" && t.role == "admin"));
    let keys: Vec<&str> = p.settings.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["http.route_requests_per_second"]);
}

#[tokio::test]
async fn open_mode_is_a_high_risk_on_the_listener_and_in_the_settings() {
    let server = start_with(TOKEN, |c| c.mqtt.allow_anonymous = true).await;
    let p = server.perimeter().await;
    let mqtt = p.listeners.iter().find(|l| l.name == "mqtt").unwrap();
    assert_eq!(mqtt.note.risk, Risk::High);
    assert!(mqtt.authentication.iter().any(|a| a.contains("anonymous")));
    assert!(p.settings.iter().any(|s| s.key == "mqtt.allow_anonymous" && s.note.risk == Risk::High));
    let anonymous = reqwest::Client::new().get(format!("{}/api/v1/perimeter", server.http)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "the perimeter is not public");
}
