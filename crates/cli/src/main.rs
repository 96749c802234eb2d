//! `glassbox`: the server (`serve`) and a client of its API for the
//! operability verbs. Every read command takes `--json` for scripts and
//! prints a table for people.

mod anomaly;
mod apply;
mod audit;
mod bench;
mod budgets;
mod certificates;
mod client;
mod config;
mod control;
mod cost;
mod debug;
mod demo;
mod devices;
mod diagnose;
mod events;
mod functions;
mod inspect;
mod logs;
mod metrics;
mod monitor;
mod mqtt;
mod new;
mod perimeter;
mod render;
mod serve;
mod simulate;
mod tokens;
mod trace;

use clap::{Parser, Subcommand};

use crate::client::Client;

/// Events are allocated on ingress threads and freed on the recorder's:
/// mimalloc handles such cross-thread frees without glibc's arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Glassbox: devices and functions with nothing hidden. Every event has an
/// id, a correlation chain and a recorded life you can query and trace.
#[derive(Parser)]
#[command(name = "glassbox", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Start here:\n  glassbox serve                     run the server (data in ./glassbox-data)\n  \
    export GLASSBOX_TOKEN=gbx_...      the admin token it prints at first start\n  \
    glassbox events send --source demo --type hello --data '{\"n\":1}'\n  \
    glassbox events query              newest events first\n  \
    glassbox trace ID                  the whole chain of an event"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How to reach a running server.
#[derive(clap::Args, Clone)]
struct Remote {
    /// The server's HTTP API address.
    #[arg(long, env = "GLASSBOX_SERVER", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// Operator bearer token (falls back to GLASSBOX_ADMIN_TOKEN).
    #[arg(long, env = "GLASSBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    fn client(&self) -> anyhow::Result<Client> {
        let token = self.token.clone().or_else(|| std::env::var("GLASSBOX_ADMIN_TOKEN").ok()).filter(|t| !t.is_empty());
        Client::new(&self.server, token)
    }
}

