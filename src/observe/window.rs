//! Rolling request statistics over the last 15 minutes, for `/health/metrics` and the alert
//! rules: a ring of one slot per second, each with a request count, a 5xx count and a latency
//! histogram. Recording is a few relaxed atomic additions (no lock, no allocation); reading sums
//! the slots of the asked span.
//!
//! A slot is reused when its second comes round again: the first writer of the new second claims
//! it (compare-and-swap on its second) and zeroes it, so an addition racing that claim at the
//! second's boundary may be lost. The figures are estimates, as any sampled histogram's are.
//!
//! Every worker records every request, so each thread writes a ring of its own shard
//! ([`super::shard`]), made on its first record; a summary adds up the rings.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::shard::Sharded;

/// Seconds kept: 15 minutes and a margin, so the slot being written is never one being read.
const SLOTS: u64 = 960;
/// The longest span a summary covers.
pub const MAX_SPAN: Duration = Duration::from_secs(900);
/// Upper bound of bucket 0, in milliseconds; bucket `i` ends at `FIRST_BOUND_MS * GROWTH^i`.
const FIRST_BOUND_MS: f64 = 0.5;
const GROWTH: f64 = 1.25;
/// Up to about 2 minutes; slower requests land in the last bucket.
const BUCKETS: usize = 54;

struct Slot {
    /// Seconds since the window's origin, plus one (0: never used).
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The rings; one window per server, kept across reloads.
pub struct Window {
    origin: Instant,
    /// Each shard's ring of [`SLOTS`] slots, made when the shard first records.
    rings: Sharded<OnceLock<Box<[Slot]>>>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").finish_non_exhaustive()
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

/// Figures over one span.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub span_seconds: u64,
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    pub requests_per_second: f64,
    /// `errors / requests`; 0 without requests.
    pub error_rate: f64,
    /// `None` without requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Window {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            rings: Sharded::default(),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs() + 1
    }

    /// Records one request that finished at `now` after `elapsed`.
    pub fn record(&self, now: Instant, elapsed: Duration, server_error: bool) {
        let second = self.second(now);
        let ring = self
            .rings
            .local()
            .get_or_init(|| (0..SLOTS).map(|_| Slot::new()).collect());
        let slot = &ring[(second % SLOTS) as usize];
        let seen = slot.second.load(Relaxed);
        if seen < second
            && slot
                .second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Relaxed);
            slot.errors.store(0, Relaxed);
            for bucket in &slot.buckets {
                bucket.store(0, Relaxed);
            }
        }
        slot.requests.fetch_add(1, Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.buckets[bucket_of(elapsed)].fetch_add(1, Relaxed);
    }

    /// The last `span` (at most [`MAX_SPAN`]) up to `now`, the current second included.
    pub fn summary(&self, now: Instant, span: Duration) -> Summary {
        let span_seconds = span.min(MAX_SPAN).as_secs().max(1);
        let last = self.second(now);
        let first = last.saturating_sub(span_seconds - 1).max(1);
        let mut requests = 0;
        let mut errors = 0;
        let mut buckets = [0u64; BUCKETS];
        for ring in self.rings.all().filter_map(OnceLock::get) {
            for second in first..=last {
                let slot = &ring[(second % SLOTS) as usize];
                if slot.second.load(Relaxed) != second {
                    continue;
                }
                requests += slot.requests.load(Relaxed);
                errors += slot.errors.load(Relaxed);
                for (sum, bucket) in buckets.iter_mut().zip(&slot.buckets) {
                    *sum += bucket.load(Relaxed);
                }
            }
        }
        let errors = errors.min(requests);
        Summary {
            span_seconds,
            requests,
            errors,
            requests_per_second: requests as f64 / span_seconds as f64,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: quantile(&buckets, 0.50),
            p95_ms: quantile(&buckets, 0.95),
            p99_ms: quantile(&buckets, 0.99),
        }
    }
}

fn upper_bound_ms(bucket: usize) -> f64 {
    FIRST_BOUND_MS * GROWTH.powi(bucket as i32)
}

