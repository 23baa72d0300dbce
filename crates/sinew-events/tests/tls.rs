//! TLS to the machine's RabbitMQ (amqps on 127.0.0.1:5671) and PostgreSQL
//! (ssl on 5432), which `scripts/tls-services.sh` (run by scripts/setup.sh)
//! turns on with rcgen certificates: a test CA, a server certificate issued
//! to `localhost` only, a client certificate for the role `sinew_mtls`.
//! The plaintext listeners the other tests use stay as they are.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use sinew_events::lapin::BasicProperties;
use sinew_events::{
    handler_fn, Binding, Consumer, ConsumerConfig, Database, Error, NewEvent, Outbox, Publisher,
    PublisherConfig, Relay, RelayConfig, Router, Secret, TlsConfig,
};

/// Where scripts/tls-services.sh put the certificates.
fn certs() -> PathBuf {
    let dir = std::env::var_os("SINEW_TEST_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/sinew-test-tls"));
    assert!(
        dir.join("ca.pem").is_file() && dir.join("client-key.pem").is_file(),
        "no test certificates in {}: run scripts/tls-services.sh (scripts/setup.sh does)",
        dir.display()
    );
    dir
}

fn amqps(host: &str) -> String {
    format!("amqps://guest:guest@{host}:5671/%2f?connection_timeout=10000")
}

fn pg(host: &str, user: &str) -> String {
    format!("postgres://{user}@{host}:5432/test")
}

fn trusting(ca: &Path) -> TlsConfig {
    TlsConfig {
        ca_file: Some(ca.to_owned()),
        ..TlsConfig::default()
    }
}

fn with_client_cert(dir: &Path) -> TlsConfig {
    TlsConfig {
        cert_file: Some(dir.join("client.pem")),
        key: Some(Secret::File(dir.join("client-key.pem"))),
        ..trusting(&dir.join("ca.pem"))
    }
}

/// A CA that signed nothing the servers present, and a client certificate
/// it issued, in a fresh directory.
struct Stranger {
    dir: PathBuf,
}

