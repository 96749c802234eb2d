//! Just enough of the OTLP protobuf encoding (opentelemetry-proto v1) to
//! send spans and log records: `ExportTraceServiceRequest` and
//! `ExportLogsServiceRequest`. Field numbers are the protocol's.

/// A span, as Glassbox exports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// `Some(message)` marks the span as failed.
    pub error: Option<String>,
}

/// A log record, on the span of the invocation that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_ns: u64,
    pub level: String,
    pub body: String,
    pub trace_id: u128,
    pub span_id: u64,
    pub attributes: Vec<(&'static str, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    #[expect(dead_code, reason = "OTLP's own numbering, kept whole; nothing exports an internal span yet")]
    Internal = 1,
    Server = 2,
    Producer = 4,
    Consumer = 5,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// A protobuf writer: varints, fixed64 and length-delimited fields.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }

    fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    fn message(&mut self, field: u32, write: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        write(&mut inner);
        self.bytes(field, &inner.0);
    }

    fn attribute(&mut self, field: u32, key: &str, value: &Value) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |any| any_value(any, value));
        });
    }
}

fn any_value(w: &mut Writer, value: &Value) {
    match value {
        Value::Str(s) => w.string(1, s),
        Value::Bool(b) => w.uint(2, u64::from(*b)),
        Value::Int(i) => w.uint(3, *i as u64),
        Value::Double(d) => {
            w.key(4, 1);
            w.0.extend_from_slice(&d.to_le_bytes());
        }
    }
}

/// The resource (`service.name`) and scope every request carries.
fn resource_and_scope(w: &mut Writer, service: &str, body: impl FnOnce(&mut Writer)) {
    w.message(1, |r| r.attribute(1, "service.name", &Value::Str(service.into())));
    w.message(2, |scope| {
        scope.message(1, |s| {
            s.string(1, "glassbox");
            s.string(2, env!("CARGO_PKG_VERSION"));
        });
        body(scope);
    });
}

/// `ExportTraceServiceRequest` with one resource and scope.
pub fn encode_spans(service: &str, spans: &[Span]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        resource_and_scope(rs, service, |scope| {
            for span in spans {
                scope.message(2, |s| encode_span(s, span));
            }
        });
    });
    w.0
}

fn encode_span(s: &mut Writer, span: &Span) {
    s.bytes(1, &span.trace_id.to_be_bytes());
    s.bytes(2, &span.span_id.to_be_bytes());
    if let Some(parent) = span.parent_span_id {
        s.bytes(4, &parent.to_be_bytes());
    }
    s.string(5, &span.name);
    s.uint(6, span.kind as u64);
    s.fixed64(7, span.start_ns);
    s.fixed64(8, span.end_ns.max(span.start_ns));
    for (key, value) in &span.attributes {
        s.attribute(9, key, value);
    }
    s.message(15, |status| match &span.error {
        Some(message) => {
            status.string(2, message);
            status.uint(3, 2);
        }
        None => status.uint(3, 1),
    });
}

/// `ExportLogsServiceRequest` with one resource and scope.
pub fn encode_logs(service: &str, records: &[LogRecord]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rl| {
        resource_and_scope(rl, service, |scope| {
            for record in records {
                scope.message(2, |r| encode_log(r, record));
            }
        });
    });
    w.0
}

fn encode_log(r: &mut Writer, record: &LogRecord) {
    let severity = match record.level.as_str() {
        "trace" => 1,
        "debug" => 5,
        "warn" => 13,
        "error" => 17,
        _ => 9,
    };
    r.fixed64(1, record.time_ns);
    r.uint(2, severity);
    r.string(3, &record.level.to_uppercase());
    r.message(5, |body| any_value(body, &Value::Str(record.body.clone())));
    for (key, value) in &record.attributes {
        r.attribute(6, key, value);
    }
    r.bytes(9, &record.trace_id.to_be_bytes());
    r.bytes(10, &record.span_id.to_be_bytes());
    r.fixed64(11, record.time_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_are_protobuf() {
        let mut w = Writer::default();
        w.uint(1, 150);
        assert_eq!(w.0, [0x08, 0x96, 0x01], "the protobuf documentation's example");
        let mut w = Writer::default();
        w.string(2, "testing");
        assert_eq!(w.0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
    }
}
