//! The client [`MetricsLayer`]: a histogram and a span per logical call or
//! per attempt, and `traceparent` propagation.

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::MetricsLayer;
pub use service::Metrics;
