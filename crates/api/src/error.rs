//! One error type for the whole API: 4xx explain what to fix; 5xx log the
//! cause and return an id to quote.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glassbox_api_types::{ErrorBody, ErrorDetail};
use glassbox_core::{Problem, ValidationError};
use glassbox_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_event`, `not_found`, …).
    pub code: &'static str,
    pub message: String,
    pub problems: Vec<Problem>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), problems: Vec::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid_parameters(problems: Vec<Problem>) -> Self {
        Self::problems("invalid_parameter", problems)
    }

    /// 400 listing every problem, each naming its field, in `problems` and
    /// in the message.
    pub fn problems(code: &'static str, problems: Vec<Problem>) -> Self {
        let names: Vec<_> = problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect();
        Self { problems, ..Self::bad_request(code, names.join("; ")) }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        let (status, code) = match (err.is_too_large(), err.problems.iter().any(|p| p.field == "body")) {
            (true, _) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            (false, true) => (StatusCode::BAD_REQUEST, "malformed_json"),
            (false, false) => (StatusCode::BAD_REQUEST, "invalid_event"),
        };
        Self { status, code, message: err.to_string(), problems: err.problems }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{err}; retry later (GET /readyz shows when the store recovers)"),
            ),
            StoreError::InvalidQuery(message) => Self::bad_request("invalid_parameter", message),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::UnknownEvent(id) => Self::not_found(format!("no event with id {id}")),
            StoreError::Internal(cause) => internal(cause),
        }
    }
}

/// A server fault: logged with an id the caller can quote.
pub fn internal(cause: impl std::fmt::Display) -> ApiError {
    let error_id = ulid::Ulid::new();
    tracing::error!(%error_id, %cause, "internal error answering an API request");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("internal error {error_id}; the server log has the cause under this id"),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message, problems: self.problems } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The rest of a body refused before it was read (or cut off) is
        // not waited for: the connection closes after the answer.
        if matches!(self.status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// 429 with `retry-after`: whole seconds until `wait` has passed (at least 1).
pub fn too_many(code: &'static str, message: &str, wait: std::time::Duration) -> Response {
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}
