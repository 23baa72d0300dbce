//! The backend process: hyper servers for the load, on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;

/// What the backend process listens on, printed as one JSON line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ports {
    /// Three identical backends (for the balanced clients).
    pub(crate) backends: Vec<SocketAddr>,
    /// A bare axum server.
    pub(crate) axum: SocketAddr,
    /// The same axum app behind the sinew server stack.
    pub(crate) sinew_server: SocketAddr,
}

/// The ~100-byte JSON item.
pub(crate) fn item(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","name":"widget","price_cents":1999,"in_stock":true,"tags":["a","b"],"v":1}}"#
    ))
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.strip_prefix("/item/")) {
        (&Method::GET, Some(id)) => Response::new(Full::new(item(id))),
        (&Method::POST, None) if path == "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Response::new(Full::new(body))
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

async fn serve_hyper(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle))
                .await;
        });
    }
}

fn axum_app() -> axum::Router {
    use axum::extract::Path;
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/item/{id}",
            get(|Path(id): Path<String>| async move { item(&id) }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
}

async fn serve_axum(listener: TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}

/// Run the backend process until stdin closes (the parent exits).
pub(crate) async fn run() -> std::io::Result<()> {
    let mut backends = Vec::new();
    for _ in 0..3 {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        backends.push(l.local_addr()?);
        tokio::spawn(serve_hyper(l));
    }
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let axum = l.local_addr()?;
    tokio::spawn(serve_axum(l, axum_app()));
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let sinew_server = l.local_addr()?;
    tokio::spawn(serve_axum(l, crate::server_stack::wrap(axum_app())));
    let ports = Ports {
        backends,
        axum,
        sinew_server,
    };
    println!(
        "{}",
        serde_json::to_string(&ports).map_err(std::io::Error::other)?
    );
    // Answer the parent's questions about this process (CPU time and
    // allocations, for the server pair); exit when it closes our stdin.
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "count on" => crate::alloc_count::set_counting(true),
            "count off" => crate::alloc_count::set_counting(false),
            _ => {}
        }
        println!(
            "{}",
            serde_json::to_string(&crate::Stat::local()).map_err(std::io::Error::other)?
        );
    }
    Ok(())
}
