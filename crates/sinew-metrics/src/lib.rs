//! Metrics and tracing for sinew: a client [`MetricsLayer`], a
//! [`ServerMetricsLayer`], a Prometheus endpoint, `tracing` spans and W3C
//! `traceparent` propagation, with or without OpenTelemetry (feature
//! `opentelemetry`).
//!
//! Everything is recorded through the [`metrics`] facade, so it lands in
//! the application's own exporter; [`prometheus`] is a ready one with
//! explicit histogram buckets.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use sinew_core::Body;
//! use sinew_metrics::{prometheus::PrometheusBuilder, MetricsLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The application installs one recorder (`install()`); this example
//! // uses a local one.
//! let (recorder, handle) = PrometheusBuilder::new().build();
//! let _guard = metrics::set_default_local_recorder(&recorder);
//!
//! // Stands in for the hyper client.
//! let http_client = tower::service_fn(|req: Request<Body>| async move {
//!     assert!(req.headers().contains_key("traceparent"));
//!     Ok::<_, Infallible>(Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap())
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(MetricsLayer::call()) // outermost: one measurement per logical call
//!     // … deadline, retry, balance, breaker, signing …
//!     .layer(MetricsLayer::attempt()) // just above the client: one per attempt
//!     .service(http_client);
//!
//! let req = Request::get("http://inventory:8080/items/7").body(Body::empty()).unwrap();
//! let resp = client.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
//!
//! let text = handle.render();
//! let labels = r#"http_request_method="GET",server_address="inventory",server_port="8080",http_response_status_code="503",error_type="503""#;
//! assert!(text.contains(&format!("http_client_request_duration_seconds_count{{{labels}}} 1")));
//! assert!(text.contains(&format!("http_client_attempt_duration_seconds_count{{{labels}}} 1")));
//! # }
//! ```
//!
//! # What is recorded
//!
//! | Metric | Type | Labels | Recorded by |
//! |---|---|---|---|
//! | `http_client_request_duration_seconds` | histogram | `http_request_method`, `server_address`, `server_port`, `http_response_status_code`, `error_type` | [`MetricsLayer::call`], once per logical call, until the response headers |
//! | `http_client_attempt_duration_seconds` | histogram | same as above | [`MetricsLayer::attempt`], once per attempt (one request on the wire) |
//! | `http_client_active_requests` | gauge | `http_request_method`, `server_address`, `server_port` | [`MetricsLayer::call`] |
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `url_scheme`, `http_route`, `http_response_status_code`, `error_type` | [`ServerMetricsLayer`], until the response body ended |
//! | `http_server_active_requests` | gauge | `http_request_method`, `url_scheme` | [`ServerMetricsLayer`] |
//!
//! `http_response_status_code` is absent when there was no response;
//! `error_type` is present only on failures: the classifier's verdict for
//! client statuses (`503`, `429`, `408`, `5xx`, …, see
//! [`FailureKind::as_str`](sinew_core::FailureKind::as_str)), the kind of a
//! client error (`timeout`, `circuit_open`, `no_endpoints`, `connect`,
//! `transport`), `cancelled` when the caller dropped the call (a hedge that
//! lost, a client that went away), and on the server the 5xx status code,
//! `_OTHER` for an inner service error and `body` for a response body that
//! failed. Unknown methods are `_OTHER`.
//!
//! Buckets (OpenTelemetry): 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
//! 0.75, 1, 2.5, 5, 7.5, 10 seconds ([`names::OTEL_DURATION_BUCKETS`]).
//!
//! ## aio-request naming
//!
//! With [`Naming::AioRequest`] the layers emit aio-request's histograms
//! instead, with its labels and buckets, so existing dashboards keep
//! working during a migration:
//!
//! | Metric | Labels | Buckets |
//! |---|---|---|
//! | `aio_request_latency` (call) | `request_endpoint` (`http://host:port`), `request_method`, `request_path`, `response_status`, `circuit_breaker` (`True`/`False`) | [`names::AIO_REQUEST_LATENCY_BUCKETS`] |
//! | `aio_request_transport_latency` (attempt) | `request_endpoint`, `request_method`, `request_path`, `response_status` | [`names::AIO_REQUEST_TRANSPORT_BUCKETS`] |
//! | `aio_request_server_latency` | `request_client` (the `X-Service-Name` header, lower-cased; `unknown`/`other`), `request_method`, `request_path` (the route), `response_status` | [`names::AIO_REQUEST_TRANSPORT_BUCKETS`] |
//!
//! As in aio-request, a client timeout is `response_status="408"`, an open
//! breaker `502` with `circuit_breaker="True"`, other errors and
//! cancellation `499`. The client's `request_path` is the request's
//! [`PathTemplate`] extension when set, else the raw path (what aio-request
//! recorded; set templates to bound the series count). The active-request
//! gauges keep their OpenTelemetry names in both modes.
//!
//! # Naming convention of every sinew metric
//!
//! All sinew layers record through the `metrics` facade and follow one
//! convention: the OpenTelemetry HTTP names above for HTTP durations; for
//! everything else the prefix `sinew_`, snake_case, counters ending in
//! `_total`, gauges without a suffix, histograms ending in their unit
//! (`_seconds`), and only low-cardinality snake_case labels (never a path,
//! an id or a peer-chosen string).
//!
//! | Metric | Type | Labels | Layer |
//! |---|---|---|---|
//! | `sinew_retry_attempts_total` | counter | `reason` | retry: retries scheduled |
//! | `sinew_retry_budget_exhausted_total` | counter | — | retry: retries refused by the budget |
//! | `sinew_circuit_breaker_transitions_total` | counter | `from`, `to` | breaker: state changes |
//! | `sinew_circuit_breaker_state` | gauge | `key` | breaker: the current state per key |
//! | `sinew_shed_requests_total` | counter | `priority` | server shedding: requests refused |
//! | `sinew_signature_verifications_total` | counter | `result` | signature verification outcomes |
//!
//! A breaker's `key` is an endpoint authority, bounded by the endpoint set.
//! A new counter in any sinew layer follows the same rule
//! (`sinew_<layer>_<what>_total{<bounded labels>}`).
//!
//! # Cost per call
//!
//! Each layer caches the metric handles of every label set it has seen
//! (the in-flight gauge, and a histogram per outcome), so a call costs one
//! keyed hash of its label values, a read lock and the recorder's atomic
//! updates, without building labels or resolving them through the
//! recorder's registry. The cache serves only the process's global recorder
//! (installed once, never freed, so handles cannot end up in another
//! recorder); under a thread-local recorder (`metrics::with_local_recorder`,
//! as tests use) every call resolves its labels as the `metrics` macros do.
//! A recorder installed after the layers are built is picked up (a
//! background thread learns which recorder is the global one). Each layer
//! caches at most 1 024 label sets and 16 outcomes per set, and re-resolves
//! a set once a second (exporters that drop idle series keep working);
//! beyond the bounds calls are still recorded, uncached, so label values a
//! peer chooses cannot grow memory without bound.
//!
//! # Tracing
//!
//! The client layer opens a span `http.client` per call or attempt and the
//! server layer a span `http.server` per request, with OpenTelemetry field
//! names: `otel.name`, `otel.kind` (`client`/`server`),
//! `http.request.method`, `server.address`, `server.port`, `url.path`,
//! `url.scheme`, `url.template`, `http.route`, `http.response.status_code`,
//! `error.type`, plus `trace_id` and the span id. The query string is never
//! recorded. The layers enter their span while polling the inner service,
//! so the events the layers below emit at their decisions (a retry
//! scheduled, a breaker open, a request shed) are recorded inside the call's
//! or request's span. Each layer also emits a `debug` event with the
//! outcome.
//!
//! Because the attempt layer sits below the load balancer, its
//! `server_address`/`server_port` are those of the endpoint actually
//! chosen, while the call layer's are those of the logical URL.
//!
//! # Trace context
//!
//! The client sends `traceparent: 00-<trace id>-<new span id>-<flags>`: the
//! trace of the ambient [`CallContext`](sinew_core::CallContext) (the request
//! being served), else a new trace per logical call. The call layer stores
//! the trace as a [`TraceParent`](sinew_core::TraceParent) request extension
//! so every attempt shares it; each attempt gets a new span id. The server
//! layer accepts a valid inbound `traceparent` (an invalid one, or more than
//! one, is ignored and a new trace starts), merges it into the request's
//! `CallContext` extension and runs the inner service inside that context,
//! so the calls a handler makes continue the trace.
//!
//! ## With OpenTelemetry
//!
//! With the `opentelemetry` feature and a
//! [tracing-opentelemetry](https://docs.rs/tracing-opentelemetry) layer in
//! the subscriber, the `http.client`/`http.server` spans are the exported
//! OpenTelemetry spans and the wire carries their ids: an inbound
//! `traceparent`/`tracestate` becomes the server span's remote parent, and
//! the outgoing headers name the client span itself (its parent is the
//! current span), so traces link across services. `url.full`,
//! `http.request.resend_count` and the span status follow OpenTelemetry's
//! HTTP semantic conventions. Without such a layer nothing changes. See
//! the `otel` module (built with the feature) and `examples/otel.rs` in the
//! repository.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod cache;
pub mod client;
pub mod config;
mod labels;
pub mod names;
#[cfg(feature = "opentelemetry")]
pub mod otel;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod server;
mod trace;

pub use client::MetricsLayer;
pub use config::{MetricsConfig, Naming, Scope, ServerMetricsConfig};
pub use labels::PathTemplate;
pub use server::ServerMetricsLayer;
