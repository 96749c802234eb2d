//! Checks a JSON answer against the schema `docs/openapi.json` gives for
//! it, so a test notices when the document and the types drift apart (a
//! field renamed in one place only).
//!
//! The subset of JSON Schema the document uses: `$ref` to a component,
//! `type` (one or several), `const`, `enum`, `properties`, `required`,
//! `items`, `additionalProperties`, `oneOf`/`anyOf`. Stricter than JSON
//! Schema on purpose: an object schema that lists `properties` is closed
//! unless it says `additionalProperties`, so a field the document does not
//! name is reported, not let through.

use serde_json::{Map, Value};

/// The OpenAPI document, parsed.
pub struct Document(Value);

impl Document {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Self)
    }

    /// The schema of `method path`'s JSON answer with `status` (`path` as
    /// the document writes it: `/api/v1/events/{id}`).
    pub fn answer(&self, method: &str, path: &str, status: u16) -> Option<&Value> {
        let response = &self.0["paths"][path][method]["responses"][status.to_string()];
        let response = self.resolve(response);
        response["content"]["application/json"].get("schema")
    }

    /// A schema of `components.schemas`.
    pub fn component(&self, name: &str) -> Option<&Value> {
        self.0["components"]["schemas"].get(name)
    }

    /// What is wrong with `value` against `schema`: one line per problem,
    /// naming where (`$.events[0].states[1].at`); empty when it conforms.
    pub fn check(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_at(schema, value, "$", &mut problems);
        problems
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.resolve(self.0.pointer(pointer).unwrap_or(&Value::Null))
            }
            None => schema,
        }
    }

    fn check_at(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if schema.is_null() {
            return problems.push(format!("{at}: the document's schema reference leads nowhere"));
        }
        if let Some(choices) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
            if !choices.iter().any(|choice| self.check(choice, value).is_empty()) {
                problems.push(format!("{at}: matches none of the document's alternatives: {value}"));
            }
            return;
        }
        if let Some(expected) = schema.get("const").filter(|c| *c != value) {
            problems.push(format!("{at}: is {value}, the document says always {expected}"));
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array).filter(|a| !a.contains(value)) {
            problems.push(format!("{at}: {value} is not one of the document's {}", Value::from(allowed.clone())));
        }
        if !type_matches(schema.get("type"), value) {
            return problems.push(format!("{at}: is {value}, the document says type {}", schema["type"]));
        }
        match value {
            Value::Object(fields) => self.check_object(schema, fields, at, problems),
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check_at(item, v, &format!("{at}[{i}]"), problems);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(&self, schema: &Value, fields: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
        let required = schema.get("required").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                problems.push(format!("{at}: has no field {name:?}, which the document requires"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (name, v) in fields {
            let at = format!("{at}.{name}");
            match (properties.and_then(|p| p.get(name)), additional) {
                (Some(property), _) => self.check_at(property, v, &at, problems),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(Value::Bool(false))) => problems.push(format!("{at}: the document allows no such field")),
                (None, Some(other)) => self.check_at(other, v, &at, problems),
                (None, None) if properties.is_some() => {
                    problems.push(format!("{at}: the document names no such field"))
                }
                (None, None) => {}
            }
        }
    }
}

/// Whether `value` is of the (or one of the) JSON Schema type(s) named.
fn type_matches(ty: Option<&Value>, value: &Value) -> bool {
    let is = |name: &str| match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => false,
    };
    match ty {
        None => true,
        Some(Value::String(name)) => is(name),
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).any(is),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document() -> Document {
        Document(json!({ "components": { "schemas": { "Thing": {
            "type": "object", "required": ["id"],
            "properties": { "id": { "type": "string" }, "size": { "type": ["integer", "null"] } }
        } } } }))
    }

    #[test]
    fn a_conforming_value_has_no_problems() {
        let doc = document();
        let thing = doc.component("Thing").unwrap();
        assert!(doc.check(thing, &json!({ "id": "a", "size": null })).is_empty());
    }

    #[test]
    fn a_renamed_field_is_both_missing_and_unnamed() {
        let doc = document();
        let problems = doc.check(doc.component("Thing").unwrap(), &json!({ "ident": "a", "size": 1.5 }));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("no field \"id\""));
        assert!(problems.iter().any(|p| p.contains("$.ident")));
        assert!(problems.iter().any(|p| p.contains("$.size")));
    }
}
