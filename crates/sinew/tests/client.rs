#![allow(clippy::unwrap_used)]
//! The Client against real axum servers on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sinew::auth::TokenAuthConfig;
use sinew::interceptor::ResponseInfo;
use sinew::{Client, Error, ErrorKind, Interceptor};
use sinew_core::BoxError;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn app() -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(
                |Path(id): Path<String>, Query(q): Query<Vec<(String, String)>>| async move {
                    Json(json!({ "id": id, "query": q }))
                },
            ),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                let status = StatusCode::from_u16(code).unwrap();
                (
                    status,
                    Json(json!({ "message": format!("status {code} as asked") })),
                )
            }),
        )
}

#[tokio::test]
async fn path_params_are_encoded_and_query_sent() {
    let base = serve(app()).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    let v: Value = client
        .get("/users/{id}")
        .param("id", "a b/c")
        .query(&[("q", "x y"), ("n", "1")])
        .send_json()
        .await
        .unwrap();
    assert_eq!(v["id"], "a b/c");
    assert_eq!(v["query"], json!([["q", "x y"], ["n", "1"]]));
}

#[tokio::test]
async fn json_and_text_round_trip() {
    let base = serve(app()).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    let text = client
        .post("/echo")
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, r#"{"a":1}"#);
}

#[tokio::test]
async fn statuses_map_to_typed_errors_with_the_message() {
    let base = serve(app()).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    for (code, kind) in [
        (400, ErrorKind::BadRequest),
        (401, ErrorKind::Unauthorized),
        (403, ErrorKind::Forbidden),
        (404, ErrorKind::NotFound),
        (409, ErrorKind::Conflict),
        (422, ErrorKind::Unprocessable),
        (429, ErrorKind::RateLimited),
        (418, ErrorKind::ClientError),
        (503, ErrorKind::Unavailable),
        (500, ErrorKind::Unavailable),
    ] {
        let err = client
            .get("/status/{code}")
            .param("code", code)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{code}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(code));
        let expected = format!("status {code} as asked");
        assert_eq!(err.message(), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn transport_errors_are_typed() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder()
        .base_url(&format!("http://{addr}"))
        .build()
        .unwrap();
    let err = client.get("/").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
}

#[tokio::test]
async fn bulk_keeps_order_limits_concurrency_and_isolates_failures() {
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
    }
    let gauge = Arc::new(Gauge::default());
    let app = Router::new()
        .route(
            "/n/{n}",
            get(
                |State(g): State<Arc<Gauge>>, Path(n): Path<u32>| async move {
                    let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                    g.max.fetch_max(now, Ordering::SeqCst);
                    // Later requests finish first, so order must be restored.
                    tokio::time::sleep(Duration::from_millis(u64::from(40 - n))).await;
                    g.now.fetch_sub(1, Ordering::SeqCst);
                    if n % 7 == 3 {
                        (StatusCode::NOT_FOUND, format!("missing {n}"))
                    } else {
                        (StatusCode::OK, format!("item {n}"))
                    }
                },
            ),
        )
        .with_state(gauge.clone());
    let base = serve(app).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    let calls = (0..30).map(|n| client.get("/n/{n}").param("n", n));
    let results = client.bulk(calls, 4).await;
    assert_eq!(results.len(), 30);
    for (n, r) in results.into_iter().enumerate() {
        if n % 7 == 3 {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
        } else {
            assert_eq!(r.unwrap().text().await.unwrap(), format!("item {n}"));
        }
    }
    let max = gauge.max.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "max concurrency {max}");
}

struct Recorder {
    name: &'static str,
    order: i32,
    log: Arc<Mutex<Vec<String>>>,
    fail_after: bool,
}

#[async_trait::async_trait]
impl Interceptor for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn order(&self) -> i32 {
        self.order
    }
    async fn before_request(&self, req: &mut http::request::Parts) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("before {}", self.name));
        req.headers
            .append("x-seen-by", http::HeaderValue::from_static(self.name));
        Ok(())
    }
    async fn after_response(
        &self,
        _req: &http::request::Parts,
        resp: Result<&ResponseInfo<'_>, &Error>,
    ) -> Result<(), BoxError> {
        let what = match resp {
            Ok(info) => info.head.status.as_u16().to_string(),
            Err(e) => e.kind().to_string(),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("after {} {what}", self.name));
        if self.fail_after {
            return Err("hook broke".into());
        }
        Ok(())
    }
    async fn on_error(&self, _req: &http::request::Parts, e: &Error) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("error {} {}", self.name, e.kind()));
        Ok(())
    }
}

