//! Load shedding per route: at most `max_concurrent` requests in flight, at most `queue` more
//! waiting (each no longer than `queue_timeout`); anything beyond is refused at once, so that
//! an overload turns into fast 503s instead of a growing queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::units::deserialize_duration;

/// `[route.concurrency]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShedSettings {
    /// Requests in flight on the route (to the end of their response).
    pub max_concurrent: usize,
    /// Requests that may wait for a place; 0 refuses at once when full.
    #[serde(default)]
    pub queue: usize,
    /// The longest wait in the queue.
    #[serde(
        default = "default_queue_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub queue_timeout: Duration,
}

fn default_queue_timeout() -> Duration {
    Duration::from_secs(1)
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue was full.
    QueueFull,
    /// It waited `queue_timeout` without a place.
    QueueTimeout,
}

impl Shed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
        }
    }
}

pub struct Shedder {
    pub settings: ShedSettings,
    places: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Shedder {
    pub fn new(settings: ShedSettings) -> Self {
        Self {
            places: Arc::new(Semaphore::new(settings.max_concurrent)),
            waiting: AtomicUsize::new(0),
            settings,
        }
    }

    /// A place for one request, held until the permit is dropped.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Shed> {
        if let Ok(permit) = self.places.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::QueueFull);
        }
        let waited = tokio::time::timeout(
            self.settings.queue_timeout,
            self.places.clone().acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Shed::QueueTimeout),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.settings.max_concurrent - self.places.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_places_and_the_queue_requests_are_refused_at_once() {
        let shedder = Arc::new(Shedder::new(ShedSettings {
            max_concurrent: 2,
            queue: 1,
            queue_timeout: Duration::from_secs(5),
        }));
        let a = shedder.enter().await.unwrap();
        let _b = shedder.enter().await.unwrap();
        assert_eq!(shedder.in_flight(), 2);
        let queued = tokio::spawn({
            let shedder = shedder.clone();
            async move { shedder.enter().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        while shedder.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(shedder.enter().await.unwrap_err(), Shed::QueueFull);
        assert!(started.elapsed() < Duration::from_millis(50));
        drop(a);
        queued.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_queued_request_gives_up_after_the_queue_timeout() {
        let shedder = Shedder::new(ShedSettings {
            max_concurrent: 1,
            queue: 5,
            queue_timeout: Duration::from_millis(50),
        });
        let _held = shedder.enter().await.unwrap();
        assert_eq!(shedder.enter().await.unwrap_err(), Shed::QueueTimeout);
    }
}
