#![allow(clippy::unwrap_used)]
//! HTTPS (HTTP/1.1 and h2 over ALPN) against a server with a certificate
//! generated for the test.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sinew::{Client, ErrorKind};

struct Server {
    base: String,
    ca_pem: String,
}

async fn serve_tls() -> Server {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_pem = cert.cert.pem();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(
        "/hello",
        get(|req: axum::extract::Request| async move { format!("hello over {:?}", req.version()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    Server {
        base: format!("https://localhost:{port}"),
        ca_pem,
    }
}

#[tokio::test]
async fn https_with_a_custom_root() {
    let server = serve_tls().await;
    let client = Client::builder()
        .base_url(&server.base)
        .add_root_certificate_pem(server.ca_pem.as_bytes())
        .build()
        .unwrap();
    let text = client
        .get("/hello")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // ALPN offers h2 first, and the server takes it.
    assert_eq!(text, "hello over HTTP/2.0");
}

#[tokio::test]
async fn https_http1_when_h2_is_not_negotiated() {
    let server = serve_tls().await;
    let client = Client::builder()
        .base_url(&server.base)
        .add_root_certificate_pem(server.ca_pem.as_bytes())
        .tls_system_roots(false)
        .build()
        .unwrap();
    let resp = client.get("/hello").send().await.unwrap();
    assert!(resp.version() == http::Version::HTTP_2 || resp.version() == http::Version::HTTP_11);
}

#[tokio::test]
async fn an_unknown_certificate_is_refused() {
    let server = serve_tls().await;
    let client = Client::builder()
        .base_url(&server.base)
        .tls_system_roots(true)
        .build()
        .unwrap();
    let err = client.get("/hello").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
}

#[tokio::test]
async fn garbage_pem_is_a_config_error() {
    let err = Client::builder()
        .add_root_certificate_pem(b"not a certificate")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}
