//! `glassbox.app.toml`: an app's functions — component, triggers, limits,
//! egress, feature — kept in git beside their code, applied with
//! `glassbox apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The manifest's name when none is given.
pub const DEFAULT_FILE: &str = "glassbox.app.toml";
/// Largest manifest read: a text file of function entries.
const FILE_BYTES_MAX: u64 = 1 << 20;
/// Most functions in one app.
pub const FUNCTIONS_MAX: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's name: apply manages the functions it deployed under it
    /// (and deletes those the manifest no longer lists), no others.
    pub app: String,
    #[serde(default)]
    pub functions: BTreeMap<String, Entry>,
}

/// One function: what `glassbox functions deploy` takes as flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The component's file, relative to the manifest.
    pub component: PathBuf,
    /// A shell command that builds the component, run from the manifest's
    /// directory by `apply --build`.
    pub build: Option<String>,
    pub triggers: Vec<String>,
    pub feature: Option<String>,
    pub timeout: Option<String>,
    pub memory: Option<String>,
    pub concurrency: Option<u32>,
    pub rate: Option<String>,
    pub retries: Option<u32>,
    pub max_age: Option<String>,
    pub hop_limit: Option<u32>,
    pub reuse: Option<u32>,
    #[serde(default)]
    pub egress: Vec<String>,
    #[serde(default)]
    pub egress_trace: Vec<String>,
    #[serde(default)]
    pub record_body: bool,
    #[serde(default)]
    pub record_headers: Vec<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let size = std::fs::metadata(path)
            .with_context(|| {
                format!("reading {} (write one as docs/apply.md shows, or run glassbox new)", path.display())
            })?
            .len();
        if size > FILE_BYTES_MAX {
            bail!("{} is {size} bytes: a manifest is at most {FILE_BYTES_MAX}", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is not a valid manifest", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Self = toml::from_str(text)?;
        if manifest.functions.is_empty() {
            bail!("it lists no functions: add a [functions.NAME] table with component and triggers");
        }
        if manifest.functions.len() > FUNCTIONS_MAX {
            bail!("it lists {} functions; an app holds at most {FUNCTIONS_MAX}: split it", manifest.functions.len());
        }
        for (name, entry) in &manifest.functions {
            if entry.triggers.is_empty() {
                bail!("[functions.{name}] has no triggers: give triggers = [\"mqtt:devices/+/telemetry\"] or another");
            }
        }
        Ok(manifest)
    }
}

impl Entry {
    /// The deploy's query parameters (the API's `DeployParams`), with the
    /// app that owns it (none: deployed by hand). `functions deploy` sends
    /// its flags through this too.
    pub fn deploy_params(&self, app: Option<&str>) -> Vec<(&'static str, String)> {
        let mut query = vec![("trigger", self.triggers.join(","))];
        query.extend(app.map(|app| ("app", app.to_string())));
        let text = [
            ("feature", &self.feature),
            ("timeout", &self.timeout),
            ("memory", &self.memory),
            ("rate", &self.rate),
            ("max_age", &self.max_age),
        ];
        query.extend(text.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))));
        let numbers = [
            ("concurrency", self.concurrency),
            ("retries", self.retries),
            ("hop_limit", self.hop_limit),
            ("reuse", self.reuse),
        ];
        query.extend(numbers.into_iter().filter_map(|(k, v)| v.map(|v| (k, v.to_string()))));
        let lists =
            [("egress", &self.egress), ("egress_trace", &self.egress_trace), ("record_headers", &self.record_headers)];
        query.extend(lists.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k, v.join(","))));
        if self.record_body {
            query.push(("record_body", "true".into()));
        }
        query
    }

    /// The component's path, relative to the manifest's directory.
    pub fn component_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
app = "greenhouse"

[functions.telemetry]
component = "telemetry.wasm"
triggers = ["mqtt:devices/+/telemetry", "schedule:0 9 * * 1,3,5"]
timeout = "2s"
retries = 0
egress = ["api.example.com", "*.example.org"]

[functions.hello]
component = "http/hello.wasm"
build = "http/build.sh"
triggers = ["http:GET /hello"]
record_body = true
"#;

    #[test]
    fn functions_and_their_options_are_read() {
        let m = Manifest::parse(TWO).unwrap();
        assert_eq!(m.app, "greenhouse");
        assert_eq!(m.functions.keys().collect::<Vec<_>>(), ["hello", "telemetry"]);
        assert_eq!(m.functions["hello"].build.as_deref(), Some("http/build.sh"));
    }

    #[test]
    fn deploy_params_carry_every_option_given_and_the_app() {
        let m = Manifest::parse(TWO).unwrap();
        let params = m.functions["telemetry"].deploy_params(Some("greenhouse"));
        let want = [
            ("trigger", "mqtt:devices/+/telemetry,schedule:0 9 * * 1,3,5"),
            ("app", "greenhouse"),
            ("timeout", "2s"),
            ("retries", "0"),
            ("egress", "api.example.com,*.example.org"),
        ];
        assert_eq!(params, want.map(|(k, v)| (k, v.to_string())));
        assert!(m.functions["hello"].deploy_params(Some("greenhouse")).contains(&("record_body", "true".into())));
    }

    #[test]
    fn mistakes_are_named() {
        let misspelt = Manifest::parse("app = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\ntrigers = [\"mqtt:a\"]\n");
        assert!(format!("{:#}", misspelt.unwrap_err()).contains("unknown field `trigers`"));
        let no_triggers = Manifest::parse("app = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\ntriggers = []\n");
        assert!(no_triggers.unwrap_err().to_string().contains("[functions.f] has no triggers"));
        assert!(Manifest::parse("app = \"a\"\n").unwrap_err().to_string().contains("lists no functions"));
        assert!(
            format!(
                "{:#}",
                Manifest::parse("[functions.f]\ncomponent = \"f.wasm\"\ntriggers = [\"mqtt:a\"]\n").unwrap_err()
            )
            .contains("missing field `app`")
        );
    }
}
