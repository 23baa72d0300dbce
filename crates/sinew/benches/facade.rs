//! The facade's own cost per call (request building, interceptors, status
//! mapping, body reading) over an in-memory stack, next to calling that
//! stack directly.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use sinew::{Body, Client, ResBody, Stack};
use sinew_core::BoxError;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

fn stack() -> Stack {
    BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
        let body: ResBody = Full::new(Bytes::from_static(b"{\"id\":1}"))
            .map_err(|e: Infallible| -> BoxError { match e {} })
            .boxed_unsync();
        Ok::<_, BoxError>(Response::new(body))
    }))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("facade");
    let raw = stack();
    g.bench_function("stack_direct", |b| {
        b.to_async(&rt).iter(|| {
            let raw = raw.clone();
            async move {
                let req = Request::builder()
                    .uri("http://127.0.0.1:8080/users/7")
                    .body(Body::empty())
                    .unwrap();
                let resp = raw.oneshot(req).await.unwrap();
                resp.into_body().collect().await.unwrap().to_bytes()
            }
        })
    });
    let client = Client::from_stack(Some("http://127.0.0.1:8080".parse().unwrap()), stack());
    g.bench_function("client_get", |b| {
        b.to_async(&rt).iter(|| {
            let client = client.clone();
            async move {
                client
                    .get("/users/{id}")
                    .param("id", 7)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
