//! The layers a configuration is built from — defaults, a file, `GLASSBOX_*`
//! variables, command-line flags — applied in that order to one TOML tree,
//! each value's source noted as it is set (what `glassbox config show`
//! prints), never guessed afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Config, DEFAULT_FILE, SECRET_KEYS};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Default,
    File { path: PathBuf },
    Env { var: String },
    Flag { flag: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File { path } => write!(f, "file {}", path.display()),
            Source::Env { var } => write!(f, "env {var}"),
            Source::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// A value given on the command line for the key at dotted `key`.
#[derive(Debug, Clone)]
pub struct FlagValue {
    pub key: &'static str,
    /// The flag as typed, e.g. `--http`.
    pub flag: &'static str,
    pub value: toml::Value,
}

/// One key of the effective configuration, for `glassbox config show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Dotted path: `recorder.retention`.
    pub key: String,
    /// The value as TOML would hold it; a secret's is `"[redacted]"` when set.
    pub value: serde_json::Value,
    pub source: Source,
}

/// A configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    /// The file read, if any (`--config`, or `./glassbox.toml` when present).
    pub file: Option<PathBuf>,
    sources: BTreeMap<String, Source>,
}

impl Layered {
    /// Defaults, then `file` (or `./glassbox.toml` if present), then the
    /// `GLASSBOX_*` variables of `env`, then `flags`; validated once.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[FlagValue],
    ) -> anyhow::Result<Self> {
        let mut tree = toml::Table::try_from(Config::default()).context("serializing the default config")?;
        let mut sources = BTreeMap::new();
        let path = file.map(Path::to_path_buf).or_else(|| Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()));
        if let Some(path) = &path {
            let from_file = read_file(path)?;
            merge(&mut tree, from_file, "", &Source::File { path: path.clone() }, &mut sources);
        }
        let from_env = apply_env(&mut tree, env, &mut sources)?;
        for flag in flags {
            set(&mut tree, flag.key, flag.value.clone());
            sources.insert(flag.key.to_string(), Source::Flag { flag: flag.flag.to_string() });
        }
        let config: Config = tree.try_into().with_context(|| match from_env.is_empty() {
            true => "invalid configuration".to_string(),
            false => format!("invalid configuration (environment variables applied: {})", from_env.join(", ")),
        })?;
        config.validate()?;
        Ok(Self { config, file: path, sources })
    }

    /// Every key of the effective configuration with its source, in key
    /// order; secrets show only whether they are set.
    pub fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let tree = toml::Table::try_from(&self.config).context("serializing the configuration")?;
        let mut leaves = Vec::new();
        flatten(&tree, "", &mut leaves);
        leaves
            .into_iter()
            .map(|(key, value)| {
                let source = self.source_of(&key);
                let value = redacted(&key, value);
                Ok(Entry { value: serde_json::to_value(value)?, source, key })
            })
            .collect()
    }

    /// The last layer that set `key` (an array, `[[mqtt.acl]]` included,
    /// is one value).
    fn source_of(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid TOML", path.display()))
}

fn redacted(key: &str, value: toml::Value) -> toml::Value {
    match value {
        toml::Value::String(s) if SECRET_KEYS.contains(&key) && !s.is_empty() => "[redacted]".into(),
        value => value,
    }
}

/// Leaves of `tree` as (dotted key, value); arrays are leaves.
fn flatten(tree: &toml::Table, prefix: &str, into: &mut Vec<(String, toml::Value)>) {
    for (key, value) in tree {
        let path = join(prefix, key);
        match value {
            toml::Value::Table(table) => flatten(table, &path, into),
            value => into.push((path, value.clone())),
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// Sets the leaf at dotted `key`, creating the tables on its way.
fn set(tree: &mut toml::Table, key: &str, value: toml::Value) {
    let (path, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let mut table = tree;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let entry = table.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        table = next;
    }
    table.insert(leaf.to_string(), value);
}

fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in from {
        let path = join(prefix, &key);
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from, &path, source, sources),
            (_, value) => {
                sources.insert(path, source.clone());
                into.insert(key, value);
            }
        }
    }
}

