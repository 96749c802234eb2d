//! `glassbox serve`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use glassbox_server::config::{FlagValue, Layered};
use glassbox_telemetry::logs::{PlatformLayer, PlatformLog};

#[derive(clap::Args)]
#[command(after_help = "Configuration: defaults < glassbox.toml (or --config) < GLASSBOX_* variables < flags.\n\
    Each key maps to a variable named after its path: recorder.retention -> GLASSBOX_RECORDER_RETENTION.\n\
    The admin token: GLASSBOX_ADMIN_TOKEN, or generated at first start and printed once.\n\
    `glassbox config example` prints a file of every option; `glassbox config show` what serve would run with.")]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigFlags,
}

/// Where the configuration comes from on the command line: a file, and
/// the flags that override single keys (shared by `serve` and `config show`).
#[derive(clap::Args)]
pub struct ConfigFlags {
    /// Configuration file (default: ./glassbox.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the recorder keeps its data (data_dir; default ./glassbox-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address (http.listen; default 127.0.0.1:7070).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Serve the API over TLS too, at this address (http.https_listen), e.g.
    /// 127.0.0.1:7443. Certificate: --https-cert/--https-key, else
    /// --tls-cert/--tls-key, else one from the built-in CA (`glassbox ca show`),
    /// written to DATA_DIR/tls/https-cert.pem.
    #[arg(long, value_name = "ADDR")]
    https: Option<String>,
    /// PEM certificate chain for HTTPS (http.https_cert).
    #[arg(long, value_name = "FILE", requires = "https_key")]
    https_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (http.https_key).
    #[arg(long, value_name = "FILE", requires = "https_cert")]
    https_key: Option<PathBuf>,
    /// Serve the public function routes (http: triggers) only here, e.g.
    /// 0.0.0.0:8080 (http.public_listen); the API listeners then stop serving them.
    #[arg(long, value_name = "ADDR")]
    public_http: Option<String>,
    /// MQTT listener address (mqtt.listen; default 127.0.0.1:1883).
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<String>,
    /// Serve MQTT over TLS on this address (mqtt.tls_listen, mqtt.tls):
    /// with --tls-cert and --tls-key when given, else with a server
    /// certificate from the built-in CA for localhost, 127.0.0.1 and
    /// mqtt.tls_names. Devices may log in with a client certificate.
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

impl ConfigFlags {
    /// Defaults < file < `GLASSBOX_*` < these flags, each value's source kept.
    pub fn load(&self) -> anyhow::Result<Layered> {
        Layered::load(self.config.as_deref(), std::env::vars(), &self.values())
    }

    /// The flags given, as the keys they set.
    fn values(&self) -> Vec<FlagValue> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let given = [
            ("data_dir", "--data-dir", path(&self.data_dir)),
            ("http.listen", "--http", self.http.clone()),
            ("http.https_listen", "--https", self.https.clone()),
            ("http.https_cert", "--https-cert", path(&self.https_cert)),
            ("http.https_key", "--https-key", path(&self.https_key)),
            ("http.public_listen", "--public-http", self.public_http.clone()),
            ("mqtt.listen", "--mqtt", self.mqtt.clone()),
            ("mqtt.tls_listen", "--mqtts", self.mqtts.clone()),
            ("mqtt.tls_cert", "--tls-cert", path(&self.tls_cert)),
            ("mqtt.tls_key", "--tls-key", path(&self.tls_key)),
            ("otel.endpoint", "--otlp-endpoint", self.otlp_endpoint.clone()),
        ];
        let mut values: Vec<FlagValue> = given
            .into_iter()
            .filter_map(|(key, flag, value)| Some(FlagValue { key, flag, value: value?.into() }))
            .collect();
        if self.mqtts.is_some() {
            values.push(FlagValue { key: "mqtt.tls", flag: "--mqtts", value: true.into() });
        }
        if self.allow_anonymous {
            values.push(FlagValue { key: "mqtt.allow_anonymous", flag: "--allow-anonymous", value: true.into() });
        }
        values
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let platform_log = init_logging("info");
    let config = args.config.load()?.config;
    let admin_token = admin_token_from_env()?;
    let data_dir = config.data_dir.clone();
    let running = glassbox_server::start_with_log(config.clone(), admin_token.as_deref(), platform_log).await?;
    if let Some(token) = &running.generated_token {
        println!("admin token (shown once, stored only as a hash): {token}");
        println!("  export GLASSBOX_TOKEN={token}");
    }
    if let Some(export) = server_export(running.http_addr) {
        println!("{export}");
    }
    let mqtts = running.mqtts_addr.map(|a| format!(" mqtts={a}")).unwrap_or_default();
    let https = running.https_addr.map(|a| format!(" https=https://{a}")).unwrap_or_default();
    let public = running.public_http_addr.map(|a| format!(" public=http://{a}")).unwrap_or_default();
    println!(
        "glassbox ready: http=http://{}{https}{public} mqtt={}{mqtts} data={} node={}",
        running.http_addr,
        running.mqtt_addr,
        data_dir.display(),
        config.node
    );
    if let Some(cert) = &running.https_cert {
        println!("  https certificate: {} (curl --cacert it)", cert.display());
    }
    let interrupted = interrupted()?;
    let signal = async move {
        interrupted.await;
        tracing::info!("shutting down: finishing requests and flushing the recorder");
    };
    running.run_until(signal).await
}

/// The CLI's default `--server`; any other address needs `GLASSBOX_SERVER`.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// `  export GLASSBOX_SERVER=…` when the API is not where the CLI looks by
/// default; a wildcard listener is reached on loopback.
fn server_export(http: SocketAddr) -> Option<String> {
    let mut reachable = http;
    if http.ip().is_unspecified() {
        reachable.set_ip(match http {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{reachable}");
    (url != DEFAULT_SERVER).then(|| format!("  export GLASSBOX_SERVER={url}"))
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

/// `GLASSBOX_ADMIN_TOKEN`, if set; refuses tokens too short to be secret
/// (`config show` checks it here too, to refuse what `serve` would).
pub fn admin_token_from_env() -> anyhow::Result<Option<String>> {
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
pub fn init_logging(default: &str) -> Arc<PlatformLog> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("GLASSBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter);
    let log = PlatformLog::new();
    let _ = tracing_subscriber::registry().with(stderr).with(PlatformLayer::new(log.clone())).try_init();
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_export_is_printed_only_off_the_default_address() {
        let export = |addr: &str| server_export(addr.parse().unwrap());
        assert_eq!(export("127.0.0.1:7070"), None);
        assert_eq!(export("0.0.0.0:7070"), None);
        assert_eq!(export("127.0.0.1:7071").as_deref(), Some("  export GLASSBOX_SERVER=http://127.0.0.1:7071"));
        assert_eq!(export("0.0.0.0:8080").as_deref(), Some("  export GLASSBOX_SERVER=http://127.0.0.1:8080"));
        assert_eq!(export("[::]:7070").as_deref(), Some("  export GLASSBOX_SERVER=http://[::1]:7070"));
    }
}
