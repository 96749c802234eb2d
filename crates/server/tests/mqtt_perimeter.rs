//! Issue 16 (perimeter hardening), the gateway's findings, over real TCP
//! against the whole server (real SQLite files): finding 4 (denial of
//! service before login) and finding 7 (unbounded per-client state).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glassbox_gateway::client::{self, ClientError, Options, Reader, Writer};
use glassbox_gateway::codec::{
    Packet, Properties, Protocol, Publish, QoS, Subscribe, SubscriptionOptions, Unsubscribe,
};
use glassbox_server::{Config, Running};
use serde_json::{Value, json};

const TOKEN: &str = "gbx_perimeter_token_0001";
const WAIT: Duration = Duration::from_secs(10);

struct Server {
    running: Option<Running>,
    mqtt: SocketAddr,
    http: String,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn start(adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    config.http.listen = "127.0.0.1:0".into();
    config.mqtt.listen = "127.0.0.1:0".into();
    adjust(&mut config);
    let running = glassbox_server::start(config.clone(), Some(TOKEN)).await.unwrap();
    Server {
        mqtt: running.mqtt_addr,
        http: format!("http://{}", running.http_addr),
        running: Some(running),
        config,
        _dir: dir,
    }
}

impl Server {
    async fn restart(mut self) -> Server {
        self.running.take().unwrap().stop().await.unwrap();
        let running = glassbox_server::start(self.config.clone(), Some(TOKEN)).await.unwrap();
        self.mqtt = running.mqtt_addr;
        self.http = format!("http://{}", running.http_addr);
        self.running = Some(running);
        self
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.http)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    async fn register(&self, id: &str) -> String {
        let body = self.api(reqwest::Method::POST, "/api/v1/devices", Some(json!({ "id": id }))).await;
        body["secret"].as_str().unwrap().to_string()
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let page = self.api(reqwest::Method::GET, &format!("/api/v1/events?{query}&limit=1000"), None).await;
        page["events"].as_array().cloned().unwrap_or_default()
    }

