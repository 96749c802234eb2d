//! What a deploy would change, without changing anything: `glassbox apply`
//! shows this plan for each function of a manifest before it deploys, and
//! deploys only what it shows as created or updated.

use glassbox_store::FunctionVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Spec;

/// What applying a function's entry would do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// No live version: the deploy makes version 1 (or the next) live.
    Create,
    /// The component or the spec differs from the live version's.
    Update,
    /// The live version has this component and this spec already.
    Unchanged,
    /// Live, deployed by the app, and no longer in its manifest.
    Delete,
}

/// One field the deploy would change: its live and its wanted value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `component` (its digest), or the spec's field (`timeout_ms`, …).
    pub field: String,
    pub live: Value,
    pub wanted: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub function: String,
    pub change: Change,
    /// The live version the change replaces or keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

impl Plan {
    /// Compares the wanted component (`digest`) and spec with the live
    /// version (`None`: there is none).
    pub fn compare(function: &str, live: Option<&FunctionVersion>, digest: &str, spec: &Spec) -> Self {
        let Some(live) = live else {
            return Self { function: function.into(), change: Change::Create, live_version: None, differences: vec![] };
        };
        let mut differences = Vec::new();
        if live.digest != digest {
            differences.push(Difference {
                field: "component".into(),
                live: live.digest.clone().into(),
                wanted: digest.into(),
            });
        }
        // Parsed and written again, an older version's spec gains the
        // defaults of fields added since, as a deploy of it today would.
        let live_spec = serde_json::from_str::<Spec>(&live.spec).map_or(Value::Null, |s| to_value(&s));
        differences.extend(fields(&live_spec, &to_value(spec)));
        let change = if differences.is_empty() { Change::Unchanged } else { Change::Update };
        Self { function: function.into(), change, live_version: Some(live.version), differences }
    }
}

fn to_value(spec: &Spec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// The fields of two JSON objects that differ, in a stable order; a field
/// one of them leaves out counts as `null` there.
fn fields(live: &Value, wanted: &Value) -> Vec<Difference> {
    let empty = serde_json::Map::new();
    let (l, w) = (live.as_object().unwrap_or(&empty), wanted.as_object().unwrap_or(&empty));
    let mut names: Vec<&String> = l.keys().chain(w.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| (name, l.get(name).unwrap_or(&Value::Null), w.get(name).unwrap_or(&Value::Null)))
        .filter(|(_, l, w)| l != w)
        .map(|(name, l, w)| Difference { field: name.clone(), live: l.clone(), wanted: w.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(digest: &str, spec: &Spec) -> FunctionVersion {
        FunctionVersion {
            name: "f".into(),
            version: 3,
            digest: digest.into(),
            spec: serde_json::to_string(spec).unwrap(),
            deployed_at: chrono::Utc::now(),
            deployed_by: glassbox_core::Principal::admin(glassbox_core::AuthMethod::BearerToken, None).label(),
            live: true,
        }
    }

    fn spec() -> Spec {
        Spec { triggers: vec!["mqtt:a/#".into()], ..Spec::default() }
    }

    #[test]
    fn no_live_version_is_a_create() {
        let plan = Plan::compare("f", None, "sha256:aa", &spec());
        assert_eq!((plan.change, plan.live_version), (Change::Create, None));
    }

    #[test]
    fn the_same_component_and_spec_is_unchanged() {
        let plan = Plan::compare("f", Some(&version("sha256:aa", &spec())), "sha256:aa", &spec());
        assert_eq!((plan.change, plan.live_version, plan.differences.len()), (Change::Unchanged, Some(3), 0));
    }

    #[test]
    fn each_difference_is_named_with_both_values() {
        let wanted = Spec { timeout_ms: 2000, app: Some("shop".into()), ..spec() };
        let plan = Plan::compare("f", Some(&version("sha256:aa", &spec())), "sha256:bb", &wanted);
        assert_eq!(plan.change, Change::Update);
        let named: Vec<(&str, String, String)> =
            plan.differences.iter().map(|d| (d.field.as_str(), d.live.to_string(), d.wanted.to_string())).collect();
        assert_eq!(
            named,
            [
                ("component", r#""sha256:aa""#.into(), r#""sha256:bb""#.into()),
                ("app", "null".into(), r#""shop""#.into()),
                ("timeout_ms", "5000".into(), "2000".into()),
            ]
        );
    }

    #[test]
    fn a_field_added_since_an_old_version_is_not_a_difference() {
        let mut old = version("sha256:aa", &spec());
        let mut text: Value = serde_json::from_str(&old.spec).unwrap();
        text.as_object_mut().unwrap().remove("reuse");
        old.spec = text.to_string();
        assert_eq!(Plan::compare("f", Some(&old), "sha256:aa", &spec()).change, Change::Unchanged);
    }
}
