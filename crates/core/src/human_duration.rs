//! Durations in configuration files as people write them: `500ms`, `10s`,
//! `7d`. Every service's config section uses this one form
//! (`#[serde(with = "glassbox_core::human_duration")]`), so a duration is
//! written and refused the same way under every key.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration like 10s, 5m or 7d ({e})")))
}
