//! `glassbox cost`: what functions cost, by function, feature or device,
//! from the invocation records (the price model is `[cost]` in the
//! server's configuration), each with its trend against the window before;
//! then what drives it (the costliest chains, each trigger source's share,
//! `drivers`), and spend against each budget with when it runs out at the
//! current rate.

mod drivers;

use std::collections::HashMap;

use glassbox_api_types::MetricRange;
use serde_json::Value;

use crate::Remote;
use crate::render;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum By {
    Function,
    Feature,
    Device,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    glassbox cost --by function --since 24h\n  \
    glassbox cost --by feature --since 7d --json\n  \
    glassbox cost --by device --since 1h       which devices' events cost the most\n\n\
    Each total is shown beside the window before it (PREVIOUS, TREND); then the chains that cost the \
    most and what triggers the cost (a device, an HTTP route, a schedule or an event), read from at most \
    10,000 invocation records of the window.\n\n\
    Cost is per invocation: a price per request plus a price per GiB-second of the function's \
    memory limit for its wall time ([cost] per_request, per_gib_second). Costs are in the currency of \
    those prices, shown as $: the defaults are list prices in US dollars.")]
pub struct CostArgs {
    /// What to total by.
    #[arg(long, value_enum, default_value = "function")]
    by: By,
    /// From this time: RFC 3339 or a duration ago (15m, 2h, 7d).
    #[arg(long, default_value = "1h")]
    since: String,
    #[command(flatten)]
    remote: Remote,
    /// Print [{key, cost, invocations, previous_cost}] as JSON (cost in the prices' currency, $ by default).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: CostArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let (metric, label) = match args.by {
        By::Function => ("function_cost", "function"),
        By::Feature => ("feature_cost", "feature"),
        By::Device => ("device_cost", "device"),
    };
    let path = format!("/api/v1/metrics/{metric}");
    let query = [("since", args.since.clone()), ("by", label.to_string())];
    let answer: MetricRange = client.fetch(&path, &query).await?;
    let rows: Vec<(String, f64, u64)> =
        crate::metrics::totals(&answer, label).into_iter().map(|t| (t.key, t.sum, t.count)).collect();
    // The window just before, as long: what each total was then.
    let before = answer.since - (answer.until - answer.since);
    let query = [("since", before.to_rfc3339()), ("until", answer.since.to_rfc3339()), ("by", label.to_string())];
    let earlier: MetricRange = client.fetch(&path, &query).await?;
    let previous: HashMap<String, f64> =
        crate::metrics::totals(&earlier, label).into_iter().map(|t| (t.key, t.sum)).collect();
    let was = |key: &str| previous.get(key).copied().unwrap_or(0.0);
    if args.json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(key, cost, n)| {
                serde_json::json!({ label: key, "cost": cost, "invocations": n, "previous_cost": was(key) })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    // A fold from +0.0: `sum` of no floats is -0.0, printed as "$-0.000".
    let total = rows.iter().fold(0.0, |total, r| total + r.1);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(key, cost, n)| {
            let share = if total > 0.0 { 100.0 * cost / total } else { 0.0 };
            let before = was(key);
            vec![
                key.clone(),
                format!("${cost:.9}"),
                n.to_string(),
                format!("{share:.1}%"),
                format!("${before:.9}"),
                trend(before, *cost),
            ]
        })
        .collect();
    render::table(&[&label.to_uppercase(), "COST $", "INVOCATIONS", "SHARE", "PREVIOUS $", "TREND"], &table);
    println!("total ${total:.9} since {} (the window before: {})", render::clock(answer.since), render::clock(before));
    drivers::read(&client, answer.since, answer.until).await?.print();
    // Spend against each budget, after the totals (none set: nothing more).
    let budgets: glassbox_api_types::BudgetList = client.fetch("/api/v1/budgets", &[]).await?;
    if !budgets.budgets.is_empty() {
        println!();
        crate::budgets::table(&budgets.budgets);
    }
    Ok(())
}

/// `+25%`, `-10%`, `new` (nothing before), `=`.
fn trend(before: f64, now: f64) -> String {
    match (before > 0.0, now > 0.0) {
        (false, false) => "=".into(),
        (false, true) => "new".into(),
        (true, _) => format!("{:+.0}%", 100.0 * (now - before) / before),
    }
}
