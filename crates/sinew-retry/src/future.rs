//! [`ResponseFuture`]: one call through [`Retry`](crate::Retry), all its
//! attempts and the waits between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use rand::RngExt as _;
use sinew_core::body::{try_clone_request, TryCloneBody};
use sinew_core::classify::{failure_kind_of, Classification, FailureKind};
use sinew_core::error::find_source;
use sinew_core::{BoxError, CircuitOpen, DeadlineExceeded};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::backoff::BackoffState;
use crate::error::{RetryBudgetExhausted, RetryBudgetExhaustedError};
use crate::layer::Policy;
use crate::metrics;
use crate::policy::{retry_after, Attempt, NotReplayable};
use crate::service::Spare;

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future>,
        policy: Arc<Policy>,
        // The request to copy for later attempts (taken, not copied, for the
        // last one), the shared copy of the service to send them to, and the
        // copy of it made for this call's retries.
        template: Option<Request<B>>,
        spare: Option<Spare<S>>,
        service: Option<Box<S>>,
        replayable: Result<(), NotReplayable>,
        deadline: Option<Instant>,
        attempts: u32,
        // Jitter state, made on the first retry (kept off the happy path so
        // the future stays small).
        jitter: Option<Box<Jitter>>,
    }
}

/// Per-call state of the backoff curve.
struct Jitter {
    backoff: BackoffState,
    rng: SmallRng,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Sleeping { sleep: Pin<Box<Sleep>> },
        Ready,
        DeadlinePassed,
        Done,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        policy: Arc<Policy>,
        future: S::Future,
        template: Option<Request<B>>,
        spare: Option<Spare<S>>,
        replayable: Result<(), NotReplayable>,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            policy,
            template,
            spare,
            service: None,
            replayable,
            deadline,
            attempts: 1,
            jitter: None,
        }
    }

    pub(crate) fn deadline_passed(policy: Arc<Policy>) -> Self {
        ResponseFuture {
            state: State::DeadlinePassed,
            policy,
            template: None,
            spare: None,
            service: None,
            replayable: Err(NotReplayable::SingleAttempt),
            deadline: None,
            attempts: 0,
            jitter: None,
        }
    }
}

/// What to do after an attempt.
enum Step<R> {
    Return(Result<R, BoxError>),
    Retry { delay: Duration, after: FailureKind },
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: TryCloneBody,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let outcome = ready!(future.poll(cx)).map_err(Into::into);
                    // The happy path: a success goes straight back (like
                    // tower's futures, this one must not be polled again).
                    if let Ok(response) = &outcome {
                        if this
                            .policy
                            .classifier
                            .classify_response(response)
                            .is_success()
                        {
                            return Poll::Ready(outcome);
                        }
                    }
                    let step = decide(
                        this.policy,
                        *this.attempts,
                        *this.replayable,
                        this.template.is_some() && this.spare.is_some(),
                        *this.deadline,
                        this.jitter,
                        outcome,
                    );
                    match step {
                        Step::Return(result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        Step::Retry { delay, after } => {
                            tracing::debug!(
                                attempt = *this.attempts + 1,
                                delay_ms = delay.as_secs_f64() * 1000.0,
                                after = after.as_str(),
                                "retry scheduled"
                            );
                            if delay.is_zero() {
                                this.state.set(State::Ready);
                            } else {
                                this.state.set(State::Sleeping {
                                    sleep: Box::pin(tokio::time::sleep(delay)),
                                });
                            }
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if this.service.is_none() {
                        *this.service =
                            this.spare.as_ref().and_then(|spare| spare.get()).map(|m| {
                                match m.lock() {
                                    Ok(s) => Box::new(s.clone()),
                                    Err(poisoned) => Box::new(poisoned.into_inner().clone()),
                                }
                            });
                    }
                    let Some(service) = this.service.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(internal("retry without a service to call")));
                    };
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e.into()));
                    }
                    let attempt = *this.attempts + 1;
                    let last = attempt >= this.policy.max_attempts;
                    let request = match this.template.as_ref() {
                        Some(t) if !last => try_clone_request(t).or_else(|| this.template.take()),
                        _ => this.template.take(),
                    };
                    let Some(mut request) = request else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(internal("retry without a request to replay")));
                    };
                    request.extensions_mut().insert(Attempt(attempt));
                    tracing::debug!(attempt, "retry attempt started");
                    *this.attempts = attempt;
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::DeadlinePassed => {
                    this.state.set(State::Done);
                    metrics::not_retried("deadline");
                    return Poll::Ready(Err(Box::new(DeadlineExceeded::new())));
                }
                StateProj::Done => {
                    return Poll::Ready(Err(internal("retry future polled after completion")));
                }
            }
        }
    }
}

fn internal(msg: &'static str) -> BoxError {
    msg.into()
}

/// Decide what follows an attempt's outcome (a success returns at once).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn decide<R>(
    policy: &Policy,
    attempts: u32,
    replayable: Result<(), NotReplayable>,
    can_replay: bool,
    deadline: Option<Instant>,
    jitter: &mut Option<Box<Jitter>>,
    outcome: Result<Response<R>, BoxError>,
) -> Step<Response<R>> {
    let kind = match &outcome {
        Ok(response) => match policy.classifier.classify_response(response) {
            Classification::Success => return Step::Return(outcome),
            Classification::Failure(kind) => kind,
        },
        Err(error) => failure_kind_of(&**error),
    };
    let stop = |reason: &'static str, outcome| {
        tracing::debug!(attempts, failure = kind.as_str(), reason, "not retried");
        metrics::not_retried(reason);
        Step::Return(outcome)
    };
    if let Err(why) = replayable {
        return stop(why.as_str(), outcome);
    }
    if attempts >= policy.max_attempts || !can_replay {
        return stop("max_attempts", outcome);
    }
    if let Err(error) = &outcome {
        if !policy.retry_circuit_open && find_source::<CircuitOpen>(&**error).is_some() {
            return stop("circuit_open", outcome);
        }
    }
    let asked = match &outcome {
        Ok(response) => retry_after(response.headers(), &*policy.clock),
        Err(_) => None,
    };
    let delay = match asked {
        Some(wait) if wait > policy.max_retry_after => {
            return stop("retry_after_too_long", outcome);
        }
        Some(wait) => wait,
        None => {
            let j = jitter.get_or_insert_with(|| {
                Box::new(Jitter {
                    backoff: BackoffState::new(),
                    rng: policy.rng.rng(),
                })
            });
            policy
                .backoff
                .next_delay(&mut j.backoff, || j.rng.random::<f64>())
        }
    };
    if let Some(deadline) = deadline {
        let needed = delay.saturating_add(policy.min_attempt_time);
        if deadline.saturating_duration_since(Instant::now()) < needed {
            return match outcome {
                Ok(response) => stop("deadline", Ok(response)),
                Err(_) => stop("deadline", Err(Box::new(DeadlineExceeded::new()))),
            };
        }
    }
    if let Some(budget) = &policy.budget {
        if !budget.try_withdraw() {
            metrics::budget_exhausted();
            return match outcome {
                Ok(mut response) => {
                    response
                        .extensions_mut()
                        .insert(RetryBudgetExhausted::new(attempts));
                    stop("budget_exhausted", Ok(response))
                }
                Err(error) => stop(
                    "budget_exhausted",
                    Err(Box::new(RetryBudgetExhaustedError::new(attempts, error))),
                ),
            };
        }
    }
    metrics::retry_attempt(kind.as_str());
    Step::Retry { delay, after: kind }
}
