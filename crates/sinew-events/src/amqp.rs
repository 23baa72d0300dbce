//! Connecting to the broker, plain (`amqp://`) or over TLS (`amqps://`).
//!
//! lapin reads and writes a stream of its runtime's reactor type; its own
//! TLS features bring a PKCS#12 stack sinew has no use for. So sinew gives
//! lapin an async-rs runtime whose reactor's stream is either a plain tokio
//! `TcpStream` or a tokio-rustls one, and opens it itself: TCP, then the
//! rustls handshake configured by [`TlsConfig`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_rs::traits::Reactor;
use async_rs::util::RuntimeParts;
use async_rs::{Runtime, Tokio};
use futures_util::io::{AsyncRead, AsyncWrite};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{AsyncTcpStream, Connection};
use rustls_pki_types::ServerName;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::broker::connection_properties;
use crate::error::Error;
use crate::tls::{explain, find_rustls_error, TlsConfig, BROKER};

/// The byte stream under an AMQP connection.
#[derive(Debug)]
pub(crate) enum BrokerStream {
    /// `amqp://`.
    Plain(TcpStream),
    /// `amqps://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for BrokerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        let polled = match self.get_mut() {
            Self::Plain(s) => tokio::io::AsyncRead::poll_read(Pin::new(s), cx, &mut read),
            Self::Tls(s) => tokio::io::AsyncRead::poll_read(Pin::new(s.as_mut()), cx, &mut read),
        };
        polled.map_ok(|()| read.filled().len())
    }
}

impl AsyncWrite for BrokerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => tokio::io::AsyncWrite::poll_write(Pin::new(s), cx, buf),
            Self::Tls(s) => tokio::io::AsyncWrite::poll_write(Pin::new(s.as_mut()), cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => tokio::io::AsyncWrite::poll_flush(Pin::new(s), cx),
            Self::Tls(s) => tokio::io::AsyncWrite::poll_flush(Pin::new(s.as_mut()), cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => tokio::io::AsyncWrite::poll_shutdown(Pin::new(s), cx),
            Self::Tls(s) => tokio::io::AsyncWrite::poll_shutdown(Pin::new(s.as_mut()), cx),
        }
    }
}

/// tokio's reactor (timers, heartbeats) with [`BrokerStream`] as its TCP
/// stream. lapin opens connections only through the closure given to
/// [`Connection::connector`], which builds the stream itself.
#[derive(Debug, Clone)]
pub(crate) struct StreamReactor(Tokio);

impl Reactor for StreamReactor {
    type TcpStream = BrokerStream;
    type Sleep = <Tokio as Reactor>::Sleep;

    fn register<H: io::Read + io::Write + Send + 'static>(
        &self,
        _socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        // Not used by lapin; sinew opens its sockets in `connect`.
        Err::<BrokerStream, _>(io::Error::new(
            io::ErrorKind::Unsupported,
            "sinew-events' broker reactor registers no foreign sockets",
        ))
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.0.sleep(dur)
    }

    fn interval(
        &self,
        dur: Duration,
    ) -> impl futures_util::Stream<Item = Instant> + Send + 'static {
        self.0.interval(dur)
    }

    // Not `async fn`: the future must not borrow `self` ('static).
    #[allow(clippy::manual_async_fn)]
    fn tcp_connect_addr(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(BrokerStream::Plain(stream))
        }
    }
}

/// TCP to `host:port`, then TLS when `tls` is set (`handshaken` records
/// that the TLS handshake completed).
async fn open(
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    handshaken: Arc<AtomicBool>,
) -> io::Result<BrokerStream> {
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(BrokerStream::Plain(tcp)),
        Some((connector, name)) => {
            let stream = connector.connect(name, tcp).await?;
            handshaken.store(true, Ordering::Relaxed);
            Ok(BrokerStream::Tls(Box::new(stream)))
        }
    }
}

/// Whether `err` is the broker hanging up (reset, end of stream).
fn hung_up(err: &lapin::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            );
        }
        cur = e.source();
    }
    false
}

