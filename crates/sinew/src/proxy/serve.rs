//! One listener: accept connections up to a limit, serve HTTP/1.1 and
//! h2c on each (hyper-util's auto server), close a connection idle too
//! long, and on drain stop accepting, let requests in flight finish, then
//! close what is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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
    let activity = Arc::new(Activity::new());
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
            _ = activity.idle_for(limits.idle_timeout), if !closing => {
                tracing::debug!(peer = %client.peer, side, "idle connection closed");
                closing = true;
                conn.as_mut().graceful_shutdown();
                close_by = Some(Instant::now() + GRACE_AFTER_IDLE);
            }
            _ = activity.head_overdue(limits.header_read_timeout) => {
                tracing::debug!(peer = %client.peer, side, "request head not received in time: connection closed");
                metrics::counter!("sinew_proxy_refusals_total", "side" => side, "reason" => "header_read_timeout").increment(1);
                return;
            }
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

struct State {
    /// Requests handed to the service whose response is not done.
    in_flight: usize,
    /// When the last response finished (or the connection opened).
    idle_since: Instant,
    /// When the first byte of a request head arrived with nothing in
    /// flight (HTTP/1), until the request reaches the service.
    head_started: Option<Instant>,
    /// The connection speaks HTTP/2 (its frames are not request heads).
    h2: bool,
    /// Whether any byte was read yet.
    any_read: bool,
}

/// What one connection is doing: requests in flight, since when none, and
/// whether a request head is on its way.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                head_started: None,
                h2: false,
                any_read: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bytes_read(&self, data: &[u8]) {
        let mut st = self.lock();
        if !st.any_read {
            st.any_read = true;
            // The HTTP/2 connection preface starts "PRI * HTTP/2.0".
            st.h2 = data.starts_with(b"PRI ");
        }
        if st.h2 || st.in_flight > 0 || st.head_started.is_some() {
            return;
        }
        st.head_started = Some(Instant::now());
        drop(st);
        self.changed.notify_waiters();
    }

    fn start(&self) {
        let mut st = self.lock();
        st.in_flight += 1;
        st.head_started = None;
    }

    fn end(&self) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if st.in_flight == 0 {
            st.idle_since = Instant::now();
            drop(st);
            self.changed.notify_waiters();
        }
    }

    /// Completes once the connection has had no request in flight for
    /// `limit` (never, without a limit).
    async fn idle_for(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            // Registered before the check, so a change in between is seen.
            let changed = self.changed.notified();
            let (busy, since) = {
                let st = self.lock();
                (st.in_flight > 0, st.idle_since)
            };
            if busy {
                changed.await;
                continue;
            }
            let at = since + limit;
            if Instant::now() >= at {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = changed => {}
            }
        }
    }

    /// Completes once a request head has been arriving for longer than
    /// `limit` (never, without a limit).
    async fn head_overdue(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            let changed = self.changed.notified();
            let started = self.lock().head_started;
            match started {
                None => changed.await,
                Some(t) => {
                    let at = t + limit;
                    if Instant::now() >= at {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
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
        let a = Arc::new(Activity::new());
        let limit = Some(Duration::from_secs(10));
        // Nothing read: no head is overdue, however long.
        let quiet = tokio::time::timeout(Duration::from_secs(100), a.head_overdue(limit)).await;
        assert!(quiet.is_err());
        // A head starts at t0: overdue at t0 + 10 s.
        let t0 = Instant::now();
        a.bytes_read(b"GET / HT");
        a.bytes_read(b"TP/1.1\r\n");
        a.head_overdue(limit).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        // It reached the service: no longer timed, even while more bytes
        // (its body) arrive.
        a.start();
        a.bytes_read(b"body");
        let busy = tokio::time::timeout(Duration::from_secs(100), a.head_overdue(limit)).await;
        assert!(busy.is_err());
        a.end();
        // HTTP/2: frames are not heads.
        let h2 = Activity::new();
        h2.bytes_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.bytes_read(b"frames");
        let t = tokio::time::timeout(Duration::from_secs(100), h2.head_overdue(limit)).await;
        assert!(t.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let a = Arc::new(Activity::new());
        let limit = Some(Duration::from_secs(60));
        // Idle from the start: done after 60 s.
        let t0 = Instant::now();
        a.idle_for(limit).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        // A request in flight for 100 s keeps it open; 60 s after it ends,
        // idle.
        let t0 = Instant::now();
        let g = InFlight::new(a.clone());
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.idle_for(limit).await });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.ok();
        assert_eq!(t0.elapsed(), Duration::from_secs(160));
        // Without a limit: never.
        let never = tokio::time::timeout(Duration::from_secs(3600), a.idle_for(None)).await;
        assert!(never.is_err());
    }
}
