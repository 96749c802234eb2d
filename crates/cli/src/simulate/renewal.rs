//! With `--cert-days N`, each simulated device gets a certificate from the
//! built-in CA at registration (issued for N days) and renews it over MQTT
//! once it is inside the first expiry warning (30 days), as firmware would:
//! `{"csr": …}` on `$glassbox/devices/<id>/certificate/renew`, the answer
//! on `…/renew/accepted`. The simulated devices keep logging in with their
//! secret (the simulator speaks plain MQTT); the renewal shows in the
//! recorded stream and in `devices certificate list`.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use glassbox_core::{RenewAccepted, RenewRequest};

use crate::client::Client;

/// A device renews once its certificate ends within this.
const RENEW_WITHIN_DAYS: i64 = 30;

/// When the device's current certificate ends.
pub struct Held(Mutex<DateTime<Utc>>);

impl Held {
    /// Has the CA issue device `id` a certificate for `days`.
    pub async fn issue(client: &Client, id: &str, days: u32) -> anyhow::Result<Self> {
        let (_, csr) = crate::certificates::key_and_csr(id)?;
        let issued = crate::certificates::issue(client, id, csr, Some(days)).await?;
        Ok(Self(Mutex::new(issued.answer.not_after)))
    }

    /// Whether it is time to renew.
    pub fn due(&self) -> bool {
        self.0.lock().is_ok_and(|until| *until - Utc::now() < chrono::Duration::days(RENEW_WITHIN_DAYS))
    }

    /// The renewal request: a CSR for a new key (the simulator keeps no key).
    pub fn request(id: &str) -> anyhow::Result<String> {
        let (_, csr) = crate::certificates::key_and_csr(id)?;
        Ok(serde_json::to_string(&RenewRequest { csr })?)
    }

    /// Takes an answer on `…/renew/accepted`; says so on stdout.
    pub fn accepted(&self, id: &str, payload: &[u8]) {
        let Ok(accepted) = serde_json::from_slice::<RenewAccepted>(payload) else { return };
        if let Ok(mut until) = self.0.lock() {
            *until = accepted.not_after;
        }
        println!("simulate: {id} renewed its certificate: serial {}, until {}", accepted.serial, accepted.not_after);
    }
}
