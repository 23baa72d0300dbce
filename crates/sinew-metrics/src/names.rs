//! Metric names, label names and histogram bucket boundaries.
//!
//! Every name sinew-metrics records is a constant here, so dashboards and
//! tests can refer to them without repeating strings.

/// OpenTelemetry's recommended boundaries for HTTP durations, in seconds.
pub const OTEL_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// aio-request's boundaries for `aio_request_latency` (per logical call).
pub const AIO_REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 5.0, 10.0, 15.0, 20.0,
];

/// aio-request's boundaries for `aio_request_transport_latency` (per attempt)
/// and `aio_request_server_latency`.
pub const AIO_REQUEST_TRANSPORT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.75, 1.0,
    5.0, 10.0, 15.0, 20.0,
];

/// Histogram: duration of a logical client call, in seconds (OpenTelemetry
/// `http.client.request.duration`).
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";
/// Histogram: duration of one client attempt (one request on the wire), in
/// seconds. Same labels and buckets as [`HTTP_CLIENT_REQUEST_DURATION`].
pub const HTTP_CLIENT_ATTEMPT_DURATION: &str = "http_client_attempt_duration_seconds";
/// Gauge: client calls in flight (OpenTelemetry `http.client.active_requests`).
pub const HTTP_CLIENT_ACTIVE_REQUESTS: &str = "http_client_active_requests";
/// Histogram: duration of a server request until its response body ended,
/// in seconds (OpenTelemetry `http.server.request.duration`).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Gauge: server requests in flight (OpenTelemetry `http.server.active_requests`).
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";

/// aio-request's client histogram (per logical call), in seconds.
pub const AIO_REQUEST_LATENCY: &str = "aio_request_latency";
/// aio-request's per-attempt histogram, in seconds.
pub const AIO_REQUEST_TRANSPORT_LATENCY: &str = "aio_request_transport_latency";
/// aio-request's server histogram, in seconds.
pub const AIO_REQUEST_SERVER_LATENCY: &str = "aio_request_server_latency";

/// Label: the request method (`GET`, …; unknown methods are `_OTHER`).
pub const HTTP_REQUEST_METHOD: &str = "http_request_method";
/// Label: the peer's host name or address.
pub const SERVER_ADDRESS: &str = "server_address";
/// Label: the peer's port.
pub const SERVER_PORT: &str = "server_port";
/// Label: the response status code.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http_response_status_code";
/// Label: why the call failed (`timeout`, `connect`, `503`, …); absent on
/// success.
pub const ERROR_TYPE: &str = "error_type";
/// Label: `http` or `https`.
pub const URL_SCHEME: &str = "url_scheme";
/// Label: the route template (`/users/{id}`), never the raw path.
pub const HTTP_ROUTE: &str = "http_route";

/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Describe every metric sinew-metrics records (unit and help text) to the
/// installed recorder, so exporters print `# HELP` lines. Called by
/// [`crate::prometheus::PrometheusBuilder::install`]; call it yourself when
/// you use another exporter.
pub fn describe() {
    use metrics::{describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        HTTP_CLIENT_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of logical HTTP client calls (all attempts), until the response headers"
    );
    describe_histogram!(
        HTTP_CLIENT_ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of single HTTP client attempts, until the response headers"
    );
    describe_gauge!(
        HTTP_CLIENT_ACTIVE_REQUESTS,
        "Number of HTTP client calls in flight"
    );
    describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, until the response body ended"
    );
    describe_gauge!(
        HTTP_SERVER_ACTIVE_REQUESTS,
        "Number of HTTP server requests in flight"
    );
    describe_histogram!(
        AIO_REQUEST_LATENCY,
        Unit::Seconds,
        "Duration of HTTP client requests."
    );
    describe_histogram!(
        AIO_REQUEST_TRANSPORT_LATENCY,
        Unit::Seconds,
        "Duration of transport requests."
    );
    describe_histogram!(
        AIO_REQUEST_SERVER_LATENCY,
        Unit::Seconds,
        "Duration of HTTP server requests."
    );
}
