//! The pooled hyper-util client at the bottom of the stack.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sinew_core::Body;

/// Connection pool and protocol settings (`[pool]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Give up connecting after this long (default 1 s).
    #[serde(with = "crate::config::duration")]
    pub connect_timeout: Duration,
    /// Close idle pooled connections after this long (default 90 s).
    #[serde(with = "crate::config::duration")]
    pub idle_timeout: Duration,
    /// At most this many idle connections per host (default 32).
    pub max_idle_per_host: usize,
    /// Speak HTTP/2 only: h2 over TLS, or h2c with prior knowledge over
    /// `http://` (default false: HTTP/1.1).
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

/// Which certificate authorities HTTPS trusts.
#[derive(Debug, Clone, Default)]
pub struct TlsRoots {
    /// Trust the operating system's roots (default true).
    pub system: bool,
    /// Also trust these certificates (DER).
    pub extra: Vec<Vec<u8>>,
}

impl TlsRoots {
    /// The system's roots only.
    pub fn system() -> Self {
        TlsRoots {
            system: true,
            extra: Vec::new(),
        }
    }
}

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// The hyper-util client sinew sends through.
pub(crate) type Transport = HyperClient<Connector, Body>;

pub(crate) fn build(pool: &PoolConfig, roots: &TlsRoots) -> Result<Transport, crate::Error> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(pool.connect_timeout));
    http.set_nodelay(pool.nodelay);
    let connector = connector(http, pool, roots)?;
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

#[cfg(not(feature = "tls"))]
fn connector(
    mut http: HttpConnector,
    _pool: &PoolConfig,
    roots: &TlsRoots,
) -> Result<Connector, crate::Error> {
    http.enforce_http(true);
    if !roots.extra.is_empty() {
        return Err(crate::Error::new(
            crate::ErrorKind::Config,
            "custom TLS roots need the `tls` feature",
        ));
    }
    Ok(http)
}

#[cfg(feature = "tls")]
fn connector(
    mut http: HttpConnector,
    pool: &PoolConfig,
    roots: &TlsRoots,
) -> Result<Connector, crate::Error> {
    use std::sync::Arc;

    use crate::{Error, ErrorKind};
    use rustls_pki_types::CertificateDer;

    http.enforce_http(false);
    let mut store = rustls::RootCertStore::empty();
    if roots.system {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A system certificate rustls cannot use is skipped, as browsers do.
            let _ = store.add(cert);
        }
    }
    for der in &roots.extra {
        store
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| Error::new(ErrorKind::Config, format!("invalid root certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Config, format!("TLS setup failed: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    // The connector sets ALPN itself: h2 only, or h2 and http/1.1.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(if pool.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_all_versions().wrap_connector(http)
    })
}

/// Send through the transport, boxing its error. The transport's own future
/// is already boxed and owns what it needs, so the client is not cloned.
pub(crate) fn send(
    transport: &Transport,
    req: Request<Body>,
) -> impl std::future::Future<Output = Result<Response<Incoming>, sinew_core::BoxError>> + Send + 'static
{
    let fut = transport.request(req);
    async move { fut.await.map_err(Into::into) }
}
