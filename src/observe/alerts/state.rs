//! One rule's life: `ok` → `pending` (condition true, not yet for `for`) → `firing` → back to
//! `ok`, which is its one resolution. A firing alert notifies again no sooner than its
//! `repeat_interval`. Pure: time comes in as an argument.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Ok,
    Pending {
        since: Instant,
    },
    Firing {
        since: Instant,
        last_sent: Instant,
    },
}

/// What a step asks to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The condition has held for `for`.
    Fired,
    /// Still firing, and `repeat_interval` has passed since the last notification.
    Repeated { firing_for: Duration },
    /// The condition no longer holds.
    Resolved { firing_for: Duration },
}

#[derive(Debug, Clone, Default)]
pub struct RuleState {
    pub phase: Phase,
}

impl RuleState {
    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// Advances with the condition's value at `now`.
    pub fn step(
        &mut self,
        now: Instant,
        holds: bool,
        for_: Duration,
        repeat: Duration,
    ) -> Option<Event> {
        match (self.phase, holds) {
            (Phase::Ok, false) => None,
            (Phase::Ok, true) => {
                self.phase = Phase::Pending { since: now };
                self.step(now, true, for_, repeat)
            }
            (Phase::Pending { since }, true) => {
                if now.saturating_duration_since(since) >= for_ {
                    self.phase = Phase::Firing {
                        since: now,
                        last_sent: now,
                    };
                    Some(Event::Fired)
                } else {
                    None
                }
            }
            (Phase::Pending { .. }, false) => {
                self.phase = Phase::Ok;
                None
            }
            (Phase::Firing { since, last_sent }, true) => {
                if now.saturating_duration_since(last_sent) >= repeat {
                    self.phase = Phase::Firing {
                        since,
                        last_sent: now,
                    };
                    Some(Event::Repeated {
                        firing_for: now.saturating_duration_since(since),
                    })
                } else {
                    None
                }
            }
            (Phase::Firing { since, .. }, false) => {
                self.phase = Phase::Ok;
                Some(Event::Resolved {
                    firing_for: now.saturating_duration_since(since),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_after_for_repeats_at_the_interval_and_resolves_once() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let (for_, repeat) = (Duration::from_secs(5), Duration::from_secs(60));
        let mut state = RuleState::default();
        let mut events = Vec::new();
        // True from 0 to 200 s, then false.
        for second in 0..=260 {
            if let Some(event) = state.step(s(second), second < 200, for_, repeat) {
                events.push((second, event));
            }
        }
        assert_eq!(
            events,
            vec![
                (5, Event::Fired),
                (
                    65,
                    Event::Repeated {
                        firing_for: Duration::from_secs(60)
                    }
                ),
                (
                    125,
                    Event::Repeated {
                        firing_for: Duration::from_secs(120)
                    }
                ),
                (
                    185,
                    Event::Repeated {
                        firing_for: Duration::from_secs(180)
                    }
                ),
                (
                    200,
                    Event::Resolved {
                        firing_for: Duration::from_secs(195)
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let t0 = Instant::now();
        let mut state = RuleState::default();
        let (for_, repeat) = (Duration::from_secs(3), Duration::from_secs(60));
        for second in 0..20u64 {
            // True two seconds out of every three: never three in a row.
            let holds = second % 3 != 2;
            assert_eq!(
                state.step(t0 + Duration::from_secs(second), holds, for_, repeat),
                None
            );
        }
        assert!(!state.is_firing());
        // `for = 0` fires on the first true.
        assert_eq!(
            state.step(t0, true, Duration::ZERO, repeat),
            Some(Event::Fired)
        );
    }
}
