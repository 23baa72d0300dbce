//! Writes the certificates of sinew-events' TLS tests (rcgen, ECDSA P-256):
//! a test CA, a server certificate for `localhost` only, and a client
//! certificate for the PostgreSQL role `sinew_mtls`. `scripts/tls-services.sh`
//! runs it once per machine and hands the server files to RabbitMQ and
//! PostgreSQL; `tests/tls.rs` reads the CA and the client files.
//!
//! ```text
//! cargo run -p sinew-events --example tls_test_certs -- /var/lib/sinew-test-tls
//! ```
//!
//! Files: `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`,
//! `client-key.pem` (keys mode 0600). Existing files are replaced.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The name the server certificate is issued to (and the only one).
const SERVER_NAME: &str = "localhost";
/// The client certificate's common name: PostgreSQL's `cert` method maps it
/// to the role of the same name.
const CLIENT_NAME: &str = "sinew_mtls";

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::io::Result<()> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)?;
    f.write_all(text.as_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: tls_test_certs DIR");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sinew-events test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, CLIENT_NAME);
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    write(dir, "ca.pem", &ca_cert.pem(), 0o644)?;
    write(dir, "server.pem", &server_cert.pem(), 0o644)?;
    write(dir, "server-key.pem", &server_key.serialize_pem(), 0o600)?;
    write(dir, "client.pem", &client_cert.pem(), 0o644)?;
    write(dir, "client-key.pem", &client_key.serialize_pem(), 0o600)?;
    println!(
        "wrote the test CA, server and client certificates to {}",
        dir.display()
    );
    Ok(())
}
