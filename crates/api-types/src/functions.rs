//! `/api/v1/functions`: versions, the live list, lifecycle changes and
//! invocations. Generic over a version's spec `S` (the server answers with
//! the stored spec as JSON; the CLI reads it into `glassbox_functions::Spec`),
//! the work in hand `F` and an invocation record `I`, which belong to the
//! functions service.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A deployed version: `POST /api/v1/functions/{name}` answers the one it
/// created (201); the lists below hold them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedVersion<S> {
    pub name: String,
    pub version: u32,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Its triggers and limits.
    pub spec: S,
    pub deployed_at: DateTime<Utc>,
    pub deployed_by: String,
    pub live: bool,
    /// Retired (`glassbox functions retire`): live in the store, but no
    /// trigger, route or schedule reaches it until restored. Absent: not retired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

/// `GET /api/v1/functions`: the live version of each function (deleted
/// ones are not listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionList<S> {
    pub functions: Vec<DeployedVersion<S>>,
}

/// `GET /api/v1/functions/{name}/versions`: every version, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionList<S> {
    pub versions: Vec<DeployedVersion<S>>,
}

/// `GET /api/v1/functions/{name}`: the function, its live version whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionState<S, F> {
    pub name: String,
    /// `live`, or `deleted` (its versions kept: `promote` brings one back).
    pub state: String,
    /// None once deleted.
    pub live: Option<DeployedVersion<S>>,
    /// When that version became live (its deploy, or the promote or
    /// rollback that made it live again); none once deleted.
    pub live_since: Option<DateTime<Utc>>,
    /// How many versions it has.
    pub versions: usize,
    /// Its newest version's number.
    pub latest: u32,
    /// What it has in hand now (none once deleted).
    pub in_flight: Option<F>,
}

/// `POST /api/v1/functions/{name}/rollback` and `…/promote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveChanged<S> {
    pub function: String,
    /// False when the version asked for was live already.
    pub changed: bool,
    /// The version live before; null when the function was deleted.
    pub from: Option<u32>,
    pub live: DeployedVersion<S>,
}

/// `GET /api/v1/functions/{name}/invocations`: newest first. `truncated`:
/// with an `outcome` filter, older records were not searched (the scan
/// stopped at its bound before `limit` matched).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocations<I> {
    pub invocations: Vec<I>,
    pub truncated: bool,
}

/// `GET /api/v1/functions/{name}/dead-letters`: the events the function
/// gave up on and no redrive or discard has cleared, newest first.
/// Generic over the entry `D` (the functions service's `OpenDeadLetter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters<D> {
    pub function: String,
    pub dead_letters: Vec<D>,
}

/// `POST /api/v1/functions/{name}/dead-letters/redrive`: what to run again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// The version to run; none: the live one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Only these dead letters, by event id; none: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Runs started at most, e.g. `10/s`, `100/m`; none: one after the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Run each in a sandbox: nothing recorded, sent or cleared.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to a redrive: each run's outcome (`R`: the service's `Redriven`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveAnswer<R> {
    pub function: String,
    pub dry_run: bool,
    pub redriven: Vec<R>,
    /// How many succeeded and left the list.
    pub cleared: usize,
}

/// `POST /api/v1/functions/{name}/dead-letters/discard`: which to drop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardRequest {
    /// Only these dead letters, by event id; none: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// The answer to a discard: the events taken off the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discarded {
    pub function: String,
    pub discarded: Vec<String>,
}

/// `GET /api/v1/idle-functions`: every deployed function with its
/// invocations in the window and what it holds; idle ones first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleFunctions<F> {
    /// The window's start.
    pub since: DateTime<Utc>,
    pub functions: Vec<F>,
}

/// `POST /api/v1/functions/{name}/retire` and `…/restore`: what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetireAnswer<R> {
    #[serde(flatten)]
    pub change: R,
    /// Only when the change was made but its record could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}