    async fn client(&self, options: &Options) -> (Reader, Writer) {
        let (reader, writer, _) = client::connect(&self.mqtt.to_string(), options).await.unwrap();
        (reader, writer)
    }
}

fn device(id: &str, secret: &str, protocol: Protocol) -> Options {
    Options { username: Some(id.into()), password: Some(secret.into()), protocol, ..Options::new(id) }
}

async fn next(reader: &mut Reader) -> Packet {
    tokio::time::timeout(WAIT, reader.next()).await.expect("a packet in time").expect("a packet")
}

async fn send(writer: &mut Writer, packet: Packet) {
    writer.send(&packet).await.unwrap();
    writer.flush().await.unwrap();
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscribe(reader: &mut Reader, writer: &mut Writer, packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let filters = filters.iter().map(|f| (f.to_string(), SubscriptionOptions::qos(QoS::AtLeastOnce))).collect();
    send(writer, Packet::Subscribe(Subscribe { packet_id, properties: Properties::default(), filters })).await;
    match next(reader).await {
        Packet::SubAck(ack) => ack.reasons,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A QoS 1 PUBLISH, answered.
async fn publish(reader: &mut Reader, writer: &mut Writer, packet_id: u16, topic: &str, retain: bool) {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic: topic.into(),
        packet_id: Some(packet_id),
        properties: Properties::default(),
        payload: Bytes::from_static(b"21.5"),
    };
    send(writer, Packet::Publish(publish)).await;
    assert!(matches!(next(reader).await, Packet::PubAck(a) if a.packet_id == packet_id));
}

// Issue 16, finding 4: 2,000 refused CONNECTs with 30 KB names cost a
// bounded number of small events (one per peer per interval, counting them
// all); after a few failures the peer backs off (refused at once, its
// credentials unchecked); a real device still connects from another address.
#[tokio::test]
async fn finding_4_a_flood_of_refused_connects_is_aggregated_per_peer_and_backs_off() {
    let interval = Duration::from_secs(2);
    let server = start(|c| {
        c.mqtt.refusals_interval = interval;
        // Waits double up to this: the test waits out one at most.
        c.mqtt.login_backoff_max = Duration::from_secs(4);
    })
    .await;
    let secret = server.register("real-1").await;
    let flood = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let addr = server.mqtt.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let name = format!("{task}-{i}-{}", "n".repeat(30 * 1024));
                let options = device(&name, "guess", Protocol::V5);
                match client::connect(&addr, &options).await {
                    Err(ClientError::Refused(code)) => assert!(code == 0x86 || code == 0x89, "{code:#x}"),
                    other => panic!("not refused: {:?}", other.err()),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A failure checked now starts a new (longer) wait, during which this
    // peer is refused at once, even with the right secret.
    let mut attempts = 0;
    eventually("a failed login checked again", async || {
        attempts += 1;
        let wrong = client::connect(&server.mqtt.to_string(), &device("real-1", "guess", Protocol::V5)).await;
        matches!(wrong, Err(ClientError::Refused(0x86)))
    })
    .await;
    let backed_off = client::connect(&server.mqtt.to_string(), &device("real-1", &secret, Protocol::V5)).await;
    assert!(matches!(backed_off, Err(ClientError::Refused(0x89))), "{:?}", backed_off.err());

    let total = 2000 + attempts + 1;
    let mut refused = Vec::new();
    eventually("every refusal counted", async || {
        refused = server.events("type=client.connection_refused").await;
        refused.extend(server.events("type=device.connection_refused").await);
        refused.iter().map(|e| e["data"]["count"].as_u64().unwrap()).sum::<u64>() == total
    })
    .await;
    let intervals = (flood.elapsed().as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    assert!(refused.len() <= intervals + 1, "{} events over {intervals} intervals", refused.len());
    for event in &refused {
        assert!(event.to_string().len() < 4096, "an event of {} bytes", event.to_string().len());
        assert_eq!(event["data"]["peer"], "127.0.0.1");
        assert!(event["data"]["claimed"].as_array().unwrap().iter().all(|n| n.as_str().unwrap().len() <= 128));
    }
    let backoff: u64 = refused.iter().map(|e| e["data"]["backoff"].as_u64().unwrap()).sum();
    let checked: u64 = refused.iter().map(|e| e["data"]["reasons"]["auth_failure"].as_u64().unwrap_or(0)).sum();
    assert!(backoff >= 1900 && checked < 100, "{backoff} refused while backing off, {checked} checked");

    let local: IpAddr = "127.0.0.2".parse().unwrap();
    let real = client::connect_from(local, server.mqtt, &device("real-1", &secret, Protocol::V5)).await;
    assert!(real.is_ok(), "the real device from another address: {:?}", real.err());
}

// Issue 16, finding 4: connections that have not sent CONNECT are capped at
// accept (`mqtt.pending_connects_max`); once they go, clients connect again.
#[tokio::test]
async fn finding_4_connections_without_connect_are_capped_at_accept() {
    let server = start(|c| {
        c.mqtt.pending_connects_max = 4;
        c.mqtt.allow_anonymous = true;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(server.mqtt).await.unwrap());
    }
    // Accepted in order: these four first.
    let over = client::connect(&server.mqtt.to_string(), &Options::new("over")).await;
    assert!(!matches!(over, Ok(_) | Err(ClientError::Refused(_))), "closed without a CONNACK: {:?}", over.err());
    drop(idle);
    eventually("a client admitted again", async || {
        client::connect(&server.mqtt.to_string(), &Options::new("after")).await.is_ok()
    })
    .await;
    eventually("the closed connection counted", async || {
        let refused = server.events("type=client.connection_refused").await;
        refused.iter().any(|e| e["data"]["detail"].as_str().unwrap().contains("mqtt.pending_connects_max"))
    })
    .await;
}

// Issue 16, finding 7: a session holds at most `mqtt.subscriptions_max`
// subscriptions; more get 0x97 (5.0) or 0x80 (3.1.1); replacing one is free.
#[tokio::test]
async fn finding_7_subscriptions_per_session_are_capped() {
    let server = start(|c| {
        c.mqtt.allow_anonymous = true;
        c.mqtt.subscriptions_max = 3;
    })
    .await;
    let (mut rx, mut tx) = server.client(&Options { protocol: Protocol::V5, ..Options::new("subs5") }).await;
    let reasons = subscribe(&mut rx, &mut tx, 1, &["a/1", "a/2", "a/3", "a/4", "a/5"]).await;
    assert_eq!(reasons, [1, 1, 1, 0x97, 0x97]);
    assert_eq!(subscribe(&mut rx, &mut tx, 2, &["a/1"]).await, [1], "replacing one");
    send(
        &mut tx,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            properties: Properties::default(),
            filters: vec!["a/1".into()],
        }),
    )
    .await;
    assert!(matches!(next(&mut rx).await, Packet::UnsubAck(_)));
    assert_eq!(subscribe(&mut rx, &mut tx, 4, &["a/6", "a/7"]).await, [1, 0x97]);

    let (mut rx3, mut tx3) = server.client(&Options::new("subs3")).await;
    assert_eq!(subscribe(&mut rx3, &mut tx3, 1, &["b/1", "b/2", "b/3", "b/4"]).await, [1, 1, 1, 0x80]);
    let denied = server.events("type=client.subscribe_denied").await;
    assert!(denied.iter().any(|e| e["data"]["reason"] == "quota_exceeded"), "{denied:?}");
}

// Issue 16, finding 7: retained messages per client and in all are capped;
// beyond, the message is delivered but not retained, with a recorded reason.
#[tokio::test]
async fn finding_7_retained_messages_are_capped_per_client_and_in_all() {
    let server = start(|c| {
        c.mqtt.allow_anonymous = true;
        c.mqtt.retained_per_client_max = 2;
        c.mqtt.retained_max = 3;
    })
    .await;
    let (mut live_rx, mut live_tx) = server.client(&Options::new("live")).await;
    subscribe(&mut live_rx, &mut live_tx, 1, &["r/#"]).await;
    let (mut rx, mut tx) = server.client(&Options::new("keeper")).await;
    for (id, topic) in [(1, "r/1"), (2, "r/2"), (3, "r/3"), (4, "r/1")] {
        publish(&mut rx, &mut tx, id, topic, true).await;
    }
    let (mut rx2, mut tx2) = server.client(&Options::new("other")).await;
    publish(&mut rx2, &mut tx2, 1, "r/4", true).await;
    publish(&mut rx2, &mut tx2, 2, "r/5", true).await;
    for _ in 0..6 {
        assert!(matches!(next(&mut live_rx).await, Packet::Publish(_)), "each one delivered live");
    }

    let (mut later_rx, mut later_tx) = server.client(&Options::new("later")).await;
    subscribe(&mut later_rx, &mut later_tx, 1, &["r/#"]).await;
    let mut topics = Vec::new();
    for _ in 0..3 {
        let Packet::Publish(p) = next(&mut later_rx).await else { panic!("a retained message") };
        topics.push(p.topic);
    }
    topics.sort();
    assert_eq!(topics, ["r/1", "r/2", "r/4"], "two of keeper's, then the global bound");
    eventually("keeper's refusal recorded", async || not_retained(&server, "keeper", "retained_per_client_max").await)
        .await;
    eventually("the global refusal recorded", async || not_retained(&server, "other", "mqtt.retained_max").await).await;
}

/// Whether a message of `client` was noted as not retained for bound `why`.
async fn not_retained(server: &Server, client: &str, why: &str) -> bool {
    server.events(&format!("source=mqtt/{client}&type=device.message")).await.iter().any(|e| {
        e["states"].as_array().unwrap().iter().any(|s| {
            let detail = s["detail"].as_str().unwrap_or("");
            s["state"] == "dropped"
                && s["target"] == "retained"
                && detail.starts_with("retained_limit")
                && detail.contains(why)
        })
    })
}

// Issue 16, finding 7: a SUBSCRIBE writes its subscription as one row, not
// the whole session again; the rows bring the session back after a restart.
#[tokio::test]
async fn finding_7_subscriptions_are_stored_row_by_row() {
    let server = start(|c| c.mqtt.allow_anonymous = true).await;
    let persistent = Options { clean_start: false, ..Options::new("rows") };
    let (mut rx, mut tx) = server.client(&persistent).await;
    for i in 0..50u16 {
        subscribe(&mut rx, &mut tx, i + 1, &[&format!("rows/{i}/{}", "level".repeat(20))]).await;
    }
    send(
        &mut tx,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 99,
            properties: Properties::default(),
            filters: vec![format!("rows/0/{}", "level".repeat(20))],
        }),
    )
    .await;
    assert!(matches!(next(&mut rx).await, Packet::UnsubAck(_)));
    drop((rx, tx));
    let server = server.restart().await;
    {
        let db = rusqlite::Connection::open(server.config.data_dir.join("sessions.db")).unwrap();
        let rows: i64 =
            db.query_row("SELECT count(*) FROM subscriptions WHERE client_id = 'rows'", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 49);
        let state: Vec<u8> =
            db.query_row("SELECT state FROM sessions WHERE client_id = 'rows'", [], |r| r.get(0)).unwrap();
        assert!(state.len() < 200, "the session's own row holds no subscriptions: {}", String::from_utf8_lossy(&state));
    }
    let (mut rx, _tx) = server.client(&persistent).await;
    let (mut prx, mut ptx) = server.client(&Options::new("pub")).await;
    publish(&mut prx, &mut ptx, 1, &format!("rows/7/{}", "level".repeat(20)), false).await;
    assert!(matches!(next(&mut rx).await, Packet::Publish(p) if p.topic.starts_with("rows/7/")));
}
