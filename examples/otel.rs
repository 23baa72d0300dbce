//! The sinew stack's spans exported to an OpenTelemetry collector over
//! OTLP/HTTP, with traces that link across services.
//!
//! ```text
//! cargo run --example otel --features opentelemetry
//! ```
//!
//! The exporter sends to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4318`, a collector's OTLP/HTTP port, plain HTTP); with
//! no collector listening the example still runs and the exporter reports
//! that it could not send. Spans are also printed to stderr.
//!
//! What it shows: a `checkout` span calls the `inventory` service through a
//! sinew client; `inventory`'s server stack continues the trace from the
//! inbound `traceparent` and its handler calls `pricing` through the same
//! client, with nothing passed by hand. All spans share one trace id, and
//! each server span's parent is the exact client span that called it
//! (`http.client` per call and per attempt, then `http.server`).
//!
//! The pieces an application needs: `sinew` with the `opentelemetry`
//! feature, a tracer provider with an exporter, and a tracing subscriber
//! with `tracing_opentelemetry::layer()`. sinew writes and reads the W3C
//! `traceparent`/`tracestate` headers itself (no global propagator needed).

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use sinew::server::ServerStack;
use sinew::Client;
use sinew_metrics::ServerMetricsLayer;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tracer provider: spans batched to the OTLP/HTTP exporter.
fn tracer_provider() -> Result<SdkTracerProvider, BoxError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("sinew-otel-example")
                .build(),
        )
        .build())
}

/// Serve `app` behind sinew's server stack on a free loopback port.
async fn listen(app: Router) -> Result<SocketAddr, BoxError> {
    let app = app.layer(ServerStack::new().metrics(ServerMetricsLayer::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// `inventory`'s handler: asks `pricing`, inside the server span.
async fn stock(State(pricing): State<Client>) -> String {
    match pricing.get("/price/7").send().await {
        Ok(resp) => format!("7 in stock at {}", resp.text().await.unwrap_or_default()),
        Err(e) => format!("7 in stock, price unknown: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let provider = tracer_provider()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("sinew-example")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();

    let pricing = listen(Router::new().route("/price/{id}", get(|| async { "4.20 EUR" }))).await?;
    let to_pricing = Client::builder()
        .base_url(&format!("http://{pricing}"))
        .build()?;
    let inventory = listen(
        Router::new()
            .route("/stock/7", get(stock))
            .with_state(to_pricing),
    )
    .await?;
    let to_inventory = Client::builder()
        .base_url(&format!("http://{inventory}"))
        .build()?;

    let checkout = tracing::info_span!("checkout");
    let trace_id = checkout.context().span().span_context().trace_id();
    let answer = async { to_inventory.get("/stock/7").send().await?.text().await }
        .instrument(checkout)
        .await?;
    println!("{answer}");
    println!("trace {trace_id}: checkout → inventory → pricing");

    // Flush what is batched before exiting.
    if let Err(e) = provider.shutdown() {
        eprintln!("exporter: {e}");
    }
    Ok(())
}
