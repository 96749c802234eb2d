//! The Glassbox server: wires configuration, the recorder, the bus, the
//! ingest pipeline and the HTTP API together, and runs them until asked to
//! stop. Later ingresses (MQTT gateway, function runtime) plug into the same
//! [`glassbox_pipeline::Pipeline`].

pub mod config;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use glassbox_bus::{Bus, LocalBus};
use glassbox_core::Limits;
use glassbox_gateway::broker::{Broker, RegistryAuth};
use glassbox_store::{CommandStore, DeviceRegistry, EventStore, Retention, SettingStore};
use glassbox_store_sqlite::{SqliteMetrics, SqliteSessions, SqliteStore};
use glassbox_telemetry::logs::PlatformLog;
use glassbox_telemetry::otlp;
use serde_json::Value;
use sha2::Digest;
use tokio::net::TcpListener;

pub use config::Config;

use glassbox_api::{self as api, AppState};
use glassbox_pipeline::Pipeline;

/// A running server: its bound addresses and a handle to stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// The MQTT-over-TLS listener's address, when a certificate is configured.
    pub mqtts_addr: Option<SocketAddr>,
    /// The admin token, when this start generated it (shown once).
    pub generated_token: Option<String>,
    /// The anomaly detectors, when metrics are derived.
    pub watch: Option<Arc<glassbox_watch::Watch>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, flushes the recorder.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("server task panicked")?
    }

    /// Runs until `signal` resolves (then stops gracefully) or the server fails.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Running { shutdown, mut task, .. } = self;
        tokio::select! {
            result = &mut task => return result.context("server task panicked")?,
            () = signal => {}
        }
        let _ = shutdown.send(());
        task.await.context("server task panicked")?
    }
}

/// Opens the store and binds the listeners; the server runs in the background.
/// `admin_token` replaces the stored admin token when given. The platform's
/// log lines are not kept: see [`start_with_log`].
pub async fn start(config: Config, admin_token: Option<&str>) -> anyhow::Result<Running> {
    start_with_log(config, admin_token, PlatformLog::new()).await
}

