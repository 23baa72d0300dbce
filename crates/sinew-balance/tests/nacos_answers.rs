#![allow(clippy::unwrap_used)]
//! What the Nacos client does with answers a real server does not give:
//! too large, too many instances, not JSON, never coming; and when it logs
//! in again. A hostile "Nacos" (an axum server on loopback) plays them.
#![cfg(feature = "nacos")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use sinew_balance::nacos::NacosError;
use sinew_balance::{Endpoint, NacosConfig, NacosDiscovery, NacosRegistration};
use sinew_core::config::Secret;
use tokio::time::Instant;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A "Nacos" whose instance list is `body`.
async fn answering(body: String) -> String {
    serve(Router::new().route(
        "/nacos/v1/ns/instance/list",
        get(move || {
            let body = body.clone();
            async move { body }
        }),
    ))
    .await
}

fn hosts(n: usize) -> String {
    let one = r#"{"ip":"10.0.0.1","port":80,"healthy":true,"enabled":true,"weight":1.0}"#;
    format!(r#"{{"hosts":[{}]}}"#, vec![one; n].join(","))
}

#[tokio::test]
async fn too_large_too_many_and_not_json_are_errors_naming_the_bound() {
    let addr = answering(hosts(3)).await;
    let d = NacosDiscovery::new(&NacosConfig::new(&addr, "s")).unwrap();
    assert_eq!(d.list().await.unwrap().0, [Endpoint::new("10.0.0.1:80")]);

    let err = d.clone().max_instances(2).list().await.unwrap_err();
    assert!(matches!(err, NacosError::Server(_)), "{err:?}");
    assert!(err.to_string().contains("more than 2 instances"), "{err}");

    let err = d.clone().max_response(100).list().await.unwrap_err();
    assert!(err.to_string().contains("larger than 100 bytes"), "{err}");

    let addr = answering("<html>maintenance</html>".into()).await;
    let err = NacosDiscovery::new(&NacosConfig::new(&addr, "s"))
        .unwrap()
        .list()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not Nacos's") && err.to_string().contains("maintenance"),
        "{err}"
    );
}

