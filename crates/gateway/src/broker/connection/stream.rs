//! The client's byte stream, plain or TLS, and whole packets read from it.

use std::time::Duration;

use glassbox_core::DisconnectReason;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio_rustls::server::TlsStream;

use crate::codec::{CodecError, Packet, Protocol, decode};

/// The receiving side of a client's stream.
pub(super) enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The sending side.
pub(super) type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

/// Writes all of `buf`, each write allowed `stall` to make progress: a
/// client that stops reading fills its socket buffer, and then the
/// connection ends with `write_timeout` instead of blocking forever.
pub(super) async fn write_all(write: &mut WriteSide, mut buf: &[u8], stall: Duration) -> Result<(), DisconnectReason> {
    while !buf.is_empty() {
        match tokio::time::timeout(stall, write.write(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(DisconnectReason::ConnectionLost),
            Ok(Ok(n)) => buf = &buf[n..],
            Err(_) => return Err(DisconnectReason::WriteTimeout),
        }
    }
    Ok(())
}

impl ReadSide {
    /// Appends what arrives to `buf`; 0 at end of stream. Cancel-safe. Plain
    /// TCP waits for data before reserving room, so an idle connection holds
    /// no buffer (TLS keeps rustls's own).
    async fn read_into(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            ReadSide::Tcp(read) => loop {
                read.readable().await?;
                buf.reserve(READ_CHUNK);
                match read.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            ReadSide::Tls(read) => {
                buf.reserve(READ_CHUNK);
                read.read_buf(buf).await
            }
        }
    }
}

/// Reads whole packets from the stream. Holds no buffer while idle, so
/// tens of thousands of quiet connections cost little memory.
pub(super) struct PacketReader {
    read: ReadSide,
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    pos: usize,
    pub(super) protocol: Protocol,
    max: usize,
}

/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;

impl PacketReader {
    pub(super) fn new(read: ReadSide, max: usize) -> Self {
        Self { read, buf: Vec::new(), pos: 0, protocol: Protocol::V311, max }
    }

    /// The next packet, reading as needed; `None` at end of stream.
    /// Cancel-safe: bytes read are kept in the buffer.
    pub(super) async fn next(&mut self) -> Result<Option<Packet>, CodecError> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(Some(packet));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match self.read.read_into(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Reads and throws away what the client still sends, until it closes
    /// or `linger` passes. Closing a socket with unread bytes makes the
    /// kernel reset the connection, and a reset makes the client's kernel
    /// throw away what it received and had not handed over yet — the last
    /// acknowledgements; so a server that closes first waits for the
    /// client's end (a lingering close).
    pub(super) async fn discard_until_closed(mut self, linger: std::time::Duration) {
        let drain = async {
            loop {
                self.buf.clear();
                if !matches!(self.read.read_into(&mut self.buf).await, Ok(n) if n > 0) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(linger, drain).await;
    }

    /// A packet already complete in the buffer, without reading.
    pub(super) fn buffered(&mut self) -> Result<Option<Packet>, CodecError> {
        let Some((packet, used)) = decode(&self.buf[self.pos..], self.protocol, self.max)? else {
            if self.pos == self.buf.len() {
                // Everything consumed: give the memory back while idle.
                self.buf = Vec::new();
                self.pos = 0;
            }
            return Ok(None);
        };
        self.pos += used;
        Ok(Some(packet))
    }
}
