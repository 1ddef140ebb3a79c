//! The request counters every request updates, kept per shard ([`super::shard`]) and rendered by
//! rampart rather than the `metrics` recorder: `rampart_http_requests_total{route,method,status}`,
//! `rampart_http_response_body_bytes_total{route}` and `rampart_http_requests_in_flight`.
//!
//! The recorder's counters are one shared atomic each, and finding a route's counter for a
//! method and status took a lock that both workers wanted on every request. Here a request
//! updates its own thread's shard only.
//!
//! Counts live in a process-wide registry ([`super::registry`]) keyed by route name, so a reload that builds its
//! routes again keeps counting into the same ones, as Prometheus expects of a counter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::metrics::{
    HTTP_REQUESTS_IN_FLIGHT, HTTP_REQUESTS_TOTAL, HTTP_RESPONSE_BYTES_TOTAL, escape_label,
};
use super::registry::Registry;
use super::shard::Sharded;

/// A request's method label and status.
type MethodStatus = (&'static str, u16);

/// A route's counts (one shard's, or all of them added up).
#[derive(Debug, Default)]
struct Counts {
    /// Requests per (method, status) seen: a handful per route, so a list beats a hash map.
    requests: Vec<(MethodStatus, u64)>,
    response_bytes: u64,
}

impl Counts {
    fn add(&mut self, key: MethodStatus, count: u64) {
        match self.requests.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, total)) => *total += count,
            None => self.requests.push((key, count)),
        }
    }
}

/// A route's request counters.
#[derive(Debug, Default)]
pub struct RouteCounts(Sharded<Mutex<Counts>>);

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

impl RouteCounts {
    /// Counts one finished request that sent `bytes` of response body.
    pub fn finished(&self, method: &'static str, status: u16, bytes: u64) {
        // Only this thread (and a reader adding up) takes this lock.
        let mut counts = lock(self.0.local());
        counts.response_bytes += bytes;
        counts.add((method, status), 1);
    }

    /// The shards added up, requests ordered by method then status.
    fn totals(&self) -> Counts {
        let mut totals = Counts::default();
        for shard in self.0.all() {
            let counts = lock(shard);
            totals.response_bytes += counts.response_bytes;
            for &(key, count) in &counts.requests {
                totals.add(key, count);
            }
        }
        totals.requests.sort_unstable_by_key(|&(key, _)| key);
        totals
    }
}

/// Every route's counts registered so far.
static REGISTRY: Registry<Arc<str>, RouteCounts> = Registry::new();

/// The counts of `route`, registered on first use.
pub fn route_counts(route: &Arc<str>) -> Arc<RouteCounts> {
    REGISTRY.get_or_insert(route.clone(), RouteCounts::default)
}

/// A count of requests being handled: a request adds one on its thread's shard when it starts
/// and takes one away (on whichever thread it ends) when it is done.
#[derive(Debug, Default)]
pub struct InFlightGauge(Sharded<AtomicI64>);

impl InFlightGauge {
    pub fn started(&self) {
        self.0.local().fetch_add(1, Ordering::Relaxed);
    }

    pub fn ended(&self) {
        self.0.local().fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests in flight now.
    pub fn get(&self) -> i64 {
        self.0
            .all()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

/// The process's requests in flight.
pub fn in_flight() -> &'static InFlightGauge {
    static IN_FLIGHT: std::sync::LazyLock<InFlightGauge> =
        std::sync::LazyLock::new(InFlightGauge::default);
    &IN_FLIGHT
}

/// The three families in Prometheus text format.
pub fn render() -> String {
    let registry = REGISTRY.lock();
    let totals: Vec<_> = registry
        .iter()
        .map(|(route, counts)| (escape_label(route), counts.totals()))
        .collect();
    drop(registry);
    let mut out = String::new();
    if !totals.is_empty() {
        let name = HTTP_REQUESTS_TOTAL;
        family(
            &mut out,
            name,
            "counter",
            "Requests answered, by route, method and status.",
            |out| {
                for (route, counts) in &totals {
                    for ((method, status), count) in &counts.requests {
                        let _ = writeln!(
                            out,
                            "{name}{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                        );
                    }
                }
            },
        );
        let name = HTTP_RESPONSE_BYTES_TOTAL;
        family(
            &mut out,
            name,
            "counter",
            "Response body bytes sent to clients, by route.",
            |out| {
                for (route, counts) in &totals {
                    let bytes = counts.response_bytes;
                    let _ = writeln!(out, "{name}{{route=\"{route}\"}} {bytes}");
                }
            },
        );
    }
    let name = HTTP_REQUESTS_IN_FLIGHT;
    family(
        &mut out,
        name,
        "gauge",
        "Requests being handled now.",
        |out| {
            let _ = writeln!(out, "{name} {}", in_flight().get());
        },
    );
    out
}

/// One family: its help and type lines, the samples `samples` writes, and a blank line.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    samples(out);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up_by_method_and_status() {
        let route: Arc<str> = Arc::from("counts \"test\"");
        let counts = route_counts(&route);
        std::thread::scope(|scope| {
            for _ in 0..2 * super::super::shard::SHARDS + 1 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        counts.finished("GET", 200, 10);
                        counts.finished("POST", 201, 1);
                    }
                    counts.finished("GET", 502, 0);
                });
            }
        });
        // Registered again (a reload): the same counts.
        route_counts(&Arc::from("counts \"test\"")).finished("DELETE", 204, 0);
        let threads = (2 * super::super::shard::SHARDS + 1) as u64;
        let text = render();
        let route = r#"route="counts \"test\"""#;
        for expected in [
            format!(r#"{HTTP_REQUESTS_TOTAL}{{{route},method="DELETE",status="204"}} 1"#),
            format!(
                r#"{HTTP_REQUESTS_TOTAL}{{{route},method="GET",status="200"}} {}"#,
                threads * 100
            ),
            format!(r#"{HTTP_REQUESTS_TOTAL}{{{route},method="GET",status="502"}} {threads}"#),
            format!(
                r#"{HTTP_REQUESTS_TOTAL}{{{route},method="POST",status="201"}} {}"#,
                threads * 100
            ),
            format!(
                r#"{HTTP_RESPONSE_BYTES_TOTAL}{{{route}}} {}"#,
                threads * 1100
            ),
        ] {
            assert!(text.contains(&expected), "{expected} in {text}");
        }
        // Ordered by method, then status.
        let get_200 = text.find(r#"method="GET",status="200""#).unwrap();
        let get_502 = text.find(r#"method="GET",status="502""#).unwrap();
        assert!(text.find("DELETE").unwrap() < get_200 && get_200 < get_502);
    }

    #[test]
    fn requests_ended_on_another_thread_leave_the_gauge_balanced() {
        let gauge = InFlightGauge::default();
        gauge.started();
        gauge.started();
        assert_eq!(gauge.get(), 2);
        std::thread::scope(|scope| {
            scope.spawn(|| gauge.ended());
        });
        assert_eq!(gauge.get(), 1);
        gauge.ended();
        assert_eq!(gauge.get(), 0);
        let text = render();
        assert!(text.contains(&format!("# TYPE {HTTP_REQUESTS_IN_FLIGHT} gauge\n")));
    }
}