/// [`start`], serving `glassbox logs` the platform lines from `platform_log`
/// (the ring the process's [`glassbox_telemetry::logs::PlatformLayer`] writes).
pub async fn start_with_log(
    config: Config,
    admin_token: Option<&str>,
    platform_log: Arc<PlatformLog>,
) -> anyhow::Result<Running> {
    let sqlite = Arc::new(
        SqliteStore::open(&config.data_dir, config.recorder_settings())
            .with_context(|| format!("opening the recorder in {}", config.data_dir.display()))?,
    );
    let store: Arc<dyn EventStore> = sqlite.clone();
    let commands: Arc<dyn CommandStore> = sqlite.clone();
    let sqlite_functions = sqlite.clone();
    let settings: Arc<dyn SettingStore> = sqlite.clone();
    let devices: Arc<dyn DeviceRegistry> = sqlite;
    let token = api::admin_token(settings.as_ref(), admin_token).await.context("setting up the admin token")?;
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(config.recorder.bus_capacity));
    let span_key = otlp::load_span_key(settings.as_ref()).await;
    let pipeline = Arc::new(Pipeline::new(store.clone(), settings.clone(), bus, config.node.clone(), span_key));
    let metric_store =
        SqliteMetrics::open(&config.data_dir, Retention::default()).context("opening the metric store")?;
    let series = Arc::new(glassbox_series::Series::new(
        Arc::new(metric_store),
        Retention::default(),
        config.metrics.series_settings(),
    ));
    let watch = match config.metrics.derive {
        true => {
            let watch = glassbox_watch::Watch::start(&config.diagnose, &pipeline)?;
            glassbox_series::start(
                series.clone(),
                pipeline.clone(),
                devices.clone(),
                Some(watch.clone() as Arc<dyn glassbox_series::ClosedBuckets>),
            );
            Some(watch)
        }
        false => None,
    };
    journal_config(&config, &pipeline, settings.as_ref()).await;
    let otlp = otlp::Exporter::configured(&config.otel, &pipeline).map_err(anyhow::Error::msg)?;
    let limits = Limits { data_bytes_max: config.http.body_bytes_max, ..Limits::default() };
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let auth = RegistryAuth {
        devices: devices.clone(),
        operator_tokens: token.tokens.hashes(),
        allow_anonymous: config.mqtt.allow_anonymous,
    };
    if config.mqtt.allow_anonymous {
        tracing::warn!(
            "MQTT open mode: clients without credentials may publish and subscribe on any topic (mqtt.allow_anonymous)"
        );
    }
    let sessions = SqliteSessions::open(&config.data_dir).context("opening the MQTT session store")?;
    let broker = Broker::open(
        config.broker_settings(),
        Arc::new(Ingress(pipeline.clone())),
        Arc::new(sessions),
        Arc::new(auth),
        config.acl(),
    )
    .await
    .context("restoring MQTT sessions")?;
    let mqtt = TcpListener::bind(&config.mqtt.listen).await.with_context(|| {
        format!("binding the MQTT listener to {}: choose another address with --mqtt (mqtt.listen)", config.mqtt.listen)
    })?;
    let mqtt_addr = mqtt.local_addr()?;
    let tls = match (config.mqtt.tls_cert.as_str(), config.mqtt.tls_key.as_str()) {
        ("", _) | (_, "") => None,
        (cert, key) => {
            let acceptor = glassbox_gateway::tls::acceptor(cert.as_ref(), key.as_ref())
                .map_err(|e| anyhow::anyhow!("MQTT over TLS (mqtt.tls_cert, mqtt.tls_key): {e}"))?;
            let listener = TcpListener::bind(&config.mqtt.tls_listen).await.with_context(|| {
                format!(
                    "binding the MQTT TLS listener to {}: choose another with mqtt.tls_listen",
                    config.mqtt.tls_listen
                )
            })?;
            Some((listener, acceptor))
        }
    };
    let mqtts_addr = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let control = glassbox_control::Control::start(
        devices.clone(),
        commands,
        pipeline.clone(),
        Arc::new(broker.downgrade()),
        config.control.shadow_limits(),
        glassbox_control::CommandLimits::default(),
        config.control.liveness(),
    );
    broker.set_reserved(control.clone());
    let function_store: Arc<dyn glassbox_store::FunctionStore> = sqlite_functions;
    let functions = glassbox_functions::Functions::start(
        function_store,
        pipeline.clone(),
        control.clone(),
        config.data_dir.join("functions"),
        config.cost,
    )
    .await
    .context("starting the function runtime")?;
    let stopping_functions = functions.clone();
    let registry = Arc::new(glassbox_control::Registry::new(
        devices.clone(),
        Arc::new(broker.clone()),
        control.clone(),
        pipeline.clone(),
    ));
    let metrics = metrics::Registry::default();
    metrics.register(pipeline.clone());
    metrics.register(Arc::new(metrics::BrokerMetrics(broker.clone())));
    metrics.register(series.clone());
    metrics.register(functions.clone());
    if let Some(otlp) = otlp {
        metrics.register(otlp);
    }
    let state = AppState {
        registry,
        control,
        functions,
        pipeline,
        devices,
        series: series.clone(),
        watch: watch.clone(),
        metrics: Arc::new(metrics),
        platform_log,
        broker: broker.clone(),
        tokens: Arc::new(token.tokens),
        limits: Arc::new(limits),
        append_timeout: config.http.append_timeout,
        perimeter: Arc::new(api::Perimeter::new(
            config.http.client_requests_per_second,
            config.http.route_requests_per_second,
        )),
        metrics_public: config.metrics.public,
        stopping,
    };
    let listener = TcpListener::bind(&config.http.listen).await.with_context(|| {
        format!(
            "binding the HTTP API to {}: is another server using it? choose another address with --http \
                 (http.listen, GLASSBOX_HTTP_LISTEN)",
            config.http.listen
        )
    })?;
    let http_addr = listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(state);
    let (broker_stop, broker_stopped) = tokio::sync::oneshot::channel::<()>();
    let mqtt_task = {
        let broker = broker.clone();
        tokio::spawn(async move {
            // Drains its connections within shutdown_grace before it returns.
            broker.serve(mqtt, tls, async move { drop(broker_stopped.await) }).await;
            broker.flush().await;
        })
    };
    let serving = api::serve::ServeSettings {
        header_read_timeout: config.http.header_read_timeout,
        body_read_timeout: config.http.body_read_timeout,
        connections_max: config.http.connections_max,
        shutdown_grace: config.shutdown_grace,
    };
    let grace = config.shutdown_grace;
    let (began_tx, began) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let task = tokio::spawn(async move {
        api::serve::serve(listener, app, serving, async move {
            let _ = stopped.await;
            let _ = began_tx.send(tokio::time::Instant::now());
            let _ = stopping_tx.send(true);
            let _ = broker_stop.send(());
        })
        .await;
        let _ = mqtt_task.await;
        // After the ingresses, so what they recorded last is handed back too;
        // the whole stop keeps to one shutdown_grace.
        let began = began.await.unwrap_or_else(|_| tokio::time::Instant::now());
        stopping_functions.stop((began + grace).saturating_duration_since(tokio::time::Instant::now())).await;
        series.flush(chrono::Utc::now(), true).await;
        store.close().await;
        Ok(())
    });
    Ok(Running { http_addr, mqtt_addr, mqtts_addr, generated_token: token.generated, watch, shutdown, task })
}

