//! The shared slot counter of one [`ShedLayer`](crate::ShedLayer).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use sinew_core::Priority;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ShedConfig;

#[derive(Debug)]
pub(crate) struct State {
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    notify: Notify,
    /// Moving average of how long an admitted request holds its slot, in
    /// nanoseconds (0: no sample yet); kept only when queueing is on.
    hold_ewma_nanos: AtomicU64,
    /// Slots usable by low, normal, high.
    caps: [usize; 3],
    /// `normal`'s reserve is soft (automatic, below one slot): `low` may
    /// use one slot fewer for `retry_after` after a `normal` request was
    /// shed.
    soft_normal: bool,
    /// When a `normal` request was last shed: nanoseconds after `epoch`,
    /// plus one (0: never). Kept only when `soft_normal`.
    normal_shed_at: AtomicU64,
    epoch: Instant,
    pub(crate) config: ShedConfig,
}

fn index(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

impl State {
    pub(crate) fn new(config: ShedConfig) -> Self {
        let max = config.max_concurrency;
        let (high_reserve, normal_reserve) = config.reserves();
        let normal = max.saturating_sub(high_reserve);
        let low = normal.saturating_sub(normal_reserve);
        State {
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
            hold_ewma_nanos: AtomicU64::new(0),
            caps: [low, normal, max],
            soft_normal: config.soft_normal_reserve() && low > 0,
            normal_shed_at: AtomicU64::new(0),
            epoch: Instant::now(),
            config,
        }
    }

    /// Note that a request of `p` was shed (for the soft reserve).
    pub(crate) fn shed(&self, p: Priority) {
        if self.soft_normal && p == Priority::Normal {
            let since = Instant::now().saturating_duration_since(self.epoch);
            let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1);
            self.normal_shed_at.store(nanos + 1, Relaxed);
        }
    }

    /// The slots `p` may use now: its capacity, one fewer for `low` while
    /// `normal`'s soft reserve holds.
    fn cap_now(&self, p: Priority) -> usize {
        let cap = self.caps[index(p)];
        if !(self.soft_normal && p == Priority::Low) {
            return cap;
        }
        let at = self.normal_shed_at.load(Relaxed);
        if at == 0 {
            return cap;
        }
        let shed = self.epoch + Duration::from_nanos(at - 1);
        if Instant::now() < shed + self.config.retry_after {
            cap - 1
        } else {
            cap
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    pub(crate) fn cap(&self, p: Priority) -> usize {
        self.cap_now(p)
    }

    /// A slot for `p` if fewer than its cap are in flight.
    pub(crate) fn try_acquire(self: &Arc<Self>, p: Priority) -> Option<Slot> {
        let cap = self.cap_now(p);
        let mut cur = self.in_flight.load(SeqCst);
        loop {
            if cur >= cap {
                return None;
            }
            match self
                .in_flight
                .compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst)
            {
                Ok(_) => {
                    let since = (self.config.queue_size > 0).then(Instant::now);
                    return Some(Slot {
                        state: self.clone(),
                        since,
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// How long a request joining the queue now can expect to wait for a
    /// slot for `p`: the average hold time × (queued ahead + 1) / the slots
    /// `p` may use. Zero before the first sample.
    pub(crate) fn expected_wait(&self, p: Priority) -> Duration {
        let hold = self.hold_ewma_nanos.load(Relaxed);
        let ahead = self.queued.load(SeqCst) as u64 + 1;
        let slots = self.caps[index(p)].max(1) as u64;
        Duration::from_nanos(hold.saturating_mul(ahead) / slots)
    }

    fn record_hold(&self, held: Duration) {
        let sample = u64::try_from(held.as_nanos()).unwrap_or(u64::MAX);
        // EWMA with weight 1/8; concurrent updates may lose a sample, which
        // an estimate can afford.
        let _ = self.hold_ewma_nanos.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 {
                sample.max(1)
            } else {
                (old - old / 8).saturating_add(sample / 8).max(1)
            })
        });
    }

    /// Join the queue, unless it is full.
    pub(crate) fn enqueue(self: &Arc<Self>) -> Option<QueuePlace> {
        let limit = self.config.queue_size;
        let mut cur = self.queued.load(SeqCst);
        loop {
            if cur >= limit {
                return None;
            }
            match self
                .queued
                .compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst)
            {
                Ok(_) => return Some(QueuePlace(self.clone())),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// One admitted request; the slot is given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    state: Arc<State>,
    /// When it was admitted (only when queueing is on, for the estimate).
    since: Option<Instant>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let state = &self.state;
        if let Some(since) = self.since {
            state.record_hold(since.elapsed());
        }
        state.in_flight.fetch_sub(1, SeqCst);
        // Waiters register (queued += 1) before trying to acquire, and all
        // of this is SeqCst: either they see this release or we see them.
        if state.queued.load(SeqCst) > 0 {
            state.notify.notify_waiters();
        }
    }
}

/// A place in the queue; left on drop.
#[derive(Debug)]
pub(crate) struct QueuePlace(Arc<State>);

impl QueuePlace {
    /// Wait up to `budget` for a slot for `p`.
    pub(crate) async fn wait(self, p: Priority, budget: Duration) -> Option<Slot> {
        let until = Instant::now() + budget;
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.0.try_acquire(p) {
                return Some(slot);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.0.try_acquire(p);
            }
        }
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, SeqCst);
    }
}
