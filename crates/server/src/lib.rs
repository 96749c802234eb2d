//! The composition root: picks the backends (`Stores::open`: SQLite files
//! by default), starts the pipeline and the services on them, binds the MQTT
//! gateway and the HTTP API, and stops them in order. It owns no domain
//! logic and answers no request itself: that is the services' and the
//! transports' (`glassbox-api`, `glassbox-gateway`).

pub mod config;
pub mod https;
mod identity;
pub mod metrics;
mod perimeter;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use glassbox_bus::{Bus, LocalBus};
use glassbox_core::Limits;
use glassbox_gateway::broker::{Broker, RegistryAuth};
use glassbox_store::{CommandStore, DeviceRegistry, EventStore, Retention, SettingStore, TokenStore};
use glassbox_store_sqlite::{SqliteMetrics, SqliteSessions, SqliteStore};
use glassbox_telemetry::logs::PlatformLog;
use glassbox_telemetry::otlp;
use serde_json::Value;
use sha2::Digest;
use tokio::net::TcpListener;

pub use config::Config;
pub use glassbox_control::AuditConfig;
pub use glassbox_control::audit::{PUBLIC_KEY_FILE as AUDIT_PUBLIC_KEY_FILE, key_dir as audit_key_dir};

use glassbox_api::{self as api, AppState};
use glassbox_pipeline::Pipeline;

/// A running server: its bound addresses and a handle to stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// The MQTT-over-TLS listener's address, when a certificate is configured.
    pub mqtts_addr: Option<SocketAddr>,
    /// The API over TLS, when `http.https_listen` is set.
    pub https_addr: Option<SocketAddr>,
    /// The certificate (PEM file) HTTPS presents, when it is served.
    pub https_cert: Option<std::path::PathBuf>,
    /// The public function routes' own listener, when `http.public_listen` is set.
    pub public_http_addr: Option<SocketAddr>,
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
    let stores = Stores::open(&config).await?;
    let (sessions, events) = (stores.sessions.clone(), stores.events.clone());
    match start_on(config, admin_token, platform_log, stores).await {
        Ok(running) => Ok(running),
        Err(e) => {
            // What started holds the stores still: close them, so the data
            // directory is free for the next start (in this process too).
            sessions.close().await;
            events.close().await;
            Err(e)
        }
    }
}

/// [`start_with_log`] on opened stores.
async fn start_on(
    config: Config,
    admin_token: Option<&str>,
    platform_log: Arc<PlatformLog>,
    stores: Stores,
) -> anyhow::Result<Running> {
    let token = api::admin_token(stores.settings.as_ref(), admin_token).await.context("setting up the admin token")?;
    let pipeline = stores.pipeline(&config).await;
    let named_tokens = glassbox_control::NamedTokens::load(stores.tokens.clone(), pipeline.clone())
        .await
        .context("loading the named tokens")?;
    let (series, watch) = derive_metrics(&config, &pipeline, &stores)?;
    if let Some(watch) = &watch {
        watch.recall_triage().await;
    }
    journal_config(&config, &pipeline, stores.settings.as_ref()).await;
    let otlp = otlp::Exporter::configured(&config.otel, &pipeline).map_err(anyhow::Error::msg)?;
    let authority = Arc::new(identity::open_authority(&config)?);
    let logins = Arc::new(identity::TokenLogins(named_tokens.clone()));
    let mqtt = Mqtt::open(&config, &pipeline, &stores, token.tokens.hashes(), logins, &authority).await?;
    named_tokens.set_sessions(Arc::new(identity::TokenSessions(mqtt.broker.downgrade())));
    let services = Services::start(&config, &stores, &pipeline, &mqtt.broker, authority.clone()).await?;
    let audit = open_audit(&config, &stores).await?;
    let metrics = metrics_registry(&pipeline, &mqtt.broker, &series, &services.functions, otlp);
    let listener = bind_api(&config).await?;
    let (http_addr, mqtt_addr, mqtts_addr) = (listener.local_addr()?, mqtt.addr, mqtt.tls_addr);
    let extra = Listeners::bind(&config, &authority).await?;
    let (https_addr, public_http_addr) = extra.addrs()?;
    let bound = perimeter::Bound {
        http: http_addr,
        https: https_addr,
        public: public_http_addr,
        mqtt: mqtt_addr,
        mqtts: mqtts_addr,
    };
    let https_cert = extra.https.as_ref().map(|h| h.cert.clone());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut audit_stop = stopping.clone();
    tokio::spawn(audit.clone().run(async move { drop(audit_stop.wait_for(|stop| *stop).await) }));
    let state = AppState {
        registry: services.registry,
        certificates: services.certificates,
        retained: services.retained,
        audit: audit.clone(),
        control: services.control,
        functions: services.functions.clone(),
        pipeline,
        devices: stores.devices,
        series: series.clone(),
        watch: watch.clone(),
        metrics: Arc::new(metrics),
        platform_log,
        broker: mqtt.broker.clone(),
        tokens: Arc::new(token.tokens),
        named_tokens,
        limits: Arc::new(Limits { data_bytes_max: config.http.body_bytes_max, ..Limits::default() }),
        append_timeout: config.http.append_timeout,
        perimeter: Arc::new(api::Perimeter::new(
            config.http.client_requests_per_second,
            config.http.route_requests_per_second,
        )),
        surface: Arc::new(perimeter::surface(&config, &bound)),
        metrics_public: config.metrics.public,
        stopping,
    };
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = Stopping {
        stopped,
        stopping: stopping_tx,
        functions: services.functions,
        series,
        audit,
        sessions: stores.sessions,
        store: stores.events,
    };
    let task = tokio::spawn(serve(config, listener, extra, state, mqtt, stopping));
    Ok(Running {
        http_addr,
        mqtt_addr,
        mqtts_addr,
        https_addr,
        https_cert,
        public_http_addr,
        generated_token: token.generated,
        watch,
        shutdown,
        task,
    })
}

