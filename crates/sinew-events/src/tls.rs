//! TLS to the broker (`amqps://`) and to PostgreSQL: rustls with ring,
//! configured by [`TlsConfig`], and the clear errors a failed handshake
//! becomes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sinew_core::config::Secret;

use crate::error::Error;

/// The most bytes read from a CA or certificate file (PEM bundles are a
/// few hundred KiB at most; a larger file is the wrong file).
const MAX_PEM_FILE: u64 = 4 * 1024 * 1024;

/// TLS settings of a connection to the broker (`amqp_tls`, used with an
/// `amqps://` URL) or to PostgreSQL (`database_tls`).
///
/// ```toml
/// amqp_url = "amqps://orders:secret@broker.internal:5671/%2f"
///
/// [amqp_tls]
/// ca_file = "/etc/sinew/ca.pem"           # trusted beside the system's roots
/// cert_file = "/etc/sinew/orders.pem"     # client certificate (mTLS) ...
/// key = { file = "/run/secrets/orders-key.pem" }  # ... and its key
/// verify_hostname = true                  # verify-full (the default)
/// ```
///
/// Every field is optional: `[amqp_tls]` alone (or an `amqps://` URL with
/// no section) verifies the server against the system's roots and its name
/// against the URL's host. The files are read at every connect, so a
/// rotated certificate is picked up at the next reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TlsConfig {
    /// PEM file of CA certificates that may sign the server's certificate,
    /// trusted in addition to the system's roots (PostgreSQL's
    /// `sslrootcert`). Default: the system's roots only.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (then its chain), sent when the
    /// server asks for one (mutual TLS). Needs `key`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1),
    /// from `{ file = … }`, `{ env = … }`, `{ base64 = … }` or `{ text = … }`.
    pub key: Option<Secret>,
    /// Check that the server's certificate names the URL's host
    /// (PostgreSQL's `verify-full`). `false` checks the chain only
    /// (`verify-ca`): any certificate a trusted CA issued passes, whatever
    /// name it carries, so it needs `ca_file`. Default true.
    pub verify_hostname: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key: None,
            verify_hostname: true,
        }
    }
}

/// What a TLS config was loaded for: the config key (for messages) and the
/// target (for [`Error::Tls`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Role {
    /// `amqp_tls` or `database_tls`.
    pub(crate) key: &'static str,
    /// `broker` or `database`.
    pub(crate) target: &'static str,
}

pub(crate) const BROKER: Role = Role {
    key: "amqp_tls",
    target: "broker",
};
pub(crate) const DATABASE: Role = Role {
    key: "database_tls",
    target: "database",
};

fn read_pem_file(path: &Path, what: String) -> Result<Vec<u8>, Error> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| Error::Config(format!("{what} {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(Error::Config(format!(
            "{what} {} is larger than {MAX_PEM_FILE} bytes; is it the right file?",
            path.display()
        )));
    }
    Ok(bytes)
}

