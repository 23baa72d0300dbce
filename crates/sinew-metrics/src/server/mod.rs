//! The server [`ServerMetricsLayer`]: a histogram and a span per request,
//! measured until the response body ends, and inbound `traceparent`.

mod body;
mod future;
mod layer;
mod service;

pub use body::MetricsBody;
pub use future::ResponseFuture;
pub use layer::{RouteFn, ServerMetricsLayer};
pub use service::ServerMetrics;
