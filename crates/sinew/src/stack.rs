//! The order of the client stack: the one place it is decided.
//!
//! Outermost first, each layer present only when configured:
//!
//! | # | layer | scope | why here |
//! |---|---|---|---|
//! | 1 | token auth ([`crate::auth`]) | call | logs in once for the whole call, retried attempts reuse the token; a 401 is retried once with a fresh token |
//! | 2 | metrics, call scope (`sinew-metrics`) | call | one duration per logical call, whatever the retries, hedges and waits below cost |
//! | 3 | deadline (`sinew-deadline`) | call | the call's deadline (the client's `timeout`, the request's own, the caller's inherited one: the earliest wins) bounds everything below, backoff sleeps included |
//! | 4 | your per-call layers ([`ClientBuilder::layer_per_call`](crate::ClientBuilder::layer_per_call)) | call | see the call once, inside its deadline |
//! | 5 | retry (`sinew-retry`) | call | repeats the attempts below; reads the deadline to stop in time |
//! | 6 | hedge (`sinew-retry`) | call | races attempts below retries, so a hedged call is retried as a whole |
//! | 7 | load balance (`sinew-balance`) | attempt | picks the endpoint of each attempt, so a retry can go elsewhere; skips endpoints whose breaker is open |
//! | 8 | circuit breaker (`sinew-breaker`) | attempt, per endpoint | keyed by the endpoint the balancer chose |
//! | 9 | your per-attempt layers ([`ClientBuilder::layer_per_attempt`](crate::ClientBuilder::layer_per_attempt)) | attempt | see every attempt, after the endpoint is chosen |
//! | 10 | deadline headers (`sinew-deadline`) | attempt | `X-Request-Timeout` recomputed for each attempt, priority |
//! | 11 | signing (`sinew-sign`) | attempt | a fresh `created` and nonce per attempt; below the deadline headers so a signature may cover them |
//! | 12 | metrics, attempt scope (`sinew-metrics`) | attempt | the wire time of each attempt; writes `traceparent` with a new span id |
//! | 13 | the transport (hyper-util, or [`ClientBuilder::transport`](crate::ClientBuilder::transport)) | attempt | pooled connections; the response body is read within the attempt (up to [`DEFAULT_RESPONSE_BUFFER`](crate::DEFAULT_RESPONSE_BUFFER)) so a body cut mid-way fails the attempt and may be retried |
//!
//! Every layer judges outcomes with the same [`Classifier`]
//! ([`ClientBuilder::classifier`](crate::ClientBuilder::classifier)), so
//! what the breaker counts as a failure is what retry retries and what the
//! metrics label as an error.
//!
//! An absent layer is an `Either` branch: no allocation, no call. Two boxes
//! keep the futures small: the attempt's stack (7 to 13) is boxed once, so
//! the call-scoped layers above hold and move a pointer-wide future instead
//! of the attempt's whole state, and the whole stack is boxed once at the
//! top. Hedging, when configured, boxes its own future, so clients without
//! it do not carry its space through every layer above.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use sinew_core::{Body, BoxError, Classifier};
use tower::util::{option_layer, BoxCloneSyncService, Either};
use tower::{Layer, Service, ServiceExt};

use crate::observe::AttemptHook;

/// The response body type of the stack.
pub type ResBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The composed service stack a client sends through.
pub type Stack = BoxCloneSyncService<Request<Body>, http::Response<ResBody>, BoxError>;

/// A user's layer, boxed: applied to the stack below it.
#[doc(hidden)]
pub type UserLayer = Arc<dyn Fn(Stack) -> Stack + Send + Sync>;

/// A tower layer that can go into the client stack
/// ([`ClientBuilder::layer_per_call`](crate::ClientBuilder::layer_per_call),
/// [`layer_per_attempt`](crate::ClientBuilder::layer_per_attempt)): any
/// `Layer<Stack>` whose service answers `http::Response<B>` with a
/// `Bytes` body (its body and error are boxed to fit).
pub trait StackLayer: Send + Sync + 'static {
    /// Box it, so it composes with the stack below.
    #[doc(hidden)]
    fn into_user_layer(self) -> UserLayer;
}

impl<L, B> StackLayer for L
where
    L: Layer<Stack> + Send + Sync + 'static,
    L::Service:
        Service<Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request<Body>>>::Error: Into<BoxError>,
    <L::Service as Service<Request<Body>>>::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_user_layer(self) -> UserLayer {
        Arc::new(move |below: Stack| {
            let svc = self
                .layer(below)
                .map_err(Into::into)
                .map_response(|r: http::Response<B>| {
                    r.map(|b| b.map_err(Into::into).boxed_unsync())
                });
            BoxCloneSyncService::new(svc)
        })
    }
}

