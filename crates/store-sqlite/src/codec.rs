//! An event's stored form: one compact blob per `events` row (decision 0034).
//!
//! What a row's other columns hold (the id, `received_at`, the node) and
//! what follows from them is not written again: a chain's first event has
//! the id as its correlation id, an origin's trace context is minted from
//! the id, and most events' `time` is their receive time. A device message
//! with a 64-byte payload is then 135 bytes (its source, type, subject,
//! content type, via and payload) instead of the 270 that 22 columns took,
//! in one value SQLite copies instead of 22 it binds and encodes.
//!
//! Layout (version 1): the version byte, a varint of [`Flags`], then in this
//! order the time's offset from `received_at` (zigzag varint, unless
//! `TIME_IS_RECEIVED`), source, type, hop (varint), the correlation id
//! (unless `CORRELATION_IS_ID`), the trace context (25 bytes with
//! `TRACE_BINARY`, text with `TRACE_TEXT`, nothing otherwise), `via`, each
//! present optional attribute in [`optionals`]' order, the extensions, the
//! data's kind byte and the data itself to the end. Strings are a varint
//! length and UTF-8 bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use glassbox_core::{Data, Event, EventId, TRACEPARENT_LEN, TraceParent};

const VERSION: u8 = 1;

/// What the encoding leaves out or how it writes a field.
struct Flags;

impl Flags {
    const TIME_IS_RECEIVED: u64 = 1;
    const CORRELATION_IS_ID: u64 = 1 << 1;
    /// The trace context a chain's origin gets (`TraceParent::for_origin`).
    const TRACE_OF_ORIGIN: u64 = 1 << 2;
    /// A canonical version-00 trace context, as its 25 bytes.
    const TRACE_BINARY: u64 = 1 << 3;
    /// Any other trace context, as the producer wrote it.
    const TRACE_TEXT: u64 = 1 << 4;
    /// The first presence bit (of `via`, the [`optionals`], the extensions).
    const OPTIONAL_SHIFT: u32 = 5;
}

/// The optional text attributes, in the order they are written, after
/// `via` and before the extensions (as JSON text). A device message's come
/// first, so its flags fit in two bytes.
fn optionals(e: &Event) -> [&Option<String>; 9] {
    [
        &e.subject,
        &e.datacontenttype,
        &e.device,
        &e.causationid,
        &e.feature,
        &e.datasubject,
        &e.tenant,
        &e.originid,
        &e.dataschema,
    ]
}

fn optionals_mut(e: &mut Event) -> [&mut Option<String>; 9] {
    [
        &mut e.subject,
        &mut e.datacontenttype,
        &mut e.device,
        &mut e.causationid,
        &mut e.feature,
        &mut e.datasubject,
        &mut e.tenant,
        &mut e.originid,
        &mut e.dataschema,
    ]
}

/// Presence bits, counted from [`Flags::OPTIONAL_SHIFT`]: `via`, then
/// [`optionals`], then the extensions.
const VIA_BIT: u32 = 0;
const FIRST_OPTIONAL_BIT: u32 = 1;
const EXTENSIONS_BIT: u32 = 10;

pub(crate) const DATA_NONE: u8 = 0;
pub(crate) const DATA_JSON: u8 = 1;
pub(crate) const DATA_BINARY: u8 = 2;

/// A stored event that does not decode: written by a newer build, or damaged.
#[derive(Debug, thiserror::Error)]
#[error("stored event {id} does not decode: {reason}")]
pub struct Undecodable {
    pub id: EventId,
    pub reason: String,
}

/// A decoded row: the event and the ingress (`via`) of its `received` state.
#[derive(Debug)]
pub(crate) struct Stored {
    pub event: Event,
    pub via: Option<String>,
}

/// Appends `event`'s stored form to `out`.
pub(crate) fn encode(event: &Event, received_at: i64, via: Option<&str>, out: &mut Vec<u8>) {
    let extensions = (!event.extensions.is_empty()).then(|| serde_json::to_string(&event.extensions).ok()).flatten();
    encode_attributes(event, extensions.as_deref(), received_at, via, out);
    match &event.data {
        Data::None => put_data(DATA_NONE, &[], out),
        Data::Json(raw) => put_data(DATA_JSON, raw.get().as_bytes(), out),
        Data::Binary(bytes) => put_data(DATA_BINARY, bytes, out),
    }
}

