//! Primitive MQTT encodings: big-endian integers, variable byte integers,
//! length-prefixed UTF-8 strings and binary data.

use bytes::{BufMut, Bytes};

use super::CodecError;

/// The largest value a variable byte integer can carry (268,435,455).
pub const VARINT_MAX: u32 = 268_435_455;

/// The largest packet MQTT can carry: a fixed header of 5 bytes and a
/// remaining length of [`VARINT_MAX`].
pub const PACKET_BYTES_MAX: usize = 5 + VARINT_MAX as usize;

/// Reads from one packet's bytes; every read checks the remaining length.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::malformed(format!("{what}: packet ends early")));
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u32, CodecError> {
        match decode_varint(&self.buf[self.pos..])? {
            Some((value, used)) => {
                self.pos += used;
                Ok(value)
            }
            None => Err(CodecError::malformed(format!("{what}: packet ends inside a variable byte integer"))),
        }
    }

    pub fn binary(&mut self, what: &'static str) -> Result<Bytes, CodecError> {
        let len = self.u16(what)? as usize;
        Ok(Bytes::copy_from_slice(self.take(len, what)?))
    }

    /// A UTF-8 string as MQTT defines it: well-formed, no U+0000.
    pub fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.u16(what)? as usize;
        let raw = self.take(len, what)?;
        let text = std::str::from_utf8(raw).map_err(|_| CodecError::malformed(format!("{what}: not valid UTF-8")))?;
        if text.contains('\0') {
            return Err(CodecError::malformed(format!("{what}: contains U+0000")));
        }
        Ok(text.to_string())
    }

    /// Everything left, e.g. a PUBLISH payload.
    pub fn rest(&mut self) -> Bytes {
        let rest = Bytes::copy_from_slice(&self.buf[self.pos..]);
        self.pos = self.buf.len();
        rest
    }

    /// A sub-reader over the next `len` bytes (a property block).
    pub fn sub(&mut self, len: usize, what: &'static str) -> Result<Reader<'a>, CodecError> {
        Ok(Reader::new(self.take(len, what)?))
    }
}

/// Decodes a variable byte integer at the start of `buf`: `None` if more
/// bytes are needed, an error past four bytes.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, CodecError> {
    let mut value: u32 = 0;
    for (i, byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // §1.5.5: the minimum number of bytes; a trailing zero group is not.
            if i > 0 && *byte == 0 {
                return Err(CodecError::malformed("variable byte integer not in its shortest form"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(CodecError::malformed("variable byte integer longer than 4 bytes"));
    }
    Ok(None)
}

pub fn put_varint(out: &mut Vec<u8>, value: u32) {
    let mut bytes = [0; 4];
    let len = put_varint_into(&mut bytes, value);
    out.extend_from_slice(&bytes[..len]);
}

/// Writes `value` as a variable byte integer into `out`; returns how many
/// of its bytes it took. No packet the server sends is longer than
/// [`PACKET_BYTES_MAX`] (a PUBLISH that would be is dropped for its
/// subscriber); a larger value would be written as `VARINT_MAX`, never
/// past `out`.
pub fn put_varint_into(out: &mut [u8; 4], value: u32) -> usize {
    debug_assert!(value <= VARINT_MAX, "callers bound lengths by the maximum packet size");
    let mut value = value.min(VARINT_MAX);
    for (taken, byte) in out.iter_mut().enumerate() {
        *byte = (value % 128) as u8 | if value >= 128 { 0x80 } else { 0 };
        value /= 128;
        if value == 0 {
            return taken + 1;
        }
    }
    out.len()
}

pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_binary(out, s.as_bytes());
}

pub fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}