fn apply_user_layers(below: Stack, layers: &[UserLayer]) -> Stack {
    // The first layer given is the outermost.
    layers.iter().rev().fold(below, |s, l| l(s))
}

/// The layers of one client, built and ready to compose.
#[derive(Default)]
pub(crate) struct Layers {
    pub(crate) auth: Option<crate::auth::TokenAuthLayer>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<(
        sinew_metrics::MetricsLayer,
        Option<sinew_metrics::MetricsLayer>,
    )>,
    /// The call deadline layer and whether it writes headers itself.
    #[cfg(feature = "deadline")]
    pub(crate) deadline: Option<sinew_deadline::DeadlineConfig>,
    /// The client's own timeout (when the deadline layer is off or absent).
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) per_call: Vec<UserLayer>,
    #[cfg(feature = "retry")]
    pub(crate) retry: Option<sinew_retry::RetryLayer>,
    #[cfg(feature = "retry")]
    pub(crate) hedge: Option<sinew_retry::HedgeLayer>,
    #[cfg(feature = "balance")]
    pub(crate) balance: Option<sinew_balance::LoadBalanceLayer>,
    #[cfg(feature = "breaker")]
    pub(crate) breaker: Option<sinew_breaker::CircuitBreakerLayer>,
    pub(crate) per_attempt: Vec<UserLayer>,
    #[cfg(feature = "sign")]
    pub(crate) sign: Option<sinew_sign::HmacSignLayer>,
    pub(crate) on_attempt: Option<AttemptHook>,
}

impl Layers {
    /// Hand every layer that judges outcomes the one classifier.
    #[cfg_attr(
        not(any(
            feature = "metrics",
            feature = "retry",
            feature = "balance",
            feature = "breaker"
        )),
        allow(unused_variables)
    )]
    pub(crate) fn classify_with(&mut self, classifier: &Classifier) {
        #[cfg(feature = "metrics")]
        if let Some((call, attempt)) = self.metrics.take() {
            self.metrics = Some((
                call.classifier(classifier.clone()),
                attempt.map(|a| a.classifier(classifier.clone())),
            ));
        }
        #[cfg(feature = "retry")]
        {
            self.retry = self.retry.take().map(|r| r.classifier(classifier.clone()));
            self.hedge = self.hedge.take().map(|h| h.classifier(classifier.clone()));
        }
        #[cfg(feature = "balance")]
        {
            self.balance = self
                .balance
                .take()
                .map(|b| b.classifier(classifier.clone()));
        }
        #[cfg(feature = "breaker")]
        {
            self.breaker = self
                .breaker
                .take()
                .map(|b| b.classifier(classifier.clone()));
        }
    }

    /// Compose the stack over `attempt` (the transport), in the order of
    /// this module's table.
    pub(crate) fn compose<S>(&self, attempt: S) -> Stack
    where
        S: Service<Request<Body>, Response = http::Response<ResBody>, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // Logins go straight to the transport (within the client's timeout):
        // no balancer rewrites the login URL, no signature is added.
        let login = self.auth.as_ref().map(|_| {
            let t = option_layer(self.timeout.map(tower::timeout::TimeoutLayer::new))
                .layer(attempt.clone());
            BoxCloneSyncService::new(t)
        });
        // 13: the transport, and the attempt hook nearest the wire.
        let s = option_layer(
            self.on_attempt
                .clone()
                .map(crate::observe::ObserveLayer::new),
        )
        .layer(attempt);
        // 12: metrics per attempt.
        #[cfg(feature = "metrics")]
        let s = option_layer(self.metrics.as_ref().and_then(|m| m.1.clone())).layer(s);
        // 11: signing.
        #[cfg(feature = "sign")]
        let s = option_layer(self.sign.clone()).layer(s);
        // 10: deadline headers, fresh for each attempt.
        #[cfg(feature = "deadline")]
        let s =
            option_layer(self.deadline.as_ref().map(|d| {
                sinew_deadline::PropagateDeadlineLayer::new().grpc_timeout(d.grpc_timeout)
            }))
            .layer(s);
        // 9: the user's per-attempt layers (boxed only when there are some).
        let s = if self.per_attempt.is_empty() {
            Either::Left(s)
        } else {
            Either::Right(apply_user_layers(
                BoxCloneSyncService::new(s),
                &self.per_attempt,
            ))
        };
        // 8: a breaker per endpoint.
        #[cfg(feature = "breaker")]
        let s = option_layer(self.breaker.clone()).layer(s);
        // 7: the balancer, told to skip endpoints whose breaker would
        // refuse the attempt anyway.
        #[cfg(feature = "balance")]
        let s = option_layer(self.balancer()).layer(s);
        // The attempt's stack is boxed once: the call-scoped layers above
        // keep copies of it (retry, hedge) and wrap its future by value, so
        // both stay a pointer wide instead of the whole attempt's state.
        let s = BoxCloneSyncService::new(s);
        // 6, 5: hedging below retries.
        // Hedging's future holds a template request and a copy of the stack
        // below; boxed, so a client without hedging (the usual case) does
        // not carry and move that space through every layer above.
        #[cfg(feature = "retry")]
        let s = option_layer(self.hedge.clone().map(|h| {
            tower::layer::layer_fn(move |s| h.layer(s).map_future(|f| Box::pin(f) as CallFuture))
        }))
        .layer(s);
        #[cfg(feature = "retry")]
        let s = option_layer(self.retry.clone()).layer(s);
        // 4: the user's per-call layers.
        let s = if self.per_call.is_empty() {
            Either::Left(s)
        } else {
            Either::Right(apply_user_layers(
                BoxCloneSyncService::new(s),
                &self.per_call,
            ))
        };
        // 3: the call's deadline (the per-attempt layer above writes the
        // headers), or a plain timeout without the deadline layer.
        #[cfg(feature = "deadline")]
        let s = {
            let layer = self.deadline.clone().map(|mut config| {
                config.timeout = self.timeout;
                sinew_deadline::DeadlineLayer::from_config(config).write_headers(false)
            });
            let plain = match layer {
                Some(_) => None,
                None => self.timeout.map(tower::timeout::TimeoutLayer::new),
            };
            option_layer(plain).layer(option_layer(layer).layer(s))
        };
        #[cfg(not(feature = "deadline"))]
        let s = option_layer(self.timeout.map(tower::timeout::TimeoutLayer::new)).layer(s);
        // 2: metrics per call.
        #[cfg(feature = "metrics")]
        let s = option_layer(self.metrics.as_ref().map(|m| m.0.clone())).layer(s);
        // 1: token auth.
        let auth = match (self.auth.clone(), login) {
            (Some(a), Some(login)) => Some(a.login_via(login)),
            (a, _) => a,
        };
        let s = option_layer(auth).layer(s);
        BoxCloneSyncService::new(s)
    }

    #[cfg(feature = "balance")]
    fn balancer(&self) -> Option<sinew_balance::LoadBalanceLayer> {
        let layer = self.balance.clone()?;
        #[cfg(feature = "breaker")]
        if let Some(breaker) = &self.breaker {
            let handle = breaker.handle();
            return Some(layer.available_if(move |endpoint| !handle.refuses(endpoint)));
        }
        Some(layer)
    }
}

