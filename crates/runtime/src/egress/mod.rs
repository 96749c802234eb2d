//! Outbound HTTP (`wasi:http/outgoing-handler`), denied by default: a
//! function reaches only the hosts its deploy allowed, within its deadline,
//! and every request it makes — sent, failed or denied — is written down for
//! the invocation's record (host, method, status, bytes out and in, time).
//! The chain's `traceparent` goes only to hosts that opted in.
//!
//! A request off the allow list is refused by `handle` itself (shadowed in
//! the linker, [`add_to_linker`]); the `send_request` hook checks again,
//! records, bounds the exchange by the deadline and adds `traceparent`.
//! It resolves the host once, refuses the addresses that are not public
//! (loopback, private, link-local, metadata, …) unless a rule names them,
//! and connects to an address it checked (`send.rs`): DNS that rebinds the
//! name in between does not get the request anywhere else.

use std::net::{IpAddr, SocketAddr};
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

mod rules;

use rules::default_port;
pub use rules::{Exposure, HostRule, reserved};

/// What one invocation may reach, and the trace context it may pass on.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// Rules requests may go by; none: every request is denied.
    pub allow: Vec<HostRule>,
    /// Rules whose hosts get the chain's `traceparent` header (allowed too).
    pub trace: Vec<HostRule>,
    /// The `traceparent` to send to the hosts in `trace`.
    pub traceparent: Option<String>,
    /// A dry run: nothing goes out; every request is recorded as denied,
    /// saying whether the rules would have let it go.
    pub dry_run: bool,
}

impl Outbound {
    fn rules(&self) -> impl Iterator<Item = &HostRule> {
        self.allow.iter().chain(&self.trace)
    }

    /// Whether the rules let a request to `host` on `port` under `scheme`
    /// go out (a dry run sends it nowhere all the same).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.rules().any(|r| r.matches(scheme, host, port))
    }

    /// Why a request is not sent, if it is not: off the rules, or a dry run.
    fn refusal(&self, scheme: &str, host: &str, port: u16) -> Option<String> {
        let allowed = self.allows(scheme, host, port);
        match (self.dry_run, allowed) {
            (false, true) => None,
            (false, false) => Some(self.denial(scheme, host, port)),
            (true, true) => Some("dry_run: not sent; a real run would send it (the egress list allows it)".into()),
            (true, false) => {
                Some(format!("dry_run: not sent; a real run would be denied too: {}", self.denial(scheme, host, port)))
            }
        }
    }

    /// Why a request not allowed is denied, for its record.
    fn denial(&self, scheme: &str, host: &str, port: u16) -> String {
        match self.rules().any(|r| r.matches_host(host)) {
            false => format!("egress_denied: {host} is not in this function's egress allow list"),
            true => format!(
                "egress_denied: {scheme} on port {port} to {host} is not in this function's egress allow list; \
                 a rule allows https on 443 unless it names another (e.g. http://{host}:{port})"
            ),
        }
    }

    fn traces(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.trace.iter().any(|r| r.matches(scheme, host, port))
    }

    /// Why a request to `host` may not connect to `addr`, if it may not:
    /// a non-public address no rule names.
    fn refuses(&self, host: &str, addr: IpAddr) -> Option<String> {
        let kind = reserved(addr)?;
        if self.rules().any(|r| r.contains(addr)) {
            return None;
        }
        let what = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(_) => format!("{addr} is"),
            Err(_) => format!("{host} resolves to {addr},"),
        };
        Some(format!(
            "egress_denied: {what} {kind}; allow it explicitly with a rule naming the address (e.g. {}) or its range",
            match addr {
                IpAddr::V4(_) => addr.to_string(),
                IpAddr::V6(_) => format!("[{addr}]"),
            }
        ))
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
        let port = uri.as_ref().and_then(http::Uri::port_u16).unwrap_or(default_port(scheme));
        let Some(refusal) = self.outbound.refusal(scheme, &host, port) else { return false };
        self.note(EgressRecord {
            error: Some(refusal),
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
        let port = uri.port_u16().unwrap_or(default_port(&scheme));
        let refusal = self.outbound.refusal(&scheme, &host, port);
        let allowed = refusal.is_none();
        let traced = allowed && self.outbound.traces(&scheme, &host, port) && self.outbound.traceparent.is_some();
        let record = EgressRecord {
            host: host.clone(),
            port,
            scheme: scheme.clone(),
            method: request.method().to_string(),
            outcome: if allowed { "failed" } else { "denied" },
            status: None,
            error: refusal,
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
        let outbound = self.outbound.clone();
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
            let exchange = async {
                let addrs = checked_addresses(&outbound, &host, port).await?;
                crate::send::send(request, &addrs, &host, options).await.map_err(Failure::from)
            };
            let timed_out = Err(Failure::from(Error::ConnectionTimeout));
            let result = tokio::time::timeout_at(deadline, exchange).await.unwrap_or(timed_out);
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
                Err(Failure { error, message, denied }) => {
                    let message = message.unwrap_or_else(|| error.to_string());
                    if denied {
                        tracing::debug!(host = %host, "outbound request denied: {message}");
                    }
                    update(&|r| {
                        if denied {
                            (r.outcome, r.traceparent) = ("denied", false);
                        }
                        r.error = Some(message.clone());
                        r.duration_us = duration_us;
                    });
                    Err(error)
                }
            }
        })
    }
}

