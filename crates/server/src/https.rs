//! The API over TLS (`http.https_listen`): its listener and certificate.
//! The certificate is `http.https_cert`/`https_key` when set, else the MQTT
//! listener's (`mqtt.tls_cert`/`tls_key`), else one generated once for
//! localhost and 127.0.0.1 and kept under the data directory
//! ([`generated`], the single place a built-in CA takes over).

use std::path::{Path, PathBuf};

use anyhow::Context;
use glassbox_gateway::tls::{TlsAcceptor, acceptor};
use tokio::net::TcpListener;

use crate::Config;

/// The HTTPS listener, bound, with what it serves.
pub struct Https {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    /// The certificate (PEM) it presents: what a client trusts.
    pub cert: PathBuf,
}

/// Where a generated certificate and its key are kept, under the data directory.
const GENERATED_DIR: &str = "tls";

/// Binds the HTTPS listener when `http.https_listen` is set.
pub async fn bind(config: &Config) -> anyhow::Result<Option<Https>> {
    if config.http.https_listen.is_empty() {
        return Ok(None);
    }
    let (cert, key) = certificate(config)?;
    let acceptor =
        acceptor(&cert, &key).map_err(|e| anyhow::anyhow!("HTTPS (http.https_cert, http.https_key): {e}"))?;
    let listener = TcpListener::bind(&config.http.https_listen).await.with_context(|| {
        format!(
            "binding HTTPS to {}: choose another address with --https (http.https_listen)",
            config.http.https_listen
        )
    })?;
    Ok(Some(Https { listener, acceptor, cert }))
}

/// The certificate and key files HTTPS serves.
fn certificate(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let pairs = [(&config.http.https_cert, &config.http.https_key), (&config.mqtt.tls_cert, &config.mqtt.tls_key)];
    match pairs.into_iter().find(|(cert, key)| !cert.is_empty() && !key.is_empty()) {
        Some((cert, key)) => Ok((cert.into(), key.into())),
        None => generated(&config.data_dir.join(GENERATED_DIR)),
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 in `dir`
/// (`https-cert.pem`, and `https-key.pem` readable by the owner only),
/// made on first use and kept, so clients trust one certificate across restarts.
pub fn generated(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("https-cert.pem"), dir.join("https-key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .context("generating the HTTPS certificate")?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed HTTPS certificate for localhost and 127.0.0.1");
    Ok((cert, key))
}

/// Writes `bytes` to a new file only its owner may read or write (0600).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_generated_key_is_the_owners_alone_and_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generated(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let first = std::fs::read(&cert).unwrap();
        generated(dir.path()).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "made once");
        assert!(acceptor(&cert, &key).is_ok());
    }
}
