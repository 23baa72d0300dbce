//! [`HedgeFuture`]: the attempts of one hedged call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use sinew_core::body::{try_clone_request, TryCloneBody};
use sinew_core::BoxError;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::histogram::{lock, Rolling};
use super::Shared;
use crate::metrics;
use crate::policy::Attempt;

/// When the hedges of one call start.
pub(crate) enum Schedule {
    /// Attempt `k + 1` at `delays[k - 1]`.
    Fixed(Arc<[Duration]>),
    /// Attempt `k + 1` at `k · delay`, up to `max_attempts` in all.
    Every { delay: Duration, max_attempts: u32 },
}

impl Schedule {
    /// The offset of attempt `n` (2, 3, …) from the start, if it exists.
    fn offset(&self, n: u32) -> Option<Duration> {
        let k = n.checked_sub(1).filter(|k| *k >= 1)?;
        match self {
            Schedule::Fixed(list) => list.get(usize::try_from(k - 1).ok()?).copied(),
            Schedule::Every {
                delay,
                max_attempts,
            } => (n <= *max_attempts).then(|| delay.saturating_mul(k)),
        }
    }
}

struct Hedging<S, B> {
    schedule: Schedule,
    service: S,
    template: Request<B>,
    /// When the next hedge is due.
    next_at: Instant,
    /// Created the first time the call has to wait, so a call answered at
    /// once never touches the timer wheel.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer fired and the budget granted a token: waiting for the
    /// service to be ready.
    launching: bool,
}

pin_project! {
    /// The response future of [`Hedge`](crate::Hedge).
    pub struct HedgeFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        first: Option<S::Future>,
        hedges: Vec<(Instant, Pin<Box<S::Future>>)>,
        hedging: Option<Hedging<S, B>>,
        shared: Arc<Shared>,
        route: Option<Arc<Mutex<Rolling>>>,
        deadline: Option<Instant>,
        start: Instant,
        started: u32,
        first_response: Option<S::Response>,
        first_error: Option<BoxError>,
    }
}

impl<S, B> HedgeFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        future: S::Future,
        replay: Option<(Schedule, S, Request<B>)>,
        route: Option<Arc<Mutex<Rolling>>>,
        deadline: Option<Instant>,
        start: Instant,
    ) -> Self {
        let hedging = replay.and_then(|(schedule, service, template)| {
            let next_at = start + schedule.offset(2)?;
            Some(Hedging {
                schedule,
                service,
                template,
                next_at,
                timer: None,
                launching: false,
            })
        });
        HedgeFuture {
            first: Some(future),
            hedges: Vec::new(),
            hedging,
            shared,
            route,
            deadline,
            start,
            started: 1,
            first_response: None,
            first_error: None,
        }
    }
}