/// The hyper-util transport with the response body read within the attempt
/// (up to `buffer` bytes; larger bodies stream on, nothing is truncated).
pub(crate) fn hyper_attempt(
    transport: crate::transport::Transport,
    buffer: Option<usize>,
) -> impl Service<
    Request<Body>,
    Response = http::Response<ResBody>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<http::Response<ResBody>, BoxError>> + Send,
> + Clone
       + Send
       + Sync
       + 'static {
    // Shared behind one `Arc`: the stack is cloned per call, and a hyper
    // client clone touches several reference counts.
    let transport = Arc::new(transport);
    tower::service_fn(move |req: Request<Body>| {
        let sent = crate::transport::send(&transport, req);
        async move {
            let resp = sent.await?;
            match buffer {
                // hyper's body is read in place (`Unpin`: no box for it).
                Some(limit) => {
                    let (parts, body) = resp.into_parts();
                    let body = Body::buffer_unpin(body, limit).await?;
                    Ok(http::Response::from_parts(parts, body.boxed_unsync()))
                }
                None => read_within_attempt(resp, None).await,
            }
        }
    })
}

/// A boxed call future.
#[cfg(feature = "retry")]
type CallFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<ResBody>, BoxError>> + Send>,
>;

/// Any transport (a mock, a custom client), with the same body policy.
pub(crate) fn custom_attempt<S, B>(transport: S, buffer: Option<usize>) -> Stack
where
    S: Service<Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let svc = transport
        .map_err(Into::into)
        .and_then(move |resp: http::Response<B>| read_within_attempt(resp, buffer));
    BoxCloneSyncService::new(svc)
}

async fn read_within_attempt<B>(
    resp: http::Response<B>,
    buffer: Option<usize>,
) -> Result<http::Response<ResBody>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    let body: ResBody = match buffer {
        // Read the body within the attempt, so a connection that breaks
        // mid-body fails the attempt (and may be retried) instead of the
        // caller's read. Bodies over the cap stream on.
        Some(limit) => Body::buffer(body, limit).await?.boxed_unsync(),
        None => body.map_err(Into::into).boxed_unsync(),
    };
    Ok(http::Response::from_parts(parts, body))
}