/// The audit log: the signing key opened and the tree caught up.
async fn open_audit(config: &Config, stores: &Stores) -> anyhow::Result<Arc<glassbox_control::AuditLog>> {
    let dir = glassbox_control::audit::key_dir(&config.data_dir, &config.audit);
    let audit = glassbox_control::AuditLog::open(stores.audit.clone(), &dir, &config.node, config.audit.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(audit)
}

/// What `/metrics` serves: every service's collector.
fn metrics_registry(
    pipeline: &Arc<Pipeline>,
    broker: &Broker,
    series: &Arc<glassbox_series::Series>,
    functions: &Arc<glassbox_functions::Functions>,
    otlp: Option<Arc<otlp::Exporter>>,
) -> metrics::Registry {
    let metrics = metrics::Registry::default();
    metrics.register(pipeline.clone());
    metrics.register(Arc::new(metrics::BrokerMetrics(broker.clone())));
    metrics.register(series.clone());
    metrics.register(functions.clone());
    if let Some(otlp) = otlp {
        metrics.register(otlp);
    }
    metrics
}

/// The API's own listener (`http.listen`).
async fn bind_api(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(&config.http.listen).await.with_context(|| {
        format!(
            "binding the HTTP API to {}: is another server using it? choose another address with --http \
                 (http.listen, GLASSBOX_HTTP_LISTEN)",
            config.http.listen
        )
    })
}

/// The HTTP listeners beside the API's: HTTPS, and the public function routes'.
struct Listeners {
    https: Option<https::Https>,
    public: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &Config, authority: &glassbox_pki::Authority) -> anyhow::Result<Self> {
        let https = https::bind(config, authority).await?;
        let public = match config.http.public_listen.as_str() {
            "" => None,
            address => Some(TcpListener::bind(address).await.with_context(|| {
                format!("binding the public function routes to {address}: choose another with --public-http (http.public_listen)")
            })?),
        };
        Ok(Self { https, public })
    }

    fn addrs(&self) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let https = self.https.as_ref().map(|h| h.listener.local_addr()).transpose()?;
        Ok((https, self.public.as_ref().map(TcpListener::local_addr).transpose()?))
    }

    /// Serves each until the server starts stopping; the API listeners
    /// leave the function routes to the public one when it exists.
    fn serve(self, state: &AppState, serving: api::serve::ServeSettings) -> Vec<tokio::task::JoinHandle<()>> {
        let stopping = |state: &AppState| {
            let mut stopping = state.stopping.clone();
            async move { drop(stopping.wait_for(|stop| *stop).await) }
        };
        let mut tasks = Vec::new();
        if let Some(https) = self.https {
            let router =
                self.public.as_ref().map_or_else(|| api::router(state.clone()), |_| api::admin_router(state.clone()));
            let stop = stopping(state);
            tasks.push(tokio::spawn(api::serve::serve_with(
                https.listener,
                Some(https.acceptor),
                router,
                serving,
                stop,
            )));
        }
        if let Some(public) = self.public {
            let stop = stopping(state);
            tasks.push(tokio::spawn(api::serve::serve(public, api::public_router(state.clone()), serving, stop)));
        }
        tasks
    }
}