/// Appends everything of `event` but its data, with `extensions` as the
/// JSON text of its extensions (`event.extensions` is not read). The data
/// follows with [`put_data`].
pub(crate) fn encode_attributes(
    event: &Event,
    extensions: Option<&str>,
    received_at: i64,
    via: Option<&str>,
    out: &mut Vec<u8>,
) {
    let time = event.time.timestamp_micros();
    let mut flags = 0;
    if time == received_at {
        flags |= Flags::TIME_IS_RECEIVED;
    }
    if is_id_text(&event.correlationid, event.id) {
        flags |= Flags::CORRELATION_IS_ID;
    }
    let trace = event.traceparent.as_deref().map(|text| {
        let mut origin = [0; TRACEPARENT_LEN];
        if text == TraceParent::for_origin(event.id).write_to(&mut origin) {
            return Trace::Origin;
        }
        canonical_trace(text).map_or(Trace::Text(text), Trace::Binary)
    });
    flags |= match trace {
        None => 0,
        Some(Trace::Origin) => Flags::TRACE_OF_ORIGIN,
        Some(Trace::Binary(_)) => Flags::TRACE_BINARY,
        Some(Trace::Text(_)) => Flags::TRACE_TEXT,
    };
    let present =
        [via.is_some()].into_iter().chain(optionals(event).map(Option::is_some)).chain([extensions.is_some()]);
    for (bit, present) in present.enumerate() {
        if present {
            flags |= 1 << (Flags::OPTIONAL_SHIFT + bit as u32);
        }
    }

    out.push(VERSION);
    put_varint(out, flags);
    if flags & Flags::TIME_IS_RECEIVED == 0 {
        put_varint(out, zigzag(time.wrapping_sub(received_at)));
    }
    put_str(out, &event.source);
    put_str(out, &event.ty);
    put_varint(out, u64::from(event.hop));
    if flags & Flags::CORRELATION_IS_ID == 0 {
        put_str(out, &event.correlationid);
    }
    match trace {
        Some(Trace::Binary(parsed)) => {
            out.extend_from_slice(&parsed.trace_id.to_be_bytes());
            out.extend_from_slice(&parsed.parent_id.to_be_bytes());
            out.push(parsed.flags);
        }
        Some(Trace::Text(text)) => put_str(out, text),
        Some(Trace::Origin) | None => {}
    }
    for value in [via].into_iter().chain(optionals(event).map(Option::as_deref)).flatten() {
        put_str(out, value);
    }
    if let Some(extensions) = extensions {
        put_str(out, extensions);
    }
}

/// Appends the data: its kind ([`DATA_NONE`], [`DATA_JSON`] or
/// [`DATA_BINARY`]) and its bytes, as they are (JSON is checked when read).
pub(crate) fn put_data(kind: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(bytes);
}

/// The attributes a query filters on and the index keeps, borrowed from a
/// stored event without decoding the rest.
pub(crate) struct Keys<'a> {
    pub source: &'a str,
    pub ty: &'a str,
    /// `None`: the event's own id (a chain's first event).
    pub correlationid: Option<&'a str>,
    pub device: Option<&'a str>,
}

impl Keys<'_> {
    /// The correlation id, made from the event's id when it is that.
    pub fn correlationid(&self, id: EventId) -> String {
        self.correlationid.map_or_else(|| id.to_string(), str::to_string)
    }

    /// Whether the correlation id is `wanted`, without making it.
    pub fn correlates(&self, id: EventId, wanted: &str) -> bool {
        match self.correlationid {
            Some(correlationid) => correlationid == wanted,
            None => is_id_text(wanted, id),
        }
    }
}

/// The part every read decodes: up to the presence-flagged attributes.
struct Head<'a> {
    flags: u64,
    time: i64,
    source: &'a str,
    ty: &'a str,
    hop: u32,
    correlationid: Option<&'a str>,
    traceparent: Option<Trace<'a>>,
}

/// How a trace context is stored: see [`Flags`].
enum Trace<'a> {
    Origin,
    Binary(TraceParent),
    Text(&'a str),
}

