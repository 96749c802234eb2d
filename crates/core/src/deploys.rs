//! What the platform records when a function's live version changes: a
//! deploy, a rollback, a promote, a delete. Shared by the function service,
//! which writes them, and every reader (diagnosis ties anomalies to them).

use serde::{Deserialize, Serialize};

use crate::Principal;

/// A new version was deployed and made live (data: [`Deployed`]).
pub const FUNCTION_DEPLOYED: &str = "function.deployed";
/// `rollback` made an older version live (data: [`LiveChanged`]).
pub const FUNCTION_ROLLED_BACK: &str = "function.rolled_back";
/// `promote` made a chosen version live (data: [`LiveChanged`]).
pub const FUNCTION_PROMOTED: &str = "function.promoted";
/// A function was deleted: nothing of it runs any more (data: [`Deleted`]).
pub const FUNCTION_DELETED: &str = "function.deleted";
/// A function was taken out of service, everything of it kept (data: [`Retired`]).
pub const FUNCTION_RETIRED: &str = "function.retired";
/// A retired function was brought back as it was (data: [`Retired`]).
pub const FUNCTION_RESTORED: &str = "function.restored";

/// The data of a [`FUNCTION_DEPLOYED`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    pub function: String,
    pub version: u32,
    pub digest: String,
    /// Who deployed it, as a label (`admin`): [`Principal::label`].
    pub by: String,
    /// Who, whole; none only in records written before principals were
    /// recorded (diagnosis still reads those).
    #[serde(default)]
    pub principal: Option<Principal>,
    /// Its spec (triggers, limits, …), as deployed.
    pub spec: serde_json::Value,
}

/// The data of a [`FUNCTION_ROLLED_BACK`] or [`FUNCTION_PROMOTED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveChanged {
    pub function: String,
    /// The version it replaced; none when the function was deleted.
    pub from: Option<u32>,
    /// The version now live.
    pub to: u32,
    /// The digest of `to`.
    pub digest: String,
    /// Who changed it, as a label (`admin`).
    pub by: String,
    /// Who, whole; none only in records written before principals were
    /// recorded (diagnosis still reads those).
    #[serde(default)]
    pub principal: Option<Principal>,
}

/// The data of a [`FUNCTION_DELETED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub function: String,
    /// The version that was live; none when it was deleted before (a purge).
    pub version: Option<u32>,
    /// Who deleted it, as a label (`admin`).
    pub by: String,
    /// Who, whole; none only in records written before principals were
    /// recorded (diagnosis still reads those).
    #[serde(default)]
    pub principal: Option<Principal>,
    /// Whether it was deleted with work in flight (`--force`).
    pub forced: bool,
    /// Whether its versions and key-value store were removed too.
    pub purged: bool,
    /// Events it had queued, or waiting for a retry, now dead-lettered
    /// (`cleared`).
    pub dropped: u64,
    /// Invocations running then: they finish and are recorded.
    pub running: u64,
}

/// The data of a [`FUNCTION_RETIRED`] or [`FUNCTION_RESTORED`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub function: String,
    /// Its live version (kept live in the store while retired).
    pub version: u32,
    /// Its triggers, which stopped (retired) or reach it again (restored).
    pub triggers: Vec<String>,
    /// Warm instances freed by a retirement; absent for a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_freed: Option<u64>,
    /// Who, as a label (`admin`).
    pub by: String,
    pub principal: Principal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn a_retirement_round_trips() {
        let principal = Principal::admin(AuthMethod::BearerToken, None);
        let retired = Retired {
            function: "fan".into(),
            version: 3,
            triggers: vec!["mqtt:fans/#".into()],
            instances_freed: Some(2),
            by: principal.label(),
            principal,
        };
        let json = serde_json::to_value(&retired).unwrap();
        assert_eq!(json["instances_freed"], 2);
        assert_eq!(serde_json::from_value::<Retired>(json).unwrap(), retired);
    }
}