/// The embedded backends: every store port on SQLite files in the data
/// directory. A clustered backend is chosen here, and nowhere else.
struct Stores {
    events: Arc<dyn EventStore>,
    /// The MQTT gateway's sessions, in their own file.
    sessions: Arc<dyn glassbox_store::SessionStore>,
    settings: Arc<dyn SettingStore>,
    tokens: Arc<dyn TokenStore>,
    devices: Arc<dyn DeviceRegistry>,
    commands: Arc<dyn CommandStore>,
    certificates: Arc<dyn glassbox_store::CertificateStore>,
    functions: Arc<dyn glassbox_store::FunctionStore>,
    audit: Arc<dyn glassbox_store::AuditStore>,
    budgets: Arc<dyn glassbox_store::BudgetStore>,
}

impl Stores {
    /// Off the runtime's threads: opening may wait for the directory's lock
    /// and catch the index up, and a runtime's other tasks go on meanwhile.
    async fn open(config: &Config) -> anyhow::Result<Self> {
        let (dir, settings) = (config.data_dir.clone(), config.recorder_settings());
        let sqlite = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, settings))
            .await
            .context("opening the recorder panicked")?
            .with_context(|| format!("opening the recorder in {}", config.data_dir.display()))?;
        let sqlite = Arc::new(sqlite);
        let sessions = SqliteSessions::open(&config.data_dir).context("opening the MQTT session store")?;
        Ok(Self {
            sessions: Arc::new(sessions),
            events: sqlite.clone(),
            settings: sqlite.clone(),
            tokens: sqlite.clone(),
            devices: sqlite.clone(),
            commands: sqlite.clone(),
            certificates: sqlite.clone(),
            audit: sqlite.clone(),
            budgets: sqlite.clone(),
            functions: sqlite,
        })
    }

    /// The ingest pipeline over the recorder and the in-process bus.
    async fn pipeline(&self, config: &Config) -> Arc<Pipeline> {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(config.recorder.bus_capacity));
        let span_key = otlp::load_span_key(self.settings.as_ref()).await;
        Arc::new(Pipeline::new(self.events.clone(), self.settings.clone(), bus, config.node.clone(), span_key))
    }
}

/// Metrics derived from the stream and, watching them, live diagnosis
/// (both off with `metrics.derive = false`; the series still answer).
fn derive_metrics(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    stores: &Stores,
) -> anyhow::Result<(Arc<glassbox_series::Series>, Option<Arc<glassbox_watch::Watch>>)> {
    let metric_store =
        SqliteMetrics::open(&config.data_dir, Retention::default()).context("opening the metric store")?;
    let series = Arc::new(glassbox_series::Series::new(
        Arc::new(metric_store),
        Retention::default(),
        config.metrics.series_settings(),
    ));
    if !config.metrics.derive {
        return Ok((series, None));
    }
    let watch = glassbox_watch::Watch::start(&config.diagnose, pipeline)?;
    let closed = Some(watch.clone() as Arc<dyn glassbox_series::ClosedBuckets>);
    glassbox_series::start(series.clone(), pipeline.clone(), stores.devices.clone(), closed);
    Ok((series, Some(watch)))
}

/// The MQTT gateway: the broker with its sessions restored, and its
/// listeners bound (TLS when a certificate is configured).
struct Mqtt {
    broker: Broker,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<(TcpListener, glassbox_gateway::tls::TlsAcceptor)>,
    tls_addr: Option<SocketAddr>,
}

