//! The clients under test, each behind one `call(id)` function.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type CallFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// One client: a function from an item id to a finished call.
#[derive(Clone)]
pub(crate) struct Driver {
    pub(crate) name: &'static str,
    call: Arc<dyn Fn(u64) -> CallFuture + Send + Sync>,
}

impl Driver {
    pub(crate) fn call(&self, id: u64) -> CallFuture {
        (self.call)(id)
    }
}

fn hyper_client() -> HyperClient<HttpConnector, Empty<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(http)
}

async fn get(client: &HyperClient<HttpConnector, Empty<Bytes>>, uri: Uri) -> Result<(), BoxError> {
    let resp = client.get(uri).await?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()).into());
    }
    resp.into_body().collect().await?;
    Ok(())
}

/// 1. The floor: a bare hyper-util legacy client to one backend.
pub(crate) fn hyper(target: SocketAddr) -> Driver {
    let client = hyper_client();
    Driver {
        name: "hyper",
        call: Arc::new(move |id| {
            let client = client.clone();
            Box::pin(async move {
                let uri: Uri = format!("http://{target}/item/{id}").parse()?;
                get(&client, uri).await
            })
        }),
    }
}

/// 1b. A reference, not a baseline: the bare hyper-util client spreading
/// calls round-robin over the same backends as the balancing clients, so
/// what spreading itself costs (at C = 1 every call wakes a connection that
/// idled for two calls) can be told apart from what the layers cost.
pub(crate) fn hyper_round_robin(backends: &[SocketAddr]) -> Driver {
    let client = hyper_client();
    let backends: Arc<[SocketAddr]> = backends.into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Driver {
        name: "hyper-rr3",
        call: Arc::new(move |id| {
            let client = client.clone();
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let target = backends.get(i % backends.len().max(1)).copied();
            Box::pin(async move {
                let target = target.ok_or("no backends")?;
                let uri: Uri = format!("http://{target}/item/{id}").parse()?;
                get(&client, uri).await
            })
        }),
    }
}

#[derive(Clone)]
struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// 2. tower's own stack: retry (never) + timeout + p2c over 3 backends.
pub(crate) fn tower(backends: &[SocketAddr]) -> Driver {
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::{CompleteOnResponse, PeakEwma};

    let client = hyper_client();
    let endpoints: Vec<_> = backends
        .iter()
        .map(|addr| {
            let client = client.clone();
            let addr = *addr;
            let svc = tower::service_fn(move |id: u64| {
                let client = client.clone();
                async move {
                    let uri: Uri = format!("http://{addr}/item/{id}").parse()?;
                    get(&client, uri).await
                }
            });
            PeakEwma::new(
                svc,
                Duration::from_millis(1),
                10e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance = Balance::new(ServiceList::new(endpoints));
    let svc = tower::ServiceBuilder::new()
        .retry(NeverRetry)
        .timeout(Duration::from_secs(2))
        .buffer(1024)
        .service(balance);
    let svc = tower::util::BoxCloneSyncService::new(svc);
    Driver {
        name: "tower",
        call: Arc::new(move |id| {
            let svc = svc.clone();
            Box::pin(async move {
                let r: Result<(), tower::BoxError> = svc.oneshot(id).await;
                r
            })
        }),
    }
}

/// 3. reqwest + reqwest-middleware + reqwest-retry, to one backend.
pub(crate) fn reqwest_middleware(target: SocketAddr) -> Driver {
    use reqwest_retry::policies::ExponentialBackoff;
    use reqwest_retry::RetryTransientMiddleware;
    let policy = ExponentialBackoff::builder().build_with_max_retries(2);
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default(),
    )
    .with(RetryTransientMiddleware::new_with_policy(policy))
    .build();
    Driver {
        name: "reqwest-middleware",
        call: Arc::new(move |id| {
            let client = client.clone();
            Box::pin(async move {
                let resp = client
                    .get(format!("http://{target}/item/{id}"))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status()).into());
                }
                resp.bytes().await?;
                Ok(())
            })
        }),
    }
}

/// A driver over a sinew client: `GET /item/{id}`, the whole body read.
fn facade_driver(name: &'static str, client: sinew::Client) -> Driver {
    Driver {
        name,
        call: Arc::new(move |id| {
            let client = client.clone();
            Box::pin(async move {
                client
                    .get("/item/{id}")
                    .param("id", id)
                    .send()
                    .await?
                    .bytes()
                    .await?;
                Ok(())
            })
        }),
    }
}

/// 4. The sinew client with every layer on.
pub(crate) fn sinew(backends: &[SocketAddr]) -> Result<Driver, BoxError> {
    Ok(facade_driver(
        "sinew",
        crate::sinew_stack::client(backends)?,
    ))
}

/// The sinew client with one layer on (see `sinew_stack::variant`).
pub(crate) fn sinew_variant(
    name: &'static str,
    backends: &[SocketAddr],
) -> Result<Driver, BoxError> {
    Ok(facade_driver(
        name,
        crate::sinew_stack::variant(name, backends)?,
    ))
}

/// The server pair (client 5): one client (signing, as the sinew server
/// verifies) against the bare axum server or the sinew server stack.
pub(crate) fn server_pair(name: &'static str, target: SocketAddr) -> Result<Driver, BoxError> {
    Ok(facade_driver(
        name,
        crate::sinew_stack::signing_client(target)?,
    ))
}
