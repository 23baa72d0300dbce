//! The call context: deadline, priority and trace parent of the call being
//! served, propagated to the calls it makes.
//!
//! A server layer parses the caller's deadline and priority into a
//! [`CallContext`], stores it in the request's extensions and runs the handler
//! inside [`CallContext::scope`]. Client layers read [`CallContext::current`],
//! so a call made inside a handler inherits what is left of the caller's
//! deadline and its priority without the handler passing anything. Work moved
//! to a new task keeps the context with [`spawn`] or [`CallContext::scope`].
//!
//! ```
//! use std::time::Duration;
//! use sinew_core::{CallContext, Priority};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ctx = CallContext::new()
//!     .with_timeout(Duration::from_secs(2))
//!     .with_priority(Priority::High);
//! ctx.scope(async {
//!     let inherited = CallContext::current().expect("inside a scope");
//!     assert_eq!(inherited.priority(), Priority::High);
//!     assert!(inherited.remaining().unwrap() <= Duration::from_secs(2));
//! }).await;
//! assert!(CallContext::current().is_none());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// How important a call is; shedding refuses `Low` first and lets `High` use
/// reserved capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Shed first.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Shed last; may use reserved capacity.
    High,
}

impl Priority {
    /// The header value: `high`, `normal` or `low`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parse a header value, ignoring ASCII case and surrounding spaces.
    pub fn parse(value: &[u8]) -> Option<Priority> {
        let v = value.trim_ascii();
        if v.eq_ignore_ascii_case(b"high") {
            Some(Priority::High)
        } else if v.eq_ignore_ascii_case(b"normal") {
            Some(Priority::Normal)
        } else if v.eq_ignore_ascii_case(b"low") {
            Some(Priority::Low)
        } else {
            None
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Priority`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPriority;

impl fmt::Display for InvalidPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("priority must be one of high, normal, low")
    }
}

impl std::error::Error for InvalidPriority {}

impl FromStr for Priority {
    type Err = InvalidPriority;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::parse(s.as_bytes()).ok_or(InvalidPriority)
    }
}

/// A per-request deadline, set as a request extension by a caller or by the
/// client `DeadlineLayer` for the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// Time left until the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A W3C Trace Context `traceparent` (version `00`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl TraceParent {
    /// A new trace with random ids, sampled.
    pub fn new_root() -> Self {
        let mut trace_id = random_nonzero::<16>();
        // Keep the first byte non-zero for readability; not required.
        trace_id[0] |= 1;
        TraceParent {
            trace_id,
            parent_id: random_nonzero::<8>(),
            flags: 1,
        }
    }

    /// A trace parent from its parts; `None` when an id is all zeros (the
    /// spec forbids them).
    ///
    /// ```
    /// use sinew_core::TraceParent;
    /// let tp = TraceParent::from_parts([1; 16], [2; 8], 1).unwrap();
    /// assert_eq!(tp.to_string(), "00-01010101010101010101010101010101-0202020202020202-01");
    /// assert!(TraceParent::from_parts([0; 16], [2; 8], 1).is_none());
    /// ```
    pub fn from_parts(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace with a fresh random span id (for one outbound attempt).
    pub fn child(&self) -> Self {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: random_nonzero::<8>(),
            flags: self.flags,
        }
    }

    /// The 16-byte trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte parent (span) id.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex_lower(&self.trace_id)
    }

    /// Parse a `traceparent` header value. Invalid values (wrong length or
    /// characters, upper-case hex, all-zero ids, version `ff`) are `None`.
    /// Versions above `00` are accepted when they have at least the version
    /// 00 fields followed by `-` (forward compatibility, as the spec asks).
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < 55 {
            return None;
        }
        let version = parse_hex_exact::<1>(&value[0..2])?[0];
        if version == 0xff {
            return None;
        }
        if version == 0 && value.len() != 55 {
            return None;
        }
        if version != 0 && value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = parse_hex_exact::<16>(&value[3..35])?;
        let parent_id = parse_hex_exact::<8>(&value[36..52])?;
        let flags = parse_hex_exact::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex_lower(&self.trace_id),
            hex_lower(&self.parent_id),
            self.flags
        )
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn parse_hex_exact<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    loop {
        if getrandom::fill(&mut out).is_err() {
            // No OS randomness: fall back to the time, never to zero ids.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1);
            for (i, b) in out.iter_mut().enumerate() {
                *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8);
            }
        }
        if out.iter().any(|b| *b != 0) {
            return out;
        }
    }
}

