//! Query parameters and path segments, read so that every refusal is an
//! [`ApiError`] naming each parameter that is wrong and what it takes
//! (`limit: "-1" is not accepted: give an integer from 1 to 1000`), never
//! serde's message or axum's plain text.

use std::collections::{HashMap, HashSet};

use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use glassbox_core::Problem;
use serde::de::{self, DeserializeOwned, Visitor};

use super::ApiError;

/// A route's query parameters.
pub trait Parameters: DeserializeOwned {
    /// What the parameter `name` takes, as a noun phrase ("an integer from
    /// 1 to 1000"), for those a value can be wrong for.
    fn accepts(_name: &str) -> Option<String> {
        None
    }
}

/// Any `name=value` pairs (a metric's label filters).
impl Parameters for HashMap<String, String> {}

/// The query string as `T`; refused naming every parameter that is unknown,
/// repeated or malformed.
pub struct Query<T>(pub T);

impl<T: Parameters, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parameters(parts.uri.query().unwrap_or("")).map(Query)
    }
}

fn parameters<T: Parameters>(query: &str) -> Result<T, ApiError> {
    let names = field_names::<T>();
    let mut problems = Vec::new();
    let problem = |problems: &mut Vec<Problem>, field: &str, message: String| {
        problems.push(Problem { field: field.into(), message });
    };
    let mut seen = HashSet::new();
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    pairs.retain(|(name, _)| {
        if !names.is_empty() && !names.contains(&name.as_str()) {
            let takes = names.join(", ");
            problem(&mut problems, name, format!("not a parameter of this route; it takes {takes}"));
            return false;
        }
        if !seen.insert(name.clone()) {
            problem(&mut problems, name, "given more than once; give it once".into());
            return false;
        }
        true
    });
    // Each malformed value is named, then left out to find the next one.
    loop {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let error = match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(value) if problems.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(error) => error,
        };
        let field = error.path().to_string();
        let takes = |name: &str| T::accepts(name).map_or_else(String::new, |a| format!(": give {a}"));
        if let Some(index) = pairs.iter().position(|(name, _)| *name == field) {
            let (name, value) = pairs.remove(index);
            problem(&mut problems, &name, format!("{value:?} is not accepted{}", takes(&name)));
            continue;
        }
        let missing = error.inner().to_string();
        match missing.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            Some(name) => problem(&mut problems, name, format!("missing{}", takes(name))),
            None => problem(
                &mut problems,
                "query",
                format!("the query string could not be read ({missing}): send name=value pairs joined by &"),
            ),
        }
        break;
    }
    Err(ApiError::invalid_parameters(problems))
}

/// The field names serde reads `T` by (empty for a map: any names).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that only notes the fields of the struct asked for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only the field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The path's parameters; refused when one is not UTF-8 once percent-decoded.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => Err(ApiError::bad_request(
                    "invalid_path",
                    format!("the path's {key} is not UTF-8 once percent-decoded: percent-encode it as UTF-8"),
                )),
                _ => {
                    Err(ApiError::bad_request("invalid_path", format!("the path could not be read: {}", e.body_text())))
                }
            },
            Err(e) => Err(super::error::internal(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        limit: Option<usize>,
        active: Option<bool>,
    }

    impl Parameters for Sample {
        fn accepts(name: &str) -> Option<String> {
            match name {
                "limit" => Some("an integer from 1 to 10".into()),
                "active" => Some("true or false".into()),
                _ => None,
            }
        }
    }

    fn problems(query: &str) -> Vec<(String, String)> {
        let err = parameters::<Sample>(query).unwrap_err();
        err.problems.into_iter().map(|p| (p.field, p.message)).collect()
    }

    #[test]
    fn every_bad_parameter_is_named_with_what_it_takes() {
        assert!(parameters::<Sample>("name=a&limit=3").is_ok());
        let got = problems("name=a&limit=-1&active=maybe&colour=red&name=b");
        let fields: Vec<_> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["colour", "name", "limit", "active"], "{got:?}");
        assert_eq!(got[0].1, "not a parameter of this route; it takes name, limit, active");
        assert_eq!(got[2].1, r#""-1" is not accepted: give an integer from 1 to 10"#);
        assert_eq!(got[3].1, r#""maybe" is not accepted: give true or false"#);
        assert_eq!(problems("limit=2"), [("name".to_string(), "missing".to_string())]);
    }

    #[test]
    fn a_map_takes_any_names() {
        let map = parameters::<HashMap<String, String>>("a=1&b=2").unwrap();
        assert_eq!(map.len(), 2);
    }
}