impl<S, B, RB> Future for HedgeFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: TryCloneBody,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let mut progressed = false;

            // Poll the attempts in flight.
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if let Poll::Ready(outcome) = first.poll(cx) {
                    progressed = true;
                    this.first.set(None);
                    let latency = this.start.elapsed();
                    if let Some(response) = accept(
                        this.shared,
                        this.route,
                        latency,
                        outcome.map_err(Into::into),
                        this.first_response,
                        this.first_error,
                    ) {
                        this.hedges.clear();
                        *this.hedging = None;
                        if *this.started > 1 {
                            tracing::debug!("first attempt won over its hedges");
                        }
                        metrics::hedge_win(false);
                        return Poll::Ready(Ok(response));
                    }
                }
            }
            let mut i = 0;
            while i < this.hedges.len() {
                let (started_at, fut) = &mut this.hedges[i];
                if let Poll::Ready(outcome) = fut.as_mut().poll(cx) {
                    progressed = true;
                    let latency = started_at.elapsed();
                    drop(this.hedges.swap_remove(i));
                    if let Some(response) = accept(
                        this.shared,
                        this.route,
                        latency,
                        outcome.map_err(Into::into),
                        this.first_response,
                        this.first_error,
                    ) {
                        // Drop the losers now: this cancels them.
                        this.first.set(None);
                        this.hedges.clear();
                        *this.hedging = None;
                        tracing::debug!("hedge won");
                        metrics::hedge_win(true);
                        return Poll::Ready(Ok(response));
                    }
                } else {
                    i += 1;
                }
            }

            // Start the next hedge when its time has come.
            if let Some(h) = this.hedging.as_mut() {
                let at = h.next_at;
                let timer = h
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if !h.launching && timer.as_mut().poll(cx).is_ready() {
                    progressed = true;
                    let left = this
                        .deadline
                        .map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|left| left < this.shared.min_attempt_time) {
                        tracing::debug!(
                            attempt = *this.started + 1,
                            "not hedged: deadline too close"
                        );
                        *this.hedging = None;
                    } else if this
                        .shared
                        .budget
                        .as_ref()
                        .is_some_and(|b| !b.try_withdraw())
                    {
                        tracing::debug!(
                            attempt = *this.started + 1,
                            "not hedged: budget exhausted"
                        );
                        metrics::hedge_budget_exhausted();
                        *this.hedging = None;
                    } else {
                        h.launching = true;
                    }
                }
            }
            if let Some(h) = this.hedging.as_mut() {
                if h.launching {
                    match h.service.poll_ready(cx) {
                        Poll::Pending => {}
                        Poll::Ready(Err(e)) => {
                            progressed = true;
                            let e: BoxError = e.into();
                            tracing::debug!(error = %e, "not hedged: service not ready");
                            if this.first_error.is_none() {
                                *this.first_error = Some(e);
                            }
                            *this.hedging = None;
                        }
                        Poll::Ready(Ok(())) => {
                            progressed = true;
                            let attempt = *this.started + 1;
                            match try_clone_request(&h.template) {
                                None => *this.hedging = None,
                                Some(mut request) => {
                                    request.extensions_mut().insert(Attempt(attempt));
                                    tracing::debug!(
                                        attempt,
                                        after_ms = this.start.elapsed().as_secs_f64() * 1000.0,
                                        "hedge started"
                                    );
                                    metrics::hedge_attempt();
                                    *this.started = attempt;
                                    let future = h.service.call(request);
                                    h.launching = false;
                                    match h.schedule.offset(attempt + 1) {
                                        Some(at) => {
                                            h.next_at = *this.start + at;
                                            if let Some(timer) = h.timer.as_mut() {
                                                timer.as_mut().reset(h.next_at);
                                            }
                                        }
                                        None => *this.hedging = None,
                                    }
                                    this.hedges.push((Instant::now(), Box::pin(future)));
                                }
                            }
                        }
                    }
                }
            }

            let in_flight = this.first.is_some() || !this.hedges.is_empty();
            if !in_flight && this.hedging.is_none() {
                // No attempt was acceptable: the first completed response,
                // else the first error.
                if let Some(response) = this.first_response.take() {
                    return Poll::Ready(Ok(response));
                }
                let error = this
                    .first_error
                    .take()
                    .unwrap_or_else(|| "hedged call finished without an outcome".into());
                return Poll::Ready(Err(error));
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

/// Keep an acceptable response (recording its latency); otherwise remember
/// the first failed response and the first error.
fn accept<R>(
    shared: &Shared,
    route: &Option<Arc<Mutex<Rolling>>>,
    latency: Duration,
    outcome: Result<Response<R>, BoxError>,
    first_response: &mut Option<Response<R>>,
    first_error: &mut Option<BoxError>,
) -> Option<Response<R>> {
    match outcome {
        Ok(response) if shared.classifier.classify_response(&response).is_success() => {
            if let Some(route) = route {
                lock(route).record(latency);
            }
            Some(response)
        }
        Ok(response) => {
            if first_response.is_none() {
                *first_response = Some(response);
            }
            None
        }
        Err(error) => {
            if first_error.is_none() {
                *first_error = Some(error);
            }
            None
        }
    }
}
