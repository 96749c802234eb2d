//! The CLI's HTTP client: every command but `serve` and `bench` talks to a
//! running server through the API, never to the store directly.

use std::pin::Pin;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use glassbox_api_types::ErrorBody;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--server {server:?} must start with http:// (for example http://127.0.0.1:7070)");
        }
        Ok(Self { http: reqwest::Client::new(), base, token })
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET `path` (with query pairs), expecting JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.fetch(path, query).await
    }

    /// GET `path` (with query pairs), expecting the answer `T` of
    /// `glassbox_api_types`.
    pub async fn fetch<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        let request = self.authorized(self.http.get(self.url(path)).query(query));
        json(self.send(request).await?).await
    }

    /// POST a JSON body with a content type, expecting the answer `T`.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        let request = self
            .authorized(self.http.post(self.url(path)).header(reqwest::header::CONTENT_TYPE, content_type).body(body));
        json(self.send(request).await?).await
    }

    /// POST a JSON body with a content type, expecting JSON.
    pub async fn post(&self, path: &str, content_type: &str, body: String) -> anyhow::Result<Value> {
        self.post_as(path, content_type, body).await
    }

    /// POST raw bytes with query pairs, expecting JSON.
    pub async fn post_bytes(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        self.post_bytes_as(path, query, content_type, body).await
    }

    /// POST raw bytes with query pairs, expecting the answer `T`.
    pub async fn post_bytes_as<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let request = self.http.post(self.url(path)).query(query).header(reqwest::header::CONTENT_TYPE, content_type);
        json(self.send(self.authorized(request.body(body))).await?).await
    }

    /// PATCH a JSON body, expecting JSON.
    pub async fn patch(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.patch_as(path, body).await
    }

    /// PATCH a JSON body, expecting the answer `T`.
    pub async fn patch_as<T: DeserializeOwned>(&self, path: &str, body: String) -> anyhow::Result<T> {
        let request = self.authorized(
            self.http.patch(self.url(path)).header(reqwest::header::CONTENT_TYPE, "application/json").body(body),
        );
        json(self.send(request).await?).await
    }

    /// PUT a JSON body, expecting the answer `T`.
    pub async fn put_as<T: DeserializeOwned>(&self, path: &str, body: String) -> anyhow::Result<T> {
        let request = self.authorized(
            self.http.put(self.url(path)).header(reqwest::header::CONTENT_TYPE, "application/json").body(body),
        );
        json(self.send(request).await?).await
    }

    /// DELETE `path`, expecting success without a body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.authorized(self.http.delete(self.url(path)))).await.map(drop)
    }

    /// DELETE `path`, answered with `T`.
    pub async fn delete_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        json(self.send(self.authorized(self.http.delete(self.url(path)))).await?).await
    }

    /// GET a stream of Server-Sent Events. It is open (the server
    /// subscribed) when this returns.
    pub async fn stream(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<EventStream> {
        let request = self.authorized(self.http.get(self.url(path)).query(query).header("accept", "text/event-stream"));
        let response = self.send(request).await?;
        Ok(EventStream { body: Box::pin(response.bytes_stream()), buffer: Vec::new() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the Glassbox server at {}: {e}\n  is `glassbox serve` running? set --server or GLASSBOX_SERVER to its address",
                self.base
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let refusal = response.json::<ErrorBody>().await.ok();
        let message = refusal.map_or_else(|| "(no message)".to_string(), |body| body.error.message);
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                "\n  pass --token or set GLASSBOX_TOKEN to the admin token printed by `glassbox serve` at first start"
            }
            StatusCode::UNAUTHORIZED => "\n  the token was refused: check --token / GLASSBOX_TOKEN",
            _ => "",
        };
        bail!("{} {message}{hint}", status.as_u16())
    }
}

/// A Server-Sent Events stream, read message by message.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
}

/// One Server-Sent Events message: its `event:` kind (`message` when it
/// names none) and its `data:` lines joined.
pub struct SseMessage {
    pub kind: String,
    pub data: String,
}

impl EventStream {
    /// The next message; `None` once the server has closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseMessage>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Ok(Some(SseMessage::parse(&String::from_utf8_lossy(&message))));
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.context("the event stream broke")?),
                None => return Ok(None),
            }
        }
    }
}

impl SseMessage {
    fn parse(message: &str) -> Self {
        let mut kind = "message";
        let mut data = String::new();
        for line in message.lines() {
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        Self { kind: kind.to_string(), data }
    }
}

/// Percent-encodes one URL path segment (an id typed by the user).
pub fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer's body as `T`; an answer of another shape names the path it came from.
async fn json<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let path = response.url().path().to_string();
    let body = response.bytes().await.with_context(|| format!("the answer to {path} broke off"))?;
    serde_json::from_slice(&body).with_context(|| format!("the server's answer to {path} is not what this CLI reads"))
}
