//! The device control plane's model, free of I/O so it is easy to test and
//! to share between the HTTP API and the MQTT gateway: shadows now;
//! commands and liveness build on the same ground.

pub mod shadow;

pub use shadow::{Shadow, ShadowError, ShadowLimits, ShadowUpdate};