/// Every bucket's upper bound, in milliseconds.
static UPPER_BOUNDS_MS: std::sync::LazyLock<[f64; BUCKETS]> =
    std::sync::LazyLock::new(|| std::array::from_fn(upper_bound_ms));

fn bucket_of(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    // The first bucket whose bound holds it; slower ones go in the last.
    let bounds = &*UPPER_BOUNDS_MS;
    bounds[..BUCKETS - 1].partition_point(|&bound| bound < ms)
}

/// The `q` quantile, interpolated linearly inside its bucket.
fn quantile(buckets: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (index, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let lower = if index == 0 {
                0.0
            } else {
                upper_bound_ms(index - 1)
            };
            let upper = upper_bound_ms(index);
            let fraction = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * fraction);
        }
        below += count;
    }
    Some(upper_bound_ms(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_are_ordered_and_bounded() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_micros(500)), 0);
        let mut previous = 0;
        for micros in (1..200_000u64).step_by(997) {
            let bucket = bucket_of(Duration::from_micros(micros * 10));
            assert!(bucket >= previous);
            let ms = micros as f64 / 100.0;
            assert!(ms <= upper_bound_ms(bucket) || bucket == BUCKETS - 1);
            // The first such bucket.
            assert!(
                bucket == 0 || ms > upper_bound_ms(bucket - 1),
                "{ms} in {bucket}"
            );
            previous = bucket;
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let window = Window::new();
        let now = window.origin + Duration::from_millis(10_500);
        // 1..=1000 ms, one request each: p95 is 950 ms, p99 990 ms.
        for n in 1..=1000 {
            window.record(now, ms(n), n > 980);
        }
        let summary = window.summary(now, Duration::from_secs(60));
        assert_eq!(summary.requests, 1000);
        assert_eq!(summary.errors, 20);
        assert!((summary.error_rate - 0.02).abs() < 1e-9);
        let p95 = summary.p95_ms.unwrap();
        let p99 = summary.p99_ms.unwrap();
        assert!((950.0 / GROWTH..=950.0 * GROWTH).contains(&p95), "{p95}");
        assert!((990.0 / GROWTH..=990.0 * GROWTH).contains(&p99), "{p99}");
        assert!(p95 <= p99);
    }

    #[test]
    fn records_from_many_threads_add_up() {
        let window = Window::new();
        let now = window.origin + Duration::from_secs(3);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        window.record(now, ms(2), false);
                    }
                    window.record(now, ms(2), true);
                });
            }
        });
        window.record(now, ms(2), false);
        let summary = window.summary(now, Duration::from_secs(1));
        assert_eq!((summary.requests, summary.errors), (304, 3));
        assert!(window.rings.all().filter_map(OnceLock::get).count() >= 2);
    }

    #[test]
    fn spans_count_only_their_seconds_and_old_slots_are_reused() {
        let window = Window::new();
        let at = |s: u64| window.origin + Duration::from_secs(s);
        window.record(at(0), ms(5), true);
        window.record(at(100), ms(5), false);
        window.record(at(100), ms(5), false);
        let minute = window.summary(at(100), Duration::from_secs(60));
        assert_eq!((minute.requests, minute.errors), (2, 0));
        let quarter = window.summary(at(100), Duration::from_secs(900));
        assert_eq!((quarter.requests, quarter.errors), (3, 1));
        assert!((quarter.requests_per_second - 3.0 / 900.0).abs() < 1e-9);
        // SLOTS seconds later the slot of second 100 holds the new second only.
        window.record(at(100 + SLOTS), ms(5), true);
        let later = window.summary(at(100 + SLOTS), Duration::from_secs(1));
        assert_eq!((later.requests, later.errors), (1, 1));
        let empty = window.summary(at(5000), Duration::from_secs(60));
        assert_eq!(empty.requests, 0);
        assert_eq!(empty.p95_ms, None);
        assert_eq!(empty.error_rate, 0.0);
    }
}