/// The MQTT gateway records through the same pipeline as every ingress.
struct Ingress(Arc<Pipeline>);

#[async_trait::async_trait]
impl glassbox_gateway::broker::Recorder for Ingress {
    async fn ingest(
        &self,
        drafts: Vec<glassbox_core::Draft>,
        via: &str,
    ) -> Result<Vec<glassbox_store::Appended>, glassbox_store::StoreError> {
        self.0.ingest(drafts, via).await
    }

    async fn record(&self, transitions: Vec<glassbox_store::Transition>) -> Result<(), glassbox_store::StoreError> {
        self.0.record(transitions).await
    }
}

/// Records a `config.changed` event when this start's configuration differs
/// from the last start's (which keys, from what, to what), so diagnosis can
/// rank a configuration change as a cause like any other change.
async fn journal_config(config: &Config, pipeline: &Pipeline, store: &dyn SettingStore) {
    /// The setting the last start's configuration is kept under (not an event).
    const KEY: &str = "config.snapshot";
    let mut now = BTreeMap::new();
    flatten("", &serde_json::to_value(config).unwrap_or_default(), &mut now);
    // Secrets are compared by digest, never kept or recorded as they are.
    for key in config::SECRET_KEYS {
        if let Some(Value::String(secret)) = now.get_mut(*key).filter(|v| v.as_str() != Some("")) {
            *secret = format!("sha256:{}", hex::encode(sha2::Sha256::digest(secret.as_bytes())));
        }
    }
    let before: Option<BTreeMap<String, Value>> =
        store.setting(KEY).await.ok().flatten().and_then(|text| serde_json::from_str(&text).ok());
    if let Some(before) = before {
        let keys: BTreeSet<&String> = before.keys().chain(now.keys()).collect();
        let changed: Vec<&String> = keys.into_iter().filter(|k| before.get(*k) != now.get(*k)).collect();
        if !changed.is_empty() {
            let side = |of: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
                changed.iter().map(|k| ((*k).clone(), recorded_value(k, of.get(*k)))).collect()
            };
            let (from, to) = (side(&before), side(&now));
            let data = glassbox_core::ConfigChanged { changed: changed.into_iter().cloned().collect(), from, to };
            let draft = glassbox_core::Draft::payload("glassbox/server", &data);
            if let Err(e) = pipeline.ingest(vec![draft], "platform").await {
                tracing::warn!(error = %e, "could not record the configuration change");
            }
        }
    }
    if let Ok(text) = serde_json::to_string(&now) {
        let _ = store.put_setting(KEY, &text).await;
    }
}

/// A key's value as `config.changed` records it: a secret's as
/// `[redacted]` (or empty, when unset).
fn recorded_value(key: &str, value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(s)) if !s.is_empty() && config::SECRET_KEYS.contains(&key) => "[redacted]".into(),
        other => other.cloned().unwrap_or_default(),
    }
}

/// `{"a": {"b": 1}}` → `a.b = 1`.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}