fn certificates(
    pem: &[u8],
    path: &Path,
    what: String,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The PEM files and key of a [`TlsConfig`], read and checked.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The CA file's bytes (PEM) and certificates, if one is set.
    pub(crate) ca: Option<(Vec<u8>, Vec<CertificateDer<'static>>)>,
    /// The client certificate chain (PEM bytes and parsed) and key (PEM bytes).
    pub(crate) client: Option<ClientIdentity>,
    pub(crate) verify_hostname: bool,
}

/// A client certificate chain and its key.
pub(crate) struct ClientIdentity {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key_pem: Vec<u8>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Read and check the files and the key (a clear [`Error::Config`]
    /// naming the key and the file when one is missing or wrong).
    pub(crate) fn load(&self, role: Role) -> Result<Loaded, Error> {
        let key = role.key;
        let ca = match &self.ca_file {
            Some(path) => {
                let pem = read_pem_file(path, format!("{key}.ca_file"))?;
                let certs = certificates(&pem, path, format!("{key}.ca_file"))?;
                Some((pem, certs))
            }
            None => None,
        };
        if !self.verify_hostname && ca.is_none() {
            return Err(Error::Config(format!(
                "{key}.verify_hostname = false needs {key}.ca_file: checking the chain \
                 against the system's public roots alone would accept any site's certificate"
            )));
        }
        let client = match (&self.cert_file, &self.key) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "{key}.cert_file and {key}.key go together (a client certificate needs its key)"
                )))
            }
            (Some(path), Some(secret)) => {
                let cert_pem = read_pem_file(path, format!("{key}.cert_file"))?;
                let chain = certificates(&cert_pem, path, format!("{key}.cert_file"))?;
                let key_pem = secret
                    .load()
                    .map_err(|e| Error::Config(format!("{key}.key: {e}")))?;
                let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Error::Config(format!(
                        "{key}.key ({}) is not a PEM private key: {e}",
                        secret.origin()
                    ))
                })?;
                Some(ClientIdentity {
                    cert_pem,
                    chain,
                    key_pem,
                    key: private,
                })
            }
        };
        Ok(Loaded {
            ca,
            client,
            verify_hostname: self.verify_hostname,
        })
    }

    /// A rustls client config: the system's roots plus `ca_file`, the
    /// client certificate if set, the host name checked unless
    /// `verify_hostname = false`.
    pub(crate) fn client_config(&self, role: Role) -> Result<Arc<ClientConfig>, Error> {
        let loaded = self.load(role)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "a system root certificate could not be read");
        }
        roots.add_parsable_certificates(native.certs);
        if let Some((_, certs)) = loaded.ca {
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!(
                        "{}.ca_file: a certificate is not a usable CA: {e}",
                        role.key
                    ))
                })?;
            }
        }
        let tls_error = |e: rustls::Error| Error::Config(format!("{}: {e}", role.key));
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| {
                    Error::Config(format!("{}: no trusted root certificate: {e}", role.key))
                })?;
        let verifier: Arc<dyn ServerCertVerifier> = if loaded.verify_hostname {
            verifier
        } else {
            Arc::new(ChainOnly(verifier))
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match loaded.client {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| {
                    Error::Config(format!(
                        "{}.cert_file and {}.key do not make a client identity: {e}",
                        role.key, role.key
                    ))
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Verifies the chain and the signatures, not the name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error somewhere in `err`'s chain (through `io::Error`s).
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = find_rustls_error(inner) {
                    return Some(r);
                }
            }
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        cur = e.source();
    }
    None
}

/// What a handshake error means, in the config's terms.
pub(crate) fn explain(err: &rustls::Error, tls: &TlsConfig, role: Role, host: &str) -> String {
    let ca = match &tls.ca_file {
        Some(p) => format!(
            "the system's roots and {}.ca_file {}",
            role.key,
            p.display()
        ),
        None => format!("the system's roots ({}.ca_file is not set)", role.key),
    };
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the {}'s certificate is not signed by a CA in {ca} ({err})",
            role.target
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the {}'s certificate does not name {host:?} ({err}); connect by a name it carries, \
             or set {}.verify_hostname = false to check the chain only",
            role.target, role.key
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the {}'s certificate has expired ({err})", role.target),
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            let about_us = matches!(
                alert,
                A::UnknownCA
                    | A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::CertificateRequired
                    | A::AccessDenied
            );
            if !about_us {
                return format!(
                    "the {} refused the TLS handshake with alert {alert:?}",
                    role.target
                );
            }
            let sent = match &tls.cert_file {
                Some(p) => format!(
                    "the client certificate {}.cert_file {}",
                    role.key,
                    p.display()
                ),
                None => format!("no client certificate ({}.cert_file is not set)", role.key),
            };
            format!(
                "the {} refused the TLS handshake with alert {alert:?}: it does not accept \
                 our client certificate; we sent {sent}",
                role.target
            )
        }
        other => other.to_string(),
    }
}
