//! Request coalescing: the first miss for a key becomes its leader and goes upstream; misses for
//! the same key that arrive meanwhile wait (up to `lock_timeout`) until the leader has stored its
//! response or given up, then look the key up again. A leader that finishes, fails or is dropped
//! always releases its followers.
//!
//! The map is shared by every worker thread behind one mutex, held only to insert or remove a
//! key, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::key::Key;

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<Key, watch::Receiver<bool>>>,
}

/// What a miss does.
pub enum Join {
    /// Go upstream; followers wait for this guard to be dropped.
    Leader(FlightGuard),
    /// Another request is fetching the key.
    Follower(watch::Receiver<bool>),
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: Key) -> Join {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(&key)
            && !*rx.borrow()
        {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(false);
        map.insert(key, rx);
        Join::Leader(FlightGuard {
            flights: self.clone(),
            key,
            tx,
        })
    }

    /// Fetches in progress (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits for the leader, at most `timeout`; true when it finished in time.
pub async fn wait(mut rx: watch::Receiver<bool>, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, rx.wait_for(|done| *done)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

/// The leader's hold on a key; dropping it releases the followers.
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: Key,
    tx: watch::Sender<bool>,
}

impl FlightGuard {
    pub fn key(&self) -> Key {
        self.key
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        {
            let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
            // Only our own flight: a newer leader may hold the key by now.
            if map
                .get(&self.key)
                .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
            {
                map.remove(&self.key);
            }
        }
        let _ = self.tx.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_followers_released_on_drop() {
        let flights = Arc::new(Flights::default());
        let key = Key([1; 32]);
        let Join::Leader(guard) = flights.join(key) else {
            panic!("first is the leader")
        };
        let Join::Follower(rx) = flights.join(key) else {
            panic!("second follows")
        };
        assert!(!wait(rx.clone(), Duration::from_millis(20)).await);
        drop(guard);
        assert!(wait(rx, Duration::from_millis(20)).await);
        assert!(flights.is_empty());
        assert!(matches!(flights.join(key), Join::Leader(_)));
    }
}
