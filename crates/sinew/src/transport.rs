//! The pooled hyper-util client at the bottom of the stack, and its
//! `[pool]` and `[tls]` settings.

use std::path::PathBuf;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sinew_core::config::Secret;
use sinew_core::Body;

use crate::{Error, ErrorKind};

/// Connection pool and protocol settings (`[pool]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Give up connecting after this long (default 1 s).
    #[serde(with = "sinew_core::config::duration")]
    pub connect_timeout: Duration,
    /// Close idle pooled connections after this long (default 90 s).
    #[serde(with = "sinew_core::config::duration")]
    pub idle_timeout: Duration,
    /// At most this many idle connections per host (default 32).
    pub max_idle_per_host: usize,
    /// Speak HTTP/2 only: h2 over TLS, or h2c with prior knowledge over
    /// `http://` (default false: HTTP/1.1, or h2 when TLS negotiates it).
    pub http2: bool,
    /// Set TCP_NODELAY (default true).
    pub nodelay: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 32,
            http2: false,
            nodelay: true,
        }
    }
}

/// HTTPS settings (`[tls]` in the config file).
///
/// ```toml
/// [tls]
/// ca_file = "/etc/sinew/ca.pem"          # trust these roots too (PEM)
/// system_roots = true                    # and the operating system's (default)
/// client_cert = "/etc/sinew/client.pem"  # mTLS: certificate chain (PEM) ...
/// client_key = { file = "/etc/sinew/client.key" }   # ... and its key (PEM)
/// server_name = "inventory.internal"     # verify this name instead of the URL's host
/// http2_only = false                     # offer only h2 in ALPN
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of root certificates to trust besides (or, with
    /// `system_roots = false`, instead of) the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Trust the operating system's roots (default true).
    pub system_roots: bool,
    /// The client certificate chain (PEM) for mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<Secret>,
    /// Verify (and send as SNI) this name instead of the URL's host: for
    /// endpoints addressed by IP whose certificate names the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Offer only `h2` in ALPN, so TLS connections speak HTTP/2 or fail
    /// (plain `http://` is unaffected; see [`PoolConfig::http2`]).
    pub http2_only: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            system_roots: true,
            client_cert: None,
            client_key: None,
            server_name: None,
            http2_only: false,
        }
    }
}

/// The most bytes read from a certificate file.
#[cfg(feature = "tls")]
const MAX_PEM_FILE: u64 = 1024 * 1024;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// The hyper-util client sinew sends through.
pub(crate) type Transport = HyperClient<Connector, Body>;

/// The hyper-util client for these settings; `extra_roots` are DER roots
/// given to the builder in memory.
pub(crate) fn build(
    pool: &PoolConfig,
    tls: &TlsConfig,
    extra_roots: &[Vec<u8>],
) -> Result<Transport, Error> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(pool.connect_timeout));
    http.set_nodelay(pool.nodelay);
    let connector = connector(http, pool, tls, extra_roots)?;
    let mut builder = HyperClient::builder(TokioExecutor::new());
    // No pool timer: idle connections past `idle_timeout` are dropped when
    // the pool next looks at them (checkout), not by a background task; the
    // timer's bookkeeping cost about a microsecond per request here.
    builder
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .http2_only(pool.http2);
    Ok(builder.build(connector))
}

fn cfg_err(m: String) -> Error {
    Error::new(ErrorKind::Config, format!("[tls] {m}"))
}

