//! The accept loop: hyper's HTTP/1 server with a header timeout (which also closes idle
//! keep-alive connections) and limits on open connections, overall and per peer address.
//! `axum::serve` has neither; without them a few thousand sockets opened and left, or headers
//! sent a byte at a time, would hold the server's connections and file descriptors forever.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::metrics::Metrics;
use crate::config::Config;

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = config.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max_connections));
    let peers = PeerCounts {
        per_peer: config.client_max_connections.max(1),
        trusted: config.trusted_proxies.clone(),
        counts: Arc::default(),
    };
    // hyper's HTTP/1 server directly: hyper-util's `auto` builder first sniffs the version
    // with no timeout, so a socket that never sends a byte would stay open.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.observe_rejection("connections");
            continue;
        };
        let Some(place) = peers.enter(peer.ip()) else {
            metrics.observe_rejection("clientConnections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // Errors here are the client's (a header timeout, a reset): nothing to answer.
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended");
            }
            drop((permit, place));
        });
    }
    drop(listener);
    // Every connection holds a permit: all of them back means all connections closed.
    let _ = stop.send(true);
    let _ = open
        .acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Open connections by peer address; trusted proxies are not counted.
struct PeerCounts {
    per_peer: usize,
    trusted: Vec<ipnet::IpNet>,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of a peer, given back on drop.
struct PeerPlace {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: Option<IpAddr>,
}

impl PeerCounts {
    fn enter(&self, peer: IpAddr) -> Option<PeerPlace> {
        if self.trusted.iter().any(|net| net.contains(&peer)) {
            return Some(PeerPlace {
                counts: self.counts.clone(),
                peer: None,
            });
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(peer).or_default();
        if *count >= self.per_peer {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            counts: self.counts.clone(),
            peer: Some(peer),
        })
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let Some(peer) = self.peer else {
            return;
        };
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&peer);
            }
        }
    }
}
