//! Fixed-bucket histograms for the metrics recorded on every request (request duration and body
//! sizes by route, upstream duration by upstream), rendered in Prometheus text format after the
//! recorder's own output.
//!
//! The `metrics` recorder keeps every sample of a histogram in a shared buffer until the next
//! drain (about 10 bytes each) and sorts them into buckets then: for these four, about 700
//! instructions per request and megabytes of buffer at tens of thousands of requests per second.
//! Here a sample is two relaxed atomic updates into buckets fixed at registration.
//!
//! Every worker records every request into the same series, so each series keeps one copy of
//! its counts per shard ([`super::shard`]): the workers' updates then do not pass one cache line
//! back and forth between cores. (In a profile, more than a third of the completion's time had
//! landed just after its atomic operations, these among them.) A read adds the shards up.
//!
//! Histograms live in a process-wide registry ([`super::registry`]) keyed by name and label, so
//! a reload that builds its routes again keeps counting into the same ones.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::registry::Registry;
use super::shard::{Padded, Sharded};

/// One histogram family: its name, help text and bucket bounds (upper bounds, ascending).
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub bounds: &'static [f64],
    /// The label every series of the family carries (`route`, `upstream`).
    pub label: &'static str,
}

/// Sixteen counters on 128 bytes of their own.
type Lines = Padded<[AtomicU64; 16]>;

/// One series: per shard, a count per bucket (the last one is `+Inf`), then the sum of the
/// samples as `f64` bits, on lines of the shard's own.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    lines: Sharded<Box<[Lines]>>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        // The buckets, `+Inf` and the sum.
        let lines = (bounds.len() + 2).div_ceil(16);
        Self {
            bounds,
            lines: Sharded::from_fn(|| {
                (0..lines)
                    .map(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0))))
                    .collect()
            }),
        }
    }

    /// Slot `index` of a shard's lines: bucket `index`, or the sum after the last bucket.
    fn slot(lines: &[Lines], index: usize) -> &AtomicU64 {
        &lines[index / 16].0[index % 16]
    }

    /// Counts one sample.
    pub fn record(&self, value: f64) {
        let lines = self.lines.local();
        // The bounds ascend, so the number below the value is its bucket: counted without the
        // branches of a binary search, which a stream of varied samples mispredicts.
        let bucket = self.bounds.iter().filter(|&&bound| bound < value).count();
        Self::slot(lines, bucket).fetch_add(1, Ordering::Relaxed);
        // Atomic still: threads beyond `shard::SHARDS` share a shard.
        let _ = Self::slot(lines, self.bounds.len() + 1).fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |bits| Some((f64::from_bits(bits) + value).to_bits()),
        );
    }

    /// Cumulative counts per bound, then the total count, and the sum.
    fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut running = 0;
        let cumulative = (0..=self.bounds.len())
            .map(|bucket| {
                running += self
                    .lines
                    .all()
                    .map(|lines| Self::slot(lines, bucket).load(Ordering::Relaxed))
                    .sum::<u64>();
                running
            })
            .collect();
        let sum = self
            .lines
            .all()
            .map(|lines| {
                f64::from_bits(Self::slot(lines, self.bounds.len() + 1).load(Ordering::Relaxed))
            })
            .sum();
        (cumulative, sum)
    }
}

/// A series' key: its family (by address) and label value.
struct SeriesKey(&'static Family, Arc<str>);

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0) && self.1 == other.1
    }
}

/// Every series registered so far.
static REGISTRY: Registry<SeriesKey, Histogram> = Registry::new();

/// The series of `family` for `label_value`, registered on first use.
pub fn histogram(family: &'static Family, label_value: &Arc<str>) -> Arc<Histogram> {
    REGISTRY.get_or_insert(SeriesKey(family, label_value.clone()), || {
        Histogram::new(family.bounds)
    })
}

/// Every registered series in Prometheus text format, families in the order of `families`.
pub fn render(families: &[&'static Family]) -> String {
    let registry = REGISTRY.lock();
    let mut out = String::new();
    for family in families {
        let series: Vec<_> = registry
            .iter()
            .filter(|(key, _)| std::ptr::eq(key.0, *family))
            .collect();
        if series.is_empty() {
            continue;
        }
        let name = family.name;
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (SeriesKey(_, value), histogram) in series {
            let label = format!(
                "{}=\"{}\"",
                family.label,
                super::metrics::escape_label(value)
            );
            let (cumulative, sum) = histogram.snapshot();
            for (bound, count) in family.bounds.iter().zip(&cumulative) {
                let _ = writeln!(out, "{name}_bucket{{{label},le=\"{bound}\"}} {count}");
            }
            let total = cumulative.last().copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{label}}} {total}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::shard::SHARDS;

    static SIZES: Family = Family {
        name: "test_sizes_bytes",
        help: "Sizes.",
        bounds: &[10.0, 100.0],
        label: "route",
    };

    #[test]
    fn samples_fall_in_the_first_bucket_that_holds_them_and_series_are_shared() {
        let route: Arc<str> = Arc::from("a\"b");
        let first = histogram(&SIZES, &route);
        for value in [0.0, 10.0, 10.5, 100.0, 1e9] {
            first.record(value);
        }
        // Registered again (a reload): the same series.
        histogram(&SIZES, &Arc::from("a\"b")).record(1.0);
        let text = render(&[&SIZES]);
        let expected = "# HELP test_sizes_bytes Sizes.\n\
            # TYPE test_sizes_bytes histogram\n\
            test_sizes_bytes_bucket{route=\"a\\\"b\",le=\"10\"} 3\n\
            test_sizes_bytes_bucket{route=\"a\\\"b\",le=\"100\"} 5\n\
            test_sizes_bytes_bucket{route=\"a\\\"b\",le=\"+Inf\"} 6\n\
            test_sizes_bytes_sum{route=\"a\\\"b\"} 1000000121.5\n\
            test_sizes_bytes_count{route=\"a\\\"b\"} 6\n\n";
        assert_eq!(text, expected);
    }

    static SPREAD: Family = Family {
        name: "test_spread_bytes",
        help: "Spread.",
        bounds: &[1.0; 20],
        label: "route",
    };

    #[test]
    fn samples_from_more_threads_than_shards_all_count() {
        // 21 slots a shard: the sum sits on the second line of each.
        let series = histogram(&SPREAD, &Arc::from("x"));
        std::thread::scope(|scope| {
            for _ in 0..2 * SHARDS + 1 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        series.record(0.5);
                        series.record(2.0);
                    }
                });
            }
        });
        let (cumulative, sum) = series.snapshot();
        let threads = (2 * SHARDS + 1) as u64;
        assert_eq!(cumulative[0], threads * 100);
        assert_eq!(cumulative.last().copied(), Some(threads * 200));
        assert_eq!(sum, threads as f64 * 100.0 * 2.5);
    }
}
