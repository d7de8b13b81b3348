//! Serving connections with bounds hyper does not set by itself: how many connections are
//! open at once, how long a client may take to send a request's header section, and how
//! much of one is buffered, so that slow or oversized header sections from many clients can
//! neither exhaust memory nor keep real callers out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::ServerConfig;

/// Room beyond `max_header_bytes` in a connection's read buffer, for the request line and
/// the first bytes of a body: a header section that is only somewhat too large still reaches
/// the router and gets a problem+json 431; a larger one gets hyper's bare 431.
const REQUEST_LINE_ROOM: usize = 8 * 1024;

/// The TLS a listener speaks, and how long a client may take over its handshake.
#[derive(Clone)]
pub(super) struct Tls {
    pub(super) acceptor: TlsAcceptor,
    pub(super) handshake_timeout: Duration,
}

/// Serves `router` on `listener` (over `tls` when given) until `shutdown` resolves, then
/// waits up to `grace` for in-flight requests. At most `server.max_connections` connections
/// are open at once, handshakes included; beyond them new connections wait in the listen
/// backlog until one closes.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    server: &ServerConfig,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let builder = builder(server);
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let open = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are small and written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(remote).await;
        let service = TowerToHyperService::new(service);
        // Watched from here, so that shutdown also waits for a handshake under way.
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // A client that hangs up, times out or fails its handshake is its own business,
            // not the service's.
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection).await;
                }
                Some(tls) => {
                    let handshake = tls.acceptor.accept(stream);
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(tls.handshake_timeout, handshake).await
                    {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(connection).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Idle keep-alive connections close now, the others once their request is answered.
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight when the shutdown grace period ended"
        );
    }
}

/// hyper's connection settings from `[server]`.
///
/// HTTP/1.1 only: telling HTTP/2 apart first reads the connection's opening bytes with no
/// timeout, so a client that connects and sends nothing would hold its slot for ever; the
/// broker's callers (CI jobs, curl, load balancers) speak HTTP/1.1.
fn builder(server: &ServerConfig) -> Builder {
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        // Counted from when the connection is ready for a request's head, so it also closes
        // a keep-alive connection that sends nothing, and a head trickled in byte by byte
        // cannot extend it.
        .header_read_timeout(Duration::from_secs(server.header_read_timeout_secs))
        .max_buf_size(server.max_header_bytes + REQUEST_LINE_ROOM)
        .max_headers(server.max_headers);
    builder
}

/// Accept fails for one connection (reset before it was accepted) or for all of them (out of
/// file descriptors); in the second case retrying at once would spin.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
