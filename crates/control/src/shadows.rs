//! Device shadows: desired and reported state, their delta, versions; the
//! answers on `$glassbox/devices/<id>/shadow/…` (typed in `glassbox-core`'s
//! `events::shadow`, recorded as the events they are).

use chrono::Utc;
use glassbox_core::{
    DEVICE_SHADOW_UPDATED, EventId, GetRejected, Principal, ShadowAccepted, ShadowDelta, ShadowRejected, ShadowState,
    ShadowUpdated, UpdateAccepted, UpdateRejected,
};
use glassbox_devices::{Shadow, ShadowError, ShadowUpdate};
use glassbox_store::StoreError;

use super::Control;

/// Attempts when a concurrent update moved the shadow on under us.
const CAS_ATTEMPTS: usize = 5;

/// Why a shadow update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    #[error("no device {0:?}; `glassbox devices list` shows the registered ones")]
    UnknownDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Control {
    /// The device's shadow (empty at version 0 if never set); `None` for an unknown device.
    pub async fn shadow(&self, device: &str) -> Result<Option<Shadow>, StoreError> {
        if self.devices.device(device).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.load_shadow(device).await?.1))
    }

    async fn load_shadow(&self, device: &str) -> Result<(u64, Shadow), StoreError> {
        match self.devices.shadow(device).await? {
            None => Ok((0, Shadow::default())),
            Some((version, text)) => {
                let shadow = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Internal(format!("stored shadow of {device:?} is damaged: {e}")))?;
                Ok((version, shadow))
            }
        }
    }

    /// Applies an update by `by` (an operator, the device, a function),
    /// caused by event `cause` if any; records the change and pushes a new
    /// delta to the device.
    pub async fn update_shadow(
        &self,
        device: &str,
        update: &ShadowUpdate,
        by: &Principal,
        cause: Option<EventId>,
    ) -> Result<Shadow, UpdateError> {
        if self.devices.device(device).await?.is_none() {
            return Err(UpdateError::UnknownDevice(device.to_string()));
        }
        for _ in 0..CAS_ATTEMPTS {
            let (stored, mut shadow) = self.load_shadow(device).await?;
            let delta_before = shadow.delta();
            if !shadow.apply(update, self.shadow_limits, Utc::now())? {
                return Ok(shadow);
            }
            let document = serde_json::to_string(&shadow).map_err(|e| StoreError::Internal(e.to_string()))?;
            if !self.devices.put_shadow(device, stored, shadow.version, document).await? {
                continue; // Someone else got there first: apply to theirs.
            }
            let data = ShadowUpdated {
                actor: ShadowUpdated::actor_of(by),
                principal: Some(by.clone()),
                version: shadow.version,
                state: ShadowState { desired: update.state.desired.clone(), reported: update.state.reported.clone() },
                delta: shadow.delta(),
            };
            let cause = cause.map(|c| c.to_string());
            let change = self.record(device, DEVICE_SHADOW_UPDATED, None, &data, cause.as_deref()).await;
            let delta = shadow.delta();
            if !delta.is_empty() && delta != delta_before {
                self.push_delta(device, &shadow, change.map(|c| c.to_string()).or(cause)).await;
            }
            return Ok(shadow);
        }
        Err(UpdateError::Store(StoreError::Unavailable(format!(
            "the shadow of {device:?} kept changing under {CAS_ATTEMPTS} attempts; try again"
        ))))
    }

    /// What `update` would make of the device's shadow — `base` if given
    /// (a dry run's own earlier writes), else the stored one — checked as
    /// [`Control::update_shadow`] checks it, but stored, recorded and sent
    /// nowhere. Returns the shadow and whether the update changed it.
    pub async fn preview_shadow(
        &self,
        device: &str,
        base: Option<Shadow>,
        update: &ShadowUpdate,
    ) -> Result<(Shadow, bool), UpdateError> {
        let mut shadow = match base {
            Some(shadow) => shadow,
            None => self.shadow(device).await?.ok_or_else(|| UpdateError::UnknownDevice(device.to_string()))?,
        };
        let changed = shadow.apply(update, self.shadow_limits, Utc::now())?;
        Ok((shadow, changed))
    }

    async fn push_delta(&self, device: &str, shadow: &Shadow, cause: Option<String>) {
        let delta = ShadowDelta { state: shadow.delta(), version: shadow.version, timestamp: Utc::now() };
        self.send(device, "shadow/delta", &delta, cause.as_deref()).await;
    }

    /// Pushes the delta if there is one (on connect, on subscribe).
    pub(super) async fn push_pending_delta(&self, device: &str) {
        match self.load_shadow(device).await {
            Ok((_, shadow)) if !shadow.delta().is_empty() => self.push_delta(device, &shadow, None).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(device, error = %e, "could not read the shadow to push its delta"),
        }
    }

    pub(super) async fn mqtt_shadow_update(&self, device: &str, by: &Principal, payload: &[u8], event: EventId) {
        let update = ShadowUpdate::parse(payload);
        let client_token = update.as_ref().ok().and_then(|u| u.client_token.clone());
        let outcome = match &update {
            Ok(update) => self.update_shadow(device, update, by, Some(event)).await.map(|shadow| (update, shadow)),
            Err(e) => Err(UpdateError::Shadow(e.clone())),
        };
        let cause = event.to_string();
        match outcome {
            Ok((update, shadow)) => {
                let state =
                    ShadowState { desired: update.state.desired.clone(), reported: update.state.reported.clone() };
                let accepted = UpdateAccepted { state, version: shadow.version, client_token, timestamp: Utc::now() };
                let accepted = ShadowAccepted::Update(accepted);
                self.send(device, "shadow/update/accepted", &accepted, Some(&cause)).await;
            }
            Err(e) => {
                let code = match &e {
                    UpdateError::Shadow(e) => e.code(),
                    UpdateError::UnknownDevice(_) => 404,
                    UpdateError::Store(_) => 503,
                };
                let rejected = ShadowRejected::Update(UpdateRejected { code, message: e.to_string(), client_token });
                self.send(device, "shadow/update/rejected", &rejected, Some(&cause)).await;
            }
        }
    }

    pub(super) async fn mqtt_shadow_get(&self, device: &str, event: EventId) {
        let cause = event.to_string();
        match self.shadow(device).await {
            Ok(Some(shadow)) => {
                let accepted = ShadowAccepted::Get(shadow.document(device));
                self.send(device, "shadow/get/accepted", &accepted, Some(&cause)).await;
            }
            Ok(None) => {}
            Err(e) => {
                let rejected = ShadowRejected::Get(GetRejected { code: 503, message: e.to_string() });
                self.send(device, "shadow/get/rejected", &rejected, Some(&cause)).await;
            }
        }
    }
}
