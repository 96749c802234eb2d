//! `glassbox tokens …`: named API tokens with roles (admin only).

use glassbox_api_types::{CreateToken, TokenCreatedAnswer, TokenList, TokenView, Warned};
use glassbox_core::access::Role;

use crate::Remote;
use crate::render;

const ROLES: &str = "Roles (docs/security.md has the whole table):
  admin               everything, including tokens
  operator            read, control devices, clear, replay
  deployer            read, deploy, roll back, promote and delete functions
  viewer              read only
  ingest              POST events only (MQTT: publish outside $glassbox/)
  device-provisioner  register and re-key devices, issue certificates";

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Create a named token with a role; prints the token, shown only this once.
    #[command(after_help = format!("{ROLES}

Examples:
  glassbox tokens create ci --role deployer --expires 90d
  glassbox tokens create grafana --role viewer --json
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/v1/functions
  mosquitto_sub -h 127.0.0.1 -p 1883 -u grafana -P \"$TOKEN\" -t 'devices/#'

The server keeps only a salted hash: a lost token cannot be shown again; revoke it and create another."))]
    Create(CreateArgs),
    /// Every token: role, who created it, last use, expiry, revocation.
    #[command(after_help = "glassbox tokens list\nglassbox tokens list --json | jq '.[] | select(.revoked == null)'")]
    List(ListArgs),
    /// Revoke a token: it stops working at once (HTTP answers 401), and MQTT
    /// connections made with it are closed. Its name stays taken.
    #[command(after_help = "glassbox tokens revoke ci\nglassbox events query --type token.revoked")]
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The token's name: lowercase letters, digits, . _ -, up to 63; also its MQTT user name.
    name: String,
    /// What it may do: admin, operator, deployer, viewer, ingest or device-provisioner.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// When it stops working: a duration from now (90d, 12h) or an RFC 3339 time. Default: never.
    #[arg(long)]
    expires: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON: name, role, token, expires.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
    /// Print a JSON array of tokens.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The token's name.
    name: String,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: glassbox_core::access::UnknownRole| e.to_string())
}

pub async fn run(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create(a) => create(a).await,
        TokensCommand::List(a) => list(a).await,
        TokensCommand::Revoke(a) => {
            let path = format!("/api/v1/tokens/{}", crate::client::segment(&a.name));
            let revoked: Warned<TokenView> = a.remote.client()?.delete_as(&path).await?;
            match a.json {
                true => println!("{}", serde_json::to_string(&revoked.answer)?),
                false => println!("revoked token {}", revoked.answer.name),
            }
            warn(revoked.warning.as_deref());
            Ok(())
        }
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let body = CreateToken { name: a.name, role: a.role.to_string(), expires: a.expires };
    let created: Warned<TokenCreatedAnswer> =
        a.remote.client()?.post_as("/api/v1/tokens", "application/json", serde_json::to_string(&body)?).await?;
    let token = &created.answer;
    match a.json {
        true => println!("{}", serde_json::to_string(token)?),
        false => {
            let expires = token.expires.map_or_else(|| "never".to_string(), render::clock);
            println!("token {} (role {}, expires {expires}):\n{}", token.name, token.role, token.token);
            eprintln!(
                "shown only now: store it; use it as `Authorization: Bearer <token>` or as the MQTT password \
                       with user name {}",
                token.name
            );
        }
    }
    warn(created.warning.as_deref());
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let list: TokenList = a.remote.client()?.fetch("/api/v1/tokens", &[]).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list.tokens)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list.tokens.iter().map(row).collect();
    render::table(&["NAME", "ROLE", "CREATED BY", "CREATED", "LAST USED", "EXPIRES", "REVOKED"], &rows);
    Ok(())
}

fn row(t: &TokenView) -> Vec<String> {
    let when =
        |at: Option<chrono::DateTime<chrono::Utc>>, none: &str| at.map_or_else(|| none.to_string(), render::clock);
    vec![
        t.name.clone(),
        t.role.to_string(),
        t.created_by.clone(),
        render::clock(t.created),
        when(t.last_used, "never"),
        when(t.expires, "never"),
        match (&t.revoked, &t.revoked_by) {
            (Some(at), Some(by)) => format!("{} by {by}", render::clock(*at)),
            (Some(at), None) => render::clock(*at),
            _ => "-".into(),
        },
    ]
}

fn warn(warning: Option<&str>) {
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
}
