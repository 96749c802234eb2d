//! `glassbox config`: an example configuration file, and the effective
//! configuration with the source of each value — read the way `serve`
//! reads it (defaults < file < `GLASSBOX_*` < flags), without starting it.

use serde::{Deserialize, Serialize};

use glassbox_server::config::{EXAMPLE, Entry, Layered, Source};

use crate::render;
use crate::serve::ConfigFlags;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print a complete, commented configuration file: every option at its
    /// default, with why you might change it.
    #[command(after_help = "Example:\n  \
        glassbox config example > glassbox.toml     then edit; `glassbox serve` reads ./glassbox.toml")]
    Example,
    /// Print the configuration `glassbox serve` would run with, and where
    /// each value comes from: default, file, env (GLASSBOX_*) or flag.
    #[command(after_help = "Examples:\n  \
        glassbox config show                                  ./glassbox.toml if present, env, defaults\n  \
        glassbox config show --config /etc/glassbox/glassbox.toml --http 0.0.0.0:7070\n  \
        glassbox config show --json | jq '.values[] | select(.source.kind != \"default\")'\n\n\
        It takes the same configuration flags as `serve`. Precedence: defaults < file < GLASSBOX_* \
        variables < flags. Secrets (the admin token, diagnose.webhook) show only whether they are set.")]
    Show(Box<ShowArgs>),
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: ConfigFlags,
    /// Print {file, values: [{key, value, source}], admin_token} as JSON.
    #[arg(long)]
    json: bool,
}

/// What `config show --json` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Shown {
    /// The configuration file read, if any.
    pub file: Option<String>,
    pub values: Vec<Entry>,
    pub admin_token: AdminToken,
}

/// Whether an admin token is given, never the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminToken {
    pub set: bool,
    /// `env GLASSBOX_ADMIN_TOKEN` when set; else the stored one is kept (or
    /// one generated at the first start).
    pub source: Option<Source>,
}

const ADMIN_TOKEN_VAR: &str = "GLASSBOX_ADMIN_TOKEN";

pub async fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Example => {
            print!("{EXAMPLE}");
            Ok(())
        }
        ConfigCommand::Show(args) => show(*args),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let layered = args.config.load()?;
    let shown = shown(&layered)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    println!("file: {}", shown.file.as_deref().unwrap_or("none (defaults, environment and flags only)"));
    let mut rows: Vec<Vec<String>> = shown
        .values
        .iter()
        .map(|entry| vec![entry.key.clone(), entry.value.to_string(), entry.source.to_string()])
        .collect();
    rows.push(admin_token_row(&shown.admin_token));
    render::table(&["KEY", "VALUE", "SOURCE"], &rows);
    Ok(())
}

fn shown(layered: &Layered) -> anyhow::Result<Shown> {
    let set = crate::serve::admin_token_from_env()?.is_some();
    let source = set.then(|| Source::Env { var: ADMIN_TOKEN_VAR.into() });
    Ok(Shown {
        file: layered.file.as_ref().map(|p| p.display().to_string()),
        values: layered.entries()?,
        admin_token: AdminToken { set, source },
    })
}

fn admin_token_row(token: &AdminToken) -> Vec<String> {
    let (value, source) = match &token.source {
        Some(source) => ("set".to_string(), source.to_string()),
        None => ("unset".to_string(), "the stored one (generated and printed at the first start)".to_string()),
    };
    vec!["admin token".into(), value, source]
}
