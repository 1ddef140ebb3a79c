//! The running server: binds the public and admin listeners, starts the worker threads that accept
//! and serve connections, swaps the pipeline on reload, and drains on shutdown. [`start`] is used
//! by the CLI and by tests alike; the admin listener runs on the caller's runtime.

pub mod connection;
pub mod listeners;
pub mod redirect;
pub mod reload;
pub mod tls;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::observe::metrics as m;
use crate::proxy::Pipeline;
use crate::proxy::pipeline::Retained;
use crate::ratelimit::LimitState;
use crate::security::blocklist::Blocklist;
use crate::store::{StoreKind, Stores};

/// State shared by the listeners, every connection and the admin endpoints.
pub struct Shared {
    /// The current pipeline; a reload replaces it whole.
    pub pipeline: ArcSwap<Pipeline>,
    /// Set on shutdown: readiness turns 503.
    pub draining: AtomicBool,
    pub started: Instant,
    pub metrics: PrometheusHandle,
    pub health: crate::admin::health::HealthCache,
    /// Progressive-blocking state; kept across reloads.
    pub blocklist: Arc<Blocklist>,
    /// Store connections and rate-limit memory, kept across reloads.
    pub retained: ArcSwap<Retained>,
}

/// A started server: its bound addresses and the means to reload and stop it.
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    /// The plain-HTTP listeners that redirect to HTTPS.
    pub redirect_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    workers: Vec<oneshot::Receiver<usize>>,
    admin: JoinHandle<()>,
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the drain timeout ran out (they were closed).
    pub cut_connections: usize,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Auth(#[from] crate::security::auth::AuthBuildError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why a reload was refused (the old configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Auth(#[from] crate::security::auth::AuthBuildError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds every listener of `config` and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = m::install();
    let stores = Arc::new(
        Stores::open(
            &config.stores,
            &wanted_stores(&config),
            config.server.workers,
        )
        .await?,
    );
    stores.spawn_recovery_probes(
        config
            .rate_limit
            .as_ref()
            .map_or(Duration::from_secs(1), |r| r.probe_interval),
    );
    let blocklist = match config.rate_limit.as_ref().map(|r| r.store) {
        Some(kind @ (StoreKind::Redis | StoreKind::Postgres)) if config.blocking.is_some() => {
            Blocklist::shared(kind, &stores, BLOCKLIST_SYNC_INTERVAL)
        }
        _ => Arc::new(Blocklist::memory()),
    };
    let retained = Retained {
        blocklist: blocklist.clone(),
        cache: config
            .cache
            .as_ref()
            .map(|c| crate::cache::CacheStore::new(c, &stores)),
        stores,
        limits: Arc::new(LimitState::new(
            config.rate_limit.as_ref().map_or(100_000, |r| r.max_keys),
        )),
        upstreams: Arc::new(crate::proxy::upstream::UpstreamRegistry::new(
            config.server.workers,
        )),
        window: Default::default(),
    };
    // Built first: a provider whose JWKS cannot be fetched stops the start before any bind.
    let pipeline = Pipeline::build(config, &retained).await?;
    crate::observe::error_report::install(pipeline.error_reporter().cloned());
    let config = pipeline.config.clone();
    let workers = config.server.workers;
    let mut bound = Vec::new();
    for addr in &config.server.listen {
        bound.push(listeners::bind(*addr, workers, None)?);
    }
    let plain_count = bound.len();
    if let Some(tls) = &config.server.tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        for addr in &tls.listen {
            bound.push(listeners::bind(*addr, workers, Some(acceptor.clone()))?);
        }
    }
    let admin_error = |source| BindError {
        addr: config.admin.listen,
        source,
    };
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .map_err(admin_error)?;
    let admin_addr = admin_listener.local_addr().map_err(admin_error)?;
    let http_addrs: Vec<SocketAddr> = bound[..plain_count].iter().map(|b| b.addr).collect();
    let tls_addrs: Vec<SocketAddr> = bound[plain_count..].iter().map(|b| b.addr).collect();

    let shared = Arc::new(Shared {
        pipeline: ArcSwap::from_pointee(pipeline),
        blocklist,
        retained: ArcSwap::from_pointee(retained),
        draining: AtomicBool::new(false),
        started: Instant::now(),
        metrics,
        health: Default::default(),
    });
    crate::observe::alerts::spawn(Arc::downgrade(&shared));
    let (shutdown, _) = watch::channel(false);

    // Worker i gets the i-th socket of every address.
    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for address in bound {
        for (index, socket) in address.sockets.into_iter().enumerate() {
            per_worker[index].push((socket, address.tls.clone()));
        }
    }
    let mut worker_done = Vec::new();
    for (index, sockets) in per_worker.into_iter().enumerate() {
        let (done, finished) = oneshot::channel();
        let plan = worker::WorkerPlan {
            index,
            sockets,
            shared: shared.clone(),
            shutdown: shutdown.subscribe(),
        };
        worker::spawn(plan, done).map_err(|source| BindError {
            addr: http_addrs.first().copied().unwrap_or(admin_addr),
            source,
        })?;
        worker_done.push(finished);
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
    let mut redirect_addrs = Vec::new();
    if let Some(redirect) = &shared.pipeline.load().config.server.https_redirect {
        for addr in &redirect.listen {
            let bound = redirect::spawn(*addr, redirect.https_port, shutdown.subscribe())
                .await
                .map_err(|source| BindError {
                    addr: *addr,
                    source,
                })?;
            redirect_addrs.push(bound);
        }
    }
    tracing::info!(
        listen = ?http_addrs,
        tls = ?tls_addrs,
        redirect = ?redirect_addrs,
        admin = %admin_addr,
        workers,
        "rampart is serving"
    );
    Ok(Running {
        http_addrs,
        redirect_addrs,
        tls_addrs,
        admin_addr,
        shared,
        shutdown,
        admin_stop,
        workers: worker_done,
        admin,
    })
}