fn head<'a>(id: EventId, received_at: i64, r: &mut Reader<'a>) -> Result<Head<'a>, Undecodable> {
    match r.byte().ok_or_else(|| undecodable(id, "empty"))? {
        VERSION => {}
        v => return Err(undecodable(id, &format!("format version {v} is newer than this build's {VERSION}"))),
    }
    let truncated = || undecodable(id, "truncated");
    let flags = r.varint().ok_or_else(truncated)?;
    let traces = flags & (Flags::TRACE_OF_ORIGIN | Flags::TRACE_BINARY | Flags::TRACE_TEXT);
    if flags >> (Flags::OPTIONAL_SHIFT + EXTENSIONS_BIT + 1) != 0 || traces.count_ones() > 1 {
        return Err(undecodable(id, &format!("flags {flags:#x} are not this format's")));
    }
    let time = match flags & Flags::TIME_IS_RECEIVED {
        0 => received_at.wrapping_add(unzigzag(r.varint().ok_or_else(truncated)?)),
        _ => received_at,
    };
    let source = r.str().ok_or_else(truncated)?;
    let ty = r.str().ok_or_else(truncated)?;
    let hop = u32::try_from(r.varint().ok_or_else(truncated)?).map_err(|_| undecodable(id, "hop out of range"))?;
    let correlationid = match flags & Flags::CORRELATION_IS_ID {
        0 => Some(r.str().ok_or_else(truncated)?),
        _ => None,
    };
    let traceparent = match traces {
        0 => None,
        Flags::TRACE_OF_ORIGIN => Some(Trace::Origin),
        Flags::TRACE_BINARY => {
            let trace_id = u128::from_be_bytes(r.array().ok_or_else(truncated)?);
            let parent_id = u64::from_be_bytes(r.array().ok_or_else(truncated)?);
            let flags = r.byte().ok_or_else(truncated)?;
            Some(Trace::Binary(TraceParent { trace_id, parent_id, flags }))
        }
        _ => Some(Trace::Text(r.str().ok_or_else(truncated)?)),
    };
    Ok(Head { flags, time, source, ty, hop, correlationid, traceparent })
}

fn present(flags: u64, bit: u32) -> bool {
    flags & (1 << (Flags::OPTIONAL_SHIFT + bit)) != 0
}

/// The keys of the event stored as `bytes`: what a filter or the index
/// reads, without the rest (no allocation, no data copied).
pub(crate) fn keys(id: EventId, received_at: i64, bytes: &[u8]) -> Result<Keys<'_>, Undecodable> {
    let mut r = Reader { bytes, at: 0 };
    let head = head(id, received_at, &mut r)?;
    let truncated = || undecodable(id, "truncated");
    let mut device = None;
    // `via`, then the optionals up to the device (the third).
    for bit in VIA_BIT..=FIRST_OPTIONAL_BIT + 2 {
        if present(head.flags, bit) {
            let value = r.str().ok_or_else(truncated)?;
            if bit == FIRST_OPTIONAL_BIT + 2 {
                device = Some(value);
            }
        }
    }
    Ok(Keys { source: head.source, ty: head.ty, correlationid: head.correlationid, device })
}

/// The event stored as `bytes` in the row of `id`.
pub(crate) fn decode(id: EventId, received_at: i64, bytes: &[u8]) -> Result<Stored, Undecodable> {
    let mut r = Reader { bytes, at: 0 };
    let head = head(id, received_at, &mut r)?;
    let truncated = || undecodable(id, "truncated");
    let traceparent = head.traceparent.map(|trace| match trace {
        Trace::Origin => TraceParent::for_origin(id).to_string(),
        Trace::Binary(parsed) => parsed.to_string(),
        Trace::Text(text) => text.to_string(),
    });
    let mut event = Event {
        id,
        source: head.source.to_string(),
        ty: head.ty.to_string(),
        subject: None,
        time: DateTime::<Utc>::from_timestamp_micros(head.time).unwrap_or_default(),
        datacontenttype: None,
        dataschema: None,
        correlationid: head.correlationid.map_or_else(|| id.to_string(), str::to_string),
        causationid: None,
        hop: head.hop,
        traceparent,
        device: None,
        feature: None,
        datasubject: None,
        tenant: None,
        originid: None,
        extensions: BTreeMap::new(),
        data: Data::None,
    };
    let via = match present(head.flags, VIA_BIT) {
        true => Some(r.str().ok_or_else(truncated)?.to_string()),
        false => None,
    };
    for (bit, field) in (FIRST_OPTIONAL_BIT..).zip(optionals_mut(&mut event)) {
        if present(head.flags, bit) {
            *field = Some(r.str().ok_or_else(truncated)?.to_string());
        }
    }
    if present(head.flags, EXTENSIONS_BIT) {
        let json = r.str().ok_or_else(truncated)?;
        event.extensions = serde_json::from_str(json).map_err(|e| undecodable(id, &format!("extensions: {e}")))?;
    }
    event.data = match r.byte().ok_or_else(truncated)? {
        DATA_NONE if r.rest().is_empty() => Data::None,
        DATA_NONE => return Err(undecodable(id, "bytes after the end")),
        DATA_JSON => super::read::json_data(r.rest().to_vec()),
        DATA_BINARY => Data::Binary(r.rest().to_vec()),
        kind => return Err(undecodable(id, &format!("unknown data kind {kind}"))),
    };
    Ok(Stored { event, via })
}

