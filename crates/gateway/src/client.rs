//! A small MQTT client on the codec: what `glassbox bench mqtt` drives
//! brokers with (Glassbox's or any other), and what tests can speak raw
//! MQTT through. It does the wire work only; QoS flows are the caller's.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::codec::{CodecError, ConnAck, Connect, Packet, Properties, Protocol, Will, decode, encode};

/// Largest packet the client accepts from a broker.
const PACKET_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("broker refused the connection with reason code {0:#04x}")]
    Refused(u8),
    #[error("broker answered CONNECT with {0:?} instead of CONNACK")]
    NoConnAck(Box<Packet>),
    #[error("connection closed by the broker")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("from the broker: {0}")]
    Codec(#[from] CodecError),
}

/// What to connect with.
#[derive(Debug, Clone)]
pub struct Options {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub protocol: Protocol,
    pub keep_alive: Duration,
    pub clean_start: bool,
    pub will: Option<Will>,
    /// CONNECT properties (5.0): session expiry, receive maximum, …
    pub properties: Properties,
}

impl Options {
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            username: None,
            password: None,
            protocol: Protocol::V311,
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            will: None,
            properties: Properties::default(),
        }
    }
}

/// The receiving half of a connection.
pub struct Reader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    protocol: Protocol,
}

/// The sending half; packets are buffered until [`Writer::flush`].
pub struct Writer {
    write: BufWriter<OwnedWriteHalf>,
    protocol: Protocol,
    out: Vec<u8>,
}

/// Connects, sends CONNECT and waits for a successful CONNACK.
pub async fn connect(addr: &str, options: &Options) -> Result<(Reader, Writer, ConnAck), ClientError> {
    let stream =
        TcpStream::connect(addr).await.map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
    handshake(stream, options).await
}

/// [`connect`] from a chosen local address (e.g. `127.0.0.2` on loopback,
/// to be another peer).
pub async fn connect_from(
    local: std::net::IpAddr,
    addr: std::net::SocketAddr,
    options: &Options,
) -> Result<(Reader, Writer, ConnAck), ClientError> {
    let socket = match local {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    let stream =
        socket.connect(addr).await.map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
    handshake(stream, options).await
}

async fn handshake(stream: TcpStream, options: &Options) -> Result<(Reader, Writer, ConnAck), ClientError> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let protocol = options.protocol;
    let mut reader = Reader { read, buf: Vec::with_capacity(64 * 1024), protocol };
    let mut writer = Writer { write: BufWriter::with_capacity(64 * 1024, write), protocol, out: Vec::new() };
    let connect = Connect {
        protocol,
        clean_start: options.clean_start,
        keep_alive: options.keep_alive.as_secs().min(u16::MAX as u64) as u16,
        client_id: options.client_id.clone(),
        will: options.will.clone(),
        username: options.username.clone(),
        password: options.password.clone().map(Bytes::from),
        properties: options.properties.clone(),
    };
    writer.send(&Packet::Connect(Box::new(connect))).await?;
    writer.flush().await?;
    match reader.next().await? {
        Packet::ConnAck(ack) if ack.reason == 0 => Ok((reader, writer, ack)),
        Packet::ConnAck(ack) => Err(ClientError::Refused(ack.reason)),
        other => Err(ClientError::NoConnAck(Box::new(other))),
    }
}

impl Reader {
    /// A packet already received, if a whole one is buffered; no I/O.
    pub fn try_next(&mut self) -> Result<Option<Packet>, ClientError> {
        match decode(&self.buf, self.protocol, PACKET_BYTES_MAX)? {
            Some((packet, used)) => {
                self.buf.drain(..used);
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    /// The next packet from the broker.
    pub async fn next(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.try_next()? {
                return Ok(packet);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.read.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Writer {
    /// Queues a packet; call [`Writer::flush`] to send what is queued.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.out.clear();
        encode(packet, self.protocol, &mut self.out);
        self.write.write_all(&self.out).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.write.flush().await?;
        Ok(())
    }
}