#[tokio::test]
async fn a_streamed_answer_past_the_bound_is_cut_off() {
    // No Content-Length: the body is read up to the bound and no further.
    let app = Router::new().route(
        "/nacos/v1/ns/instance/list",
        get(|| async {
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let s = futures_util::stream::repeat(chunk)
                .take(1024)
                .map(Ok::<_, std::io::Error>);
            axum::body::Body::from_stream(s)
        }),
    );
    let addr = serve(app).await;
    let err = NacosDiscovery::new(&NacosConfig::new(&addr, "s"))
        .unwrap()
        .max_response(1024 * 1024)
        .list()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("larger than 1048576 bytes"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out() {
    let app = Router::new().route(
        "/nacos/v1/ns/instance/list",
        get(std::future::pending::<String>),
    );
    let addr = serve(app).await;
    let config = NacosConfig {
        timeout: Duration::from_secs(2),
        ..NacosConfig::new(&addr, "s")
    };
    let t0 = Instant::now();
    let err = NacosDiscovery::new(&config)
        .unwrap()
        .list()
        .await
        .unwrap_err();
    assert!(matches!(err, NacosError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("no answer within 2s"), "{err}");
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
}

/// A "Nacos" with one user whose tokens live `ttl` seconds; counts logins
/// and refuses list calls without a current token.
#[derive(Clone)]
struct Auth {
    logins: Arc<AtomicUsize>,
    current: Arc<Mutex<Option<(String, Instant)>>>,
    ttl: u64,
    refused: Arc<AtomicUsize>,
}

async fn login(State(a): State<Auth>, body: String) -> impl IntoResponse {
    if body != "username=u&password=p%26w" {
        return (StatusCode::FORBIDDEN, "user not found!".to_string());
    }
    let n = a.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("t{n}");
    *a.current.lock().unwrap() = Some((token.clone(), Instant::now() + Duration::from_secs(a.ttl)));
    (
        StatusCode::OK,
        format!(
            r#"{{"accessToken":"{token}","tokenTtl":{},"globalAdmin":true}}"#,
            a.ttl
        ),
    )
}

async fn list(State(a): State<Auth>, headers: HeaderMap) -> impl IntoResponse {
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let ok = matches!(
        (&*a.current.lock().unwrap(), &sent),
        (Some((t, until)), Some(s)) if t == s && Instant::now() < *until
    );
    if ok {
        (StatusCode::OK, hosts(1))
    } else {
        a.refused.fetch_add(1, Ordering::SeqCst);
        (StatusCode::FORBIDDEN, "token expired!".into())
    }
}

fn auth_server(ttl: u64) -> (Auth, Router) {
    let a = Auth {
        logins: Arc::new(AtomicUsize::new(0)),
        current: Arc::new(Mutex::new(None)),
        ttl,
        refused: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/nacos/v1/auth/login", post(login))
        .route("/nacos/v1/ns/instance/list", get(list))
        .with_state(a.clone());
    (a, app)
}

#[tokio::test]
async fn the_token_is_renewed_before_it_runs_out() {
    let (auth, app) = auth_server(1);
    let addr = serve(app).await;
    let config = NacosConfig {
        username: Some("u".into()),
        password: Some(Secret::Text("p&w".into())),
        ..NacosConfig::new(&addr, "s")
    };
    let mut stream = Box::pin(
        NacosDiscovery::new(&config)
            .unwrap()
            .refresh(Duration::from_millis(50))
            .into_stream(),
    );
    let t0 = Instant::now();
    let mut errors = Vec::new();
    // Polls for 2.5 s with tokens of 1 s: renewed at 0.8 s, 1.6 s, 2.4 s.
    while t0.elapsed() < Duration::from_millis(2500) {
        if let Ok(Some(Err(e))) =
            tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        {
            errors.push(e.to_string());
        }
    }
    assert!(errors.is_empty(), "{errors:?}");
    let logins = auth.logins.load(Ordering::SeqCst);
    assert!((3..=4).contains(&logins), "{logins} logins");
    assert_eq!(auth.refused.load(Ordering::SeqCst), 0);
}

/// Poll `config` every 50 ms for `d`; the errors reported.
async fn poll_for(
    stream: &mut (impl futures_util::Stream<Item = sinew_balance::source::Discovered> + Unpin),
    d: Duration,
) -> Vec<String> {
    let t0 = Instant::now();
    let mut errors = Vec::new();
    while t0.elapsed() < d {
        if let Ok(Some(Err(e))) =
            tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        {
            errors.push(e.to_string());
        }
    }
    errors
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_without_an_error() {
    let (auth, app) = auth_server(60);
    let addr = serve(app).await;
    let config = NacosConfig {
        username: Some("u".into()),
        password: Some(Secret::Text("p&w".into())),
        ..NacosConfig::new(&addr, "s")
    };
    let mut stream = Box::pin(
        NacosDiscovery::new(&config)
            .unwrap()
            .refresh(Duration::from_millis(50))
            .into_stream(),
    );
    let errors = poll_for(&mut stream, Duration::from_millis(300)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(auth.logins.load(Ordering::SeqCst), 1);
    // The server forgets the token (a restart): one refusal, one login,
    // and no error reaches the stream.
    *auth.current.lock().unwrap() = None;
    let errors = poll_for(&mut stream, Duration::from_millis(300)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(auth.logins.load(Ordering::SeqCst), 2);
    assert_eq!(auth.refused.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wrong_password_is_one_login_attempt_not_a_loop() {
    let (auth, app) = auth_server(60);
    let addr = serve(app).await;
    let config = NacosConfig {
        username: Some("u".into()),
        password: Some(Secret::Text("wrong".into())),
        ..NacosConfig::new(&addr, "s")
    };
    let err = NacosRegistration::register(&config, &Endpoint::new("127.0.0.1:1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Nacos authentication failed: login as \"u\" refused (HTTP 403): user not found!"
    );
    assert_eq!(auth.logins.load(Ordering::SeqCst), 0);
}

/// A "Nacos" that counts registrations, heartbeats and deregistrations,
/// and answers heartbeats with 20404 (instance not found) while `forgot`.
#[derive(Clone, Default)]
struct Registry {
    registered: Arc<AtomicUsize>,
    beats: Arc<AtomicUsize>,
    deregistered: Arc<AtomicUsize>,
    forgot: Arc<std::sync::atomic::AtomicBool>,
    last_form: Arc<Mutex<String>>,
}

#[tokio::test]
async fn a_registration_the_server_forgot_is_made_again() {
    let r = Registry::default();
    let app = Router::new()
        .route(
            "/nacos/v1/ns/instance",
            post(|State(r): State<Registry>, body: String| async move {
                r.registered.fetch_add(1, Ordering::SeqCst);
                r.forgot.store(false, Ordering::SeqCst);
                *r.last_form.lock().unwrap() = body;
                "ok"
            })
            .delete(|State(r): State<Registry>| async move {
                r.deregistered.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .route(
            "/nacos/v1/ns/instance/beat",
            axum::routing::put(|State(r): State<Registry>| async move {
                r.beats.fetch_add(1, Ordering::SeqCst);
                if r.forgot.load(Ordering::SeqCst) {
                    r#"{"code":20404}"#
                } else {
                    r#"{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}"#
                }
            }),
        )
        .with_state(r.clone());
    let addr = serve(app).await;
    let config = NacosConfig {
        cluster: Some("c1".into()),
        ..NacosConfig::new(&addr, "orders")
    };
    let reg = NacosRegistration::register_with_heartbeat(
        &config,
        &Endpoint::new("127.0.0.1:7001")
            .weight(2.0)
            .meta("zone", "a"),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let form = r.last_form.lock().unwrap().clone();
    for part in [
        "serviceName=orders",
        "groupName=DEFAULT_GROUP",
        "clusterName=c1",
        "ip=127.0.0.1",
        "port=7001",
        "ephemeral=true",
        "weight=2",
        "metadata=%7B%22zone%22%3A%22a%22%7D",
    ] {
        assert!(form.split('&').any(|p| p == part), "{part} not in {form}");
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(r.beats.load(Ordering::SeqCst) >= 3);
    assert_eq!(r.registered.load(Ordering::SeqCst), 1);
    r.forgot.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(r.registered.load(Ordering::SeqCst), 2);
    assert_eq!(r.deregistered.load(Ordering::SeqCst), 0);
    reg.deregister().await;
    assert_eq!(r.deregistered.load(Ordering::SeqCst), 1);
    let beats = r.beats.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.beats.load(Ordering::SeqCst),
        beats,
        "heartbeats after deregister"
    );
}

#[tokio::test(start_paused = true)]
async fn polls_every_refresh_and_backs_off_while_the_server_fails_keeping_the_set() {
    // Answers the list for the first 3 calls, fails the next 7 (HTTP 503),
    // then answers again; records when each call came (tokio's clock).
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let t = times.clone();
    let app = Router::new().route(
        "/nacos/v1/ns/instance/list",
        get(move || {
            let t = t.clone();
            async move {
                let n = {
                    let mut t = t.lock().unwrap();
                    t.push(Instant::now());
                    t.len()
                };
                if (4..=10).contains(&n) {
                    (StatusCode::SERVICE_UNAVAILABLE, "down".to_string())
                } else {
                    (StatusCode::OK, hosts(1))
                }
            }
        }),
    );
    let addr = serve(app).await;
    let mut stream = Box::pin(
        NacosDiscovery::new(&NacosConfig::new(&addr, "s"))
            .unwrap()
            .refresh(Duration::from_millis(500))
            .max_backoff(Duration::from_secs(4))
            .into_stream(),
    );
    let t0 = Instant::now();
    let mut changes = 0;
    let mut errors = Vec::new();
    while times.lock().unwrap().len() < 12 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{:?}",
            times.lock().unwrap()
        );
        match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
            Ok(Some(Ok(_))) => changes += 1,
            Ok(Some(Err(e))) => errors.push(e.to_string()),
            Ok(None) => panic!("the stream ended"),
            Err(_) => {}
        }
    }
    // One insert; the failures change nothing, each is reported.
    assert_eq!(changes, 1);
    assert_eq!(errors.len(), 7, "{errors:?}");
    assert!(errors[0].contains("HTTP 503: down"), "{errors:?}");
    let gaps: Vec<u64> = times
        .lock()
        .unwrap()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    // 500 ms while it answers; after failures 500, 1000, 2000, 4000 (max).
    assert_eq!(
        gaps,
        [500, 500, 500, 500, 1000, 2000, 4000, 4000, 4000, 4000, 500]
    );
}
