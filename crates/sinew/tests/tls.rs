#![allow(clippy::unwrap_used)]
//! `[tls]`: a private CA, a server name override, mutual TLS and h2-only,
//! against real rustls servers with rcgen certificates.

mod support;

use axum::routing::get;
use axum::Router;
use sinew::config::{ClientConfig, Secret};
use sinew::{Client, ClientBuilder, ErrorKind, TlsConfig};
use support::Pki;

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

fn app() -> Router {
    Router::new().route(
        "/hello",
        get(|req: axum::extract::Request| async move { format!("{:?}", req.version()) }),
    )
}

fn tls(pki: &Pki) -> TlsConfig {
    TlsConfig {
        ca_file: Some(pki.ca_file.clone()),
        system_roots: false,
        server_name: Some("sinew.test".into()),
        ..TlsConfig::default()
    }
}

#[tokio::test]
async fn a_private_ca_and_a_server_name_override() {
    let pki = Pki::new("name");
    let base = pki.serve_tls(app(), false, BOTH).await;
    let client = Client::builder().tls(tls(&pki)).build().unwrap();
    let res = client.get(&format!("{base}/hello")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "HTTP/2.0");

    // The certificate names sinew.test, not 127.0.0.1: without the
    // override the handshake fails, with a message that says why.
    let plain = TlsConfig {
        server_name: None,
        ..tls(&pki)
    };
    let client = Client::builder().tls(plain).no_retry().build().unwrap();
    let err = client
        .get(&format!("{base}/hello"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Without the CA (and without system roots) nothing is trusted: a
    // config error at build time.
    let none = TlsConfig {
        ca_file: None,
        ..tls(&pki)
    };
    let err = Client::builder().tls(none).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no root certificate"), "{err}");
}

#[tokio::test]
async fn mutual_tls_is_refused_without_a_client_certificate() {
    let pki = Pki::new("mtls");
    let base = pki.serve_tls(app(), true, BOTH).await;
    let url = format!("{base}/hello");

    let anonymous = Client::builder().tls(tls(&pki)).no_retry().build().unwrap();
    let err = anonymous.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");

    // The key from an environment variable, as a secret should come.
    std::env::set_var(
        "SINEW_TLS_TEST_CLIENT_KEY",
        std::fs::read_to_string(&pki.client_key).unwrap(),
    );
    let with_cert = TlsConfig {
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(Secret::Env("SINEW_TLS_TEST_CLIENT_KEY".into())),
        ..tls(&pki)
    };
    let client = Client::builder().tls(with_cert).build().unwrap();
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "HTTP/2.0"
    );
}

#[tokio::test]
async fn http2_only_offers_only_h2() {
    let pki = Pki::new("h2");
    let h1 = pki.serve_tls(app(), false, &[b"http/1.1"]).await;
    let url = format!("{h1}/hello");
    let client = Client::builder().tls(tls(&pki)).build().unwrap();
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "HTTP/1.1"
    );
    let h2_only = TlsConfig {
        http2_only: true,
        ..tls(&pki)
    };
    let client = Client::builder().tls(h2_only).no_retry().build().unwrap();
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
}

#[tokio::test]
async fn the_tls_section_of_a_config_file() {
    let pki = Pki::new("file");
    let base = pki.serve_tls(app(), true, BOTH).await;
    let text = format!(
        "base_url = \"{base}\"\n[tls]\nca_file = {:?}\nsystem_roots = false\nclient_cert = {:?}\nclient_key = {{ file = {:?} }}\nserver_name = \"sinew.test\"\nhttp2_only = true\n",
        pki.ca_file, pki.client_cert, pki.client_key
    );
    let config = ClientConfig::from_toml(&text, "client.toml").unwrap();
    let client = ClientBuilder::from_config(config).build().unwrap();
    assert_eq!(
        client
            .get("/hello")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "HTTP/2.0"
    );

    let bad = |extra: &str| {
        let config = ClientConfig::from_toml(&format!("[tls]\n{extra}\n"), "client.toml").unwrap();
        ClientBuilder::from_config(config)
            .build()
            .unwrap_err()
            .to_string()
    };
    let e = bad(&format!("client_cert = {:?}", pki.client_cert));
    assert!(e.contains("go together"), "{e}");
    let e = bad("ca_file = \"/nonexistent/ca.pem\"");
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let e = bad(&format!("ca_file = {:?}", pki.client_key));
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = bad(&format!(
        "client_cert = {:?}\nclient_key = {{ text = \"not a key\" }}",
        pki.client_cert
    ));
    assert!(e.contains("client_key"), "{e}");
    let e = ClientConfig::from_toml("[tls]\nca_fille = \"x\"\n", "client.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("ca_fille"), "{e}");
}
