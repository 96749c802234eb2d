//! Device certificates end to end (issue 20): the real binary serving MQTT
//! over TLS with a server certificate from its built-in CA; CSRs made by
//! the real `openssl`; `mosquitto_pub --cafile --cert --key` and a Rust
//! rustls client for the handshake; renewal over MQTT with
//! `examples/cert-renew/renew.py` (paho-mqtt); revocation closing the live
//! connection; and every bad input refused with a reason the caller sees
//! and an event the operator can query.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const TOKEN: &str = "gbx_certificates_test_token";

struct Served {
    child: Child,
    http: String,
    mqtts_port: String,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(["serve", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("GLASSBOX_ADMIN_TOKEN", TOKEN)
        .env("GLASSBOX_MQTT_REFUSALS_INTERVAL", "1s")
        // Each refusal below is on purpose: no login back-off between them.
        .env("GLASSBOX_MQTT_LOGIN_BACKOFF_MAX", "0s")
        .env("GLASSBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout.lines().map(Result::unwrap).find(|l| l.contains("ready")).expect("a ready line");
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap().to_string();
    let mqtts_port = field("mqtts=").rsplit(':').next().unwrap().to_string();
    Served { http: field("http="), mqtts_port, child, dir }
}

impl Served {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(args)
            .env("GLASSBOX_SERVER", &self.http)
            .env("GLASSBOX_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.text(args)).unwrap()
    }

    /// Runs a command that must fail; returns what it said on stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// The events `args` select, once at least `count` are there (10 s at most).
    fn events(&self, args: &[&str], count: usize) -> Vec<Value> {
        let mut all = vec!["events", "query", "--json"];
        all.extend_from_slice(args);
        for _ in 0..200 {
            let found = self.json(&all).as_array().unwrap().clone();
            if found.len() >= count {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fewer than {count} events for {args:?}");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `mosquitto_pub` over TLS with `extra` credentials; whether it published.
    fn mosquitto_pub(&self, client_id: &str, extra: &[&str]) -> bool {
        let ca = self.file("ca.crt");
        Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &self.mqtts_port, "--cafile", ca.to_str().unwrap(), "-i", client_id])
            .args(extra)
            .args(["-t", &format!("devices/{client_id}/t"), "-q", "1", "-m", "hi"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// A `device.connection_refused` of `device` whose detail holds `why`.
    fn refusal_names(&self, device: &str, why: &str) {
        for _ in 0..200 {
            let refusals =
                self.json(&["events", "query", "--json", "--device", device, "--type", "device.connection_refused"]);
            let details: Vec<String> =
                refusals.as_array().unwrap().iter().map(|e| e["data"]["detail"].to_string()).collect();
            if details.iter().any(|d| d.contains(why)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no device.connection_refused of {device} saying {why:?}");
    }
}

/// A key and CSR for common name `cn` made by `openssl req -newkey <newkey>`.
fn openssl_csr(dir: &Path, name: &str, cn: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
    let (key, csr) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.csr")));
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(newkey)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (key, csr)
}

const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// A CONNECT (3.1.1, clean session, no user name or password) over TLS
/// with a rustls client presenting `cert`/`key`; the CONNACK's return code.
async fn rustls_connect(served: &Served, client_id: &str, cert: &Path, key: &Path) -> u8 {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(served.file("ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{}", served.mqtts_port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("the handshake");
    let id = client_id.as_bytes();
    let mut connect = vec![0x10, (12 + id.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id);
    tls.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).await.expect("a CONNACK");
    assert_eq!(connack[0], 0x20, "a CONNACK");
    connack[3]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_certificate_is_issued_used_renewed_over_mqtt_and_revoked() {
    let served = serve();
    let dir = served.dir.path().to_path_buf();
    served.json(&["devices", "create", "th-1", "--json"]);
    let secret = served.json(&["devices", "create", "th-2", "--json"])["secret"].as_str().unwrap().to_string();
    std::fs::write(served.file("ca.crt"), served.text(&["ca", "show"])).unwrap();
    let ca = served.json(&["ca", "show", "--json"]);
    assert!(!ca.to_string().contains("PRIVATE KEY"), "the CA key is never served");

    // Issue from a CSR the real openssl made; connect with mosquitto_pub and with rustls.
    let (key, csr) = openssl_csr(&dir, "th-1", "th-1", EC);
    let issued = served.json(&["devices", "certificate", "issue", "th-1", "--csr", csr.to_str().unwrap(), "--json"]);
    let cert = dir.join("th-1.crt");
    std::fs::write(&cert, issued["pem"].as_str().unwrap()).unwrap();
    let tls = ["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()];
    assert!(served.mosquitto_pub("th-1", &tls), "mosquitto_pub with the certificate, no password");
    assert_eq!(served.events(&["--device", "th-1", "--type", "device.message"], 1).len(), 1);
    assert_eq!(rustls_connect(&served, "th-1", &cert, &key).await, 0, "rustls: accepted");
    assert_eq!(served.events(&["--device", "th-1", "--type", "device.certificate_issued"], 1).len(), 1);
    let perimeter = served.json(&["perimeter", "--json"]);
    let devices = &perimeter["devices"];
    assert_eq!((devices["secret_and_certificate"].clone(), devices["secret_only"].clone()), (1.into(), 1.into()));
    assert_eq!(devices["expiring"][0]["serial"], issued["serial"], "{devices}");

    // Another device's id with th-1's certificate is refused, naming why.
    assert_ne!(rustls_connect(&served, "th-2", &cert, &key).await, 0);
    served.refusal_names("th-2", "the client certificate is for \\\"th-1\\\", not client id \\\"th-2\\\"");
    // A password device still connects over TLS; a renewal it publishes for th-1 is refused.
    assert!(served.mosquitto_pub("th-2", &["-u", "th-2", "-P", &secret]), "password over TLS");
    let foreign = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &served.mqtts_port, "--cafile", served.file("ca.crt").to_str().unwrap()])
        .args(["-i", "th-2", "-u", "th-2", "-P", &secret, "-V", "mqttv5", "-q", "1"])
        .args(["-t", "$glassbox/devices/th-1/certificate/renew", "-m", "{\"csr\": \"x\"}"])
        .output()
        .unwrap();
    let refused = served.events(&["--device", "th-2", "--type", "mqtt.publish_refused"], 1);
    assert_eq!(refused[0]["subject"], "$glassbox/devices/th-1/certificate/renew", "{foreign:?}");

    // Bad CSRs: each refused with its reason and recorded.
    let (_, other) = openssl_csr(&dir, "other", "th-2", EC);
    let (_, weak) = openssl_csr(&dir, "weak", "th-1", &["-newkey", "rsa:1024"]);
    let garbage = dir.join("garbage.csr");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n")
        .unwrap();
    for (csr, reason) in [
        (&other, "the CSR's common name is \"th-2\", not the device id \"th-1\""),
        (&weak, "weak key: RSA 1024 bits; at least 2048 are needed"),
        (&garbage, "malformed CSR"),
    ] {
        let said = served.refused(&["devices", "certificate", "issue", "th-1", "--csr", csr.to_str().unwrap()]);
        assert!(said.contains(reason), "{reason:?} in {said}");
    }
    let refusals = served.events(&["--device", "th-1", "--type", "device.certificate_refused"], 3);
    assert!(refusals.iter().any(|e| e["data"]["reason"].as_str().unwrap().starts_with("weak key")));

    // Renewal over MQTT with the example script; the old certificate stops at the new one's first use.
    let (old_cert, old_key) = (dir.join("old.crt"), dir.join("old.key"));
    std::fs::copy(&cert, &old_cert).unwrap();
    std::fs::copy(&key, &old_key).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cert-renew/renew.py");
    let renewed = Command::new("python3")
        .args([script, "--id", "th-1", "--host", "localhost", "--port", &served.mqtts_port, "--cafile"])
        .arg(served.file("ca.crt"))
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&renewed.stdout);
    assert!(renewed.status.success(), "renew.py: {said} {}", String::from_utf8_lossy(&renewed.stderr));
    assert!(said.starts_with("renewed: serial "), "{said}");
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&old_cert).unwrap());
    served.events(&["--device", "th-1", "--type", "device.certificate_renewed"], 1);
    let old = ["--cert", old_cert.to_str().unwrap(), "--key", old_key.to_str().unwrap()];
    assert!(!served.mosquitto_pub("th-1", &old), "the old certificate after the new one was used");
    served.refusal_names("th-1", "was renewed as");

    // Revocation closes the live connection at once, and refuses the next one.
    // Four connections so far: mosquitto_pub, rustls, and renew.py's two.
    let before = served.events(&["--device", "th-1", "--type", "device.connected"], 4).len();
    let mut live = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &served.mqtts_port, "--cafile", served.file("ca.crt").to_str().unwrap()])
        .args(["-i", "th-1", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap(), "-t", "devices/th-1/in"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let connected = served.events(&["--device", "th-1", "--type", "device.connected"], before + 1).len();
    let revoked = served.json(&["devices", "certificate", "revoke", "th-1", "--all", "--json"]);
    let _ = live.kill();
    let _ = live.wait();
    assert_eq!(revoked["disconnected"], true, "{revoked}");
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2, "the renewed one and the old one: {revoked}");
    let ends = served.events(&["--device", "th-1", "--type", "device.disconnected"], connected);
    assert!(ends.iter().any(|e| e["data"]["reason"] == "administrative"), "closed by the revocation");
    assert!(!served.mosquitto_pub("th-1", &tls), "a revoked certificate");
    served.refusal_names("th-1", "was revoked at");
    let list = served.json(&["devices", "certificate", "list", "th-1", "--json"]);
    assert!(list["certificates"].as_array().unwrap().iter().all(|c| !c["revoked_at"].is_null()));
    served.events(&["--device", "th-1", "--type", "device.certificate_revoked"], 1);

    // A certificate-only device no longer logs in with its password.
    served.text(&["devices", "update", "th-2", "--certificate-only", "true"]);
    assert!(!served.mosquitto_pub("th-2", &["-u", "th-2", "-P", &secret]), "certificate-only");
    served.refusal_names("th-2", "certificate-only");
}