#[cfg(feature = "tls")]
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!(
            "{} is larger than {MAX_PEM_FILE} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(not(feature = "tls"))]
fn connector(
    mut http: HttpConnector,
    _pool: &PoolConfig,
    tls: &TlsConfig,
    extra_roots: &[Vec<u8>],
) -> Result<Connector, Error> {
    http.enforce_http(true);
    if *tls != TlsConfig::default() || !extra_roots.is_empty() {
        return Err(cfg_err("needs the `tls` feature of sinew".into()));
    }
    Ok(http)
}

/// The DER bytes of each `CERTIFICATE` block of a PEM document.
#[cfg(feature = "tls")]
pub(crate) fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

#[cfg(not(feature = "tls"))]
pub(crate) fn pem_certificates(_pem: &[u8]) -> Vec<Vec<u8>> {
    Vec::new()
}

#[cfg(feature = "tls")]
fn connector(
    mut http: HttpConnector,
    pool: &PoolConfig,
    tls: &TlsConfig,
    extra_roots: &[Vec<u8>],
) -> Result<Connector, Error> {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    http.enforce_http(false);
    let mut store = rustls::RootCertStore::empty();
    if tls.system_roots {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A system certificate rustls cannot use is skipped, as browsers do.
            let _ = store.add(cert);
        }
    }
    let mut roots: Vec<Vec<u8>> = extra_roots.to_vec();
    if let Some(path) = &tls.ca_file {
        let pem = read_pem(path).map_err(|e| cfg_err(format!("ca_file: {e}")))?;
        let found = pem_certificates(&pem);
        if found.is_empty() {
            return Err(cfg_err(format!(
                "ca_file: no PEM certificate in {}",
                path.display()
            )));
        }
        roots.extend(found);
    }
    for der in roots {
        store
            .add(CertificateDer::from(der))
            .map_err(|e| cfg_err(format!("invalid root certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(cfg_err(
            "no root certificate to trust: set ca_file or keep system_roots".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg_err(format!("TLS setup failed: {e}")))?
        .with_root_certificates(store);
    let config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let pem = read_pem(cert).map_err(|e| cfg_err(format!("client_cert: {e}")))?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| cfg_err(format!("client_cert: {}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(cfg_err(format!(
                    "client_cert: no PEM certificate in {}",
                    cert.display()
                )));
            }
            let key_pem = key
                .load()
                .map_err(|e| cfg_err(format!("client_key: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                cfg_err(format!(
                    "client_key: no PEM private key in {} ({e})",
                    key.origin()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| cfg_err(format!("client_cert/client_key: {e}")))?
        }
        _ => {
            return Err(cfg_err(
                "client_cert and client_key go together (mutual TLS needs both)".into(),
            ))
        }
    };
    // The connector sets ALPN itself: h2 only, or h2 and http/1.1.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            let server_name = rustls_pki_types::ServerName::try_from(name.clone())
                .map_err(|_| cfg_err(format!("server_name: {name:?} is not a DNS name or IP")))?;
            builder
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
        }
        None => builder,
    };
    let builder = if pool.http2 || tls.http2_only {
        builder.enable_http2()
    } else {
        builder.enable_all_versions()
    };
    Ok(builder.wrap_connector(http))
}

/// Send through the transport; its error names the target and keeps the
/// cause. The transport's own future is already boxed and owns what it
/// needs, so the client is not cloned.
pub(crate) fn send(
    transport: &Transport,
    req: Request<Body>,
) -> impl std::future::Future<Output = Result<Response<Incoming>, sinew_core::BoxError>> + Send + 'static
{
    // The authority shares the URI's bytes: the name is written out only
    // when the exchange fails.
    let target = req.uri().authority().cloned();
    let fut = transport.request(req);
    async move {
        fut.await.map_err(|source| {
            Box::new(TransportError {
                target: target.map(|a| a.as_str().to_owned()).unwrap_or_default(),
                source,
            }) as sinew_core::BoxError
        })
    }
}

/// The transport failed: it could not connect to, or lost, `target`.
#[derive(Debug)]
pub struct TransportError {
    target: String,
    source: hyper_util::client::legacy::Error,
}

impl TransportError {
    /// The `host:port` the request went to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the connection could not be made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        self.source.is_connect()
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.is_connect() {
            write!(f, "cannot connect to {}", self.target)
        } else {
            write!(f, "the exchange with {} failed", self.target)
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
