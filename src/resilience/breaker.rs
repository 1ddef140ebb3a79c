//! The circuit breaker: closed → open → half-open → closed, as a small state machine over a
//! rolling window of outcomes.
//!
//! Closed, it counts every call (failures and slow calls too) over `window`; once the window
//! holds at least `min_requests` calls and the failure rate or the slow-call rate reaches its
//! threshold, it opens. Open, it refuses every call for `open_duration`, then lets
//! `half_open_probes` calls through: all of them succeeding closes it, any failing opens it
//! again. Each transition is logged, counted in `rampart_circuit_transitions_total` and set in
//! `rampart_circuit_state` (0 closed, 1 open, 2 half-open).
//!
//! The hot path is atomics only: one load to admit a call while closed, one bucket update to
//! record it. It must not decide what a failure is; the caller says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::window::RollingWindow;
use crate::config::units::deserialize_duration;
use crate::observe::metrics as m;

/// `[upstream.circuit_breaker]` and `[route.circuit_breaker]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// The rolling window the rates are measured over.
    #[serde(default = "default_window", deserialize_with = "deserialize_duration")]
    pub window: Duration,
    /// Fewer calls than this in the window never open the breaker.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Percentage of failed calls (connect errors, timeouts, 5xx) that opens the breaker.
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
    /// A call slower than this to its response head counts as slow.
    #[serde(
        default,
        deserialize_with = "crate::config::units::deserialize_opt_duration"
    )]
    pub slow_call_duration: Option<Duration>,
    /// Percentage of slow calls that opens the breaker (with `slow_call_duration`).
    #[serde(default = "default_slow_call_rate")]
    pub slow_call_rate: f64,
    /// How long the breaker stays open before probing.
    #[serde(
        default = "default_open_duration",
        deserialize_with = "deserialize_duration"
    )]
    pub open_duration: Duration,
    /// Calls let through half-open; all must succeed to close.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_min_requests() -> u32 {
    10
}
fn default_error_rate() -> f64 {
    50.0
}
fn default_slow_call_rate() -> f64 {
    50.0
}
fn default_open_duration() -> Duration {
    Duration::from_secs(60)
}
fn default_half_open_probes() -> u32 {
    3
}

/// What the breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// How one call went, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// A refused call: the breaker is open (or its half-open probes are all out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// When a call may be tried again.
    pub retry_after: Duration,
}

/// Counters per window bucket: calls, failures, slow calls.
const CALLS: usize = 0;
const FAILURES: usize = 1;
const SLOW: usize = 2;

