//! `GET /api/v1/perimeter`: every way in and every way out — listeners,
//! public routes, tokens, device credentials, egress rules and risky
//! settings — each with a one-line note on its risk, so an operator can
//! review the attack surface in one page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The whole perimeter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perimeter {
    /// Every listening socket.
    pub listeners: Vec<Listener>,
    /// Every public function route (`http:` trigger of a live function).
    pub routes: Vec<PublicRoute>,
    /// Every API token: the bootstrap admin token and the named ones.
    pub tokens: Vec<TokenExposure>,
    /// Devices by credential kind, and the certificates expiring soonest.
    pub devices: DeviceCredentials,
    /// Every live function's egress allow list.
    pub egress: Vec<FunctionEgress>,
    /// Settings that widen the perimeter (open mode, public metrics, …).
    pub settings: Vec<RiskySetting>,
}

/// How much an item widens the perimeter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// As narrow as it can be for what it does.
    Ok,
    /// Worth a look: it may be intended.
    Warn,
    /// Open to anyone who can reach it, or secrets in plaintext.
    High,
}

/// A one-line risk note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub risk: Risk,
    pub note: String,
}

impl Note {
    pub fn ok(note: impl Into<String>) -> Self {
        Self { risk: Risk::Ok, note: note.into() }
    }

    pub fn warn(note: impl Into<String>) -> Self {
        Self { risk: Risk::Warn, note: note.into() }
    }

    pub fn high(note: impl Into<String>) -> Self {
        Self { risk: Risk::High, note: note.into() }
    }
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// `http`, `https`, `public-http`, `mqtt` or `mqtts`.
    pub name: String,
    /// The bound `ip:port`.
    pub address: String,
    /// `http` or `mqtt`.
    pub protocol: String,
    pub tls: bool,
    /// What it serves (`admin API`, `public function routes`, `devices and backend clients`).
    pub serves: Vec<String>,
    /// Who may authenticate, and how (`bearer token`, `device secret`, …).
    pub authentication: Vec<String>,
    #[serde(flatten)]
    pub note: Note,
}

/// A public function route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicRoute {
    pub function: String,
    pub version: u32,
    /// `GET`, `POST`, … or `*` (any).
    pub method: String,
    /// The path; a prefix route ends in `/*`.
    pub path: String,
    /// The listener (`name`) that serves it.
    pub listener: String,
    /// Requests per second for the route, all callers together; none: no limit.
    pub rate_limit_per_second: Option<u32>,
    /// Invocations the function starts per second at most; none: no limit.
    pub invocations_per_second: Option<f64>,
    #[serde(flatten)]
    pub note: Note,
}

/// An API token, as exposure: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenExposure {
    pub name: String,
    pub role: String,
    pub created_by: Option<String>,
    pub last_used: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub note: Note,
}

/// Registered devices by how they log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentials {
    pub total: u64,
    /// Log in with their secret only (no certificate issued).
    pub secret_only: u64,
    /// Hold a certificate, and their secret still logs in.
    pub secret_and_certificate: u64,
    /// Marked `certificate-only`: their secret no longer logs in.
    pub certificate_only: u64,
    /// Disabled devices (counted above too): they log in with nothing.
    pub disabled: u64,
    /// Valid certificates, soonest expiry first (at most 20).
    pub expiring: Vec<CertificateExpiry>,
    #[serde(flatten)]
    pub note: Note,
}

/// A device certificate and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiry {
    pub device: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
    #[serde(flatten)]
    pub note: Note,
}

/// A function's egress allow list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionEgress {
    pub function: String,
    pub version: u32,
    /// Its rules; empty: every outbound request is denied.
    pub rules: Vec<String>,
    #[serde(flatten)]
    pub note: Note,
}

/// A setting that widens the perimeter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskySetting {
    /// The `glassbox.toml` key.
    pub key: String,
    pub value: String,
    #[serde(flatten)]
    pub note: Note,
}
