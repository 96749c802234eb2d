//! What the server's integration tests share: a whole server on free
//! loopback ports over a temporary data directory.

#![allow(dead_code)] // Each test crate uses its own part of this.

use glassbox_server::{Config, Running};

/// A started server, its addresses, and the directory it lives in.
pub struct Server {
    pub running: Option<Running>,
    pub http: String,
    pub mqtt: String,
    _dir: tempfile::TempDir,
}

/// Starts a server with `token` as admin token, the config adjusted first.
pub async fn start_with(token: &str, adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    adjust(&mut config);
    let running = glassbox_server::start(config, Some(token)).await.unwrap();
    Server {
        http: format!("http://{}", running.http_addr),
        mqtt: running.mqtt_addr.to_string(),
        running: Some(running),
        _dir: dir,
    }
}
