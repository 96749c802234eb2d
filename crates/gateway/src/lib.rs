//! Device ingress over MQTT 3.1.1 and 5.0.
//!
//! So far this crate holds the wire [`codec`]: bytes ⇄ [`codec::Packet`]s
//! for both protocol versions, with every malformed input reported as a
//! typed [`codec::CodecError`] carrying the MQTT 5 reason code to answer
//! with. The broker core (sessions, subscriptions, ACLs, the publish →
//! record → PUBACK path into the pipeline) builds on it.

pub mod codec;
