//! Configuration shared by the client and server layers.

use std::fmt;
use std::str::FromStr;

/// Which metric names and buckets the layers emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Naming {
    /// OpenTelemetry HTTP semantic conventions (Prometheus spelling):
    /// `http_client_request_duration_seconds`,
    /// `http_client_attempt_duration_seconds`,
    /// `http_server_request_duration_seconds`. The default.
    #[default]
    Otel,
    /// aio-request's names and labels, so existing dashboards keep working
    /// during a migration: `aio_request_latency` (per call),
    /// `aio_request_transport_latency` (per attempt),
    /// `aio_request_server_latency` (server).
    AioRequest,
}

impl Naming {
    /// `otel` or `aio-request`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Naming::Otel => "otel",
            Naming::AioRequest => "aio-request",
        }
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Naming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNaming(String);

impl fmt::Display for InvalidNaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown metrics naming {:?}: expected \"otel\" or \"aio-request\"",
            self.0
        )
    }
}

impl std::error::Error for InvalidNaming {}

impl FromStr for Naming {
    type Err = InvalidNaming;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "otel" => Ok(Naming::Otel),
            "aio-request" => Ok(Naming::AioRequest),
            other => Err(InvalidNaming(other.to_owned())),
        }
    }
}

/// Where a client [`MetricsLayer`](crate::MetricsLayer) sits in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Outermost: one measurement per logical call, however many attempts it
    /// takes (`http_client_request_duration_seconds`, `aio_request_latency`),
    /// plus the `http_client_active_requests` gauge. The default.
    #[default]
    Call,
    /// Just above the HTTP client: one measurement per attempt
    /// (`http_client_attempt_duration_seconds`,
    /// `aio_request_transport_latency`). Writes the `traceparent` header with
    /// a new span id per attempt.
    Attempt,
}

impl Scope {
    /// `call` or `attempt`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Call => "call",
            Scope::Attempt => "attempt",
        }
    }
}

/// The `[metrics]` section of the sinew config file.
///
/// ```
/// use sinew_metrics::{MetricsConfig, Naming};
/// let c = MetricsConfig::default();
/// assert!(c.per_attempt);
/// assert_eq!(c.naming, Naming::Otel);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct MetricsConfig {
    /// Also record every attempt (a second layer at [`Scope::Attempt`]).
    /// Default `true`.
    pub per_attempt: bool,
    /// Metric names and buckets. Default [`Naming::Otel`].
    pub naming: Naming,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            per_attempt: true,
            naming: Naming::Otel,
        }
    }
}

/// The `[server.metrics]` section of the sinew config file: how the
/// [`ServerMetricsLayer`](crate::ServerMetricsLayer) records.
///
/// ```
/// use sinew_metrics::{Naming, ServerMetricsConfig};
/// let c = ServerMetricsConfig::default();
/// assert!(c.accept_trace);
/// assert_eq!(c.naming, Naming::Otel);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ServerMetricsConfig {
    /// Metric names and buckets. Default [`Naming::Otel`].
    pub naming: Naming,
    /// Continue the caller's trace from a valid inbound `traceparent`
    /// (default `true`; turn it off at a trust boundary).
    pub accept_trace: bool,
}

impl Default for ServerMetricsConfig {
    fn default() -> Self {
        ServerMetricsConfig {
            naming: Naming::Otel,
            accept_trace: true,
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn config_from_toml() {
        let c: MetricsConfig =
            toml::from_str("per_attempt = false\nnaming = \"aio-request\"").unwrap();
        assert_eq!(
            c,
            MetricsConfig {
                per_attempt: false,
                naming: Naming::AioRequest
            }
        );
        let c: MetricsConfig = toml::from_str("").unwrap();
        assert_eq!(c, MetricsConfig::default());
        let err = toml::from_str::<MetricsConfig>("naming = \"prom\"").unwrap_err();
        assert!(err.to_string().contains("naming"), "{err}");
        assert!(toml::from_str::<MetricsConfig>("per_attemp = true").is_err());
        assert_eq!("aio-request".parse::<Naming>(), Ok(Naming::AioRequest));
        assert!("prom".parse::<Naming>().is_err());
        let s: ServerMetricsConfig =
            toml::from_str("naming = \"aio-request\"\naccept_trace = false").unwrap();
        assert_eq!(s.naming, Naming::AioRequest);
        assert!(!s.accept_trace);
        assert!(toml::from_str::<ServerMetricsConfig>("per_attempt = true").is_err());
    }
}
