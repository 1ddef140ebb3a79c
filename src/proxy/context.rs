//! What the data path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address (canonical) as text, made once for the connection's requests.
    pub peer_text: http::HeaderValue,
    pub tls: bool,
    pub activity: std::sync::Arc<ConnActivity>,
}

/// Requests in flight and the time of the last one's end, so the connection can be closed when it
/// has been idle for the idle timeout.
#[derive(Debug)]
pub struct ConnActivity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
}

impl Default for ConnActivity {
    fn default() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        }
    }
}

impl ConnActivity {
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_done(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_done_ms.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection becomes idle-expired if nothing happens, or `None` while busy.
    pub fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(self.opened + last + idle_timeout)
    }
}

/// One request in flight on a connection: counted on creation, uncounted when dropped — whether
/// the response body ended or the client went away before the response head.
#[derive(Debug)]
pub struct InFlight {
    activity: std::sync::Arc<ConnActivity>,
}

impl InFlight {
    pub fn start(activity: std::sync::Arc<ConnActivity>) -> Self {
        activity.request_started();
        crate::observe::metrics::in_flight().increment(1.0);
        Self { activity }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.request_done();
        crate::observe::metrics::in_flight().decrement(1.0);
    }
}
