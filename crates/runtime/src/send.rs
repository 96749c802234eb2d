//! Sending an allowed outbound request to an address the egress rules
//! checked: wasmtime-wasi-http's `default_send_request`, except that it
//! connects to the given addresses instead of resolving the host again, so
//! a name that resolves (or rebinds) to another address by the time of the
//! connection cannot take the request there. TLS is still verified against
//! the host's name.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions};

/// The default of a timeout the guest did not set: the invocation's
/// deadline bounds the exchange anyway.
const UNSET: Duration = Duration::from_secs(600);

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// The response body, with the guest's between-bytes timeout.
pub(crate) struct Incoming {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl Body for Incoming {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) if e.is_timeout() => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// Connects to the first of `addrs` that answers (each checked already).
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// Wraps `stream` in TLS verified for `host` (a name, or an IP literal).
async fn tls(stream: TcpStream, host: &str) -> Result<Box<dyn Stream>, Error> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
    let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(bare.to_string()).map_err(Error::InvalidDnsNameError)?,
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(Box::new(connector.connect(name, stream).await.map_err(Error::Tls)?))
}

/// The response and the connection's remaining work.
pub(crate) type Sent = (http::Response<Incoming>, Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>);

/// Sends `request` over a connection to one of `addrs`, TLS for https
/// verified against `host`.
pub(crate) async fn send(
    mut request: http::Request<impl Body<Data = Bytes, Error = Error> + Send + 'static>,
    addrs: &[SocketAddr],
    host: &str,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let use_tls = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(UNSET);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(UNSET);
    let between_bytes_timeout =
        options.and_then(|o| o.between_bytes_timeout).unwrap_or(UNSET).max(Duration::from_nanos(1));
    let stream = connect(addrs, connect_timeout).await?;
    let stream: Box<dyn Stream> = if use_tls { tls(stream, host).await? } else { Box::new(stream) };
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    // The request line holds the path only (the host goes in `host`).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, Error>(response.map(|incoming| Incoming { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Wait for the response while driving the connection.
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(driving) = conn.as_mut() else { return Poll::Pending };
            let done = ready!(Pin::new(driving).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(Error::from(e))),
            }
        }
    })
    .await?;
    let rest = async move {
        match conn {
            None => Ok(()),
            Some(conn) => conn.await.map_err(|e| if e.is_timeout() { Error::HttpResponseTimeout } else { e.into() }),
        }
    };
    Ok((response, Box::pin(rest)))
}
