//! Outbound HTTP (`wasi:http/outgoing-handler`), denied by default: a
//! function reaches only the hosts its deploy allowed, within its deadline,
//! and every request it makes — sent, failed or denied — is written down for
//! the invocation's record (host, method, status, bytes out and in, time).
//! The chain's `traceparent` goes only to hosts that opted in.
//!
//! A request off the allow list is refused by `handle` itself (shadowed in
//! the linker, [`add_to_linker`]); the `send_request` hook checks again,
//! records, bounds the exchange by the deadline and adds `traceparent`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Most outbound requests written down per invocation; more are counted.
pub const EGRESS_RECORDS_MAX: usize = 100;

/// One allowed host: `api.example.com`, `*.example.com` (any subdomain),
/// either with `:port` to allow only that port; IP literals too
/// (`127.0.0.1:8080`, `[::1]:8080`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lowercase host; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostRule {
    /// Parses a rule, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad =
            |why: &str| format!("egress host {text:?}: {why} (e.g. api.example.com, *.example.com, 10.0.0.5:8080)");
        if t.contains("://") || t.contains('/') {
            return Err(bad("give a host, not a URL"));
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected :port after ]"))?),
            };
            inner.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address"))?;
            (inner.to_string(), port)
        } else if t.matches(':').count() > 1 {
            t.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address; write one with a port as [::1]:8080"))?;
            (t.clone(), None)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (t.clone(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (rest.to_string(), true),
            None => (host, false),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        if !is_ip && (host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok)) {
            return Err(bad("not a host name"));
        }
        if wildcard && is_ip {
            return Err(bad("a wildcard needs a domain"));
        }
        Ok(Self { host, wildcard, port })
    }

    /// Whether a request to `host:port` falls under this rule.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let host_ok = match self.wildcard {
            true => host.len() > self.host.len() + 1 && host.ends_with(&format!(".{}", self.host)),
            false => host == self.host,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// What one invocation may reach, and the trace context it may pass on.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// Hosts requests may go to; none: every request is denied.
    pub allow: Vec<HostRule>,
    /// Hosts that get the chain's `traceparent` header (they are allowed too).
    pub trace: Vec<HostRule>,
    /// The `traceparent` to send to the hosts in `trace`.
    pub traceparent: Option<String>,
}

impl Outbound {
    fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().chain(&self.trace).any(|r| r.matches(host, port))
    }

    fn traces(&self, host: &str, port: u16) -> bool {
        self.trace.iter().any(|r| r.matches(host, port))
    }
}

/// One outbound request, as recorded on the invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EgressRecord {
    pub host: String,
    pub port: u16,
    pub scheme: String,
    pub method: String,
    /// `completed` (a response came back), `failed` (no response: refused,
    /// timed out, …) or `denied` (the host is not allowed; nothing was sent).
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// Response body bytes the function read.
    pub bytes_in: u64,
    /// From sending to the response's head (or the error).
    pub duration_us: u64,
    /// Whether the chain's `traceparent` was sent with it.
    pub traceparent: bool,
    /// Since the invocation started.
    pub at_us: u64,
}

#[derive(Default)]
pub(crate) struct EgressBook {
    pub records: Vec<EgressRecord>,
    pub dropped: usize,
}

type SharedBook = Arc<Mutex<EgressBook>>;

fn lock(book: &SharedBook) -> MutexGuard<'_, EgressBook> {
    book.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `wasi:http` hooks of one invocation: the allow list, recording, the
/// deadline, and `traceparent` for the hosts that opted in.
pub(crate) struct Hooks {
    outbound: Outbound,
    started: Instant,
    deadline: Instant,
    pub book: SharedBook,
}

impl Hooks {
    pub fn new(outbound: Outbound, started: Instant, deadline: Instant) -> Self {
        Self { outbound, started, deadline, book: SharedBook::default() }
    }