/// How long opening a connection (TCP, TLS and the AMQP handshake) may
/// take when the URL sets no `connection_timeout` (milliseconds).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Open an AMQP connection to `url` named `name`: `amqp://` in plain TCP,
/// `amqps://` over TLS configured by `tls` (default: the system's roots,
/// the host name checked). `tls` with an `amqp://` URL is a config error.
/// A failed handshake is [`Error::Tls`], saying what did not match.
pub(crate) async fn connect(
    url: &str,
    tls: Option<&TlsConfig>,
    name: &str,
) -> Result<Connection, Error> {
    let uri: AMQPUri = url
        .parse()
        .map_err(|e: String| Error::Config(format!("amqp_url: {e}")))?;
    let host = uri.authority.host.clone();
    let port = uri.authority.port;
    let tls_config = match (&uri.scheme, tls) {
        (AMQPScheme::AMQP, Some(_)) => {
            return Err(Error::Config(
                "amqp_tls is set but amqp_url is amqp:// (plaintext): use amqps://".into(),
            ))
        }
        (AMQPScheme::AMQP, None) => None,
        (AMQPScheme::AMQPS, tls) => Some(tls.cloned().unwrap_or_default()),
    };
    let connector = match &tls_config {
        Some(tls) => {
            let config = tls.client_config(BROKER)?;
            let server_name = ServerName::try_from(host.clone()).map_err(|_| {
                Error::Config(format!("amqp_url: {host:?} is not a valid TLS server name"))
            })?;
            Some((TlsConnector::from(Arc::clone(&config)), server_name))
        }
        None => None,
    };
    let timeout = uri.query.connection_timeout.map(Duration::from_millis);
    let handle = tokio::runtime::Handle::current();
    let handshaken = Arc::new(AtomicBool::new(false));
    let handshake_done = Arc::clone(&handshaken);
    let runtime = Runtime::new(RuntimeParts::new(
        Tokio::current(),
        StreamReactor(Tokio::current()),
    ));
    // The whole handshake is bounded too: a broker that accepts the TCP
    // connection and never answers must not hold a relay or a consumer (and
    // their shutdown) forever.
    let limit = timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let connecting = Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, _runtime| {
            let (host, port) = (uri.authority.host.clone(), uri.authority.port);
            let tls = connector.clone();
            let handshaken = Arc::clone(&handshaken);
            // On the caller's runtime, wherever lapin polls this from.
            let opened = handle.spawn(async move {
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, open(host, port, tls, handshaken))
                        .await
                        .unwrap_or_else(|_| {
                            Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no connection within {limit:?} (connection_timeout)"),
                            ))
                        }),
                    None => open(host, port, tls, handshaken).await,
                }
            });
            let stream = opened.await.map_err(io::Error::other)??;
            Ok(AsyncTcpStream::Plain(stream))
        },
        connection_properties(name),
    );
    let connected = match tokio::time::timeout(limit, connecting).await {
        Ok(c) => c,
        Err(_) => {
            return Err(Error::Broker(lapin::Error::from(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no AMQP connection to {host}:{port} within {limit:?}"),
            ))))
        }
    };
    connected.map_err(|e| {
        let Some(tls) = &tls_config else {
            return Error::Broker(e);
        };
        let reason = if let Some(rustls_error) = find_rustls_error(&e) {
            explain(rustls_error, tls, BROKER, &host)
        } else if handshake_done.load(Ordering::Relaxed) && hung_up(&e) {
            // Under TLS 1.3 the server checks the client certificate after
            // the client's side of the handshake is done: its alert may be
            // lost to the connection reset that follows.
            refused_after_handshake(&e, tls)
        } else {
            return Error::Broker(e);
        };
        Error::Tls {
            target: BROKER.target,
            address: format!("{host}:{port}"),
            reason,
        }
    })
}

fn refused_after_handshake(err: &lapin::Error, tls: &TlsConfig) -> String {
    let sent = match &tls.cert_file {
        Some(p) => format!("the client certificate amqp_tls.cert_file {}", p.display()),
        None => "no client certificate (amqp_tls.cert_file is not set)".into(),
    };
    format!(
        "the broker closed the connection right after the TLS handshake ({err}); \
         that is how a broker refuses a client certificate under TLS 1.3, and we sent {sent}"
    )
}
