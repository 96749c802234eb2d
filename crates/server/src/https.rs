//! The API over TLS (`http.https_listen`): its listener and certificate.
//! The certificate is `http.https_cert`/`https_key` when set, else the MQTT
//! listener's (`mqtt.tls_cert`/`tls_key`), else one the built-in CA issues
//! at each start for localhost, 127.0.0.1 and `mqtt.tls_names` ([`issued`]):
//! a client that trusts the CA (`glassbox ca show`) trusts it, across
//! restarts and renewals.

use std::path::{Path, PathBuf};

use anyhow::Context;
use glassbox_gateway::tls::{TlsAcceptor, acceptor};
use glassbox_pki::Authority;
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
pub async fn bind(config: &Config, authority: &Authority) -> anyhow::Result<Option<Https>> {
    if config.http.https_listen.is_empty() {
        return Ok(None);
    }
    let (cert, key) = certificate(config, authority)?;
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
fn certificate(config: &Config, authority: &Authority) -> anyhow::Result<(PathBuf, PathBuf)> {
    let pairs = [(&config.http.https_cert, &config.http.https_key), (&config.mqtt.tls_cert, &config.mqtt.tls_key)];
    match pairs.into_iter().find(|(cert, key)| !cert.is_empty() && !key.is_empty()) {
        Some((cert, key)) => Ok((cert.into(), key.into())),
        None => issued(
            authority,
            &config.data_dir.join(GENERATED_DIR),
            &crate::identity::server_names(&config.mqtt.tls_names),
        ),
    }
}

/// A certificate from the built-in CA for `names`, written to `dir`
/// (`https-cert.pem`: the leaf, then the CA; `https-key.pem`, readable by
/// the owner only), issued anew at each start.
pub fn issued(authority: &Authority, dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("https-cert.pem"), dir.join("https-key.pem"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = authority.issue_server(names).context("issuing the HTTPS certificate from the built-in CA")?;
    write_private(&key, made.key_pem.as_bytes())?;
    std::fs::write(&cert, &made.chain_pem).with_context(|| format!("writing {}", cert.display()))?;
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
    fn an_issued_key_is_the_owners_alone_and_its_chain_ends_in_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::open(&dir.path().join("ca"), None).unwrap();
        let (cert, key) = issued(&authority, dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let chain = std::fs::read_to_string(&cert).unwrap();
        assert!(chain.trim_end().ends_with(authority.certificate_pem().trim_end()), "leaf, then the CA");
        assert!(acceptor(&cert, &key).is_ok());
    }
}
