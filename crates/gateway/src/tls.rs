//! MQTT over TLS: a rustls acceptor from PEM (certificate chain and private
//! key, as Mosquitto's `certfile` / `keyfile` take them), optionally asking
//! clients for a certificate issued by the platform's CA.
//!
//! Client certificates are optional at the TLS layer, so password devices
//! still connect over TLS. One that is presented must chain to the CA; an
//! expired one is let through the handshake so that the CONNECT can be
//! refused with a reason the device sees and the operator can query
//! (`broker::auth` checks expiry, revocation and the common name against
//! the certificate store, by fingerprint).

use std::path::Path;
use std::sync::Arc;

pub use glassbox_pki::CertificateInfo;
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, ServerConfig, SignatureScheme,
};

/// A server's certificate chain (leaf first) and private key.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// Reads `cert` (PEM, leaf first) and `key` (PEM: PKCS#8, PKCS#1 or
    /// SEC1). Errors name the file and what to do.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("reading certificates from {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!("reading the private key from {}: {e} (PEM, PKCS#8, PKCS#1 or SEC1)", key.display())
        })?;
        Ok(Self { chain, key })
    }

    /// From PEM text, as the built-in CA issues it.
    pub fn from_pem(chain: &str, key: &str) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the server certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("the server key: {e}"))?;
        Ok(Self { chain, key })
    }
}

/// An acceptor serving `cert` with `key`, without client certificates.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    acceptor_for(ServerIdentity::from_files(cert, key)?, None)
}

/// An acceptor serving `identity`; with `client_ca` (DER), clients may
/// present a certificate that chains to it.
pub fn acceptor_for(identity: ServerIdentity, client_ca: Option<&[u8]>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from(ca.to_vec())).map_err(|e| format!("the CA certificate: {e}"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("the client certificate check: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(ExpiryAtConnect(verifier)))
        }
    };
    let config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificate a client presented in `connection`'s handshake, read.
pub fn peer_certificate(connection: &tokio_rustls::rustls::ServerConnection) -> Option<CertificateInfo> {
    let leaf = connection.peer_certificates()?.first()?;
    glassbox_pki::inspect(leaf).ok()
}

/// The CA's check, except that an expired certificate passes the handshake:
/// the CONNECT is then refused naming the expiry. Only a certificate whose
/// fingerprint the store holds is ever accepted there, and the handshake
/// still proves the client holds its key.
#[derive(Debug)]
struct ExpiryAtConnect(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ExpiryAtConnect {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            Err(Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })) => {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
