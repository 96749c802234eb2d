//! CSRs made by the real `openssl` binary: the keys the CA accepts and the
//! ones it refuses, each with the reason the caller sees.

use std::path::Path;
use std::process::Command;

use glassbox_pki::Authority;

/// A CSR for `cn` with a new key made by `openssl req -newkey <newkey>`.
fn openssl_csr(dir: &Path, cn: &str, newkey: &[&str]) -> String {
    let out = dir.join("req.csr");
    let status = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(&out)
        .args(newkey)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn openssl_requests_with_strong_keys_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::open(&dir.path().join("ca"), None).unwrap();
    for newkey in [
        &["-newkey", "rsa:2048"][..],
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &["-newkey", "ed25519"],
    ] {
        let csr = openssl_csr(dir.path(), "th-1", newkey);
        let issued = ca.sign_request(&csr, "th-1", 7).unwrap_or_else(|e| panic!("{newkey:?}: {e}"));
        assert_eq!(issued.info.common_name.as_deref(), Some("th-1"));
    }
}

#[test]
fn weak_and_foreign_openssl_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::open(&dir.path().join("ca"), None).unwrap();
    let weak = openssl_csr(dir.path(), "th-1", &["-newkey", "rsa:1024"]);
    assert_eq!(
        ca.sign_request(&weak, "th-1", 7).unwrap_err().to_string(),
        "weak key: RSA 1024 bits; at least 2048 are needed"
    );
    let other = openssl_csr(dir.path(), "th-2", &["-newkey", "ed25519"]);
    assert_eq!(
        ca.sign_request(&other, "th-1", 7).unwrap_err().to_string(),
        "the CSR's common name is \"th-2\", not the device id \"th-1\""
    );
    let secp256k1 = openssl_csr(dir.path(), "th-1", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"]);
    assert!(ca.sign_request(&secp256k1, "th-1", 7).unwrap_err().to_string().starts_with("unsupported key"));
}
