//! The checks a device's certificate signing request must pass before the
//! CA signs it: a well-formed PEM CSR with a valid self-signature, the
//! device's id as its common name, and a strong key.

use rcgen::CertificateSigningRequestParams;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::x509::SubjectPublicKeyInfo;

/// The smallest RSA modulus accepted, in bits.
pub const RSA_BITS_MIN: usize = 2048;

/// Why a CSR was refused; the text is what the device or operator sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed CSR: {0}")]
    Malformed(String),
    #[error("the CSR's common name is {found:?}, not the device id {expected:?}")]
    WrongCommonName { expected: String, found: String },
    #[error("weak key: RSA {bits} bits; at least {RSA_BITS_MIN} are needed")]
    WeakKey { bits: usize },
    #[error("unsupported key: {0}; use RSA (2048 bits or more), EC P-256, EC P-384 or Ed25519")]
    UnsupportedKey(String),
    #[error("the CSR's signature does not verify with its own key")]
    BadSignature,
}

/// A request that passed every check, ready to sign.
pub(crate) struct Checked {
    pub request: CertificateSigningRequestParams,
}

/// Parses `pem` and checks it is a request for `device`.
pub(crate) fn check(pem: &str, device: &str) -> Result<Checked, RequestError> {
    let der = pem_contents(pem)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| RequestError::Malformed(format!("not a PKCS#10 request: {e}")))?;
    let info = &csr.certification_request_info;
    check_key(&info.subject_pki)?;
    let found = info.subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("");
    if found != device {
        return Err(RequestError::WrongCommonName { expected: device.into(), found: found.into() });
    }
    csr.verify_signature().map_err(|_| RequestError::BadSignature)?;
    let request = CertificateSigningRequestParams::from_der(&der.as_slice().into()).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => RequestError::BadSignature,
        other => RequestError::Malformed(other.to_string()),
    })?;
    Ok(Checked { request })
}

/// The DER inside a `CERTIFICATE REQUEST` PEM block.
fn pem_contents(pem: &str) -> Result<Vec<u8>, RequestError> {
    use rustls_pki_types::CertificateSigningRequestDer;
    use rustls_pki_types::pem::PemObject;
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") && !pem.contains("-----BEGIN NEW CERTIFICATE REQUEST-----")
    {
        return Err(RequestError::Malformed(
            "no PEM block \"-----BEGIN CERTIFICATE REQUEST-----\" (make one with `openssl req -new`)".into(),
        ));
    }
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| RequestError::Malformed(format!("the PEM block does not decode: {e}")))
}

/// RSA of at least [`RSA_BITS_MIN`] bits, EC on P-256 or P-384, or Ed25519.
fn check_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), RequestError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = rsa_bits(spki)?;
        return if bits >= RSA_BITS_MIN { Ok(()) } else { Err(RequestError::WeakKey { bits }) };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(RequestError::UnsupportedKey(format!("EC curve {c}"))),
            None => Err(RequestError::Malformed("an EC key without its curve".into())),
        };
    }
    Err(RequestError::UnsupportedKey(format!("key algorithm {algorithm}")))
}

/// The RSA modulus's length in bits, leading zeros aside.
fn rsa_bits(spki: &SubjectPublicKeyInfo<'_>) -> Result<usize, RequestError> {
    use x509_parser::public_key::PublicKey;
    let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
        return Err(RequestError::Malformed("an RSA key that does not parse".into()));
    };
    let modulus: Vec<u8> = rsa.modulus.iter().copied().skip_while(|b| *b == 0).collect();
    Ok(modulus.first().map_or(0, |first| modulus.len() * 8 - first.leading_zeros() as usize))
}