/// Applies `GLASSBOX_<PATH>` variables to the keys the default config has;
/// returns the names of those applied.
fn apply_env(
    tree: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    sources: &mut BTreeMap<String, Source>,
) -> anyhow::Result<Vec<String>> {
    let vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("GLASSBOX_")).collect();
    let mut applied = Vec::new();
    apply_env_at(tree, "", &vars, &mut applied)?;
    for (key, var) in &applied {
        sources.insert(key.clone(), Source::Env { var: var.clone() });
    }
    Ok(applied.into_iter().map(|(_, var)| var).collect())
}

/// Walks `tree`; `applied` gets (dotted key, variable) for each variable used.
fn apply_env_at(
    tree: &mut toml::Table,
    prefix: &str,
    vars: &[(String, String)],
    applied: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    for (key, value) in tree.iter_mut() {
        let path = join(prefix, key);
        if let toml::Value::Table(table) = value {
            apply_env_at(table, &path, vars, applied)?;
            continue;
        }
        let name = env_var(&path);
        let Some((_, raw)) = vars.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        *value = parse_env(value, &name, raw)?;
        applied.push((path, name));
    }
    Ok(())
}

/// `recorder.retention` → `GLASSBOX_RECORDER_RETENTION`.
pub fn env_var(key: &str) -> String {
    format!("GLASSBOX_{}", key.replace('.', "_").to_uppercase())
}

/// A variable's text as the type the key's default has.
fn parse_env(default: &toml::Value, name: &str, raw: &str) -> anyhow::Result<toml::Value> {
    Ok(match default {
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.parse().with_context(|| format!("{name}={raw:?} is not a whole number"))?)
        }
        toml::Value::Float(_) => {
            toml::Value::Float(raw.parse().with_context(|| format!("{name}={raw:?} is not a number"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.parse().with_context(|| format!("{name}={raw:?} is not true or false"))?)
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn source(layered: &Layered, key: &str) -> Source {
        layered.entries().unwrap().into_iter().find(|e| e.key == key).unwrap().source
    }

    #[test]
    fn each_value_names_the_layer_that_set_it_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"127.0.0.1:1\"\n[mqtt]\nlisten = \"127.0.0.1:2\"\n[recorder]\nretention = \"1d\"\n",
        )
        .unwrap();
        let flags = [FlagValue { key: "http.listen", flag: "--http", value: "127.0.0.1:4".into() }];
        let env = env(&[("GLASSBOX_HTTP_LISTEN", "127.0.0.1:3"), ("GLASSBOX_MQTT_LISTEN", "127.0.0.1:5")]);
        let layered = Layered::load(Some(&file), env, &flags).unwrap();
        assert_eq!(layered.config.http.listen, "127.0.0.1:4", "a flag wins over env and file");
        assert_eq!(source(&layered, "http.listen"), Source::Flag { flag: "--http".into() });
        assert_eq!(layered.config.mqtt.listen, "127.0.0.1:5", "env wins over the file");
        assert_eq!(source(&layered, "mqtt.listen"), Source::Env { var: "GLASSBOX_MQTT_LISTEN".into() });
        assert_eq!(source(&layered, "recorder.retention"), Source::File { path: file.clone() });
        assert_eq!(source(&layered, "recorder.dedup_window"), Source::Default);
    }

    #[test]
    fn secrets_show_only_that_they_are_set() {
        let layered =
            Layered::load(None, env(&[("GLASSBOX_DIAGNOSE_WEBHOOK", "https://hooks.example/T0K3N")]), &[]).unwrap();
        let entries = layered.entries().unwrap();
        let webhook = entries.iter().find(|e| e.key == "diagnose.webhook").unwrap();
        assert_eq!(webhook.value, serde_json::json!("[redacted]"));
        assert!(!format!("{entries:?}").contains("T0K3N"));
    }

    #[test]
    fn env_var_names_follow_the_key_path() {
        assert_eq!(env_var("recorder.retention"), "GLASSBOX_RECORDER_RETENTION");
        assert_eq!(env_var("data_dir"), "GLASSBOX_DATA_DIR");
    }
}