/// The deadline, priority and trace parent of the call being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallContext {
    deadline: Option<Instant>,
    priority: Priority,
    trace: Option<TraceParent>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// An empty context: no deadline, normal priority, no trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// With an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// With a deadline `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// With a priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// With a trace parent.
    pub fn with_trace(mut self, trace: TraceParent) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until the deadline (zero once passed), if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The trace parent, if any.
    pub fn trace(&self) -> Option<TraceParent> {
        self.trace
    }

    /// The context of the task this runs in, if it runs inside a scope.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(|c| *c).ok()
    }

    /// Run `fut` with this as the ambient context.
    pub fn scope<F: Future>(self, fut: F) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
        CURRENT.scope(self, fut)
    }

    /// Run `f` synchronously with this as the ambient context.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

/// Wrap `fut` so it runs in the current ambient context (if any) wherever it
/// is polled; use it before handing work to another task.
pub fn propagate<F: Future>(fut: F) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
    CallContext::current().unwrap_or_default().scope(fut)
}

/// `tokio::spawn` that carries the current call context into the new task.
///
/// ```
/// use sinew_core::{context, CallContext, Priority};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = CallContext::new().with_priority(Priority::Low);
/// let seen = ctx
///     .scope(async { context::spawn(async { CallContext::current() }).await.unwrap() })
///     .await;
/// assert_eq!(seen.unwrap().priority(), Priority::Low);
/// # }
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(propagate(fut))
}

/// The deadline a client layer should honour for `req`: the earlier of the
/// request's [`Deadline`] extension and the ambient context's deadline.
pub fn effective_deadline<B>(req: &http::Request<B>) -> Option<Instant> {
    let explicit = req.extensions().get::<Deadline>().map(|d| d.0);
    let ambient = CallContext::current().and_then(|c| c.deadline());
    match (explicit, ambient) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The priority a client layer should send for `req`: the request's
/// [`Priority`] extension, else the ambient context's, else `Normal`.
pub fn effective_priority<B>(req: &http::Request<B>) -> Priority {
    req.extensions()
        .get::<Priority>()
        .copied()
        .or_else(|| CallContext::current().map(|c| c.priority()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traceparent_round_trip() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(s.as_bytes()).unwrap();
        assert_eq!(tp.to_string(), s);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = tp.child();
        assert_eq!(child.trace_id(), tp.trace_id());
        assert_ne!(child.parent_id(), tp.parent_id());
    }

    #[test]
    fn traceparent_rejects_invalid() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(TraceParent::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        // A future version with extra fields is accepted.
        assert!(TraceParent::parse(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"
        )
        .is_some());
    }

    #[test]
    fn priority_parse() {
        assert_eq!(Priority::parse(b" HIGH "), Some(Priority::High));
        assert_eq!(Priority::parse(b"low"), Some(Priority::Low));
        assert_eq!(Priority::parse(b"urgent"), None);
        assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
    }

    #[tokio::test(start_paused = true)]
    async fn effective_deadline_is_the_earliest() {
        let req_deadline = Instant::now() + Duration::from_secs(5);
        let mut req = http::Request::new(());
        req.extensions_mut().insert(Deadline(req_deadline));
        assert_eq!(effective_deadline(&req), Some(req_deadline));
        let ctx = CallContext::new().with_timeout(Duration::from_secs(1));
        let d = ctx.scope(async { effective_deadline(&req) }).await;
        assert_eq!(d, ctx.deadline());
        let later = CallContext::new().with_timeout(Duration::from_secs(10));
        let d = later.scope(async { effective_deadline(&req) }).await;
        assert_eq!(d, Some(req_deadline));
    }

    proptest! {
        #[test]
        fn traceparent_parse_never_panics(s in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn traceparent_formats_what_it_parses(t in any::<[u8; 16]>(), p in any::<[u8; 8]>(), f in any::<u8>()) {
            prop_assume!(t != [0; 16] && p != [0; 8]);
            let tp = TraceParent { trace_id: t, parent_id: p, flags: f };
            prop_assert_eq!(TraceParent::parse(tp.to_string().as_bytes()), Some(tp));
        }
    }
}