pub struct Breaker {
    /// `upstream` and `route` labels (route empty for an upstream's own breaker).
    upstream: Arc<str>,
    route: Arc<str>,
    pub settings: BreakerSettings,
    origin: Instant,
    state: AtomicU8,
    /// Open: until when (ms since `origin`).
    open_until_ms: AtomicU64,
    /// Half-open: probes let through, and probes that succeeded.
    probes_started: AtomicU32,
    probes_succeeded: AtomicU32,
    outcomes: RollingWindow<3>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, upstream: Arc<str>, route: Arc<str>) -> Self {
        let breaker = Self {
            outcomes: RollingWindow::new(settings.window),
            upstream,
            route,
            settings,
            origin: Instant::now(),
            state: AtomicU8::new(State::Closed as u8),
            open_until_ms: AtomicU64::new(0),
            probes_started: AtomicU32::new(0),
            probes_succeeded: AtomicU32::new(0),
        };
        breaker.gauge().set(0.0);
        breaker
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// When an open breaker starts probing, from now.
    pub fn open_remaining(&self) -> Duration {
        let until = self.open_until_ms.load(Ordering::Acquire);
        Duration::from_millis(until.saturating_sub(self.now_ms()))
    }

    /// Asks to make a call. The permit must be given the call's outcome; a permit dropped
    /// without one (the client went away) counts as nothing.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Open> {
        self.admit_at(self.now_ms())
    }

    fn admit_at(self: &Arc<Self>, now: u64) -> Result<Permit, Open> {
        let probe = match self.state() {
            State::Closed => false,
            State::Open => {
                let until = self.open_until_ms.load(Ordering::Acquire);
                if now < until {
                    return Err(Open {
                        retry_after: Duration::from_millis(until - now),
                    });
                }
                // Only one caller moves it to half-open.
                if self
                    .state
                    .compare_exchange(
                        State::Open as u8,
                        State::HalfOpen as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    self.probes_started.store(0, Ordering::Release);
                    self.probes_succeeded.store(0, Ordering::Release);
                    self.transitioned(State::HalfOpen);
                }
                return self.admit_probe();
            }
            State::HalfOpen => return self.admit_probe(),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            done: false,
        })
    }

    fn admit_probe(self: &Arc<Self>) -> Result<Permit, Open> {
        let started = self.probes_started.fetch_add(1, Ordering::AcqRel);
        if started < self.settings.half_open_probes {
            return Ok(Permit {
                breaker: self.clone(),
                probe: true,
                done: false,
            });
        }
        self.probes_started.fetch_sub(1, Ordering::AcqRel);
        // The probes are out: try again in about a second.
        Err(Open {
            retry_after: Duration::from_secs(1),
        })
    }

    fn record_at(&self, now: u64, probe: bool, outcome: Outcome, elapsed: Duration) {
        let slow = self
            .settings
            .slow_call_duration
            .is_some_and(|limit| elapsed >= limit);
        let failed = outcome == Outcome::Failure || slow;
        if probe {
            if self.state() != State::HalfOpen {
                return;
            }
            if failed {
                self.open(now);
            } else if self.probes_succeeded.fetch_add(1, Ordering::AcqRel) + 1
                >= self.settings.half_open_probes
                && self
                    .state
                    .compare_exchange(
                        State::HalfOpen as u8,
                        State::Closed as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                self.outcomes.clear();
                self.transitioned(State::Closed);
            }
            return;
        }
        if self.state() != State::Closed {
            // A call admitted before the breaker opened.
            return;
        }
        self.outcomes.add(
            now,
            [1, u32::from(outcome == Outcome::Failure), u32::from(slow)],
        );
        if failed {
            let totals = self.outcomes.totals(now);
            let calls = totals[CALLS];
            if calls >= u64::from(self.settings.min_requests.max(1))
                && (percent(totals[FAILURES], calls) >= self.settings.error_rate
                    || (self.settings.slow_call_duration.is_some()
                        && percent(totals[SLOW], calls) >= self.settings.slow_call_rate))
            {
                self.open(now);
            }
        }
    }

    fn open(&self, now: u64) {
        self.open_until_ms.store(
            now + self.settings.open_duration.as_millis() as u64,
            Ordering::Release,
        );
        let previous = self.state.swap(State::Open as u8, Ordering::AcqRel);
        if previous != State::Open as u8 {
            self.transitioned(State::Open);
        }
    }

    fn gauge(&self) -> metrics::Gauge {
        metrics::gauge!(m::CIRCUIT_STATE, "upstream" => self.upstream.clone(), "route" => self.route.clone())
    }

    fn transitioned(&self, to: State) {
        self.gauge().set(f64::from(to as u8));
        metrics::counter!(m::CIRCUIT_TRANSITIONS_TOTAL, "upstream" => self.upstream.clone(), "route" => self.route.clone(), "to" => to.as_str()).increment(1);
        match to {
            State::Open => tracing::warn!(
                upstream = &*self.upstream,
                route = &*self.route,
                open_for_ms = self.settings.open_duration.as_millis() as u64,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                upstream = &*self.upstream,
                route = &*self.route,
                state = to.as_str(),
                "circuit breaker {}",
                if to == State::Closed {
                    "closed"
                } else {
                    "half-open: probing"
                }
            ),
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// One admitted call.
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Permit {
    /// Counts the call: its outcome and how long it took to its response head.
    pub fn record(mut self, outcome: Outcome, elapsed: Duration) {
        self.done = true;
        let now = self.breaker.now_ms();
        self.breaker.record_at(now, self.probe, outcome, elapsed);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A probe that never finished gives its place back.
        if !self.done && self.probe {
            self.breaker.probes_started.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            window: Duration::from_secs(10),
            min_requests: 10,
            error_rate: 50.0,
            slow_call_duration: None,
            slow_call_rate: 50.0,
            open_duration: Duration::from_secs(60),
            half_open_probes: 2,
        }
    }

    fn breaker(settings: BreakerSettings) -> Arc<Breaker> {
        Arc::new(Breaker::new(settings, "app".into(), "".into()))
    }

    fn call(b: &Arc<Breaker>, now: u64, outcome: Outcome) -> Result<(), Open> {
        let permit = b.admit_at(now)?;
        permit.done_at(now, outcome, Duration::ZERO);
        Ok(())
    }

    impl Permit {
        fn done_at(mut self, now: u64, outcome: Outcome, elapsed: Duration) {
            self.done = true;
            self.breaker.record_at(now, self.probe, outcome, elapsed);
        }
    }

    #[test]
    fn opens_at_the_error_rate_once_the_volume_is_there() {
        let b = breaker(settings());
        // Four failures alone are under the minimum volume.
        for i in 0..4 {
            call(&b, i, Outcome::Failure).unwrap();
        }
        assert_eq!(b.state(), State::Closed);
        for i in 4..9 {
            call(&b, i, Outcome::Success).unwrap();
        }
        assert_eq!(b.state(), State::Closed);
        // The tenth call, a failure: 5 of 10 failed.
        call(&b, 9, Outcome::Failure).unwrap();
        assert_eq!(b.state(), State::Open);
        let open = call(&b, 1_000, Outcome::Success).unwrap_err();
        assert_eq!(open.retry_after, Duration::from_millis(59_009));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let b = breaker(settings());
        for i in 0..4 {
            call(&b, i, Outcome::Failure).unwrap();
        }
        // Eleven seconds later the window holds only successes and one failure.
        for i in 0..9 {
            call(&b, 11_000 + i, Outcome::Success).unwrap();
        }
        call(&b, 11_010, Outcome::Failure).unwrap();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn half_open_probes_close_it_or_open_it_again() {
        let b = breaker(settings());
        for i in 0..10 {
            call(&b, i, Outcome::Failure).unwrap();
        }
        assert_eq!(b.state(), State::Open);
        let later = 60_010;
        let first = b.admit_at(later).unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        let second = b.admit_at(later).unwrap();
        // Only two probes at a time.
        assert!(b.admit_at(later).is_err());
        first.done_at(later, Outcome::Success, Duration::ZERO);
        assert_eq!(b.state(), State::HalfOpen);
        second.done_at(later, Outcome::Success, Duration::ZERO);
        assert_eq!(b.state(), State::Closed);

        for i in 0..10 {
            call(&b, later + i, Outcome::Failure).unwrap();
        }
        let reopen_at = later + 9 + 60_000;
        let probe = b.admit_at(reopen_at).unwrap();
        probe.done_at(reopen_at, Outcome::Failure, Duration::ZERO);
        assert_eq!(b.state(), State::Open);
        assert!(b.admit_at(reopen_at + 1).is_err());
    }

    #[test]
    fn an_abandoned_probe_gives_its_place_back() {
        let mut s = settings();
        s.half_open_probes = 1;
        let b = breaker(s);
        for i in 0..10 {
            call(&b, i, Outcome::Failure).unwrap();
        }
        let probe = b.admit_at(70_000).unwrap();
        assert!(b.admit_at(70_000).is_err());
        drop(probe);
        assert!(b.admit_at(70_000).is_ok());
    }

    #[test]
    fn slow_calls_open_it_when_configured() {
        let mut s = settings();
        s.slow_call_duration = Some(Duration::from_secs(1));
        let b = breaker(s);
        for i in 0..10 {
            let permit = b.admit_at(i).unwrap();
            permit.done_at(i, Outcome::Success, Duration::from_secs(2));
        }
        assert_eq!(b.state(), State::Open);
    }
}
