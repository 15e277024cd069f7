//! The HTTP server under the webhook, bounded so that slow or hostile clients cannot starve a
//! real Lumos call or hold the process past its termination grace period:
//! - a header-read timeout (it also closes keep-alive connections left idle that long) and a
//!   small read buffer, so a client trickling header bytes costs little and not for long;
//! - a cap on open connections (past it new connections are closed at once);
//! - on shutdown, no new connections; in-flight calls are answered and idle connections closed,
//!   all within a bounded drain.
//!
//! Requests in flight and unauthenticated callers are bounded by [`super::guard`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this; also how long a keep-alive connection may
    /// sit idle.
    pub header_read_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// On shutdown, how long in-flight calls get to finish.
    pub drain: Duration,
}

/// Largest buffer a connection reads into (headers included): 16 KiB.
const MAX_BUF: usize = 16 * 1024;

/// Serves `app` on `listener` until `stop` is cancelled, then drains.
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, stop: CancellationToken) {
    serve_with(listener, app, limits, stop, None).await
}

/// As [`serve`], over TLS: a connection's handshake must end within the header-read timeout.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: CancellationToken,
    tls: tokio_rustls::TlsAcceptor,
) {
    serve_with(listener, app, limits, stop, Some(tls)).await
}

async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection cap reached; closing the new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, http, stop, tls) = (app.clone(), http.clone(), stop.clone(), tls.clone());
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(&http, stream, peer, app, stop).await,
                Some(tls) => match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection(&http, stream, peer, app, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "shutdown drain timed out; closing the remaining connections");
    }
}

/// Serves one connection until it ends, or until `stop` (then answers what is in flight).
async fn connection<S>(
    http: &hyper::server::conn::http1::Builder,
    stream: S,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => log_end(peer, r),
        _ = stop.cancelled() => {
            // Answer what is in flight, close what is idle.
            conn.as_mut().graceful_shutdown();
            log_end(peer, conn.await);
        }
    }
}

fn log_end(peer: SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
