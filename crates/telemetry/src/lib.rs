//! The platform's own telemetry, outward: [`otlp`] exports the recorded
//! stream (events, invocations, deliveries) as spans and log records over
//! OTLP/HTTP; [`logs`] keeps the platform's log lines in a bounded ring for
//! `glassbox logs`.
//!
//! Reads the stream through the [`glassbox_pipeline::Pipeline`]'s consumer
//! and delivery taps; must never slow ingest (bounded queues, drops counted)
//! nor write to the recorder beyond its span key.

pub mod logs;
pub mod otlp;