/// How often a shared blocklist refreshes its local mirror.
const BLOCKLIST_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The shared stores the configuration uses.
fn wanted_stores(config: &Config) -> Vec<StoreKind> {
    config
        .rate_limit
        .iter()
        .map(|r| r.store)
        .chain(config.cache.iter().map(|c| c.store))
        .collect()
}

/// After a reload: the cache keeps its entries unless its settings or its Redis changed.
fn reuse_cache(
    old: Option<&Arc<crate::cache::CacheStore>>,
    config: &Config,
    stores: &Stores,
) -> Option<Arc<crate::cache::CacheStore>> {
    let settings = config.cache.as_ref()?;
    if let Some(old) = old {
        let same_redis = match (&old.redis, &stores.redis) {
            (None, _) => settings.store == StoreKind::Memory,
            (Some(tier), Some(redis)) => Arc::ptr_eq(&tier.store, redis),
            (Some(_), None) => false,
        };
        if old.config == *settings && same_redis {
            return Some(old.clone());
        }
    }
    Some(crate::cache::CacheStore::new(settings, stores))
}

/// Resolves once shutdown has been signalled (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

impl Running {
    /// Replaces the whole pipeline; requests already running finish on the old one. Fails (and
    /// keeps the old pipeline) when an authentication provider cannot be built.
    pub async fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let current = self.shared.pipeline.load();
        let old = &current.config;
        if old.server.listen != config.server.listen
            || old.admin.listen != config.admin.listen
            || old.server.tls.as_ref().map(|t| &t.listen)
                != config.server.tls.as_ref().map(|t| &t.listen)
            || old.server.workers != config.server.workers
            || old
                .server
                .https_redirect
                .as_ref()
                .map(|r| (&r.listen, r.https_port))
                != config
                    .server
                    .https_redirect
                    .as_ref()
                    .map(|r| (&r.listen, r.https_port))
        {
            tracing::warn!(
                "listen addresses or workers changed: they take effect on restart; the rest is reloaded"
            );
        }
        let retained = self.shared.retained.load_full();
        let stores = retained
            .stores
            .reopen(&config.stores, &wanted_stores(&config))
            .await?;
        let stores = Arc::new(stores);
        let retained = Retained {
            cache: reuse_cache(retained.cache.as_ref(), &config, &stores),
            stores,
            ..(*retained).clone()
        };
        if old.rate_limit.as_ref().map(|r| r.store) != config.rate_limit.as_ref().map(|r| r.store)
            && config.blocking.is_some()
        {
            tracing::warn!(
                "the blocklist's store changes on restart; the rate limits use the new one now"
            );
        }
        let pipeline = Pipeline::build(config, &retained).await?;
        self.shared.retained.store(Arc::new(retained));
        crate::observe::error_report::install(pipeline.error_reporter().cloned());
        self.shared.pipeline.store(Arc::new(pipeline));
        self.shared.health.clear();
        metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "success").increment(1);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Marks the server as draining (readiness 503) without closing anything yet.
    pub fn begin_drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// Stops accepting, lets in-flight requests finish within the configured drain timeout,
    /// then stops the admin listener.
    pub async fn shutdown(self) -> DrainReport {
        self.begin_drain();
        let _ = self.shutdown.send(true);
        let mut cut_connections = 0;
        for worker in self.workers {
            cut_connections += worker.await.unwrap_or(0);
        }
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
        // Error events still queued get a short chance to leave.
        if let Some(errors) = self.shared.pipeline.load().error_reporter().cloned() {
            let _ = tokio::task::spawn_blocking(move || errors.flush(Duration::from_secs(2))).await;
        }
        DrainReport { cut_connections }
    }
}
