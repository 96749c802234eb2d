//! Issue 20, part 1: named tokens with roles, end to end over real HTTP and
//! real MQTT against the whole server (real SQLite files): what each role
//! may do, refusals that name the role and what it lacks, expiry and
//! revocation, the actor recorded for a token's changes, MQTT logins by
//! token name with the role's topic rights, and the HTTPS and public
//! function listeners.

mod common;

use std::time::Duration;

use glassbox_gateway::client::{self, ClientError, Options};
use glassbox_gateway::codec::{Packet, Properties, Protocol, QoS, Subscribe, SubscriptionOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, answer, publish, start_with};

const TOKEN: &str = "gbx_access_test_admin_token";
const WAIT: Duration = Duration::from_secs(10);

/// Creates token `name` with `role` (and `expires`) as the admin; the token.
async fn create(server: &Server, name: &str, role: &str, expires: Option<&str>) -> String {
    let body = json!({ "name": name, "role": role, "expires": expires });
    let (status, created) = server.call(Method::POST, "/api/v1/tokens", Some(body.to_string().into_bytes())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["name"].as_str(), created["role"].as_str()), (Some(name), Some(role)), "{created}");
    created["token"].as_str().unwrap().to_string()
}

/// A call to the API with `token`.
async fn call_as(server: &Server, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.http)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request).await
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test/ingest", "type": "reading", "data": {"t": 21}})
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_deploy_and_is_told_its_role() {
    let server = start_with(TOKEN, |_| {}).await;
    let viewer = create(&server, "dash", "viewer", None).await;
    let (status, _) = call_as(&server, &viewer, Method::GET, "/api/v1/functions", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_as(&server, &viewer, Method::GET, "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = call_as(&server, &viewer, Method::POST, "/api/v1/functions/fan/rollback", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden");
    assert_eq!(message(&refused), "token \"dash\" has role viewer, which may not deploy (needs deployer or admin)");
    let (status, refused) = call_as(&server, &viewer, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&refused).contains("may not manage tokens (needs admin)"), "{refused}");
}

