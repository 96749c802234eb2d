//! Request bodies, read so that every refusal is an [`ApiError`]: a body
//! over its route's limit (413 naming the limit, refused at once when its
//! declared length is over it), one that does not arrive in time (408),
//! a JSON body of the wrong media type or charset (415) or shape (400,
//! saying what the route takes). Never axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::serve::BodyTimedOut;
use super::{ApiError, AppState};

/// A route's body limit, noted on each request by the limit middleware
/// for the extractors below.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    /// The setting that raises it; `None`: fixed.
    pub setting: Option<&'static str>,
}

impl BodyLimit {
    /// `http.body_bytes_max`.
    pub fn configured(bytes: usize) -> Self {
        Self { bytes, setting: Some("http.body_bytes_max") }
    }

    pub fn fixed(bytes: usize) -> Self {
        Self { bytes, setting: None }
    }

    /// 413 for a body of `length` bytes (None: cut off while read).
    pub fn too_large(self, length: Option<u64>) -> ApiError {
        let max = self.bytes;
        let limit = match self.setting {
            Some(setting) => format!("{max} bytes ({setting})"),
            None => format!("{max} bytes for this route"),
        };
        let size = match length {
            Some(length) => format!("the request body is {length} bytes; the limit is {limit}"),
            None => format!("the request body is over the limit of {limit}"),
        };
        let advice = match self.setting {
            Some(setting) => {
                format!("send less, or raise {setting} (GLASSBOX_{})", setting.replace('.', "_").to_ascii_uppercase())
            }
            None => "send less".into(),
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("{size}: {advice}"))
    }

    /// Refuses a body declared (`content-length`) over the limit, before
    /// any of it is read; else notes the limit on the request.
    pub fn check(self, request: &mut Request) -> Result<(), ApiError> {
        match declared_length(request.headers()) {
            Some(length) if length > self.bytes as u64 => Err(self.too_large(Some(length))),
            _ => {
                request.extensions_mut().insert(self);
                Ok(())
            }
        }
    }
}

pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The whole body, at most `limit.bytes`, within `http.body_read_timeout`.
pub async fn read(body: axum::body::Body, limit: BodyLimit) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit.bytes).await.map_err(|e| unread(e, limit))
}

/// Why a request body could not be read.
fn unread(e: axum::Error, limit: BodyLimit) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = cause {
        if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", timed_out.to_string());
        }
        if error.is::<http_body_util::LengthLimitError>() {
            return limit.too_large(None);
        }
        cause = error.source();
    }
    ApiError::bad_request("unreadable_body", format!("the request body could not be read ({e}); send it again"))
}

/// The limit noted on the request, else `http.body_bytes_max`.
fn limit_of(request: &Request, app: &AppState) -> BodyLimit {
    request.extensions().get::<BodyLimit>().copied().unwrap_or(BodyLimit::configured(app.limits.data_bytes_max))
}

/// The request body's bytes, read under the route's limit.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        let limit = limit_of(&request, app);
        read(request.into_body(), limit).await.map(Body)
    }
}

/// What a JSON body of a route looks like, for the messages that refuse one.
pub trait Shape: DeserializeOwned {
    /// An example body: `{"id": "thermo-1"}`.
    const EXAMPLE: &'static str;
}

/// A JSON body (`application/json`, or no Content-Type) of shape `T`.
pub struct JsonBody<T>(pub T);

impl<T: Shape> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        json_media_type(request.headers())?;
        let limit = limit_of(&request, app);
        let bytes = read(request.into_body(), limit).await?;
        let value = parse_object(&bytes).map_err(|what| {
            ApiError::bad_request("invalid_body", format!("{what}: send a JSON object like {}", T::EXAMPLE))
        })?;
        Ok(JsonBody(value))
    }
}

/// `bytes` as `T`, from a JSON object only (serde would read a struct from
/// an array too); else what is wrong.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(deserializer).map_err(|e| describe(&e))
    }
    if bytes.trim_ascii_start().starts_with(b"{") {
        return parse(bytes);
    }
    let kind = match parse::<serde_json::Value>(bytes)? {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    Err(format!("the body is {kind}; it must be a JSON object"))
}