/// Why an allowed request got no response: the error for the guest, and
/// for the record a message (else the error's) and whether it was denied.
struct Failure {
    error: Error,
    message: Option<String>,
    denied: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { error, message: None, denied: false }
    }
}

/// Resolves `host` once and keeps the addresses the rules let it reach;
/// none: the request is denied (`destination-IP-prohibited`), with why.
async fn checked_addresses(outbound: &Outbound, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(addr) => vec![SocketAddr::new(addr, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| Failure {
                error: Error::DnsError { rcode: None, info_code: None },
                message: Some(format!("could not resolve {bare}: {e}")),
                denied: false,
            })?
            .collect(),
    };
    let mut refusal = None;
    let checked: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| match outbound.refuses(host, a.ip()) {
            Some(why) => {
                refusal.get_or_insert(why);
                false
            }
            None => true,
        })
        .collect();
    match (checked.is_empty(), refusal) {
        (false, _) => Ok(checked),
        (true, Some(why)) => Err(Failure { error: Error::DestinationIpProhibited, message: Some(why), denied: true }),
        (true, None) => Err(Failure::from(Error::DestinationNotFound)),
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
        assert!(exact.matches("https", "api.example.com", 443));
        assert!(!exact.matches("https", "evil.api.example.com", 443));
        assert!(!exact.matches("https", "example.com", 443));
        let wild = HostRule::parse("*.example.com").unwrap();
        assert!(wild.matches("https", "a.example.com", 443) && wild.matches("https", "a.b.example.com", 443));
        assert!(!wild.matches("https", "example.com", 443) && !wild.matches("https", "badexample.com", 443));
        let port = HostRule::parse("http://127.0.0.1:8080").unwrap();
        assert!(port.matches("http", "127.0.0.1", 8080) && !port.matches("http", "127.0.0.1", 8081));
        let v6 = HostRule::parse("[::1]:9000").unwrap();
        assert!(v6.matches("https", "[::1]", 9000));
        assert!(HostRule::parse("::1").unwrap().matches("https", "[::1]", 443));
        let range = HostRule::parse("http://10.0.0.0/8:8080").unwrap();
        assert!(range.matches("http", "10.1.2.3", 8080) && !range.matches("http", "11.0.0.1", 8080));
        let v6_range = HostRule::parse("[fd00::/8]").unwrap();
        assert!(v6_range.contains("fd12::1".parse().unwrap()) && !v6_range.contains("fe80::1".parse().unwrap()));
        for bad in ["ftp://x.com", "x.com/path", "https://x.com/", "", "*.1.2.3.4", "x.com:0", "x.com:99999", "a..b"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
        for bad in ["-a.com", "10.0.0.0/33", "[fd00::]/8"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    // Issue 16, finding 8: a bare host rule allowed every port and plain
    // http; now https on 443 only, other schemes and ports when written.
    #[test]
    fn finding_8_a_bare_host_rule_allows_only_https_on_443() {
        let bare = HostRule::parse("api.example.com").unwrap();
        assert!(bare.matches("https", "api.example.com", 443));
        assert!(!bare.matches("http", "api.example.com", 80), "plain http only when written");
        assert!(!bare.matches("https", "api.example.com", 8443), "other ports only when written");
        assert!(!bare.matches("http", "api.example.com", 443));
        assert!(HostRule::parse("api.example.com:8443").unwrap().matches("https", "api.example.com", 8443));
        let http = HostRule::parse("http://api.example.com").unwrap();
        assert!(http.matches("http", "api.example.com", 80) && !http.matches("https", "api.example.com", 443));
        assert!(HostRule::parse("https://api.example.com").unwrap() == bare);
        let outbound = Outbound { allow: vec![bare], ..Outbound::default() };
        assert!(outbound.denial("http", "api.example.com", 80).contains("e.g. http://api.example.com:80"));
    }

    // Issue 16, finding 8: addresses that are not public are refused unless
    // a rule names them (or their range).
    #[test]
    fn finding_8_non_public_addresses_are_refused_unless_a_rule_names_them() {
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("10.1.2.3", "RFC 1918"),
            ("172.16.0.1", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("169.254.169.254", "metadata"),
            ("fd00:ec2::254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "RFC 4193"),
            ("100.64.0.1", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("64:ff9b::a00:1", "RFC 1918"),
        ] {
            let found = reserved(addr.parse().unwrap());
            assert!(found.is_some_and(|k| k.contains(kind)), "{addr}: {found:?}");
        }
        for public in ["1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(reserved(public.parse().unwrap()), None, "{public}");
        }
        let rules = |r: &[&str]| Outbound {
            allow: r.iter().map(|r| HostRule::parse(r).unwrap()).collect(),
            ..Outbound::default()
        };
        let loopback = "127.0.0.1".parse().unwrap();
        let why = rules(&["localhost"]).refuses("localhost", loopback).unwrap();
        assert_eq!(
            why,
            "egress_denied: localhost resolves to 127.0.0.1, a loopback address; allow it explicitly with a rule \
             naming the address (e.g. 127.0.0.1) or its range"
        );
        assert_eq!(rules(&["localhost", "127.0.0.1"]).refuses("localhost", loopback), None);
        assert_eq!(rules(&["localhost", "127.0.0.0/8"]).refuses("localhost", loopback), None);
        assert!(rules(&["localhost", "10.0.0.0/8"]).refuses("localhost", loopback).is_some());
        assert_eq!(rules(&[]).refuses("one.one.one.one", "1.1.1.1".parse().unwrap()), None);
    }

    #[test]
    fn only_allowed_hosts_and_only_opted_in_ones_get_the_trace() {
        let outbound = Outbound {
            allow: vec![HostRule::parse("a.test").unwrap()],
            trace: vec![HostRule::parse("b.test").unwrap()],
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            dry_run: false,
        };
        assert!(outbound.allows("https", "a.test", 443) && outbound.allows("https", "b.test", 443));
        assert!(!outbound.allows("https", "c.test", 443));
        assert!(outbound.traces("https", "b.test", 443) && !outbound.traces("https", "a.test", 443));
        assert!(!Outbound::default().allows("https", "a.test", 443), "denied by default");
    }

    #[test]
    fn a_dry_run_sends_nothing_and_says_what_a_real_run_would_do() {
        let dry = Outbound { allow: vec![HostRule::parse("a.test").unwrap()], dry_run: true, ..Outbound::default() };
        let allowed = dry.refusal("https", "a.test", 443).unwrap();
        assert_eq!(allowed, "dry_run: not sent; a real run would send it (the egress list allows it)");
        let denied = dry.refusal("https", "c.test", 443).unwrap();
        assert_eq!(
            denied,
            "dry_run: not sent; a real run would be denied too: egress_denied: c.test is not in this function's \
             egress allow list"
        );
        assert_eq!(Outbound { dry_run: false, ..dry }.refusal("https", "a.test", 443), None);
    }

    #[test]
    fn a_rule_says_how_far_it_reaches() {
        let judge = |rule: &str| HostRule::parse(rule).unwrap().exposure();
        assert_eq!(judge("api.example.com"), Exposure::Narrow);
        assert_eq!(judge("203.0.113.7"), Exposure::Narrow);
        assert!(matches!(judge("http://api.example.com"), Exposure::Wide(w) if w.contains("plain http")));
        assert!(matches!(judge("*.example.com"), Exposure::Wide(w) if w.contains("every subdomain of example.com")));
        assert!(matches!(judge("10.0.0.0/8"), Exposure::Wide(w) if w.contains("private")));
        assert!(matches!(judge("8.0.0.0/8"), Exposure::Wide(w) if w.contains("2^24")));
        assert!(matches!(judge("169.254.0.0/16"), Exposure::Dangerous(w) if w.contains("metadata")));
        assert!(matches!(judge("0.0.0.0/0"), Exposure::Dangerous(w) if w == "every address"));
    }
}
