//! `glassbox ca show` and `glassbox devices certificate …`: the CA's
//! certificate, and device certificates issued from a CSR, listed and
//! revoked; `devices create ID --cert` makes a key and a CSR here (the key
//! never leaves this machine) and has the CA sign it.

use std::path::{Path, PathBuf};

use glassbox_api_types::{CertificateAuthority, CertificateList, CertificatesRevoked, IssueCertificate, Warned};
use glassbox_store::CertificateRecord;

use crate::client::{Client, segment};
use crate::{Remote, render};

#[derive(clap::Subcommand)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) devices and clients trust; the key is never served.
    #[command(after_help = "glassbox ca show > glassbox-ca.crt\n\
        mosquitto_pub --cafile glassbox-ca.crt --cert th-1.crt --key th-1.key -p 8883 -i th-1 -t t -m hi")]
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    remote: Remote,
    /// Print JSON: certificate, subject, serial, fingerprint, not_after, imported.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum CertificateCommand {
    /// Sign the device's CSR (PEM; common name = the device id; RSA 2048+,
    /// EC P-256/P-384 or Ed25519) and print the certificate.
    #[command(after_help = "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n\
        \x20   -keyout th-1.key -subj /CN=th-1 -out th-1.csr\n\
        glassbox devices certificate issue th-1 --csr th-1.csr > th-1.crt")]
    Issue(IssueArgs),
    /// The device's certificates, newest first: serial, validity, state.
    List(DeviceArgs),
    /// Revoke one certificate (--serial) or all of them (--all); the
    /// device's live connection is closed at once.
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct IssueArgs {
    /// The device id.
    id: String,
    /// The CSR file (PEM).
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// Validity in days (default: the server's ca.device_days, 90).
    #[arg(long)]
    days: Option<u32>,
    #[command(flatten)]
    remote: Remote,
    /// Print the whole record as JSON (serial, not_after, pem, …) instead of the PEM.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DeviceArgs {
    /// The device id.
    id: String,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "all"])))]
pub struct RevokeArgs {
    /// The device id.
    id: String,
    /// The certificate's serial (hex, as `list` shows it).
    #[arg(long)]
    serial: Option<String>,
    /// Every certificate of the device.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn ca(command: CaCommand) -> anyhow::Result<()> {
    let CaCommand::Show(a) = command;
    let ca: CertificateAuthority = a.remote.client()?.fetch("/api/v1/ca", &[]).await?;
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&ca)?),
        false => print!("{}", ca.certificate),
    }
    Ok(())
}

pub async fn run(command: CertificateCommand) -> anyhow::Result<()> {
    match command {
        CertificateCommand::Issue(a) => {
            let csr = std::fs::read_to_string(&a.csr)
                .map_err(|e| anyhow::anyhow!("reading the CSR {}: {e}", a.csr.display()))?;
            let issued = issue(&a.remote.client()?, &a.id, csr, a.days).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&issued)?),
                false => print!("{}", issued.answer.pem),
            }
            warn(&issued.warning);
            Ok(())
        }
        CertificateCommand::List(a) => {
            let path = format!("/api/v1/devices/{}/certificates", segment(&a.id));
            let list: CertificateList<CertificateRecord> = a.remote.client()?.fetch(&path, &[]).await?;
            match a.json {
                true => println!("{}", serde_json::to_string_pretty(&list)?),
                false => render::table(&HEADERS, &list.certificates.iter().map(row).collect::<Vec<_>>()),
            }
            Ok(())
        }
        CertificateCommand::Revoke(a) => revoke(a).await,
    }
}

pub(crate) async fn issue(
    client: &Client,
    id: &str,
    csr: String,
    days: Option<u32>,
) -> anyhow::Result<Warned<CertificateRecord>> {
    let path = format!("/api/v1/devices/{}/certificates", segment(id));
    let body = serde_json::to_string(&IssueCertificate { csr, days })?;
    client.post_as(&path, "application/json", body).await
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let path = match &a.serial {
        Some(serial) => format!("/api/v1/devices/{}/certificates/{}", segment(&a.id), segment(serial)),
        None => format!("/api/v1/devices/{}/certificates", segment(&a.id)),
    };
    let answer: Warned<CertificatesRevoked<CertificateRecord>> = a.remote.client()?.delete_as(&path).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let revoked = &answer.answer.revoked;
        println!("revoked {} of {}", render::count(revoked.len(), "certificate"), a.id);
        for certificate in revoked {
            println!("  {}", certificate.serial);
        }
        if answer.answer.disconnected {
            println!("its live connection was closed");
        }
    }
    warn(&answer.warning);
    Ok(())
}

const HEADERS: [&str; 5] = ["SERIAL", "ISSUED", "NOT AFTER", "STATE", "BY"];

fn row(c: &CertificateRecord) -> Vec<String> {
    let state = match (&c.revoked_at, &c.renewed_by) {
        (Some(_), _) => format!("revoked ({})", c.revoked_reason.as_deref().unwrap_or("")),
        (None, _) if c.not_after <= chrono::Utc::now() => "expired".into(),
        (None, Some(next)) => format!("renewed as {next}"),
        (None, None) => "valid".into(),
    };
    vec![c.serial.clone(), render::clock(c.issued_at), render::clock(c.not_after), state, c.issued_by.clone()]
}

fn warn(warning: &Option<String>) {
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
}

/// For `devices create ID --cert`: an EC P-256 key and its CSR made here,
/// the certificate signed by the server; writes `ID.key` (0600), `ID.crt`
/// and `ca.crt` into `dir` and names them.
pub async fn quick_start(client: &Client, id: &str, dir: &Path) -> anyhow::Result<()> {
    let (key, csr) = key_and_csr(id)?;
    let issued = issue(client, id, csr, None).await?;
    let ca: CertificateAuthority = client.fetch("/api/v1/ca", &[]).await?;
    let (key_file, cert_file, ca_file) =
        (dir.join(format!("{id}.key")), dir.join(format!("{id}.crt")), dir.join("ca.crt"));
    write_private(&key_file, &key.serialize_pem())?;
    write(&cert_file, &issued.answer.pem)?;
    write(&ca_file, &ca.certificate)?;
    println!("certificate {} (until {})", issued.answer.serial, render::clock(issued.answer.not_after));
    println!("  key          {} (0600; never sent to the server)", key_file.display());
    println!("  certificate  {}", cert_file.display());
    println!("  CA           {}", ca_file.display());
    println!(
        "mosquitto_pub -h localhost -p 8883 --cafile {} --cert {} --key {} -i {id} -t devices/{id}/hello -m hi",
        ca_file.display(),
        cert_file.display(),
        key_file.display()
    );
    warn(&issued.warning);
    Ok(())
}

/// A new EC P-256 key and a CSR (PEM) whose common name is `id`.
pub(crate) fn key_and_csr(id: &str) -> anyhow::Result<(rcgen::KeyPair, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, id);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes()).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
