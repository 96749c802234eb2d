//! `glassbox perimeter`: every way in and out of the platform, each with
//! its risk, read from `GET /api/v1/perimeter`.

use glassbox_api_types::perimeter::{Note, Perimeter, Risk};

use crate::Remote;
use crate::render;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox perimeter                 listeners, routes, tokens, devices, egress, risky settings\n  \
    glassbox perimeter --json | jq '.. | objects | select(.risk == \"high\")'\n\n\
    Each line ends in a risk (ok, warn, high) and a note on why. Fix a high one first: \
    docs/security.md says how for each.")]
pub struct PerimeterArgs {
    #[command(flatten)]
    remote: Remote,
    /// Print the whole perimeter as JSON (keys listeners, routes, tokens, devices, egress, settings).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PerimeterArgs) -> anyhow::Result<()> {
    let perimeter: Perimeter = args.remote.client()?.fetch("/api/v1/perimeter", &[]).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&perimeter)?);
        return Ok(());
    }
    print(&perimeter);
    Ok(())
}

fn print(p: &Perimeter) {
    section("Listeners");
    let rows = p.listeners.iter().map(|l| {
        let tls = if l.tls { "tls" } else { "plain" };
        row([l.name.clone(), l.address.clone(), format!("{} {tls}", l.protocol), l.authentication.join(", ")], &l.note)
    });
    render::table(&["NAME", "ADDRESS", "PROTOCOL", "WHO MAY LOG IN", "RISK", "NOTE"], &rows.collect::<Vec<_>>());
    section("Public routes");
    let rows = p.routes.iter().map(|r| {
        let limit = r.rate_limit_per_second.map_or("none".into(), |n| format!("{n}/s"));
        row(
            [format!("{} {}", r.method, r.path), format!("{} v{}", r.function, r.version), r.listener.clone(), limit],
            &r.note,
        )
    });
    table_or_none(&["ROUTE", "FUNCTION", "LISTENER", "RATE LIMIT", "RISK", "NOTE"], rows.collect());
    section("Tokens");
    let rows = p.tokens.iter().map(|t| {
        let when = |t: Option<chrono::DateTime<chrono::Utc>>, none: &str| t.map_or(none.into(), render::clock);
        row([t.name.clone(), t.role.clone(), when(t.last_used, "never"), when(t.expires, "never")], &t.note)
    });
    render::table(&["NAME", "ROLE", "LAST USED", "EXPIRES", "RISK", "NOTE"], &rows.collect::<Vec<_>>());
    section("Devices");
    let d = &p.devices;
    println!(
        "{} registered: {} secret only, {} secret and certificate, {} certificate only, {} disabled — {} {}",
        d.total,
        d.secret_only,
        d.secret_and_certificate,
        d.certificate_only,
        d.disabled,
        risk(d.note.risk),
        d.note.note
    );
    println!("certificates in force, soonest to end first:");
    let rows =
        d.expiring.iter().map(|c| row([c.device.clone(), c.serial.clone(), render::clock(c.not_after)], &c.note));
    table_or_none(&["DEVICE", "CERTIFICATE", "NOT AFTER", "RISK", "NOTE"], rows.collect());
    section("Egress");
    let rows = p.egress.iter().map(|e| {
        let rules = if e.rules.is_empty() { "(none: denied)".into() } else { e.rules.join(", ") };
        row([format!("{} v{}", e.function, e.version), rules], &e.note)
    });
    table_or_none(&["FUNCTION", "ALLOWED", "RISK", "NOTE"], rows.collect());
    section("Settings");
    let rows = p.settings.iter().map(|s| row([s.key.clone(), s.value.clone()], &s.note));
    table_or_none(&["KEY", "VALUE", "RISK", "NOTE"], rows.collect());
}

/// A table row: its cells, then the risk and the note.
fn row<const N: usize>(cells: [String; N], note: &Note) -> Vec<String> {
    let mut row = cells.to_vec();
    row.extend([risk(note.risk).to_string(), note.note.clone()]);
    row
}

fn risk(risk: Risk) -> &'static str {
    match risk {
        Risk::Ok => "ok",
        Risk::Warn => "warn",
        Risk::High => "HIGH",
    }
}

fn section(title: &str) {
    println!("\n{title}");
}

fn table_or_none(headers: &[&str], rows: Vec<Vec<String>>) {
    match rows.is_empty() {
        true => println!("  (none)"),
        false => render::table(headers, &rows),
    }
}
