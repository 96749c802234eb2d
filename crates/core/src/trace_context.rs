//! W3C Trace Context `traceparent`: accepted at ingress, minted at the origin
//! of a chain, so OpenTelemetry tools see Glassbox chains as traces.

use std::fmt;

use crate::EventId;

/// A parsed `traceparent` (version 00): `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value, or says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace, parent, flags] = parts.as_slice() else {
            return Err("expected 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>".into());
        };
        let hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex(version, 2) || *version == "ff" {
            return Err(format!("unsupported version {version:?}"));
        }
        if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return Err("expected lowercase hex fields of 32, 16 and 2 digits".into());
        }
        let trace_id = u128::from_str_radix(trace, 16).map_err(|e| e.to_string())?;
        let parent_id = u64::from_str_radix(parent, 16).map_err(|e| e.to_string())?;
        if trace_id == 0 || parent_id == 0 {
            return Err("trace id and parent id must not be all zeros".into());
        }
        let flags = u8::from_str_radix(flags, 16).map_err(|e| e.to_string())?;
        Ok(Self { trace_id, parent_id, flags })
    }

    /// A new sampled trace for a chain that starts at `origin`: the trace id
    /// is the origin's 128-bit id, so a trace id leads back to its event.
    pub fn for_origin(origin: EventId) -> Self {
        let parent_id = (origin.0 as u64).max(1);
        Self { trace_id: origin.0, parent_id, flags: 1 }
    }
}

/// The length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// The text `Display` writes, into `buf` (an origin's trace context is
    /// written for each event that starts a chain, and compared with when
    /// one is recorded: without the formatting machinery).
    pub fn write_to<'b>(&self, buf: &'b mut [u8; TRACEPARENT_LEN]) -> &'b str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let fields: [(&[u8], usize); 3] =
            [(&self.trace_id.to_be_bytes(), 3), (&self.parent_id.to_be_bytes(), 36), (&[self.flags], 53)];
        buf[..3].copy_from_slice(b"00-");
        buf[35] = b'-';
        buf[52] = b'-';
        for (bytes, start) in fields {
            for (i, byte) in bytes.iter().enumerate() {
                buf[start + 2 * i] = HEX[usize::from(byte >> 4)];
                buf[start + 2 * i + 1] = HEX[usize::from(byte & 0xf)];
            }
        }
        // Every byte written is ASCII: never the empty fallback.
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.write_to(&mut [0; TRACEPARENT_LEN]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(value).unwrap();
        assert_eq!(parsed.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(parsed.to_string(), value);
        let extremes = [
            TraceParent { trace_id: 1, parent_id: u64::MAX, flags: 0 },
            TraceParent { trace_id: u128::MAX, parent_id: 1, flags: 0xab },
        ];
        for tp in extremes {
            let expected = format!("00-{:032x}-{:016x}-{:02x}", tp.trace_id, tp.parent_id, tp.flags);
            assert_eq!(tp.to_string(), expected);
        }
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-abc-def-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_trace_id_is_the_event_id() {
        let id = crate::IdMinter::new().mint();
        let tp = TraceParent::for_origin(id);
        assert_eq!(tp.trace_id, id.0);
        assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
    }
}

/// The secret span ids are derived with, so that a span id is random to
/// whoever lacks it (it says nothing of the event id, and no event id can be
/// guessed from it) and the same each time for parent links. Kept by the
/// platform across restarts; OTLP spans and outbound `traceparent`s use it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SpanKey([u8; 32]);

impl SpanKey {
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        Self(key)
    }

    /// The span id of event `id`: a keyed hash of it, never 0.
    pub fn span_id(&self, id: EventId) -> u64 {
        use sha2::Digest;
        let digest = sha2::Sha256::new().chain_update(self.0).chain_update(id.0.to_be_bytes()).finalize();
        u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()).max(1)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A key as [`SpanKey::to_hex`] wrote it; `None` if it is not one.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).ok().map(|()| Self(key))
    }
}

impl fmt::Debug for SpanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpanKey([redacted])")
    }
}
