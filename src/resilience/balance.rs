//! Choosing a target: `round_robin` (smooth weighted), `least_requests` (power of two random
//! choices, fewest requests in flight per weight) and `peak_ewma` (two choices, lowest
//! peak-sensitive moving average of response time × requests in flight, per weight).
//!
//! Weights are honoured through a schedule, a list of target indices in which each target
//! appears `weight` times, interleaved (nginx's smooth weighted round robin); the two random
//! choices are drawn from it too. Unavailable targets (ejected or failing their checks) are
//! skipped. Picking is atomics and no allocation.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `balance` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequests,
    PeakEwma,
}

/// What the balancer reads of a target.
pub trait Candidate {
    fn load(&self) -> &Load;
    fn weight(&self) -> u32;
    fn is_available(&self) -> bool;
}

/// A target's load: requests in flight and the moving average of its response times.
pub struct Load {
    in_flight: AtomicU32,
    ewma_ns: AtomicU64,
    stamp_ns: AtomicU64,
    origin: Instant,
}

/// How fast the average forgets (Finagle's default).
const DECAY: Duration = Duration::from_secs(10);

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            stamp_ns: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl Load {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Folds in one response time: a slower one is taken at once (peak), faster ones decay in.
    pub fn observe(&self, rtt: Duration) {
        let now = self.origin.elapsed().as_nanos() as u64;
        let rtt = rtt.as_nanos() as u64;
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(self.stamp_ns.swap(now, Ordering::Relaxed));
        let next = if rtt > old {
            rtt
        } else {
            let w = (-(elapsed as f64) / DECAY.as_nanos() as f64).exp();
            (old as f64 * w + rtt as f64 * (1.0 - w)) as u64
        };
        self.ewma_ns.store(next, Ordering::Relaxed);
    }

    pub fn ewma(&self) -> Duration {
        Duration::from_nanos(self.ewma_ns.load(Ordering::Relaxed))
    }
}

/// The smooth weighted round-robin order of targets with these weights.
pub fn schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best);
    }
    order
}

impl Balance {
    /// A target for the next attempt, avoiding `avoid` (the one that just failed) when another
    /// is available; `None` when no target is available.
    pub fn pick<C: Candidate>(
        self,
        targets: &[C],
        schedule: &[usize],
        next: &AtomicUsize,
        avoid: Option<usize>,
    ) -> Option<usize> {
        match targets.len() {
            0 => return None,
            1 => return targets[0].is_available().then_some(0),
            _ => {}
        }
        match self {
            Self::RoundRobin => in_turn(targets, schedule, next, avoid),
            Self::LeastRequests | Self::PeakEwma => {
                let draw = || schedule[fastrand::usize(..schedule.len())];
                let ok = |i: usize| targets[i].is_available() && Some(i) != avoid;
                let a = draw();
                let mut b = draw();
                if a == b {
                    b = draw();
                }
                match (ok(a), ok(b)) {
                    (true, true) if a != b => {
                        Some(if self.cost(&targets[a]) <= self.cost(&targets[b]) {
                            a
                        } else {
                            b
                        })
                    }
                    (true, _) => Some(a),
                    (_, true) => Some(b),
                    _ => in_turn(targets, schedule, next, avoid),
                }
            }
        }
    }

    /// Lower is better; compared between two targets only.
    fn cost<C: Candidate>(self, target: &C) -> f64 {
        let load = target.load();
        let in_flight = f64::from(load.in_flight());
        let weight = f64::from(target.weight().max(1));
        match self {
            Self::PeakEwma => {
                (load.ewma_ns.load(Ordering::Relaxed) as f64 + 1.0) * (in_flight + 1.0) / weight
            }
            _ => (in_flight + 1.0) / weight,
        }
    }
}

/// The next available target in schedule order; `avoid` only when it is the only one left.
fn in_turn<C: Candidate>(
    targets: &[C],
    schedule: &[usize],
    next: &AtomicUsize,
    avoid: Option<usize>,
) -> Option<usize> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    let mut fallback = None;
    for step in 0..schedule.len() {
        let i = schedule[(start + step) % schedule.len()];
        if targets[i].is_available() {
            if Some(i) != avoid {
                return Some(i);
            }
            fallback = Some(i);
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct T {
        load: Load,
        weight: u32,
        up: AtomicBool,
    }

    impl Candidate for T {
        fn load(&self) -> &Load {
            &self.load
        }
        fn weight(&self) -> u32 {
            self.weight
        }
        fn is_available(&self) -> bool {
            self.up.load(Ordering::Relaxed)
        }
    }

    fn targets(weights: &[u32]) -> Vec<T> {
        weights
            .iter()
            .map(|&weight| T {
                load: Load::default(),
                weight,
                up: AtomicBool::new(true),
            })
            .collect()
    }

    fn counts(balance: Balance, targets: &[T], n: usize) -> Vec<usize> {
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        let order = schedule(&weights);
        let next = AtomicUsize::new(0);
        let mut counts = vec![0; targets.len()];
        for _ in 0..n {
            counts[balance.pick(targets, &order, &next, None).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn smooth_weighted_schedule_interleaves() {
        assert_eq!(schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(schedule(&[1, 1, 1]), [0, 1, 2]);
    }

    #[test]
    fn round_robin_follows_the_weights_and_skips_unavailable_targets() {
        let ts = targets(&[1, 1, 2]);
        assert_eq!(counts(Balance::RoundRobin, &ts, 400), [100, 100, 200]);
        ts[2].up.store(false, Ordering::Relaxed);
        assert_eq!(counts(Balance::RoundRobin, &ts, 400)[2], 0);
        ts[0].up.store(false, Ordering::Relaxed);
        ts[1].up.store(false, Ordering::Relaxed);
        let order = schedule(&[1, 1, 2]);
        assert_eq!(
            Balance::RoundRobin.pick(&ts, &order, &AtomicUsize::new(0), None),
            None
        );
    }

    #[test]
    fn a_retry_avoids_the_target_that_failed_when_it_can() {
        let ts = targets(&[1, 1, 1]);
        let order = schedule(&[1, 1, 1]);
        let next = AtomicUsize::new(0);
        for balance in [
            Balance::RoundRobin,
            Balance::LeastRequests,
            Balance::PeakEwma,
        ] {
            for _ in 0..50 {
                assert_ne!(balance.pick(&ts, &order, &next, Some(1)), Some(1));
            }
        }
        ts[0].up.store(false, Ordering::Relaxed);
        ts[2].up.store(false, Ordering::Relaxed);
        assert_eq!(
            Balance::RoundRobin.pick(&ts, &order, &next, Some(1)),
            Some(1)
        );
    }

    #[test]
    fn least_requests_prefers_the_idle_target() {
        let ts = targets(&[1, 1, 1]);
        for _ in 0..50 {
            ts[0].load.started();
            ts[1].load.started();
        }
        let c = counts(Balance::LeastRequests, &ts, 300);
        // Target 2 wins every draw it is in: about 2/3 of them, never less than half.
        assert!(c[2] > 150, "{c:?}");
    }

    #[test]
    fn peak_ewma_prefers_the_fast_target() {
        let ts = targets(&[1, 1]);
        ts[0].load.observe(Duration::from_millis(200));
        ts[1].load.observe(Duration::from_millis(2));
        let c = counts(Balance::PeakEwma, &ts, 100);
        // Two draws of the same target (about one in eight picks) leave no choice.
        assert!(c[1] >= 70, "{c:?}");
        // A slow response is taken at once.
        ts[1].load.observe(Duration::from_millis(500));
        assert_eq!(ts[1].load.ewma(), Duration::from_millis(500));
    }
}
