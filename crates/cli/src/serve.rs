//! `glassbox serve`.

use std::path::PathBuf;

use anyhow::Context;
use glassbox_server::Config;

#[derive(clap::Args)]
#[command(after_help = "Configuration: defaults < glassbox.toml (or --config) < GLASSBOX_* variables < flags.\n\
    Each key maps to a variable named after its path: recorder.retention -> GLASSBOX_RECORDER_RETENTION.\n\
    The admin token: GLASSBOX_ADMIN_TOKEN, or generated at first start and printed once.")]
pub struct ServeArgs {
    /// Configuration file (default: ./glassbox.toml if it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the recorder keeps its data (data_dir; default ./glassbox-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address (http.listen; default 127.0.0.1:7070).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// MQTT listener address (mqtt.listen; default 127.0.0.1:1883).
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<String>,
    /// MQTT-over-TLS address (mqtt.tls_listen; default 127.0.0.1:8883),
    /// served when --tls-cert and --tls-key are given.
    #[arg(long, value_name = "ADDR")]
    mqtts: Option<String>,
    /// PEM certificate chain for MQTT over TLS (mqtt.tls_cert).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for MQTT over TLS (mqtt.tls_key).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Open mode: accept MQTT clients without credentials on any topic but
    /// mqtt.deny_subscribe (for conformance and interop suites; logged loudly).
    #[arg(long)]
    allow_anonymous: bool,
    /// Export spans and function logs over OTLP/HTTP to this endpoint
    /// (otel.endpoint), e.g. http://127.0.0.1:4318.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging("info");
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(http) = args.http {
        config.http.listen = http;
    }
    if let Some(mqtt) = args.mqtt {
        config.mqtt.listen = mqtt;
    }
    if let Some(mqtts) = args.mqtts {
        config.mqtt.tls_listen = mqtts;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.mqtt.tls_cert = cert.display().to_string();
        config.mqtt.tls_key = key.display().to_string();
    }
    if args.allow_anonymous {
        config.mqtt.allow_anonymous = true;
    }
    if let Some(endpoint) = args.otlp_endpoint {
        config.otel.endpoint = endpoint;
    }
    config.validate()?;
    let admin_token = admin_token_from_env()?;
    let data_dir = config.data_dir.clone();
    let running = glassbox_server::start(config.clone(), admin_token.as_deref()).await?;
    if let Some(token) = &running.generated_token {
        println!("admin token (shown once, stored only as a hash): {token}");
        println!("  export GLASSBOX_TOKEN={token}");
    }
    let mqtts = running.mqtts_addr.map(|a| format!(" mqtts={a}")).unwrap_or_default();
    println!(
        "glassbox ready: http=http://{} mqtt={}{mqtts} data={} node={}",
        running.http_addr,
        running.mqtt_addr,
        data_dir.display(),
        config.node
    );
    let interrupted = interrupted()?;
    let signal = async move {
        interrupted.await;
        tracing::info!("shutting down: finishing requests and flushing the recorder");
    };
    running.run_until(signal).await
}

/// Resolves on Ctrl-C or SIGTERM: how a running server is asked to stop.
pub fn interrupted() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

/// `GLASSBOX_ADMIN_TOKEN`, if set; refuses tokens too short to be secret.
fn admin_token_from_env() -> anyhow::Result<Option<String>> {
    match std::env::var("GLASSBOX_ADMIN_TOKEN") {
        Ok(token) if token.is_empty() => {
            tracing::warn!("GLASSBOX_ADMIN_TOKEN is set but empty; keeping the stored admin token");
            Ok(None)
        }
        Ok(token) if token.len() < ADMIN_TOKEN_CHARS_MIN => anyhow::bail!(
            "GLASSBOX_ADMIN_TOKEN is {} characters long; use at least {ADMIN_TOKEN_CHARS_MIN} \
             (for example: openssl rand -hex 24), or unset it to have one generated",
            token.len()
        ),
        Ok(token) => {
            tracing::info!("admin token taken from GLASSBOX_ADMIN_TOKEN; it replaces any stored one");
            Ok(Some(token))
        }
        Err(_) => Ok(None),
    }
}

const ADMIN_TOKEN_CHARS_MIN: usize = 16;

/// Log lines go to stderr (filtered by `GLASSBOX_LOG`, else `default`)
/// and, from INFO up, to the ring `glassbox logs` reads, whatever the filter.
pub fn init_logging(default: &str) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("GLASSBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter);
    let _ = tracing_subscriber::registry().with(stderr).with(glassbox_server::logs::PlatformLayer).try_init();
}