impl Stranger {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = std::env::temp_dir().join(unique("sinew-tls-stranger"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "a stranger's CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "sinew_mtls");
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
        std::fs::write(dir.join("client-key.pem"), client_key.serialize_pem()).unwrap();
        Self { dir }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn publish_over(url: String, tls: Option<TlsConfig>, exchange: &str) -> Result<(), Error> {
    let publisher = Publisher::new(PublisherConfig {
        amqp_url: url,
        amqp_tls: tls,
        app_id: "sinew-tls-test".into(),
        ..PublisherConfig::default()
    });
    let result = publisher
        .publish_raw(
            exchange,
            "tls.check",
            b"{\"over\":\"tls\"}",
            BasicProperties::default(),
        )
        .await;
    publisher.close().await;
    result
}

fn tls_error(result: Result<(), Error>) -> (String, String) {
    match result {
        Err(Error::Tls {
            target,
            address,
            reason,
        }) => (format!("{target} {address}"), reason),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn publisher_over_amqps_with_verify_full() {
    let dir = certs();
    let exchange = unique("tls_pub");
    let tap = Tap::new(&[(&exchange, "#")], false).await;
    publish_over(
        amqps("localhost"),
        Some(trusting(&dir.join("ca.pem"))),
        &exchange,
    )
    .await
    .unwrap();
    let got = tap
        .take(1, Duration::from_secs(10), Duration::from_millis(100))
        .await;
    assert_eq!(got[0].body, b"{\"over\":\"tls\"}");
    assert_eq!(got[0].routing_key, "tls.check");
    tap.cleanup().await;
}

#[tokio::test]
async fn broker_with_a_wrong_ca_is_a_clear_error() {
    let _ = certs();
    let stranger = Stranger::new();
    let ca = stranger.dir.join("ca.pem");
    let (peer, reason) =
        tls_error(publish_over(amqps("localhost"), Some(trusting(&ca)), &unique("tls_x")).await);
    assert_eq!(peer, "broker localhost:5671");
    assert!(reason.contains("not signed by a CA in"), "{reason}");
    assert!(reason.contains(&ca.display().to_string()), "{reason}");

    // No CA file: the system's roots do not know the test CA either.
    let (_, reason) = tls_error(publish_over(amqps("localhost"), None, &unique("tls_x")).await);
    assert!(reason.contains("amqp_tls.ca_file is not set"), "{reason}");
}

#[tokio::test]
async fn broker_verify_full_refuses_a_certificate_for_another_name() {
    let dir = certs();
    let ca = dir.join("ca.pem");
    // The certificate names `localhost`; 127.0.0.1 is the same server.
    let (peer, reason) =
        tls_error(publish_over(amqps("127.0.0.1"), Some(trusting(&ca)), &unique("tls_x")).await);
    assert_eq!(peer, "broker 127.0.0.1:5671");
    assert!(reason.contains("does not name \"127.0.0.1\""), "{reason}");
    assert!(reason.contains("verify_hostname = false"), "{reason}");

    // verify-ca: the chain is checked, the name is not.
    let exchange = unique("tls_ca_only");
    let tap = Tap::new(&[(&exchange, "#")], false).await;
    let chain_only = TlsConfig {
        verify_hostname: false,
        ..trusting(&ca)
    };
    publish_over(amqps("127.0.0.1"), Some(chain_only), &exchange)
        .await
        .unwrap();
    tap.take(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    tap.cleanup().await;
}

/// The broker's connections: TLS flag, client certificate subject and
/// client properties (with the connection name), as JSON.
fn broker_connections() -> Vec<serde_json::Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--formatter",
            "json",
            "list_connections",
            "ssl",
            "peer_cert_subject",
            "client_properties",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_over_amqps_with_a_client_certificate() {
    let dir = certs();
    let exchange = unique("tls_consume");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().default_handler(handler_fn(move |m| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(m.body);
            Ok(())
        }
    }));
    let config = ConsumerConfig {
        amqp_url: amqps("localhost"),
        amqp_tls: Some(with_client_cert(&dir)),
        queue: unique("tls_q"),
        auto_delete: true,
        durable: false,
        bindings: vec![Binding::all(&exchange)],
        ..ConsumerConfig::default()
    };
    let queue = config.queue.clone();
    let consumer = Consumer::new(config.clone(), router);
    consumer.declare().await.unwrap();
    let (stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = rx_stop.await;
    }));
    // Published in plaintext, received over TLS.
    let (conn, ch) = amqp().await;
    ch.basic_publish(
        ss(&exchange),
        ss("any.key"),
        Default::default(),
        b"{\"n\":1}",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, json!({"n": 1}));
    // The broker saw our certificate on that connection.
    let listed = broker_connections();
    let ours = listed
        .iter()
        .find(|c| c["client_properties"].to_string().contains(&queue))
        .unwrap_or_else(|| panic!("no connection named {queue}: {listed:?}"));
    assert_eq!(ours["ssl"], json!(true), "{ours}");
    assert!(
        ours["peer_cert_subject"]
            .as_str()
            .unwrap_or_default()
            .contains("CN=sinew_mtls"),
        "{ours}"
    );
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let _ = ch.exchange_delete(ss(&exchange), Default::default()).await;
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test]
async fn broker_refuses_a_client_certificate_from_another_ca() {
    let dir = certs();
    let stranger = Stranger::new();
    let tls = TlsConfig {
        cert_file: Some(stranger.dir.join("client.pem")),
        key: Some(Secret::File(stranger.dir.join("client-key.pem"))),
        ..trusting(&dir.join("ca.pem"))
    };
    let (peer, reason) =
        tls_error(publish_over(amqps("localhost"), Some(tls), &unique("tls_x")).await);
    assert_eq!(peer, "broker localhost:5671");
    // The alert (UnknownCA), or under TLS 1.3 the reset that may overtake it.
    assert!(
        reason.contains("refused the TLS handshake with alert")
            || reason.contains("closed the connection right after the TLS handshake"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "client certificate amqp_tls.cert_file {}",
            stranger.dir.join("client.pem").display()
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_config_errors() {
    let dir = certs();
    let cases: Vec<(String, TlsConfig, &str)> = vec![
        (
            amqp_url(),
            trusting(&dir.join("ca.pem")),
            "amqp_tls is set but amqp_url is amqp://",
        ),
        (
            amqps("localhost"),
            TlsConfig {
                cert_file: Some(dir.join("client.pem")),
                ..trusting(&dir.join("ca.pem"))
            },
            "amqp_tls.cert_file and amqp_tls.key go together",
        ),
        (
            amqps("localhost"),
            TlsConfig {
                verify_hostname: false,
                ..TlsConfig::default()
            },
            "verify_hostname = false needs amqp_tls.ca_file",
        ),
        (
            amqps("localhost"),
            trusting(&dir.join("no-such-ca.pem")),
            "amqp_tls.ca_file",
        ),
        (
            amqps("localhost"),
            // A key is not a certificate.
            trusting(&dir.join("client-key.pem")),
            "holds no PEM certificate",
        ),
        (
            amqps("localhost"),
            TlsConfig {
                key: Some(Secret::Text("not a key".into())),
                ..with_client_cert(&dir)
            },
            "amqp_tls.key (inline text) is not a PEM private key",
        ),
    ];
    for (url, tls, want) in cases {
        match publish_over(url, Some(tls.clone()), &unique("tls_x")).await {
            Err(Error::Config(m)) => assert!(m.contains(want), "{m} (wanted {want:?})"),
            other => panic!("{tls:?}: expected a config error with {want:?}, got {other:?}"),
        }
    }
    match Database::connect_with_tls("sqlite::memory:", Some(&TlsConfig::default())).await {
        Err(Error::Config(m)) => assert!(m.contains("database_tls"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Whether the pool's connections run over TLS (PostgreSQL's own view).
async fn pg_ssl(db: &Database) -> (bool, String) {
    let Database::Postgres(pool) = db else {
        unreachable!()
    };
    sinew_events::sqlx::query_as(
        "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn database_verify_full_verify_ca_and_a_wrong_ca() {
    let dir = certs();
    let ca = dir.join("ca.pem");
    let db = Database::connect_with_tls(&pg("localhost", "postgres"), Some(&trusting(&ca)))
        .await
        .unwrap();
    assert_eq!(pg_ssl(&db).await, (true, "postgres".into()));
    db.close().await;

    // Named by an address the certificate does not carry.
    let err = Database::connect_with_tls(&pg("127.0.0.1", "postgres"), Some(&trusting(&ca)))
        .await
        .unwrap_err();
    let Error::Tls {
        target,
        reason,
        address,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*target, address.as_str()), ("database", "127.0.0.1:5432"));
    assert!(reason.contains("does not name \"127.0.0.1\""), "{reason}");
    assert!(
        err.to_string()
            .starts_with("TLS to the database at 127.0.0.1:5432 failed"),
        "{err}"
    );

    let chain_only = TlsConfig {
        verify_hostname: false,
        ..trusting(&ca)
    };
    let db = Database::connect_with_tls(&pg("127.0.0.1", "postgres"), Some(&chain_only))
        .await
        .unwrap();
    assert!(pg_ssl(&db).await.0);
    db.close().await;

    let stranger = Stranger::new();
    let wrong = stranger.dir.join("ca.pem");
    let err = Database::connect_with_tls(&pg("localhost", "postgres"), Some(&trusting(&wrong)))
        .await
        .unwrap_err();
    let Error::Tls { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("not signed by a CA in"), "{reason}");
    assert!(reason.contains(&wrong.display().to_string()), "{reason}");
}

#[tokio::test]
async fn database_client_certificate_logs_in_as_its_role() {
    let dir = certs();
    // pg_hba: `hostssl all sinew_mtls 127.0.0.1/32 cert`.
    let db = Database::connect_with_tls(
        &pg("localhost", "sinew_mtls"),
        Some(&with_client_cert(&dir)),
    )
    .await
    .unwrap();
    assert_eq!(pg_ssl(&db).await, (true, "sinew_mtls".into()));
    db.close().await;
    // The key inline (base64) works the same.
    use base64::Engine as _;
    let pem = std::fs::read(dir.join("client-key.pem")).unwrap();
    let tls = TlsConfig {
        key: Some(Secret::Base64(
            base64::engine::general_purpose::STANDARD.encode(&pem),
        )),
        ..with_client_cert(&dir)
    };
    let db = Database::connect_with_tls(&pg("localhost", "sinew_mtls"), Some(&tls))
        .await
        .unwrap();
    assert_eq!(pg_ssl(&db).await.1, "sinew_mtls");
    db.close().await;
    // Without the certificate the server turns the role away.
    let err = Database::connect_with_tls(
        &pg("localhost", "sinew_mtls"),
        Some(&trusting(&dir.join("ca.pem"))),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("requires a valid client certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_tls_to_the_database_and_the_broker() {
    let dir = certs();
    let table = unique("t_tls_outbox");
    let aggregate = unique("tls_relay");
    let tap = Tap::new(&[(&aggregate, "#")], false).await;
    let config = RelayConfig {
        database_url: pg("localhost", "postgres"),
        database_tls: Some(trusting(&dir.join("ca.pem"))),
        amqp_url: amqps("localhost"),
        amqp_tls: Some(with_client_cert(&dir)),
        table: table.clone(),
        ..relay_config()
    };
    // The rows are written over TLS too.
    let db = Database::connect_with_tls(&config.database_url, config.database_tls.as_ref())
        .await
        .unwrap();
    assert!(pg_ssl(&db).await.0);
    let outbox = Outbox::new(db.clone(), &table).unwrap();
    outbox.migrate().await.unwrap();
    for n in 0..3 {
        outbox
            .enqueue(&NewEvent::new(&aggregate, "created", json!({"n": n})))
            .await
            .unwrap();
    }
    let mut relay = Relay::new(config);
    assert_eq!(relay.drain().await.unwrap(), 3);
    let got = tap
        .take(3, Duration::from_secs(10), Duration::from_millis(100))
        .await;
    let ns: Vec<_> = got
        .iter()
        .map(|m| m.json()["payload"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(0), json!(1), json!(2)]);
    assert_eq!(outbox.pending().await.unwrap(), 0);
    outbox.drop_table().await.unwrap();
    db.close().await;
    tap.cleanup().await;
}
