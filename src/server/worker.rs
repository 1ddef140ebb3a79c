//! A worker thread: its own single-threaded event loop, its own socket on every public address,
//! and its own upstream connection pools. A request never leaves the thread that accepted it.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::task::TaskTracker;

use super::{Shared, connection};

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running on this thread; `None` on other threads (the control
/// runtime, tests). Per-worker resources (upstream pools, store connections) are picked by it.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// What a worker is given: one socket per public address, and the shutdown signal.
pub struct WorkerPlan {
    pub index: usize,
    pub sockets: Vec<(std::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the worker thread. `done` receives the number of connections cut at the drain timeout.
pub fn spawn(plan: WorkerPlan, done: oneshot::Sender<usize>) -> std::io::Result<()> {
    let name = format!("rampart-worker-{}", plan.index);
    std::thread::Builder::new().name(name).spawn(move || {
        CURRENT.with(|cell| cell.set(Some(plan.index)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a worker runtime starts");
        let cut = runtime.block_on(run(plan));
        // Remaining tasks (connections cut at the drain timeout) are dropped with the runtime.
        drop(runtime);
        let _ = done.send(cut);
    })?;
    Ok(())
}

async fn run(plan: WorkerPlan) -> usize {
    let connections = TaskTracker::new();
    let mut acceptors = Vec::new();
    for (socket, tls) in plan.sockets {
        let listener =
            TcpListener::from_std(socket).expect("a bound socket registers with the runtime");
        acceptors.push(tokio::spawn(accept_loop(
            listener,
            tls,
            plan.shared.clone(),
            plan.shutdown.clone(),
            connections.clone(),
        )));
    }
    for acceptor in acceptors {
        let _ = acceptor.await;
    }
    // Listeners are closed; in-flight connections finish within the drain timeout.
    connections.close();
    let drain_timeout = plan.shared.pipeline.load().config.server.drain_timeout;
    match tokio::time::timeout(drain_timeout, connections.wait()).await {
        Ok(()) => 0,
        Err(_) => connections.len(),
    }
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
            _ = super::stopped(&mut shutdown) => return,
        }
    }
}