    /// Whether a request for `authority` (host[:port]) under `scheme` may go
    /// out; if not, writes it down as denied.
    fn deny(&self, scheme: &str, authority: &str, method: &str) -> bool {
        let uri = format!("{scheme}://{authority}/").parse::<http::Uri>().ok();
        let host = uri.as_ref().and_then(|u| u.host()).unwrap_or(authority).to_string();
        let port = uri.as_ref().and_then(http::Uri::port_u16).unwrap_or(if scheme == "http" { 80 } else { 443 });
        if self.outbound.allows(&host, port) {
            return false;
        }
        self.note(EgressRecord {
            error: Some(format!("egress_denied: {host} is not in this function's egress allow list")),
            host,
            port,
            scheme: scheme.to_string(),
            method: method.to_string(),
            outcome: "denied",
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            duration_us: 0,
            traceparent: false,
            at_us: self.started.elapsed().as_micros() as u64,
        });
        true
    }

    /// Writes a request down; returns its index (None past the bound).
    fn note(&self, record: EgressRecord) -> Option<usize> {
        let mut book = lock(&self.book);
        if book.records.len() >= EGRESS_RECORDS_MAX {
            book.dropped += 1;
            return None;
        }
        book.records.push(record);
        Some(book.records.len() - 1)
    }
}

type SendFuture = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>>
        + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        let allowed = self.outbound.allows(&host, port);
        let traced = allowed && self.outbound.traces(&host, port) && self.outbound.traceparent.is_some();
        let record = EgressRecord {
            host: host.clone(),
            port,
            scheme,
            method: request.method().to_string(),
            outcome: if allowed { "failed" } else { "denied" },
            status: None,
            error: (!allowed).then(|| format!("egress_denied: {host} is not in this function's egress allow list")),
            bytes_out: 0,
            bytes_in: 0,
            duration_us: 0,
            traceparent: traced,
            at_us: self.started.elapsed().as_micros() as u64,
        };
        let index = self.note(record);
        if !allowed {
            tracing::debug!(host = %host, "outbound request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if traced && let Some(value) = self.outbound.traceparent.as_deref().and_then(|t| t.parse().ok()) {
            request.headers_mut().insert("traceparent", value);
        }
        let book = self.book.clone();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let sent = Instant::now();
        let request = request.map(|body| Counted::new(body, book.clone(), index, Direction::Out, None).boxed_unsync());
        Box::new(async move {
            let update = |f: &dyn Fn(&mut EgressRecord)| {
                if let Some(i) = index {
                    let mut book = lock(&book);
                    if let Some(r) = book.records.get_mut(i) {
                        f(r);
                    }
                }
            };
            let result = tokio::time::timeout_at(deadline, wasmtime_wasi_http::default_send_request(request, options))
                .await
                .unwrap_or(Err(Error::ConnectionTimeout));
            let duration_us = sent.elapsed().as_micros() as u64;
            match result {
                Ok((response, io)) => {
                    let status = response.status().as_u16();
                    update(&|r| {
                        r.outcome = "completed";
                        r.status = Some(status);
                        r.duration_us = duration_us;
                    });
                    let response = response
                        .map(|b| Counted::new(b.boxed_unsync(), book.clone(), index, Direction::In, Some(deadline)))
                        .map(BodyExt::boxed_unsync);
                    Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>))
                }
                Err(e) => {
                    let message = e.to_string();
                    update(&|r| {
                        r.error = Some(message.clone());
                        r.duration_us = duration_us;
                    });
                    Err(e)
                }
            }
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Out,
    In,
}

/// A body that counts its bytes into the request's record and, for a
/// response, ends in an error at the invocation's deadline.
struct Counted {
    inner: WasiBody,
    book: SharedBook,
    index: Option<usize>,
    direction: Direction,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    fn new(
        inner: WasiBody,
        book: SharedBook,
        index: Option<usize>,
        direction: Direction,
        deadline: Option<tokio::time::Instant>,
    ) -> Self {
        let deadline = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        Self { inner, book, index, direction, deadline }
    }

