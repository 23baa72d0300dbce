//! What the discovery sources share: their error, the step from one full
//! set of endpoints to the changes that lead there, and the channel-backed
//! stream they hand to [`LoadBalanceLayer::discover`](crate::LoadBalanceLayer::discover).
// Without a source feature only the error type is used.
#![cfg_attr(
    not(any(feature = "dns", feature = "etcd", feature = "nacos")),
    allow(dead_code)
)]

use std::collections::BTreeMap;

use futures_util::Stream;
use tokio::sync::mpsc;
use tower::discover::Change;

use crate::Endpoint;

/// The item of every discovery stream of this crate.
pub type Discovered = Result<Change<String, Endpoint>, SourceError>;

/// Why a discovery source could not say what the endpoints are. The
/// balancer logs it and keeps the endpoints it has.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// The registry or resolver could not be reached or refused.
    Unreachable {
        /// Which source.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A record that does not describe an endpoint (skipped).
    InvalidRecord {
        /// Where it was (an etcd key, a DNS name).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Unreachable {
                source_name,
                reason,
            } => write!(f, "{source_name}: {reason}"),
            SourceError::InvalidRecord { key, reason } => {
                write!(f, "invalid endpoint record at {key}: {reason}")
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// The endpoints a source last announced, keyed by address.
#[derive(Debug, Default)]
pub(crate) struct Announced(BTreeMap<String, Endpoint>);

impl Announced {
    /// The changes that turn what was announced into `next` (keyed by
    /// address), remembering `next`.
    pub(crate) fn changes(
        &mut self,
        next: BTreeMap<String, Endpoint>,
    ) -> Vec<Change<String, Endpoint>> {
        let mut out = Vec::new();
        for key in self.0.keys() {
            if !next.contains_key(key) {
                out.push(Change::Remove(key.clone()));
            }
        }
        for (key, e) in &next {
            if self.0.get(key) != Some(e) {
                out.push(Change::Insert(key.clone(), e.clone()));
            }
        }
        self.0 = next;
        out
    }
}

/// The sending half a source task writes to; `closed` tells it the
/// balancer is gone.
pub(crate) type Sender = mpsc::Sender<Discovered>;

/// A channel and the stream over its receiving half.
fn channel() -> (Sender, impl Stream<Item = Discovered> + Send + 'static) {
    let (tx, rx) = mpsc::channel(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, stream)
}

/// The stream of a source whose work is `run`: spawned on the current
/// tokio runtime when the stream is first polled (so it can be made outside
/// one), and stopped when the stream is dropped.
pub(crate) fn spawn_on_poll<F, Fut>(run: F) -> impl Stream<Item = Discovered> + Send + 'static
where
    F: FnOnce(Sender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::StreamExt;
    let (tx, stream) = channel();
    let start = futures_util::stream::once(async move {
        tokio::spawn(async move {
            let watch = tx.clone();
            tokio::select! {
                () = run(tx) => {}
                () = watch.closed() => {}
            }
        });
        None
    })
    .filter_map(futures_util::future::ready);
    start.chain(stream)
}

/// Send every change; `false` when nobody listens any more.
pub(crate) async fn send_all(tx: &Sender, changes: Vec<Change<String, Endpoint>>) -> bool {
    for c in changes {
        if tx.send(Ok(c)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(items: &[(&str, f64)]) -> BTreeMap<String, Endpoint> {
        items
            .iter()
            .map(|(a, w)| (a.to_string(), Endpoint::new(*a).weight(*w)))
            .collect()
    }

    #[test]
    fn changes_are_the_difference() {
        let mut a = Announced::default();
        let c = a.changes(set(&[("a:1", 1.0), ("b:1", 1.0)]));
        assert_eq!(c.len(), 2);
        assert!(a.changes(set(&[("a:1", 1.0), ("b:1", 1.0)])).is_empty());
        let c = a.changes(set(&[("b:1", 2.0), ("c:1", 1.0)]));
        let text: Vec<String> = c
            .iter()
            .map(|c| match c {
                Change::Insert(k, e) => format!("+{k}/{}", e.weight),
                Change::Remove(k) => format!("-{k}"),
            })
            .collect();
        assert_eq!(text, ["-a:1", "+b:1/2", "+c:1/1"]);
    }
}
