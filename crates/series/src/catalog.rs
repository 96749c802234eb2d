//! The metrics Glassbox derives from its recorded stream: their names,
//! what a sample means, their labels, and whether `/metrics` exports them.

/// What a metric's samples are, and so what a point's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Each sample is one occurrence: the value is the count.
    Count,
    /// Samples are amounts (bytes, cost): the value is their sum.
    Sum,
    /// Samples are measurements (a duration): the value is their mean;
    /// max and count come with it, and `/metrics` exports a histogram.
    Distribution,
}

#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    /// Exported on `/metrics`. Per-device series are kept for inspection
    /// only, so that Prometheus' cardinality stays bounded.
    pub exported: bool,
}

macro_rules! metric {
    ($id:ident, $name:literal, $kind:ident, [$($label:literal),*], $exported:literal, $help:literal) => {
        pub const $id: Metric =
            Metric { name: $name, help: $help, kind: Kind::$kind, labels: &[$($label),*], exported: $exported };
    };
}

metric!(EVENTS_RECORDED, "events_recorded", Count, [], true, "Events appended to the recorder.");
metric!(
    MQTT_MESSAGES,
    "mqtt_messages",
    Count,
    ["group", "topic"],
    true,
    "Device messages, by device group and topic template (metrics.topics)."
);
metric!(
    MQTT_BYTES,
    "mqtt_bytes",
    Sum,
    ["group", "topic"],
    true,
    "Device message payload bytes, by device group and topic template (metrics.topics)."
);
metric!(DEVICE_MESSAGES, "device_messages", Count, ["device"], false, "Messages of one device (inspection only).");
metric!(DEVICE_BYTES, "device_bytes", Sum, ["device"], false, "Payload bytes of one device (inspection only).");
metric!(MQTT_CONNECTS, "mqtt_connects", Count, [], true, "MQTT connections accepted.");
metric!(MQTT_DISCONNECTS, "mqtt_disconnects", Count, ["reason"], true, "MQTT disconnections, by reason.");
metric!(MQTT_REFUSED, "mqtt_refused", Count, ["reason"], true, "MQTT connections refused, by reason.");
metric!(DEVICE_SILENCES, "device_silences", Count, ["group"], true, "Devices that went silent (past their cadence).");
metric!(
    DROPS,
    "drops",
    Count,
    ["reason", "group", "topic"],
    true,
    "Deliveries, refused publishes and events dropped, by reason, device group and topic template."
);
metric!(
    FUNCTION_INVOCATIONS,
    "function_invocations",
    Count,
    ["function", "outcome"],
    true,
    "Function invocations, by outcome."
);
metric!(FUNCTION_ERRORS, "function_errors", Count, ["function"], true, "Invocations that did not succeed.");
metric!(
    FUNCTION_DURATION,
    "function_duration_ms",
    Distribution,
    ["function"],
    true,
    "Invocation wall time, in milliseconds."
);
metric!(
    FUNCTION_CPU,
    "function_cpu_ms",
    Distribution,
    ["function"],
    true,
    "Invocation CPU time on its own thread, in milliseconds."
);
metric!(
    FUNCTION_QUEUE,
    "function_queue_ms",
    Distribution,
    ["function"],
    true,
    "Time an event waited in the function's queue before its invocation started, in milliseconds."
);
metric!(
    FUNCTION_COLD_STARTS,
    "function_cold_starts",
    Count,
    ["function"],
    true,
    "Invocations that needed a fresh instance (none warm to reuse)."
);
metric!(FUNCTION_COST, "function_cost", Sum, ["function"], true, "Invocation cost (price model units), by function.");
metric!(FEATURE_COST, "feature_cost", Sum, ["feature"], true, "Invocation cost, by feature tag.");
metric!(
    DEVICE_COST,
    "device_cost",
    Sum,
    ["device"],
    false,
    "Invocation cost of one device's events (inspection only)."
);
metric!(
    FUNCTION_DEAD_LETTERS,
    "function_dead_letters",
    Count,
    ["function"],
    true,
    "Events given up on (retries exhausted, recursion limit)."
);
metric!(
    FUNCTION_EGRESS,
    "function_egress_requests",
    Count,
    ["function", "outcome"],
    true,
    "Outbound HTTP requests functions made, by outcome (completed, failed, denied)."
);
metric!(
    COMMANDS,
    "commands",
    Count,
    ["state"],
    true,
    "Device commands reaching a state (queued, delivered, succeeded, …)."
);

pub const ALL: &[&Metric] = &[
    &EVENTS_RECORDED,
    &MQTT_MESSAGES,
    &MQTT_BYTES,
    &DEVICE_MESSAGES,
    &DEVICE_BYTES,
    &MQTT_CONNECTS,
    &MQTT_DISCONNECTS,
    &MQTT_REFUSED,
    &DEVICE_SILENCES,
    &DROPS,
    &FUNCTION_INVOCATIONS,
    &FUNCTION_ERRORS,
    &FUNCTION_DURATION,
    &FUNCTION_CPU,
    &FUNCTION_QUEUE,
    &FUNCTION_COLD_STARTS,
    &FUNCTION_COST,
    &FEATURE_COST,
    &DEVICE_COST,
    &FUNCTION_DEAD_LETTERS,
    &FUNCTION_EGRESS,
    &COMMANDS,
];

pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// Upper bounds (ms) of the exported duration histogram's buckets.
pub const DURATION_BUCKETS_MS: [f64; 14] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0, 30_000.0];