impl Mqtt {
    async fn open(
        config: &Config,
        pipeline: &Arc<Pipeline>,
        stores: &Stores,
        operator_tokens: Vec<[u8; 32]>,
        tokens: Arc<identity::TokenLogins>,
        authority: &glassbox_pki::Authority,
    ) -> anyhow::Result<Self> {
        let allow_anonymous = config.mqtt.allow_anonymous;
        let auth = RegistryAuth {
            devices: stores.devices.clone(),
            operator_tokens,
            tokens: Some(tokens as Arc<dyn glassbox_gateway::broker::TokenLogins>),
            allow_anonymous,
            certificates: Some(stores.certificates.clone()),
        };
        if allow_anonymous {
            tracing::warn!(
                "MQTT open mode: clients without credentials may publish and subscribe on any topic (mqtt.allow_anonymous)"
            );
        }
        let recorder = Arc::new(Ingress(pipeline.clone()));
        let sessions = stores.sessions.clone();
        let broker = Broker::open(config.broker_settings(), recorder, sessions, Arc::new(auth), config.acl())
            .await
            .context("restoring MQTT sessions")?;
        let listener = TcpListener::bind(&config.mqtt.listen).await.with_context(|| {
            format!(
                "binding the MQTT listener to {}: choose another address with --mqtt (mqtt.listen)",
                config.mqtt.listen
            )
        })?;
        let tls = Self::tls(config, authority).await?;
        let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        Ok(Self { broker, addr: listener.local_addr()?, listener, tls, tls_addr })
    }

    /// The TLS listener: with `mqtt.tls_cert`/`tls_key` when set, else (with
    /// `mqtt.tls`) a server certificate from the CA; either way clients may
    /// present a certificate from the CA.
    async fn tls(
        config: &Config,
        authority: &glassbox_pki::Authority,
    ) -> anyhow::Result<Option<(TcpListener, glassbox_gateway::tls::TlsAcceptor)>> {
        use glassbox_gateway::tls::{ServerIdentity, acceptor_for};
        let identity = match (config.mqtt.tls_cert.as_str(), config.mqtt.tls_key.as_str()) {
            ("", _) | (_, "") if !config.mqtt.tls => return Ok(None),
            ("", _) | (_, "") => {
                let issued = authority.issue_server(&identity::server_names(&config.mqtt.tls_names))?;
                ServerIdentity::from_pem(&issued.chain_pem, &issued.key_pem).map_err(anyhow::Error::msg)?
            }
            (cert, key) => ServerIdentity::from_files(cert.as_ref(), key.as_ref())
                .map_err(|e| anyhow::anyhow!("MQTT over TLS (mqtt.tls_cert, mqtt.tls_key): {e}"))?,
        };
        let acceptor = acceptor_for(identity, Some(authority.certificate_der()))
            .map_err(|e| anyhow::anyhow!("MQTT over TLS: {e}"))?;
        let listener = TcpListener::bind(&config.mqtt.tls_listen).await.with_context(|| {
            format!("binding the MQTT TLS listener to {}: choose another with mqtt.tls_listen", config.mqtt.tls_listen)
        })?;
        Ok(Some((listener, acceptor)))
    }
}

/// The services that act on devices and run functions.
struct Services {
    control: Arc<glassbox_control::Control>,
    functions: Arc<glassbox_functions::Functions>,
    registry: Arc<glassbox_control::Registry>,
    certificates: Arc<glassbox_control::Certificates>,
    retained: Arc<glassbox_control::RetainedMessages>,
}

