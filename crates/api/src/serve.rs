//! Serving the API over TCP: hyper's HTTP/1 connection with axum's router as
//! the service, so that a client cannot hold the server's resources: the
//! request head must arrive within `http.header_read_timeout`, the body
//! within `http.body_read_timeout` of the head, and at most
//! `http.connections_max` connections are served at once (beyond it a
//! connection is answered 503 and closed at once). The same, over TLS, for
//! the HTTPS listener ([`serve_with`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use bytes::Bytes;
use glassbox_gateway::tls::TlsAcceptor;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// The bounds a connection is served within.
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub connections_max: usize,
    /// How long a stop waits for the requests being served.
    pub shutdown_grace: Duration,
}

/// The peer address of the connection a request came on (a request
/// extension), for per-client limits.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the
/// requests being served to be answered (idle keep-alive connections are
/// closed), at most `shutdown_grace`.
pub async fn serve(listener: TcpListener, app: Router, settings: ServeSettings, shutdown: impl Future<Output = ()>) {
    serve_with(listener, None, app, settings, shutdown).await
}

/// [`serve`], over TLS when `tls` is given: each connection's handshake
/// must finish within `header_read_timeout`, else it is closed.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(error = %e, "could not accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, watcher, tls) = (app.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, app, Peer(peer), settings, watcher).await,
                Some(tls) => match tokio::time::timeout(settings.header_read_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, Peer(peer), settings, watcher).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                },
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?settings.shutdown_grace, "HTTP requests still unanswered at the end of shutdown_grace");
    }
}

/// Serves one connection's requests until it closes (or the stop's grace ends).
async fn serve_connection<S>(stream: S, app: Router, peer: Peer, settings: ServeSettings, watcher: Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    let service = connection_service(app, peer, settings.body_read_timeout);
    let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
}

/// Answers an over-cap connection 503 without waiting (what fits in the
/// socket's empty send buffer) and closes it.
fn refuse(stream: TcpStream) {
    let body =
        r#"{"error":{"code":"server_busy","message":"too many connections open (http.connections_max); retry later"}}"#;
    let busy = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(busy.as_bytes());
    tracing::debug!("refused an HTTP connection: http.connections_max reached");
}

/// Each request of one connection: the peer noted, the body under its
/// deadline, and `connection: close` on the answer when the body timed out.
fn connection_service(
    app: Router,
    peer: Peer,
    body_read_timeout: Duration,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut app = app.clone();
        async move {
            let timed_out = Arc::new(AtomicBool::new(false));
            let mut request = request.map(|body| Body::new(Deadline::new(body, body_read_timeout, timed_out.clone())));
            request.extensions_mut().insert(peer);
            let mut response = app.call(request).await?;
            if timed_out.load(Ordering::Relaxed) {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}

/// A request body that fails once `timeout` has passed since the request's
/// head arrived: a client trickling its body is cut off.
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    timed_out: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Self { inner, sleep: Box::pin(tokio::time::sleep(timeout)), timeout, timed_out }
    }
}

/// The error a body read past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (http.body_read_timeout): send it faster, or raise the timeout")]
pub struct BodyTimedOut(Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
