//! What the data path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address (canonical) as text, made once for the connection's requests.
    pub peer_text: http::HeaderValue,
    pub tls: bool,
    pub activity: std::sync::Arc<ConnActivity>,
    /// The upstream attempts' timer, kept between the connection's requests.
    pub attempt_timer: crate::proxy::attempt_timer::KeptTimer,
}

/// Requests in flight, the time of the last one's end and the protocol, so the connection can be
/// closed when it has waited too long for a request: a request head (HTTP/1), or any request.
#[derive(Debug)]
pub struct ConnActivity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// Set by the first HTTP/2 request (or by ALPN): the wait is then bounded by the idle
    /// timeout only, as streams, not request heads, are what an HTTP/2 client sends.
    http2: AtomicBool,
}

/// Which limit an idle connection reaches first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleLimit {
    /// An HTTP/1 connection (or a new one) has waited for a request head longer than the
    /// header-read timeout, or the idle timeout if that is shorter. It is cut: nothing is in
    /// flight, and a graceful close would wait for a head that has begun to arrive.
    Head,
    /// An HTTP/2 connection has had no request in flight for the idle timeout. It is closed
    /// gracefully.
    Idle,
}

/// A connection opened now.
impl Default for ConnActivity {
    fn default() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }
}

impl ConnActivity {
    /// The connection speaks HTTP/2 (ALPN chose it, or a request came in it).
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    pub fn request_started(&self, version: http::Version) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if version == http::Version::HTTP_2 {
            self.set_http2();
        }
    }

    /// A request ended at `now`.
    pub fn request_done(&self, now: Instant) {
        let now = now.saturating_duration_since(self.opened).as_millis() as u64;
        self.last_done_ms.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The limit the connection reaches if no request comes, and when; `None` while a request
    /// is in flight. Both count from the connection's opening or its last request's end.
    pub fn idle_limit(
        &self,
        idle_timeout: Duration,
        head_timeout: Duration,
    ) -> Option<(Instant, IdleLimit)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.opened + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(if self.http2.load(Ordering::Relaxed) {
            (since + idle_timeout, IdleLimit::Idle)
        } else {
            (since + head_timeout.min(idle_timeout), IdleLimit::Head)
        })
    }
}

/// One request in flight on a connection: counted on creation, uncounted when dropped — whether
/// the response body ended or the client went away before the response head.
#[derive(Debug)]
pub struct InFlight {
    activity: std::sync::Arc<ConnActivity>,
    ended: bool,
}

impl InFlight {
    pub fn start(activity: std::sync::Arc<ConnActivity>, version: http::Version) -> Self {
        activity.request_started(version);
        crate::observe::request_counts::in_flight().started();
        Self {
            activity,
            ended: false,
        }
    }

    /// Ends the request at `now`, a clock reading the caller already has.
    pub fn end(mut self, now: Instant) {
        self.end_at(now);
    }

    fn end_at(&mut self, now: Instant) {
        self.ended = true;
        self.activity.request_done(now);
        crate::observe::request_counts::in_flight().ended();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.end_at(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_waits_for_a_head_at_most_the_shorter_timeout_unless_it_is_http2() {
        let (idle, head) = (Duration::from_secs(60), Duration::from_secs(10));
        let activity = ConnActivity::default();
        let opened = activity.opened;
        // New (HTTP/1 or not yet known): the head's limit, or the idle one when shorter.
        assert_eq!(
            activity.idle_limit(idle, head),
            Some((opened + head, IdleLimit::Head))
        );
        assert_eq!(
            activity.idle_limit(Duration::from_secs(5), head),
            Some((opened + Duration::from_secs(5), IdleLimit::Head))
        );
        // Busy: no limit.
        activity.request_started(http::Version::HTTP_11);
        assert_eq!(activity.idle_limit(idle, head), None);
        activity.request_done(Instant::now());
        assert!(matches!(
            activity.idle_limit(idle, head),
            Some((_, IdleLimit::Head))
        ));
        // An HTTP/2 request: from then on only the idle timeout applies.
        activity.request_started(http::Version::HTTP_2);
        activity.request_done(Instant::now());
        let (at, limit) = activity.idle_limit(idle, head).unwrap();
        assert_eq!(limit, IdleLimit::Idle);
        assert!(at >= opened + idle, "{:?}", at - opened);
    }
}
