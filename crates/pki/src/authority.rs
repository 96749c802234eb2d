//! The CA itself: its files, and signing device and server certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};

use crate::certificate::{CertificateInfo, inspect};
use crate::request::{RequestError, check};

/// How long the generated CA is valid, in days (ten years).
const CA_DAYS: i64 = 3650;

/// How long a server certificate the CA issues is valid, in days.
const SERVER_DAYS: i64 = 365;

/// Why the CA could not be opened or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("{path}: {error}")]
    File { path: PathBuf, error: String },
    #[error("the CA certificate and key: {0}")]
    Invalid(String),
    #[error("signing: {0}")]
    Signing(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("days must be between 1 and {max}, not {days}")]
    Days { days: u32, max: u32 },
}

/// The certificate authority: signs with its key, which never leaves it.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (and, for an imported intermediate, the rest of its chain), PEM.
    chain_pem: String,
    /// The CA certificate alone, DER: the trust anchor clients are checked against.
    certificate_der: Vec<u8>,
    imported: bool,
}

/// A certificate the CA signed.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    pub info: CertificateInfo,
}

/// A server certificate and its key, for a TLS listener.
pub struct ServerCertificate {
    /// The leaf, then the CA's chain, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl Authority {
    /// The CA in `dir` (`ca.pem`, `ca.key`), created there on first use; or,
    /// with `import` (certificate PEM, key PEM), the operator's own CA or
    /// intermediate, read from those files and never copied.
    pub fn open(dir: &Path, import: Option<(&Path, &Path)>) -> Result<Self, AuthorityError> {
        match import {
            Some((cert, key)) => Self::load(cert, key, true),
            None => {
                let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
                if !cert.exists() {
                    create(dir, &cert, &key)?;
                }
                Self::load(&cert, &key, false)
            }
        }
    }

    fn load(cert: &Path, key: &Path, imported: bool) -> Result<Self, AuthorityError> {
        let chain_pem = read(cert)?;
        let key_pem = read(key)?;
        let key_pair = KeyPair::from_pem(&key_pem).map_err(|e| file_error(key, format!("not a private key: {e}")))?;
        let first = first_certificate(&chain_pem).map_err(|e| file_error(cert, e))?;
        let issuer = Issuer::from_ca_cert_der(&first.as_slice().into(), key_pair)
            .map_err(|e| file_error(cert, format!("not a CA certificate: {e}")))?;
        Ok(Self { issuer, chain_pem, certificate_der: first, imported })
    }

    /// The CA's certificate chain, PEM: what devices and clients trust.
    pub fn certificate_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA certificate, DER: the trust anchor for client certificates.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Whether the operator's own CA was imported (rather than generated).
    pub fn imported(&self) -> bool {
        self.imported
    }

    /// The CA certificate's own details (for `glassbox ca show`).
    pub fn info(&self) -> Result<CertificateInfo, AuthorityError> {
        inspect(&self.certificate_der).map_err(AuthorityError::Invalid)
    }

    /// Signs the CSR `pem` of device `device` for `days`; refuses a request
    /// for another common name, with a weak key, or malformed.
    pub fn sign_request(&self, pem: &str, device: &str, days: u32) -> Result<Issued, AuthorityError> {
        check_days(days)?;
        let checked = check(pem, device)?;
        let mut params = leaf_params(device, i64::from(days))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&checked.request.public_key, &self.issuer)
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        let info = inspect(cert.der()).map_err(AuthorityError::Signing)?;
        Ok(Issued { pem: cert.pem(), info })
    }

    /// A new key and a server certificate for `names` (DNS names or IP
    /// addresses), valid for a year.
    pub fn issue_server(&self, names: &[String]) -> Result<ServerCertificate, AuthorityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| AuthorityError::Signing(e.to_string()))?;
        let mut params = leaf_params(names.first().map_or("glassbox", String::as_str), SERVER_DAYS)?;
        params.subject_alt_names = CertificateParams::new(names.to_vec())
            .map_err(|e| AuthorityError::Signing(format!("server names {names:?}: {e}")))?
            .subject_alt_names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Ok(ServerCertificate { chain_pem: format!("{}{}", cert.pem(), self.chain_pem), key_pem: key.serialize_pem() })
    }
}

fn check_days(days: u32) -> Result<(), AuthorityError> {
    match days {
        1..=crate::DEVICE_DAYS_MAX => Ok(()),
        _ => Err(AuthorityError::Days { days, max: crate::DEVICE_DAYS_MAX }),
    }
}

/// A leaf's parameters: `common_name`, valid from a minute ago for `days`,
/// a random serial, signed with the CA's key identifier.
fn leaf_params(common_name: &str, days: i64) -> Result<CertificateParams, AuthorityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(days);
    params.serial_number = Some(random_serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// 128 random bits, positive (the high bit clear) and never starting with
/// a zero byte, so the serial's hex is what `openssl x509 -serial` prints.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    SerialNumber::from_slice(&bytes)
}

/// Generates a CA in `dir`: the key first (0600), then the certificate.
fn create(dir: &Path, cert: &Path, key: &Path) -> Result<(), AuthorityError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e.to_string()))?;
    restrict(dir, 0o700)?;
    let key_pair =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| AuthorityError::Signing(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "Glassbox");
    params.distinguished_name.push(DnType::CommonName, "Glassbox device CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    params.serial_number = Some(random_serial());
    let certificate = params.self_signed(&key_pair).map_err(|e| AuthorityError::Signing(e.to_string()))?;
    write_private(key, &key_pair.serialize_pem())?;
    std::fs::write(cert, certificate.pem()).map_err(|e| file_error(cert, e.to_string()))
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), AuthorityError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| file_error(path, e.to_string()))?;
    file.write_all(contents.as_bytes()).map_err(|e| file_error(path, e.to_string()))?;
    restrict(path, 0o600)
}

fn restrict(path: &Path, mode: u32) -> Result<(), AuthorityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| file_error(path, e.to_string()))?;
    }
    let _ = (path, mode);
    Ok(())
}

fn read(path: &Path) -> Result<String, AuthorityError> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))
}

fn first_certificate(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")?
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| format!("the certificate does not decode: {e}"))
}

fn file_error(path: &Path, error: String) -> AuthorityError {
    AuthorityError::File { path: path.to_path_buf(), error }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn device_csr(id: &str, alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, id);
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_new_ca_is_created_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::open(&dir.path().join("ca"), None).unwrap();
        let again = Authority::open(&dir.path().join("ca"), None).unwrap();
        assert_eq!(first.certificate_pem(), again.certificate_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca/ca.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_request_for_the_device_is_signed_and_one_for_another_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open(dir.path(), None).unwrap();
        let issued = ca.sign_request(&device_csr("th-1", &rcgen::PKCS_ED25519), "th-1", 30).unwrap();
        assert_eq!(issued.info.common_name.as_deref(), Some("th-1"));
        assert!(issued.info.not_after > Utc::now() + chrono::Duration::days(29));
        let other = ca.sign_request(&device_csr("th-2", &PKCS_ECDSA_P256_SHA256), "th-1", 30).unwrap_err();
        assert!(other.to_string().contains("not the device id \"th-1\""), "{other}");
        let garbage = ca.sign_request("hello", "th-1", 30).unwrap_err();
        assert!(garbage.to_string().starts_with("malformed CSR"), "{garbage}");
    }

    #[test]
    fn a_server_certificate_names_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open(dir.path(), None).unwrap();
        let server = ca.issue_server(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(server.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(server.key_pem.contains("PRIVATE KEY"));
    }
}