    fn with_record(&self, f: impl FnOnce(&mut EgressRecord)) {
        if let Some(i) = self.index {
            let mut book = lock(&self.book);
            if let Some(r) = book.records.get_mut(i) {
                f(r);
            }
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            this.with_record(|r| r.error = Some("the invocation's deadline passed while reading the response".into()));
            return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len()) as u64;
                let direction = this.direction;
                this.with_record(|r| match direction {
                    Direction::Out => r.bytes_out += n,
                    Direction::In => r.bytes_in += n,
                });
            }
            Poll::Ready(Some(Err(e))) => {
                let (direction, message) = (this.direction, e.to_string());
                this.with_record(|r| {
                    let what = if direction == Direction::Out { "request" } else { "response" };
                    r.error.get_or_insert(format!("{what} body: {message}"));
                });
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The interface as wasmtime-wasi-http names it (guests importing any 0.2.x
/// version are linked to it).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Replaces `outgoing-handler.handle` (linker shadowing) with one that
/// refuses a request to a host off the allow list at once, returning
/// `HTTP-request-denied` from `handle` itself — as the interface intends for
/// a refused request — rather than from its response future; allowed
/// requests go on to wasmtime-wasi-http's `handle` and the hook above.
pub(crate) fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::host::State>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi_http::WasiHttpView;
    use wasmtime_wasi_http::p2::bindings::http::outgoing_handler::Host as _;
    use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Method, Scheme};
    use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};

    type Answer = (Result<Resource<HostFutureIncomingResponse>, ErrorCode>,);
    linker.allow_shadowing(true);
    let mut instance = linker.instance(OUTGOING_HANDLER)?;
    instance.func_wrap(
        "handle",
        |mut store,
         (request, options): (Resource<HostOutgoingRequest>, Option<Resource<wasmtime_wasi_http::RequestOptions>>)|
         -> wasmtime::Result<Answer> {
            let state: &mut crate::host::State = store.data_mut();
            let outgoing = state.wasi.table.get(&request)?;
            let scheme = match &outgoing.scheme {
                Some(Scheme::Http) => "http".to_string(),
                Some(Scheme::Https) | None => "https".to_string(),
                Some(Scheme::Other(other)) => other.clone(),
            };
            let authority = outgoing.authority.clone().unwrap_or_default();
            let method = match &outgoing.method {
                Method::Get => "GET",
                Method::Head => "HEAD",
                Method::Post => "POST",
                Method::Put => "PUT",
                Method::Delete => "DELETE",
                Method::Connect => "CONNECT",
                Method::Options => "OPTIONS",
                Method::Trace => "TRACE",
                Method::Patch => "PATCH",
                Method::Other(other) => other.as_str(),
            }
            .to_string();
            if state.hooks.deny(&scheme, &authority, &method) {
                state.wasi.table.delete(request)?;
                return Ok((Err(ErrorCode::HttpRequestDenied),));
            }
            match state.http().handle(request, options) {
                Ok(future) => Ok((Ok(future),)),
                Err(error) => Ok((Err(error.downcast()?),)),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules_parse_and_match() {
        let exact = HostRule::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com", 443));
        assert!(exact.matches("api.example.com", 8080), "any port without one");
        assert!(!exact.matches("evil.api.example.com", 443));
        assert!(!exact.matches("example.com", 443));
        let wild = HostRule::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com", 443) && wild.matches("a.b.example.com", 80));
        assert!(!wild.matches("example.com", 443) && !wild.matches("badexample.com", 443));
        let port = HostRule::parse("127.0.0.1:8080").unwrap();
        assert!(port.matches("127.0.0.1", 8080) && !port.matches("127.0.0.1", 8081));
        let v6 = HostRule::parse("[::1]:9000").unwrap();
        assert!(v6.matches("[::1]", 9000));
        assert!(HostRule::parse("::1").unwrap().matches("[::1]", 80));
        for bad in ["https://x.com", "x.com/path", "", "*.1.2.3.4", "x.com:0", "x.com:99999", "a..b", "-a.com"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_allowed_hosts_and_only_opted_in_ones_get_the_trace() {
        let outbound = Outbound {
            allow: vec![HostRule::parse("a.test").unwrap()],
            trace: vec![HostRule::parse("b.test").unwrap()],
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        assert!(outbound.allows("a.test", 443) && outbound.allows("b.test", 443));
        assert!(!outbound.allows("c.test", 443));
        assert!(outbound.traces("b.test", 80) && !outbound.traces("a.test", 80));
        assert!(!Outbound::default().allows("a.test", 443), "denied by default");
    }
}
