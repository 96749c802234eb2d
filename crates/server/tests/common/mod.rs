//! What the server's integration tests share: a whole server on free
//! loopback ports over a temporary data directory.

#![allow(dead_code)] // Each test crate uses its own part of this.

use std::time::{Duration, Instant};

use bytes::Bytes;
use glassbox_gateway::client::{self, Options, Reader, Writer};
use glassbox_gateway::codec::{Packet, Properties, Publish, QoS, Subscribe, SubscriptionOptions};
use glassbox_server::{Config, Running};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A started server, its addresses, and the directory it lives in.
pub struct Server {
    pub running: Option<Running>,
    pub http: String,
    pub mqtt: String,
    /// The admin token it was started with.
    pub token: String,
    _dir: tempfile::TempDir,
}

/// Starts a server with `token` as admin token, the config adjusted first.
pub async fn start_with(token: &str, adjust: impl FnOnce(&mut Config)) -> Server {
    start_in(tempfile::tempdir().unwrap(), token, adjust).await
}

/// Starts a server over `dir` (a restart when it holds a server's data).
pub async fn start_in(dir: tempfile::TempDir, token: &str, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    adjust(&mut config);
    let running = glassbox_server::start(config, Some(token)).await.unwrap();
    Server {
        http: format!("http://{}", running.http_addr),
        mqtt: running.mqtt_addr.to_string(),
        token: token.to_string(),
        running: Some(running),
        _dir: dir,
    }
}

impl Server {
    /// Stops the server gracefully and starts it again over the same data.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> Server {
        self.running.take().unwrap().stop().await.unwrap();
        start_in(self._dir, &self.token, adjust).await
    }

    /// An API call with the admin token; a body starting with `{` is sent as
    /// JSON. Returns the status and the JSON answer (null if none).
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            if body.first() == Some(&b'{') {
                request = request.header("content-type", "application/json");
            }
            request = request.body(body);
        }
        answer(request).await
    }

    /// A request to the API with the admin token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.http)).bearer_auth(&self.token)
    }

    /// Polls `path` until `pick` finds something (10 s at most).
    pub async fn eventually(&self, path: &str, pick: impl Fn(&Value) -> Option<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.call(Method::GET, path, None).await;
            if let Some(found) = pick(&body) {
                return found;
            }
            assert!(Instant::now() < deadline, "nothing found at {path}; last answer: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends `request`; its status and JSON answer (null if none).
pub async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// A WAT fixture of the runtime's tests.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../runtime/tests/fixtures/{name}.wat", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An MQTT client connected with `options` and subscribed to `filter`
/// (the SUBACK read).
pub async fn subscribed(mqtt: &str, options: &Options, filter: &str, qos: QoS) -> (Reader, Writer) {
    let (mut reader, mut writer, _) = client::connect(mqtt, options).await.unwrap();
    let filters = vec![(filter.to_string(), SubscriptionOptions::qos(qos))];
    writer
        .send(&Packet::Subscribe(Subscribe { packet_id: 1, properties: Properties::default(), filters }))
        .await
        .unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(reader.next().await.unwrap(), Packet::SubAck(_)));
    (reader, writer)
}

/// A QoS 1 PUBLISH of `payload` on `topic`.
pub fn publish(topic: &str, payload: impl Into<Bytes>, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: Some(packet_id),
        properties: Properties::default(),
        payload: payload.into(),
    })
}

/// A webhook receiver: the bodies of the POSTs it gets, as text.
pub async fn webhook() -> (String, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                    let _ = tx.send(body.to_string()).await;
                    break;
                }
            }
        }
    });
    (url, rx)
}
