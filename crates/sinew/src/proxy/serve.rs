//! One listener: accept connections up to a limit, serve HTTP/1.1 and
//! h2c on each (hyper-util's auto server), close a connection idle too
//! long, and on drain stop accepting, let requests in flight finish, then
//! close what is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sinew_core::BoxError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::headers::ClientAddr;
use super::ProxyBody;

/// The service one listener serves: every request of every connection.
pub(crate) type HttpService =
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<ProxyBody>, Infallible>;

/// A listener's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// `inbound`, `outbound` or `admin`: the `side` label of the metrics.
    pub(crate) side: &'static str,
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The header-read timeout is the connection task's (hyper's would also
    // cut keep-alive connections waiting for their next request).
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new());
    b
}

/// Serve `listener` until `drain` turns true; then refuse new connections,
/// ask every open one to finish (HTTP/1: after the request in flight;
/// HTTP/2: GOAWAY), and close what is still open after `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: Limits,
    service: HttpService,
    mut drain: watch::Receiver<bool>,
    grace: Duration,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, side = limits.side, "listener has no address");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder());
    let mut conns = JoinSet::new();
    let side = limits.side;
    loop {
        let permit = tokio::select! {
            biased;
            _ = drain.wait_for(|d| *d) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = drain.wait_for(|d| *d) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little rather than spin.
                tracing::warn!(error = %e, side, "accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        metrics::counter!("sinew_proxy_connections_total", "side" => side).increment(1);
        let client = ClientAddr { peer, local };
        conns.spawn(connection(
            stream,
            client,
            builder.clone(),
            service.clone(),
            limits,
            drain.clone(),
            permit,
        ));
    }
    // New connections are refused from here on.
    drop(listener);
    let open = conns.len();
    if open > 0 {
        tracing::info!(side, open, "draining connections");
    }
    let finished =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            side,
            left = conns.len(),
            "drain timeout: closing connections with requests in flight"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

struct Gauge(&'static str);

impl Gauge {
    fn open(side: &'static str) -> Gauge {
        metrics::gauge!("sinew_proxy_open_connections", "side" => side).increment(1.0);
        Gauge(side)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("sinew_proxy_open_connections", "side" => self.0).decrement(1.0);
    }
}

async fn connection(
    stream: TcpStream,
    client: ClientAddr,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: HttpService,
    limits: Limits,
    mut drain: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _gauge = Gauge::open(limits.side);
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new(
        limits.header_read_timeout,
        limits.idle_timeout,
    ));
    let svc = ConnService {
        inner: service,
        client,
        activity: activity.clone(),
    };
    let io = Watched {
        io: stream,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // Once asked to close (idle), a connection that does not finish its
    // last exchange within this long is dropped.
    let mut close_by: Option<Instant> = None;
    let mut closing = false;
    let side = limits.side;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, peer = %client.peer, side, "connection ended with an error");
                }
                return;
            }
            _ = drain.wait_for(|d| *d), if !closing => {
                // Requests in flight finish; the listener's drain timeout
                // bounds them.
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            verdict = activity.watch(), if !closing => match verdict {
                Verdict::HeadOverdue => {
                    tracing::debug!(peer = %client.peer, side, "request head not received in time: connection closed");
                    metrics::counter!("sinew_proxy_refusals_total", "side" => side, "reason" => "header_read_timeout").increment(1);
                    return;
                }
                Verdict::Idle => {
                    tracing::debug!(peer = %client.peer, side, "idle connection closed");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(Instant::now() + GRACE_AFTER_IDLE);
                }
            },
            _ = sleep_until_opt(close_by) => {
                tracing::debug!(peer = %client.peer, side, "connection did not close in time: dropped");
                return;
            }
        }
    }
}

/// How long an idle connection asked to close may take to do so.
const GRACE_AFTER_IDLE: Duration = Duration::from_secs(5);

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection's socket, telling [`Activity`] when bytes of a request
/// head start to arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.activity.bytes_read(read);
            }
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How one connection's timeouts stand, at one moment.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// A request head has been arriving for longer than the header-read
    /// timeout.
    HeadOverdue,
    /// No request in flight for the idle timeout.
    Idle,
    /// Nothing yet; look again then (`None`: never).
    Next(Option<Instant>),
}

/// What ended the watch of a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    HeadOverdue,
    Idle,
}

const NONE: u64 = u64::MAX;

/// What one connection is doing: requests in flight, since when none, and
/// since when a request head has been arriving. Kept in atomics and read
/// by the connection task only when its one timer fires (at most every
/// `min(header_read_timeout, idle_timeout)` while busy), so a request
/// costs a few atomic operations and no timer.
struct Activity {
    base: Instant,
    header_read: Option<Duration>,
    idle: Option<Duration>,
    in_flight: AtomicUsize,
    /// Nanoseconds after `base` when the last request finished (or the
    /// connection opened).
    idle_since: AtomicU64,
    /// Nanoseconds after `base` when the first byte of a request head
    /// arrived with nothing in flight (HTTP/1), until the request reaches
    /// the service; `NONE` otherwise.
    head_started: AtomicU64,
    /// When the connection task looks next (nanoseconds after `base`).
    next_check: AtomicU64,
    /// 0: nothing read yet; 1: HTTP/1; 2: HTTP/2 (frames, not heads).
    protocol: AtomicU8,
    kick: Notify,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NONE - 1)
}

