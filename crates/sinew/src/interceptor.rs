//! Interceptors: hooks around every call, as aio-service-caller has them.
//!
//! `before_request` hooks run in ascending [`Interceptor::order`];
//! `after_response` and `on_error` hooks run in the reverse order, and the
//! after-hooks run even when the call failed. A hook's own error is reported:
//! a failing `before_request` stops the call, a failing after-hook turns a
//! successful call into an [`ErrorKind::Interceptor`](crate::ErrorKind) error,
//! and when the call had already failed, the hook's error is logged at `warn`
//! and the call's error returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use http::request::Parts;
use sinew_core::BoxError;

use crate::Error;

/// What an after-hook sees of the response.
#[derive(Debug)]
pub struct ResponseInfo<'a> {
    /// The response head (status, headers).
    pub head: &'a http::response::Parts,
}

/// A hook around every call of a [`Client`](crate::Client).
#[async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// A name, unique within a client, used to remove it.
    fn name(&self) -> &str;

    /// Position: before-hooks run in ascending order, after-hooks in reverse.
    fn order(&self) -> i32 {
        0
    }

    /// Runs before the request is sent; may change it.
    async fn before_request(&self, _request: &mut Parts) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs after the call, successful or not (`response` is `Err` when it
    /// failed).
    async fn after_response(
        &self,
        _request: &Parts,
        _response: Result<&ResponseInfo<'_>, &Error>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Runs when the call failed, after `after_response`.
    async fn on_error(&self, _request: &Parts, _error: &Error) -> Result<(), BoxError> {
        Ok(())
    }
}

pub(crate) type List = Arc<Vec<Arc<dyn Interceptor>>>;

/// The interceptors of one client, sorted by order; cheap to snapshot.
#[derive(Clone, Default)]
pub(crate) struct Interceptors {
    list: Arc<RwLock<List>>,
    /// Whether the list has any interceptor: read first on every call, so a
    /// client without interceptors never touches the lock (whose count both
    /// cores would otherwise write on every call).
    any: Arc<AtomicBool>,
}

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .snapshot()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        f.debug_tuple("Interceptors").field(&names).finish()
    }
}

impl Interceptors {
    /// The interceptors, or `None` when there are none (without locking).
    pub(crate) fn snapshot_if_any(&self) -> Option<List> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let list = self.snapshot();
        (!list.is_empty()).then_some(list)
    }

    pub(crate) fn snapshot(&self) -> List {
        match self.list.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<dyn Interceptor>>)) {
        let mut guard = match self.list.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next: Vec<_> = guard.as_ref().clone();
        f(&mut next);
        // Stable: equal orders keep insertion order.
        next.sort_by_key(|i| i.order());
        // Written under the lock, so the flag and the list agree.
        self.any.store(!next.is_empty(), Ordering::Release);
        *guard = Arc::new(next);
    }

    /// Add an interceptor, replacing one with the same name.
    pub(crate) fn add(&self, interceptor: Arc<dyn Interceptor>) {
        self.update(|list| {
            list.retain(|i| i.name() != interceptor.name());
            list.push(interceptor);
        });
    }

    /// Remove the interceptor named `name`; whether there was one.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let mut removed = false;
        self.update(|list| {
            let before = list.len();
            list.retain(|i| i.name() != name);
            removed = list.len() != before;
        });
        removed
    }
}