#[tokio::test]
async fn an_ingest_token_may_post_events_and_nothing_else() {
    let server = start_with(TOKEN, |_| {}).await;
    let ingest = create(&server, "line-7", "ingest", Some("90d")).await;
    let (status, accepted) = call_as(&server, &ingest, Method::POST, "/api/v1/events", Some(event("r-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    for (method, path) in [(Method::GET, "/api/v1/events"), (Method::GET, "/api/v1/devices")] {
        let (status, refused) = call_as(&server, &ingest, method, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(message(&refused).contains("role ingest, which may not read"), "{refused}");
    }
    let (status, refused) =
        call_as(&server, &ingest, Method::POST, "/api/v1/devices", Some(json!({"id": "d-1"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&refused).contains("may not provision devices (needs device-provisioner or admin)"));
}

#[tokio::test]
async fn a_revoked_or_expired_token_is_refused_saying_so() {
    let server = start_with(TOKEN, |_| {}).await;
    let brief = create(&server, "brief", "viewer", Some("1s")).await;
    let gone = create(&server, "gone", "viewer", None).await;
    let (status, revoked) = server.call(Method::DELETE, "/api/v1/tokens/gone", None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked"].is_string(), "{revoked}");
    let (status, refused) = call_as(&server, &gone, Method::GET, "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&refused).contains("token \"gone\" was revoked at"), "{refused}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, refused) = call_as(&server, &brief, Method::GET, "/api/v1/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&refused).contains("token \"brief\" expired at"), "{refused}");
    let (_, list) = server.call(Method::GET, "/api/v1/tokens", None).await;
    let names: Vec<&str> = list["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["brief", "gone"], "revoked tokens stay listed");
    assert_eq!(list["tokens"][1]["revoked_by"], "admin");
}

#[tokio::test]
async fn an_unknown_role_or_a_bad_name_is_refused_with_what_is_valid() {
    let server = start_with(TOKEN, |_| {}).await;
    let body = json!({"name": "ci", "role": "root"}).to_string().into_bytes();
    let (status, refused) = server.call(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&refused),
        "unknown role \"root\": use one of admin, operator, deployer, viewer, ingest, device-provisioner"
    );
    let body = json!({"name": "CI", "role": "viewer"}).to_string().into_bytes();
    let (status, refused) = server.call(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&refused).contains("lowercase letters"), "{refused}");
    create(&server, "ci", "viewer", None).await;
    let body = json!({"name": "ci", "role": "admin"}).to_string().into_bytes();
    let (status, _) = server.call(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "a name is taken once");
}

#[tokio::test]
async fn a_change_made_with_a_named_token_records_the_token_as_its_actor() {
    let server = start_with(TOKEN, |_| {}).await;
    let provisioner = create(&server, "factory", "device-provisioner", None).await;
    let (status, created) =
        call_as(&server, &provisioner, Method::POST, "/api/v1/devices", Some(json!({"id": "th-9"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let registered =
        server.eventually("/api/v1/events?type=device.registered&device=th-9", |b| b["events"].get(0).cloned()).await;
    assert_eq!(registered["data"]["actor"], "token:factory");
    assert_eq!(registered["data"]["principal"]["kind"], "token");
    assert_eq!(registered["data"]["principal"]["name"], "factory");
    let created = server.eventually("/api/v1/events?type=token.created", |b| b["events"].get(0).cloned()).await;
    assert_eq!((created["data"]["name"].clone(), created["data"]["actor"].clone()), (json!("factory"), json!("admin")));
    assert!(!created.to_string().contains(&provisioner), "the token itself is never recorded");
}

fn login(name: &str, token: &str, client_id: &str) -> Options {
    Options {
        username: Some(name.into()),
        password: Some(token.into()),
        protocol: Protocol::V5,
        ..Options::new(client_id)
    }
}

async fn subscribe(writer: &mut client::Writer, reader: &mut client::Reader, filter: &str) -> Vec<u8> {
    let filters = vec![(filter.to_string(), SubscriptionOptions::qos(QoS::AtLeastOnce))];
    let packet = Packet::Subscribe(Subscribe { packet_id: 1, properties: Properties::default(), filters });
    writer.send(&packet).await.unwrap();
    writer.flush().await.unwrap();
    match tokio::time::timeout(WAIT, reader.next()).await.unwrap().unwrap() {
        Packet::SubAck(ack) => ack.reasons,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_clients_log_in_with_a_token_get_its_roles_rights_and_are_cut_off_on_revoke() {
    let server = start_with(TOKEN, |_| {}).await;
    let viewer = create(&server, "watcher", "viewer", None).await;
    let ingest = create(&server, "feeder", "ingest", None).await;
    let deployer = create(&server, "shipper", "deployer", None).await;

    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &login("watcher", &viewer, "w-1")).await.unwrap();
    assert_eq!(subscribe(&mut writer, &mut reader, "plant/#").await, vec![1], "a viewer subscribes anywhere");

    let (mut feed_reader, mut feeder, _) =
        client::connect(&server.mqtt, &login("feeder", &ingest, "f-1")).await.unwrap();
    assert_eq!(subscribe(&mut feeder, &mut feed_reader, "plant/#").await[0] & 0x80, 0x80, "ingest: publish only");
    feeder.send(&publish("plant/line-1/temp", "21.5", 7)).await.unwrap();
    feeder.flush().await.unwrap();
    let heard = loop {
        match tokio::time::timeout(WAIT, reader.next()).await.unwrap().unwrap() {
            Packet::Publish(p) => break p,
            _ => continue,
        }
    };
    assert_eq!((heard.topic.as_str(), &heard.payload[..]), ("plant/line-1/temp", &b"21.5"[..]));

    match client::connect(&server.mqtt, &login("shipper", &deployer, "s-1")).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x87, "not authorised"),
        other => panic!("a deployer has no MQTT rights: {:?}", other.map(|_| ())),
    }
    let refusal =
        server.eventually("/api/v1/events?type=client.connection_refused", |b| b["events"].get(0).cloned()).await;
    assert!(refusal.to_string().contains("no MQTT rights"), "{refusal}");
    match client::connect(&server.mqtt, &login("watcher", "gbx_watcher_wrong", "w-2")).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x86, "bad user name or password"),
        other => panic!("a wrong token is refused: {:?}", other.map(|_| ())),
    }

    let (status, revoked) = server.call(Method::DELETE, "/api/v1/tokens/watcher", None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let closed = loop {
        match tokio::time::timeout(WAIT, reader.next()).await.expect("closed at once") {
            Ok(Packet::Disconnect(d)) => break Some(d.reason),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    assert!(matches!(closed, Some(0x98) | None), "{closed:?}");
    let revoked_event = server.eventually("/api/v1/events?type=token.revoked", |b| b["events"].get(0).cloned()).await;
    assert_eq!(revoked_event["data"]["disconnected"], 1, "{revoked_event}");
    match client::connect(&server.mqtt, &login("watcher", &viewer, "w-3")).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x86),
        other => panic!("a revoked token logs in no more: {:?}", other.map(|_| ())),
    }
}

// A token that expires while its client is connected ends the connection
// then, as revoking it would, not at the client's next login.
#[tokio::test]
async fn an_mqtt_connection_ends_when_its_token_expires() {
    let server = start_with(TOKEN, |_| {}).await;
    // Long enough to log in and subscribe on a loaded machine.
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let brief = create(&server, "brief", "viewer", Some(&expires)).await;
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &login("brief", &brief, "b-1")).await.unwrap();
    assert_eq!(subscribe(&mut writer, &mut reader, "plant/#").await, vec![1], "valid until it expires");
    let closed = loop {
        match tokio::time::timeout(WAIT, reader.next()).await.expect("closed once the token expired") {
            Ok(Packet::Disconnect(d)) => break Some(d.reason),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    assert_eq!(closed, Some(0xA0), "maximum connect time");
    let ended = server.eventually("/api/v1/events?type=client.disconnected", |b| b["events"].get(0).cloned()).await;
    assert_eq!(ended["data"]["reason"], "token_expired", "{ended}");
    match client::connect(&server.mqtt, &login("brief", &brief, "b-2")).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, 0x86),
        other => panic!("an expired token logs in no more: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn the_admin_token_still_logs_in_as_operator_over_mqtt() {
    let server = start_with(TOKEN, |_| {}).await;
    let options =
        Options { username: Some("operator".into()), password: Some(TOKEN.into()), ..Options::new("backend-1") };
    let (mut reader, mut writer, _) = client::connect(&server.mqtt, &options).await.unwrap();
    assert_eq!(subscribe(&mut writer, &mut reader, "#").await, vec![1]);
}

// Multi-threaded: curl blocks its thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_with_a_generated_certificate() {
    let server = start_with(TOKEN, |c| c.http.https_listen = "127.0.0.1:0".into()).await;
    let running = server.running.as_ref().unwrap();
    let (addr, cert) = (running.https_addr.expect("an HTTPS listener"), running.https_cert.clone().unwrap());
    assert!(cert.ends_with("tls/https-cert.pem"), "generated under the data directory: {}", cert.display());
    let viewer = create(&server, "tls-viewer", "viewer", None).await;
    let curl = |url: String| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(["-H", &format!("Authorization: Bearer {viewer}"), "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .expect("curl runs");
        (String::from_utf8_lossy(&output.stdout).to_string(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (code, errors) = curl(format!("https://127.0.0.1:{}/api/v1/devices", addr.port()));
    assert_eq!(code, "200", "{errors}");
    let (code, _) = curl(format!("https://localhost:{}/api/v1/devices", addr.port()));
    assert_eq!(code, "200", "the certificate names localhost too");
    let key = cert.with_file_name("https-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn with_a_public_listener_function_routes_answer_there_and_not_on_the_api() {
    let server = start_with(TOKEN, |c| c.http.public_listen = "127.0.0.1:0".into()).await;
    let public = format!("http://{}", server.running.as_ref().unwrap().public_http_addr.expect("a public listener"));
    let component = std::fs::read(format!("{}/../../examples/js-http/hello.wasm", env!("CARGO_MANIFEST_DIR")))
        .expect("examples/js-http/hello.wasm: build it with examples/js-http/build.sh");
    let query = "trigger=http:GET%20/hello";
    let (status, body) = server.call(Method::POST, &format!("/api/v1/functions/hello?{query}"), Some(component)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let get = |url: String| async move { reqwest::get(url).await.unwrap().status() };
    assert_eq!(get(format!("{public}/hello")).await, StatusCode::OK);
    assert_eq!(get(format!("{}/hello", server.http)).await, StatusCode::NOT_FOUND, "not on the admin listener");
    assert_eq!(get(format!("{public}/api/v1/openapi.json")).await, StatusCode::NOT_FOUND, "no API on the public one");
    let (status, _) = server.call(Method::GET, "/api/v1/functions", None).await;
    assert_eq!(status, StatusCode::OK);
}
