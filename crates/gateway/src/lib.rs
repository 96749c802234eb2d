//! Device ingress over MQTT 3.1.1 and 5.0.
//!
//! So far this crate holds the wire [`codec`] — bytes ⇄ [`codec::Packet`]s
//! for both protocol versions, every malformed input a typed
//! [`codec::CodecError`] carrying the MQTT 5 reason code to answer with —
//! and [`topic`]: name and filter rules and the subscription tree. The
//! broker core (sessions, ACLs, the publish → record → PUBACK path into the
//! pipeline) builds on them.

pub mod client;
pub mod codec;
pub mod topic;
