//! A change to a device's metadata, as a `PATCH` names it: keys present are
//! changed, keys absent kept, `null` clears; each value checked against
//! its bounds, and every refusal names the key and what it takes.

use glassbox_store::DeviceMeta;
use serde_json::Value;

/// `meta` with `patch` applied, or what in `patch` is wrong. `{"tags":
/// {"site": "north", "old": null}, "group": "pumps", "owner": "acme",
/// "attributes": {"fw": "1.2"}, "cadence": "60s", "certificate_only": true}`.
pub(super) fn patched(mut meta: DeviceMeta, patch: &serde_json::Map<String, Value>) -> Result<DeviceMeta, String> {
    let text = |key: &str, v: &Value, max: usize| -> Result<Option<String>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
            _ => Err(format!("{key} must be a string of 1-{max} characters, or null to clear it")),
        }
    };
    for (key, value) in patch {
        match key.as_str() {
            "group" => meta.group = text("group", value, 128)?,
            "owner" => meta.owner = text("owner", value, 256)?,
            "tags" => {
                let tags = value.as_object().ok_or("tags must be an object of key: value (null removes)")?;
                for (k, v) in tags {
                    match text(&format!("tag {k:?}"), v, 256)? {
                        _ if k.is_empty() || k.len() > 64 => {
                            return Err(format!("tag key {k:?} must be 1-64 characters"));
                        }
                        Some(v) => drop(meta.tags.insert(k.clone(), v)),
                        None => drop(meta.tags.remove(k)),
                    }
                }
            }
            "attributes" => {
                let attributes = value.as_object().ok_or("attributes must be an object (null values remove)")?;
                for (k, v) in attributes {
                    match v {
                        Value::Null => drop(meta.attributes.remove(k)),
                        v => drop(meta.attributes.insert(k.clone(), v.clone())),
                    }
                }
            }
            "cadence" => {
                meta.cadence_seconds = match value {
                    Value::Null => None,
                    Value::String(s) => {
                        let d =
                            humantime::parse_duration(s).map_err(|e| format!("cadence {s:?}: {e}; e.g. 30s, 5m"))?;
                        if d.as_secs() == 0 || d.as_secs() > 7 * 24 * 3600 {
                            return Err("cadence must be between 1s and 7d".into());
                        }
                        Some(d.as_secs())
                    }
                    _ => return Err("cadence must be a duration like \"60s\", or null".into()),
                }
            }
            "certificate_only" => {
                meta.certificate_only = value.as_bool().ok_or("certificate_only must be true or false")?;
            }
            other => {
                return Err(format!(
                    "unknown field {other:?}: use tags, group, owner, attributes, cadence or certificate_only"
                ));
            }
        }
    }
    Ok(meta)
}
