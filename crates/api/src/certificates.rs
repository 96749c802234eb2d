//! `/api/v1/ca` and `/api/v1/devices/{id}/certificates`: the CA's
//! certificate, and device certificates issued from a CSR, listed and
//! revoked. Each change goes through `control::Certificates` with the
//! caller's principal, which records it (`device.certificate_issued`, …);
//! a refused CSR is answered 400 naming why and recorded as
//! `device.certificate_refused`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glassbox_api_types::{CertificateAuthority, CertificateList, CertificatesRevoked, IssueCertificate, Warned};
use glassbox_control::{CertificateError, Changed, Revoked};
use glassbox_store::CertificateRecord;

use super::auth::Caller;
use super::body::{JsonBody, Shape};
use super::error::internal;
use super::params::Path;
use super::{ApiError, AppState};

impl Shape for IssueCertificate {
    const EXAMPLE: &'static str = r#"{"csr": "-----BEGIN CERTIFICATE REQUEST-----\n…", "days": 30}"#;
}

/// `GET /api/v1/ca`: the CA certificate, never its key.
pub async fn show(State(app): State<AppState>) -> Result<Json<CertificateAuthority>, ApiError> {
    let authority = app.certificates.authority();
    let info = authority.info().map_err(internal)?;
    Ok(Json(CertificateAuthority {
        certificate: authority.certificate_pem().to_string(),
        subject: info.common_name,
        serial: info.serial,
        fingerprint: info.fingerprint,
        not_after: info.not_after,
        imported: authority.imported(),
    }))
}

/// `POST /api/v1/devices/{id}/certificates`: 201 with the certificate.
pub async fn issue(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
    JsonBody(IssueCertificate { csr, days }): JsonBody<IssueCertificate>,
) -> Result<(StatusCode, Json<Warned<CertificateRecord>>), ApiError> {
    let Changed { value, unrecorded } = app.certificates.issue(&id, &csr, days, &by).await.map_err(error)?;
    Ok((StatusCode::CREATED, Json(Warned::new(value, unrecorded))))
}

/// `GET /api/v1/devices/{id}/certificates`: newest first.
pub async fn list(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CertificateList<CertificateRecord>>, ApiError> {
    let certificates = app.certificates.list(&id).await.map_err(error)?;
    Ok(Json(CertificateList { device: id, certificates }))
}

/// `DELETE /api/v1/devices/{id}/certificates/{serial}`: revokes one.
pub async fn revoke_one(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path((id, serial)): Path<(String, String)>,
) -> Result<Json<Warned<CertificatesRevoked<CertificateRecord>>>, ApiError> {
    revoke(&app, &id, Some(&serial), &by).await
}

/// `DELETE /api/v1/devices/{id}/certificates`: revokes all of the device's.
pub async fn revoke_all(
    State(app): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<Warned<CertificatesRevoked<CertificateRecord>>>, ApiError> {
    revoke(&app, &id, None, &by).await
}

async fn revoke(
    app: &AppState,
    id: &str,
    serial: Option<&str>,
    by: &glassbox_core::Principal,
) -> Result<Json<Warned<CertificatesRevoked<CertificateRecord>>>, ApiError> {
    let Changed { value: Revoked { certificates, disconnected }, unrecorded } =
        app.certificates.revoke(id, serial, by).await.map_err(error)?;
    let revoked = CertificatesRevoked { device: id.to_string(), revoked: certificates, disconnected };
    Ok(Json(Warned::new(revoked, unrecorded)))
}

fn error(e: CertificateError) -> ApiError {
    match e {
        CertificateError::UnknownDevice(_) | CertificateError::UnknownSerial { .. } => {
            ApiError::not_found(e.to_string())
        }
        CertificateError::Refused(reason) => ApiError::bad_request("certificate_refused", reason),
        CertificateError::Authority(cause) => internal(cause),
        CertificateError::Store(e) => e.into(),
    }
}
