#![allow(missing_docs, clippy::unwrap_used)]
use criterion::{criterion_group, criterion_main, Criterion};
use sinew_core::TraceParent;
fn bench(c: &mut Criterion) {
    let _h = sinew_metrics::prometheus::PrometheusBuilder::new()
        .install()
        .unwrap();
    c.bench_function("new_root", |b| b.iter(TraceParent::new_root));
    let tp = TraceParent::new_root();
    c.bench_function("child", |b| b.iter(|| tp.child()));
    c.bench_function("to_string", |b| b.iter(|| tp.to_string()));
    c.bench_function("histogram_macro", |b| {
        b.iter(|| {
            let labels = vec![
                metrics::Label::new("http_request_method", "GET"),
                metrics::Label::new("server_address", String::from("inventory")),
                metrics::Label::new("server_port", "8080"),
                metrics::Label::new("http_response_status_code", "200"),
            ];
            metrics::histogram!("http_client_request_duration_seconds", labels).record(0.01);
        })
    });
    c.bench_function("gauge_macro", |b| {
        b.iter(|| {
            let labels = vec![
                metrics::Label::new("http_request_method", "GET"),
                metrics::Label::new("server_address", String::from("inventory")),
                metrics::Label::new("server_port", "8080"),
            ];
            metrics::gauge!("http_client_active_requests", labels).increment(1.0);
        })
    });
    c.bench_function("instant_now", |b| b.iter(tokio::time::Instant::now));
}
criterion_group!(benches, bench);
criterion_main!(benches);