/// Ends a command with its own exit code, once it has said what there is
/// to say (the code is documented with the command, e.g. 124: a
/// `control send --wait` that ran out of time).
#[derive(Debug)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Subcommand)]
enum Command {
    /// Try it all at once: the server on a temporary store, a simulated
    /// fleet, example functions, a tour of every verb, and scripted incidents.
    Demo(demo::DemoArgs),
    /// Run the server: HTTP API, ingest pipeline and flight recorder.
    Serve(serve::ServeArgs),
    /// The server's configuration: an example file, the effective values
    /// and where each comes from.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Query, inspect, follow and send events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Register devices and manage their identity.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Named API tokens with roles: create (shown once), list, revoke.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// The audit log: who changed what, where and when; verify it, prove an
    /// entry, export signed checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The built-in certificate authority: its certificate.
    #[command(subcommand)]
    Ca(certificates::CaCommand),
    /// The MQTT broker's retained messages: list and clear them.
    #[command(subcommand)]
    Mqtt(mqtt::MqttCommand),
    /// Steer devices: desired state (shadows).
    #[command(subcommand)]
    Control(control::ControlCommand),
    /// Scaffold a function (js, python or rust) with its build script, and
    /// add it to the app manifest, glassbox.app.toml.
    New(new::NewArgs),
    /// Deploy and watch functions (WebAssembly components run on events).
    #[command(subcommand)]
    Functions(functions::FunctionsCommand),
    /// Make the server's functions what an app manifest (glassbox.app.toml)
    /// says: show the plan, then deploy what changed and delete what it dropped.
    Apply(apply::ApplyArgs),
    /// Debug: replay an event against any function version.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Show the whole correlation chain of an event as a tree, with each
    /// event's states and the time between them.
    Trace(trace::TraceArgs),
    /// Read function and platform log lines by chain, event, function,
    /// device, level and time; follow them live.
    Logs(logs::LogsArgs),
    /// Query the metrics derived from the recorder as time series.
    Metrics(metrics::MetricsArgs),
    /// A live view: rates, errors, latency, top functions and devices, anomalies.
    Monitor(monitor::MonitorArgs),
    /// What is abnormal, since when, what it affects, and the likely causes.
    Diagnose(diagnose::DiagnoseArgs),
    /// What functions cost, by function, feature or device; spend against each budget.
    Cost(cost::CostArgs),
    /// Budgets per function, feature or device group: a limit per window, and alert, throttle or stop.
    #[command(subcommand)]
    Budgets(budgets::BudgetsCommand),
    /// Every way in and out: listeners, public routes, tokens, device
    /// credentials, egress rules and risky settings, each with its risk.
    Perimeter(perimeter::PerimeterArgs),
    /// Run a simulated fleet of devices over MQTT, with faults to inject.
    Simulate(simulate::SimulateArgs),
    /// Measure Glassbox on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Anomaly detection: run the streaming detector over your own history.
    #[command(subcommand)]
    Anomaly(anomaly::AnomalyCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A server keeps running whatever becomes of its stdout.
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_when_the_reader_leaves();
    }
    // mimalloc asks for transparent huge pages and hands freed memory back
    // to the kernel; under a steady churn of allocations the kernel then
    // zeroes 2 MiB pages over and over (a seventh of the server's CPU time
    // in a profile of the functions benchmark). Ordinary pages avoid that.
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: could not turn off transparent huge pages: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result = runtime.map_err(anyhow::Error::from).and_then(|rt| {
        let result = rt.block_on(async {
            match cli.command {
                Command::Demo(args) => demo::run(args).await,
                Command::Serve(args) => serve::run(args).await,
                Command::Config(command) => config::run(command).await,
                Command::Events(command) => events::run(command).await,
                Command::Devices(command) => devices::run(command).await,
                Command::Tokens(command) => tokens::run(command).await,
                Command::Audit(command) => audit::run(command).await,
                Command::Control(command) => control::run(command).await,
                Command::Ca(command) => certificates::ca(command).await,
                Command::Mqtt(command) => mqtt::run(command).await,
                Command::Functions(command) => functions::run(command).await,
                Command::Apply(args) => apply::run(args).await,
                Command::New(args) => new::run(args),
                Command::Debug(command) => debug::run(command).await,
                Command::Trace(args) => trace::run(args).await,
                Command::Logs(args) => logs::run(args).await,
                Command::Metrics(args) => metrics::run(args).await,
                Command::Monitor(args) => monitor::run(args).await,
                Command::Diagnose(args) => diagnose::run(args).await,
                Command::Cost(args) => cost::run(args).await,
                Command::Budgets(command) => budgets::run(command).await,
                Command::Perimeter(args) => perimeter::run(args).await,
                Command::Simulate(args) => simulate::run(args).await,
                Command::Bench(command) => bench::run(command).await,
                Command::Anomaly(command) => anomaly::run(command).await,
            }
        });
        // Every command has finished its work (a server has stopped and
        // flushed) when `block_on` returns; what may still run is a read of
        // stdin waiting for a line (`demo`, `simulate`), which would hold the
        // process until Enter if the runtime waited for it.
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) && stdout_reader_gone() => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<Exit>() => std::process::ExitCode::from(e.downcast_ref::<Exit>().map_or(1, |exit| exit.0)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `glassbox … | head` closes the pipe before the output ends. Like other
/// Unix tools, end then without a word: `println!` would panic, and a
/// command writing through `io::Write` would report a broken pipe.
fn end_quietly_when_the_reader_leaves() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Whether stdout is a pipe whose reader has gone (rather than, say, a
/// socket to a broker that closed, which is worth an error).
fn stdout_reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    poll(&mut fds, Some(&zero)).is_ok() && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_definition_is_valid() {
        // Catches clashing flags (e.g. a --version of our own) before a user does.
        super::Cli::command().debug_assert();
    }
}