#[tokio::test]
async fn interceptors_run_in_order_and_after_failures() {
    let app = app().route(
        "/seen",
        get(|h: HeaderMap| async move {
            let seen: Vec<String> = h
                .get_all("x-seen-by")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            seen.join(",")
        }),
    );
    let base = serve(app).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    for (name, order) in [("b", 2), ("a", 1), ("c", 3)] {
        client.add_interceptor(Recorder {
            name,
            order,
            log: log.clone(),
            fail_after: false,
        });
    }
    let seen = client
        .get("/seen")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(seen, "a,b,c");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before a",
            "before b",
            "before c",
            "after c 200",
            "after b 200",
            "after a 200"
        ]
    );

    log.lock().unwrap().clear();
    assert!(client.remove_interceptor("b"));
    assert!(!client.remove_interceptor("b"));
    let err = client.get("/status/404").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before a",
            "before c",
            "after c not_found",
            "after a not_found",
            "error c not_found",
            "error a not_found"
        ]
    );
}

#[tokio::test]
async fn a_failing_hook_is_reported() {
    let base = serve(app()).await;
    let client = Client::builder().base_url(&base).build().unwrap();
    client.add_interceptor(Recorder {
        name: "broken",
        order: 0,
        log: Arc::new(Mutex::new(Vec::new())),
        fail_after: true,
    });
    let err = client.get("/users/1").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interceptor);
    assert!(err.to_string().contains("broken"), "{err}");
}

#[derive(Default)]
struct AuthState {
    logins: AtomicUsize,
    /// The token the server accepts now.
    valid: Mutex<String>,
}

fn auth_app(state: Arc<AuthState>, expires_in: Option<u64>) -> Router {
    Router::new()
        .route(
            "/login",
            post(
                move |State(s): State<Arc<AuthState>>, Json(creds): Json<Value>| async move {
                    assert_eq!(creds["user"], "orders");
                    let n = s.logins.fetch_add(1, Ordering::SeqCst) + 1;
                    // Slow enough for concurrent callers to pile up.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let token = format!("tok-{n}");
                    *s.valid.lock().unwrap() = token.clone();
                    let mut body = json!({ "accessToken": token });
                    if let Some(e) = expires_in {
                        body["expires_in"] = json!(e);
                    }
                    Json(body)
                },
            ),
        )
        .route(
            "/private",
            get(|State(s): State<Arc<AuthState>>, h: HeaderMap| async move {
                let want = format!("Bearer {}", s.valid.lock().unwrap());
                match h.get("authorization") {
                    Some(v) if v.to_str().unwrap() == want => (StatusCode::OK, "secret"),
                    _ => (StatusCode::UNAUTHORIZED, "who are you"),
                }
            }),
        )
        .with_state(state)
}

#[tokio::test]
async fn token_auth_logs_in_once_under_concurrency_and_refreshes_on_401() {
    let state = Arc::new(AuthState::default());
    let base = serve(auth_app(state.clone(), None)).await;
    let client = Client::builder()
        .base_url(&base)
        .token_auth(TokenAuthConfig::new(
            format!("{base}/login").parse().unwrap(),
            json!({"user": "orders", "password": "pw"}),
        ))
        .build()
        .unwrap();
    let calls = (0..20).map(|_| client.get("/private"));
    for r in client.bulk(calls, 20).await {
        assert_eq!(r.unwrap().text().await.unwrap(), "secret");
    }
    assert_eq!(state.logins.load(Ordering::SeqCst), 1);

    // The server revokes the token: one 401, one refresh, then success.
    *state.valid.lock().unwrap() = "revoked".into();
    let calls = (0..10).map(|_| client.get("/private"));
    for r in client.bulk(calls, 10).await {
        assert_eq!(r.unwrap().text().await.unwrap(), "secret");
    }
    assert_eq!(state.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn token_auth_refreshes_before_expiry() {
    let state = Arc::new(AuthState::default());
    let base = serve(auth_app(state.clone(), Some(120))).await;
    let client = Client::builder()
        .base_url(&base)
        .token_auth(TokenAuthConfig::new(
            format!("{base}/login").parse().unwrap(),
            json!({"user": "orders"}),
        ))
        .build()
        .unwrap();
    client.get("/private").send().await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    client.get("/private").send().await.unwrap();
    assert_eq!(state.logins.load(Ordering::SeqCst), 1);
    // 120 s token, refreshed 30 s before it expires.
    tokio::time::advance(Duration::from_secs(31)).await;
    client.get("/private").send().await.unwrap();
    assert_eq!(state.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let base = serve(app()).await;
    let client = Client::builder()
        .base_url(&base)
        .http2_only(true)
        .build()
        .unwrap();
    let resp = client.get("/users/7").send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
}
