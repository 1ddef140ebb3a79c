//! The running server: binds the public and admin listeners, accepts connections, swaps the
//! pipeline on reload, and drains on shutdown. [`start`] is used by the CLI and by tests alike.

pub mod connection;
pub mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::observe::metrics as m;
use crate::proxy::Pipeline;

/// State shared by the listeners, every connection and the admin endpoints.
pub struct Shared {
    /// The current pipeline; a reload replaces it whole.
    pub pipeline: ArcSwap<Pipeline>,
    /// Set on shutdown: readiness turns 503.
    pub draining: AtomicBool,
    pub started: Instant,
    pub metrics: PrometheusHandle,
    pub health: crate::admin::health::HealthCache,
}

/// A started server: its bound addresses and the means to reload and stop it.
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    connections: TaskTracker,
    acceptors: Vec<JoinHandle<()>>,
    admin: JoinHandle<()>,
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the drain timeout ran out (they were closed).
    pub cut_connections: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Binds every listener of `config` and starts serving.
pub async fn start(config: Config) -> Result<Running, BindError> {
    let metrics = m::install();
    let mut plain = Vec::new();
    for addr in &config.server.listen {
        plain.push(bind(*addr).await?);
    }
    let mut secure = Vec::new();
    if let Some(tls) = &config.server.tls {
        for addr in &tls.listen {
            secure.push((
                bind(*addr).await?,
                tokio_rustls::TlsAcceptor::from(tls.server_config.clone()),
            ));
        }
    }
    let admin_listener = bind(config.admin.listen).await?;
    let admin_addr = admin_listener.local_addr().map_err(|source| BindError {
        addr: config.admin.listen,
        source,
    })?;

    let shared = Arc::new(Shared {
        pipeline: ArcSwap::from_pointee(Pipeline::new(config)),
        draining: AtomicBool::new(false),
        started: Instant::now(),
        metrics,
        health: Default::default(),
    });
    let (shutdown, _) = watch::channel(false);
    let connections = TaskTracker::new();
    let mut acceptors = Vec::new();
    let mut http_addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    for listener in plain {
        http_addrs.push(listener.local_addr().expect("bound socket has an address"));
        acceptors.push(tokio::spawn(accept_loop(
            listener,
            None,
            shared.clone(),
            shutdown.subscribe(),
            connections.clone(),
        )));
    }
    for (listener, acceptor) in secure {
        tls_addrs.push(listener.local_addr().expect("bound socket has an address"));
        acceptors.push(tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            shared.clone(),
            shutdown.subscribe(),
            connections.clone(),
        )));
    }
    // The admin listener outlives the drain, so probes see readiness 503 while it runs.
    let (admin_stop, _) = watch::channel(false);
    let admin = {
        let router = crate::admin::router(shared.clone());
        let mut stop = admin_stop.subscribe();
        tokio::spawn(async move {
            let serve = axum::serve(admin_listener, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "admin listener failed");
            }
        })
    };
    tracing::info!(
        listen = ?http_addrs,
        tls = ?tls_addrs,
        admin = %admin_addr,
        "rampart is serving"
    );
    Ok(Running {
        http_addrs,
        tls_addrs,
        admin_addr,
        shared,
        shutdown,
        admin_stop,
        connections,
        acceptors,
        admin,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    connections: TaskTracker,
) {
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(stream, peer, tls.clone(), shared.clone(), for_connections.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Resolves once shutdown has been signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

impl Running {
    /// Replaces the whole pipeline; requests already running finish on the old one.
    pub fn reload(&self, config: Config) {
        let current = self.shared.pipeline.load();
        let old = &current.config;
        if old.server.listen != config.server.listen
            || old.admin.listen != config.admin.listen
            || old.server.tls.as_ref().map(|t| &t.listen)
                != config.server.tls.as_ref().map(|t| &t.listen)
        {
            tracing::warn!(
                "listen addresses changed: they take effect on restart; the rest is reloaded"
            );
        }
        self.shared.pipeline.store(Arc::new(Pipeline::new(config)));
        self.shared.health.clear();
        metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "success").increment(1);
        tracing::info!("configuration reloaded");
    }

    /// Marks the server as draining (readiness 503) without closing anything yet.
    pub fn begin_drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// Stops accepting, lets in-flight requests finish within the configured drain timeout,
    /// then stops the admin listener.
    pub async fn shutdown(self) -> DrainReport {
        self.begin_drain();
        let drain_timeout = self.shared.pipeline.load().config.server.drain_timeout;
        let _ = self.shutdown.send(true);
        for acceptor in self.acceptors {
            let _ = acceptor.await;
        }
        self.connections.close();
        let cut_connections =
            match tokio::time::timeout(drain_timeout, self.connections.wait()).await {
                Ok(()) => 0,
                Err(_) => self.connections.len(),
            };
        let _ = self.admin_stop.send(true);
        let _ = self.admin.await;
        if cut_connections > 0 {
            tracing::warn!(
                cut_connections,
                "drain timeout reached; closing remaining connections"
            );
        } else {
            tracing::info!("drained: every in-flight request finished");
        }
        DrainReport { cut_connections }
    }
}
