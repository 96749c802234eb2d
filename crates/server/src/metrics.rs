//! The server's own collectors for `/metrics` (the MQTT gateway's, the
//! functions'); the registry, the exposition helpers and ingest's counters
//! live in [`glassbox_pipeline::metrics`].

use glassbox_gateway::broker::Broker;
pub use glassbox_pipeline::metrics::{Collector, Registry, Rejection, counter, gauge, render_histogram};

/// The MQTT gateway's gauges and counters, as a collector.
pub struct BrokerMetrics(pub Broker);

#[async_trait::async_trait]
impl Collector for BrokerMetrics {
    async fn collect(&self, out: &mut String) {
        render_broker(out, &self.0.stats());
    }
}

#[async_trait::async_trait]
impl Collector for crate::functions::Functions {
    async fn collect(&self, out: &mut String) {
        self.render_metrics(out);
    }
}

/// The MQTT gateway's gauges and counters.
fn render_broker(out: &mut String, stats: &glassbox_gateway::broker::BrokerStats) {
    gauge(out, "glassbox_mqtt_connections", "MQTT connections open.", stats.connections);
    gauge(out, "glassbox_mqtt_sessions", "MQTT sessions held (connected or persistent).", stats.sessions);
    gauge(out, "glassbox_mqtt_queued_messages", "Messages waiting in session queues.", stats.queued_messages);
    gauge(out, "glassbox_mqtt_queued_bytes", "Bytes (topic + payload) waiting in session queues.", stats.queued_bytes);
    gauge(
        out,
        "glassbox_mqtt_inflight_messages",
        "QoS 1/2 deliveries sent and not yet acknowledged.",
        stats.inflight_messages,
    );
    gauge(out, "glassbox_mqtt_retained_messages", "Retained messages held.", stats.retained_messages);
    counter(
        out,
        "glassbox_mqtt_delivery_states_unrecorded_total",
        "Delivery states not recorded because the recorder was far behind.",
        stats.unrecorded_states,
    );
}