impl Activity {
    fn new(header_read: Option<Duration>, idle: Option<Duration>) -> Self {
        Activity {
            base: Instant::now(),
            header_read,
            idle,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            next_check: AtomicU64::new(0),
            protocol: AtomicU8::new(0),
            kick: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    fn bytes_read(&self, data: &[u8]) {
        let mut protocol = self.protocol.load(Ordering::Relaxed);
        if protocol == 0 {
            // The HTTP/2 connection preface starts "PRI * HTTP/2.0".
            protocol = if data.starts_with(b"PRI ") { 2 } else { 1 };
            self.protocol.store(protocol, Ordering::Relaxed);
        }
        if protocol == 2
            || self.in_flight.load(Ordering::Acquire) > 0
            || self.head_started.load(Ordering::Acquire) != NONE
        {
            return;
        }
        let Some(limit) = self.header_read else {
            return;
        };
        let t = self.now();
        self.head_started.store(t, Ordering::Release);
        // The task sleeps past this head's deadline (it was idle): wake it
        // to look again.
        if self.next_check.load(Ordering::Acquire) > t.saturating_add(nanos(limit)) {
            self.kick.notify_one();
        }
    }

    fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now(), Ordering::Release);
        }
    }

    fn check(&self) -> Check {
        let now = self.now();
        let head = self.head_started.load(Ordering::Acquire);
        let busy = self.in_flight.load(Ordering::Acquire) > 0;
        let mut next = NONE;
        if let Some(limit) = self.header_read {
            if head != NONE {
                let at = head.saturating_add(nanos(limit));
                if now >= at {
                    return Check::HeadOverdue;
                }
                next = next.min(at);
            }
        }
        if let Some(limit) = self.idle {
            if !busy {
                let at = self
                    .idle_since
                    .load(Ordering::Acquire)
                    .saturating_add(nanos(limit));
                if now >= at {
                    return Check::Idle;
                }
                next = next.min(at);
            }
        }
        // While busy, look again within the shorter limit, so a request
        // ending (idle from then) or a head starting is seen in time
        // without waking this task on every request.
        let period = match (self.header_read, self.idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(p) = period {
            if busy {
                next = next.min(now.saturating_add(nanos(p)));
            }
        }
        self.next_check.store(next, Ordering::Release);
        Check::Next((next != NONE).then(|| self.base + Duration::from_nanos(next)))
    }

    /// Completes when a head is overdue or the connection has been idle too
    /// long (never, without either limit).
    async fn watch(&self) -> Verdict {
        if self.header_read.is_none() && self.idle.is_none() {
            return std::future::pending().await;
        }
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        loop {
            match self.check() {
                Check::HeadOverdue => return Verdict::HeadOverdue,
                Check::Idle => return Verdict::Idle,
                Check::Next(at) => sleep.as_mut().reset(at.unwrap_or(far)),
            }
            tokio::select! {
                _ = &mut sleep => {}
                _ = self.kick.notified() => {}
            }
        }
    }
}

/// The hyper service of one connection: tells the request where it came
/// from, and counts it in flight until its response body is done.
#[derive(Clone)]
struct ConnService {
    inner: HttpService,
    client: ClientAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.client);
        let guard = InFlight::new(self.activity.clone());
        let fut = self.inner.clone().oneshot(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        })
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.start();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted in flight until it is
/// done (or dropped).
pub(crate) struct Tracked {
    body: ProxyBody,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Bind `addr`, naming it in the error.
pub(crate) async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        crate::Error::new(
            crate::ErrorKind::Config,
            format!("[proxy.{what}] cannot listen on {addr}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_head_must_arrive_in_time() {
        let a = Arc::new(Activity::new(Some(Duration::from_secs(10)), None));
        // Nothing read: no head is overdue, however long.
        let quiet = tokio::time::timeout(Duration::from_secs(100), a.watch()).await;
        assert!(quiet.is_err());
        // A head starts at t0 (the watch was asleep for good: it is woken):
        // overdue at t0 + 10 s.
        let watching = tokio::spawn({
            let a = a.clone();
            async move { a.watch().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t0 = Instant::now();
        a.bytes_read(b"GET / HT");
        a.bytes_read(b"TP/1.1\r\n");
        assert_eq!(watching.await.unwrap(), Verdict::HeadOverdue);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        // It reached the service: no longer timed, even while more bytes
        // (its body) arrive.
        a.start();
        a.bytes_read(b"body");
        let busy = tokio::time::timeout(Duration::from_secs(100), a.watch()).await;
        assert!(busy.is_err());
        a.end();
        // HTTP/2: frames are not heads.
        let h2 = Activity::new(Some(Duration::from_secs(10)), None);
        h2.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.bytes_read(b"frames");
        let t = tokio::time::timeout(Duration::from_secs(100), h2.watch()).await;
        assert!(t.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let limit = Some(Duration::from_secs(60));
        let a = Arc::new(Activity::new(Some(Duration::from_secs(10)), limit));
        // Idle from the start: done after 60 s.
        let t0 = Instant::now();
        assert_eq!(a.watch().await, Verdict::Idle);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        // Requests back to back for 100 s keep it open; 60 s after the last
        // one ends, idle.
        let t0 = Instant::now();
        let watching = tokio::spawn({
            let a = a.clone();
            async move { a.watch().await }
        });
        for _ in 0..20 {
            a.bytes_read(b"GET / HTTP/1.1\r\n\r\n");
            let g = InFlight::new(a.clone());
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(g);
        }
        assert!(!watching.is_finished());
        assert_eq!(watching.await.unwrap(), Verdict::Idle);
        assert_eq!(t0.elapsed(), Duration::from_secs(160));
        // Without limits: never.
        let never = Activity::new(None, None);
        let t = tokio::time::timeout(Duration::from_secs(3600), never.watch()).await;
        assert!(t.is_err());
    }
}