fn undecodable(id: EventId, reason: &str) -> Undecodable {
    Undecodable { id, reason: reason.to_string() }
}

/// Whether `text` is `id` as `Display` writes it, so the id gives it back.
fn is_id_text(text: &str, id: EventId) -> bool {
    let mut buf = [0; 26];
    text.len() == buf.len() && text == id.array_to_str(&mut buf)
}

/// A version-00 trace context in the form `TraceParent`'s `Display` writes
/// (lowercase hex), so its 25 bytes give the same text back.
fn canonical_trace(text: &str) -> Option<TraceParent> {
    let b = text.as_bytes();
    let lower_hex = |s: &[u8]| s.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if b.len() != TRACEPARENT_LEN || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    if !lower_hex(&b[3..35]) || !lower_hex(&b[36..52]) || !lower_hex(&b[53..]) {
        return None;
    }
    Some(TraceParent {
        trace_id: u128::from_str_radix(&text[3..35], 16).ok()?,
        parent_id: u64::from_str_radix(&text[36..52], 16).ok()?,
        flags: u8::from_str_radix(&text[53..], 16).ok()?,
    })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use glassbox_core::{IdMinter, TraceParent};
    use glassbox_testkit::events::event;
    use serde_json::value::RawValue;

    use super::*;

    fn round_trip(event: &Event, received_at: i64, via: Option<&str>) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(event, received_at, via, &mut bytes);
        let stored = decode(event.id, received_at, &bytes).unwrap();
        assert_eq!(&stored.event, event);
        assert_eq!(stored.via.as_deref(), via);
        bytes
    }

    /// A device message as the gateway records it: everything the row's id
    /// and receive time give is left out.
    #[test]
    fn a_chains_first_event_stores_what_its_id_and_receive_time_do_not_give() {
        let minter = IdMinter::new();
        let mut message = event(&minter, "mqtt/bench-1", "device.message", None);
        message.subject = Some("bench/a".into());
        message.datacontenttype = Some("application/octet-stream".into());
        message.data = Data::Binary(vec![7; 64]);
        let received_at = message.time.timestamp_micros();
        assert_eq!(message.correlationid, message.id.to_string());
        assert_eq!(message.traceparent, Some(TraceParent::for_origin(message.id).to_string()));
        let bytes = round_trip(&message, received_at, Some("mqtt"));
        // Version, flags (2), source, type, hop, subject, content type, via, kind, data.
        assert_eq!(bytes.len(), 1 + 2 + 13 + 15 + 1 + 8 + 25 + 5 + 1 + 64);
    }

    #[test]
    fn every_attribute_round_trips() {
        let minter = IdMinter::new();
        let parent = minter.mint();
        let mut full = event(&minter, "s", "t", Some("d1"));
        full.subject = Some("topic/1".into());
        full.time = DateTime::from_timestamp_micros(full.time.timestamp_micros() - 5_000_000).unwrap();
        full.correlationid = "chain-7".into();
        full.causationid = Some(parent.to_string());
        full.hop = 70_000;
        full.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        full.feature = Some("f".into());
        full.datasubject = Some("person-1".into());
        full.tenant = Some("acme".into());
        full.originid = Some("o-1".into());
        full.datacontenttype = Some("application/json".into());
        full.dataschema = Some("https://example.com/schema".into());
        full.extensions.insert("region".into(), serde_json::json!("eu"));
        full.extensions.insert("nested".into(), serde_json::json!({"a": [1, 2]}));
        full.data = Data::Json(RawValue::from_string(r#"{ "spaced" : 1 }"#.into()).unwrap());
        let received_at = Utc::now().timestamp_micros();
        round_trip(&full, received_at, Some("http"));
        // The producer's time may also be after the receive time.
        full.time = DateTime::from_timestamp_micros(received_at + 1).unwrap();
        round_trip(&full, received_at, None);
    }

    /// Text the encoding could not give back byte for byte is kept as text.
    #[test]
    fn values_only_like_derived_ones_are_kept_as_written() {
        let minter = IdMinter::new();
        let mut odd = event(&minter, "s", "t", None);
        odd.correlationid = odd.id.to_string().to_lowercase();
        odd.traceparent = Some(TraceParent::for_origin(odd.id).to_string().to_uppercase());
        odd.data = Data::None;
        round_trip(&odd, 0, None);
        odd.traceparent = Some(format!(" {}", TraceParent::for_origin(odd.id)));
        round_trip(&odd, 0, None);
        odd.traceparent = None;
        odd.correlationid = String::new();
        round_trip(&odd, i64::MIN, None);
    }

    /// Damaged or newer rows are an error naming the event, never a panic.
    #[test]
    fn a_damaged_row_does_not_decode() {
        let minter = IdMinter::new();
        let mut e = event(&minter, "source", "type", Some("device"));
        e.correlationid = "chain".into();
        e.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        e.data = Data::None;
        let mut bytes = Vec::new();
        encode(&e, 0, Some("via"), &mut bytes);
        for len in 0..bytes.len() {
            let error = decode(e.id, 0, &bytes[..len]).err().unwrap_or_else(|| panic!("{len} bytes decoded"));
            assert!(error.to_string().contains(&e.id.to_string()), "{error}");
        }
        let mut newer = bytes.clone();
        newer[0] = VERSION + 1;
        assert!(decode(e.id, 0, &newer).unwrap_err().reason.contains("newer"));
        let mut kind = bytes.clone();
        *kind.last_mut().unwrap() = 9;
        assert!(decode(e.id, 0, &kind).unwrap_err().reason.contains("data kind"));
        let mut hop = vec![VERSION, (Flags::TIME_IS_RECEIVED | Flags::CORRELATION_IS_ID) as u8, 1, b's', 1, b't'];
        put_varint(&mut hop, u64::MAX);
        assert!(decode(e.id, 0, &hop).unwrap_err().reason.contains("hop"));
        // What this version never writes: more bytes, flags or trace contexts.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(e.id, 0, &longer).unwrap_err().reason.contains("after the end"));
        for flags in [1 << 16, Flags::TRACE_OF_ORIGIN | Flags::TRACE_TEXT] {
            let mut odd = vec![VERSION];
            put_varint(&mut odd, flags);
            assert!(decode(e.id, 0, &odd).unwrap_err().reason.contains("not this format's"), "{flags:#x}");
        }
    }

    /// What filters and the index read, without decoding the rest, agrees
    /// with the whole event.
    #[test]
    fn keys_read_alone_agree_with_the_event() {
        let minter = IdMinter::new();
        let mut chained = event(&minter, "mqtt/d1", "device.message", Some("d1"));
        chained.correlationid = "chain-1".into();
        chained.subject = Some("t/1".into());
        chained.datacontenttype = Some("text/plain".into());
        let origin = event(&minter, "api", "order.created", None);
        for (e, via) in [(&chained, Some("mqtt")), (&origin, None)] {
            let mut bytes = Vec::new();
            encode(e, 0, via, &mut bytes);
            let keys = keys(e.id, 0, &bytes).unwrap();
            assert_eq!((keys.source, keys.ty, keys.device), (e.source.as_str(), e.ty.as_str(), e.device.as_deref()));
            assert_eq!(keys.correlationid(e.id), e.correlationid);
            assert!(keys.correlates(e.id, &e.correlationid) && !keys.correlates(e.id, "chain-2"));
        }
        let mut bytes = Vec::new();
        encode(&origin, 0, None, &mut bytes);
        assert!(keys(origin.id, 0, &bytes).unwrap().correlationid.is_none(), "a chain's first: its id, not text");
    }
}