impl Services {
    async fn start(
        config: &Config,
        stores: &Stores,
        pipeline: &Arc<Pipeline>,
        broker: &Broker,
        authority: Arc<glassbox_pki::Authority>,
    ) -> anyhow::Result<Self> {
        let control = glassbox_control::Control::start(
            stores.devices.clone(),
            stores.commands.clone(),
            pipeline.clone(),
            Arc::new(broker.downgrade()),
            config.control.shadow_limits(),
            glassbox_control::CommandLimits::default(),
            config.control.liveness(),
        );
        broker.set_reserved(control.clone());
        let functions = glassbox_functions::Functions::start(
            stores.functions.clone(),
            stores.budgets.clone(),
            stores.settings.clone(),
            pipeline.clone(),
            control.clone(),
            config.data_dir.join("functions"),
            config.cost,
        )
        .await
        .context("starting the function runtime")?;
        broker.set_message_budgets(functions.message_budgets());
        let link = Arc::new(broker.clone());
        let retained = Arc::new(glassbox_control::RetainedMessages::new(link.clone(), pipeline.clone()));
        let certificates = glassbox_control::Certificates::start(
            authority,
            stores.certificates.clone(),
            stores.devices.clone(),
            link.clone(),
            control.clone(),
            pipeline.clone(),
            config.ca.clone(),
        );
        let registry =
            Arc::new(glassbox_control::Registry::new(stores.devices.clone(), link, control.clone(), pipeline.clone()));
        Ok(Self { control, functions, registry, retained, certificates })
    }
}

/// What a stop waits for and then winds down, in order.
struct Stopping {
    stopped: tokio::sync::oneshot::Receiver<()>,
    stopping: tokio::sync::watch::Sender<bool>,
    functions: Arc<glassbox_functions::Functions>,
    series: Arc<glassbox_series::Series>,
    audit: Arc<glassbox_control::AuditLog>,
    sessions: Arc<dyn glassbox_store::SessionStore>,
    store: Arc<dyn EventStore>,
}

/// Serves HTTP and MQTT until the stop; then the ingresses drain, functions
/// hand back what they hold, and the stores flush, all within one
/// `shutdown_grace`.
async fn serve(
    config: Config,
    listener: TcpListener,
    extra: Listeners,
    state: AppState,
    mqtt: Mqtt,
    stop: Stopping,
) -> anyhow::Result<()> {
    let (broker_stop, broker_stopped) = tokio::sync::oneshot::channel::<()>();
    let Mqtt { broker, listener: mqtt_listener, tls, .. } = mqtt;
    let mqtt_task = tokio::spawn(async move {
        // Drains its connections within shutdown_grace before it returns.
        broker.serve(mqtt_listener, tls, async move { drop(broker_stopped.await) }).await;
        broker.flush().await;
    });
    let serving = api::serve::ServeSettings {
        header_read_timeout: config.http.header_read_timeout,
        body_read_timeout: config.http.body_read_timeout,
        connections_max: config.http.connections_max,
        shutdown_grace: config.shutdown_grace,
    };
    let Stopping { stopped, stopping, functions, series, audit, sessions, store } = stop;
    let (began_tx, began) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let router = match extra.public.is_some() {
        true => api::admin_router(state.clone()),
        false => api::router(state.clone()),
    };
    let extra_tasks = extra.serve(&state, serving);
    api::serve::serve(listener, router, serving, async move {
        let _ = stopped.await;
        let _ = began_tx.send(tokio::time::Instant::now());
        let _ = stopping.send(true);
        let _ = broker_stop.send(());
    })
    .await;
    for task in extra_tasks {
        let _ = task.await;
    }
    let _ = mqtt_task.await;
    // After the ingresses, so what they recorded last is handed back too;
    // the whole stop keeps to one shutdown_grace.
    let began = began.await.unwrap_or_else(|_| tokio::time::Instant::now());
    functions.stop((began + config.shutdown_grace).saturating_duration_since(tokio::time::Instant::now())).await;
    series.flush(chrono::Utc::now(), true).await;
    audit.close().await;
    // Every writer in the data directory stops before the event store
    // closes, which frees the directory for the next start.
    sessions.close().await;
    store.close().await;
    Ok(())
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

    async fn ingest_committed(
        &self,
        drafts: Vec<glassbox_core::Draft>,
        via: &str,
    ) -> Result<glassbox_store::Committed, glassbox_store::StoreError> {
        self.0.ingest_committed(drafts, via).await
    }

    async fn ingest_unanswered(
        &self,
        drafts: Vec<glassbox_core::Draft>,
        via: &str,
    ) -> Result<Vec<glassbox_store::Appended>, glassbox_store::StoreError> {
        self.0.ingest_unanswered(drafts, via).await
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
            if let Err(e) = pipeline.ingest_platform(vec![draft], "platform").await {
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
