//! A small axum backend on 127.0.0.1 that answers a scripted sequence of
//! statuses, and a hyper-util client to reach it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::any;
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew_core::Body;

/// One scripted answer: a status and extra headers.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
}

pub(crate) fn status(status: u16) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
    }
}

pub(crate) fn with_header(status: u16, name: &'static str, value: impl Into<String>) -> Answer {
    Answer {
        status,
        headers: vec![(name, value.into())],
    }
}

/// What the backend saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) hits: AtomicUsize,
    pub(crate) bodies: Mutex<Vec<Bytes>>,
    pub(crate) methods: Mutex<Vec<String>>,
}

pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Seen>,
}

impl Backend {
    pub(crate) fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A backend answering `script[i]` to the i-th request, and the last entry
/// to every later one.
pub(crate) async fn backend(script: Vec<Answer>) -> Backend {
    let seen = Arc::new(Seen::default());
    let state = (seen.clone(), Arc::new(script));
    let app = Router::new()
        .fallback(any(
            |axum::extract::State((seen, script)): axum::extract::State<(
                Arc<Seen>,
                Arc<Vec<Answer>>,
            )>,
             method: axum::http::Method,
             body: Bytes| async move {
                let i = seen.hits.fetch_add(1, Ordering::SeqCst);
                seen.bodies.lock().unwrap().push(body);
                seen.methods.lock().unwrap().push(method.to_string());
                let answer = script[i.min(script.len() - 1)].clone();
                let mut headers = HeaderMap::new();
                for (k, v) in answer.headers {
                    headers.insert(k, HeaderValue::from_str(&v).unwrap());
                }
                (
                    StatusCode::from_u16(answer.status).unwrap(),
                    headers,
                    "answer",
                )
            },
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Backend { addr, seen }
}

pub(crate) fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An address nobody listens on (connections are refused).
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}