/// Refuses a Content-Type that is not JSON, or JSON in a charset but UTF-8.
fn json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let content_type = String::from_utf8_lossy(value.as_bytes());
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && !(essence.starts_with("application/") && essence.ends_with("+json")) {
        let message = format!("Content-Type {content_type:?} is not accepted here: send the body as application/json");
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message));
    }
    match foreign_charset(&content_type) {
        Some(charset) => Err(charset_refused(&charset)),
        None => Ok(()),
    }
}

/// The `charset` parameter of a Content-Type, when it names anything but UTF-8.
pub fn foreign_charset(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|charset| !charset.eq_ignore_ascii_case("utf-8"))
}

/// 415 for a body in a charset but UTF-8.
pub fn charset_refused(charset: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("charset {charset:?} is not accepted: send the body as UTF-8 (charset=utf-8, or no charset)"),
    )
}

/// What is wrong with a JSON body, in its sender's terms: where (the
/// field's path) and what, without the Rust type names serde speaks of.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    if inner.is_eof() && inner.line() == 1 && inner.column() == 0 {
        return "the body is empty".into();
    }
    if inner.is_syntax() || inner.is_eof() {
        return format!("the body is not JSON (line {}, column {})", inner.line(), inner.column());
    }
    let path = e.path().to_string();
    let place = match path.as_str() {
        "." => "the body".to_string(),
        path => format!("`{path}`"),
    };
    let text = inner.to_string();
    let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(text, _)| text);
    if let Some((found, expected)) = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
        .and_then(|t| t.split_once(", expected "))
    {
        return format!("{place} is {}; it must be {}", found_as_json(found), expected_as_json(expected));
    }
    if text.starts_with("unknown field ") {
        return format!("{place} is not a field this route takes");
    }
    if let Some(field) = text.strip_prefix("missing field ") {
        return format!("{place} lacks the field {field}");
    }
    format!("{place}: {text}")
}

/// serde's name of a value it found, as JSON calls it.
fn found_as_json(found: &str) -> String {
    match found {
        "map" => "an object".into(),
        "sequence" => "an array".into(),
        "unit" | "null" => "null".into(),
        other => match other.split_once(" `") {
            Some(("integer" | "floating point", value)) => format!("the number `{value}"),
            _ => format!("the {other}"),
        },
    }
}

/// serde's name of what it expected, as JSON calls it.
fn expected_as_json(expected: &str) -> String {
    let unsigned = ["u8", "u16", "u32", "u64", "usize"];
    let signed = ["i8", "i16", "i32", "i64", "isize"];
    match expected {
        e if e.starts_with("struct ") || e == "a map" => "a JSON object".into(),
        e if unsigned.contains(&e) => "a whole number, 0 or more".into(),
        e if signed.contains(&e) => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a JSON array".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        id: String,
        version: Option<u32>,
    }

    fn why(body: &str) -> String {
        parse_object::<Sample>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn json_errors_name_the_field_without_rust_types() {
        assert_eq!(why(""), "the body is empty");
        assert!(why("{\"id\":").starts_with("the body is not JSON (line 1"), "{}", why("{\"id\":"));
        assert_eq!(why(r#""x""#), "the body is a string; it must be a JSON object");
        assert_eq!(why(r#"{"id":1.5}"#), "`id` is the number `1.5`; it must be a string");
        assert_eq!(why(r#"["a"]"#), "the body is an array; it must be a JSON object");
        assert_eq!(why(r#"{"id":{}}"#), "`id` is an object; it must be a string");
        assert_eq!(why(r#"{"id":5}"#), "`id` is the number `5`; it must be a string");
        assert_eq!(
            why(r#"{"id":"a","version":-1}"#),
            "`version` is the number `-1`; it must be a whole number, 0 or more"
        );
        assert_eq!(why(r#"{"id":"a","colour":1}"#), "`colour` is not a field this route takes");
        assert_eq!(why("{}"), "the body lacks the field `id`");
    }

    #[test]
    fn only_utf8_is_accepted() {
        assert_eq!(foreign_charset("application/json; charset=UTF-16").as_deref(), Some("UTF-16"));
        assert_eq!(foreign_charset("application/json; charset=\"utf-8\""), None);
        assert_eq!(foreign_charset("application/json"), None);
    }
}
