//! Device ingress over MQTT 3.1.1 and 5.0.
//!
//! So far this crate holds the wire [`codec`] — bytes ⇄ [`codec::Packet`]s
//! for both protocol versions, every malformed input a typed
//! [`codec::CodecError`] carrying the MQTT 5 reason code to answer with —
//! [`topic`]: name and filter rules and the subscription tree; [`acl`]: who
//! may publish and subscribe where; [`flapping`]: reconnect-storm detection;
//! and [`client`]: a small client on the codec, used by `glassbox bench
//! mqtt`. The broker core (sessions, the publish → record → PUBACK path into
//! the pipeline) builds on them.

pub mod acl;
pub mod broker;
pub mod client;
pub mod codec;
pub mod flapping;
pub mod tls;
pub mod topic;
