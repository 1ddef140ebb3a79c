//! The per-attempt upstream timeout, on a timer that a connection keeps for its next request.
//!
//! `tokio::time::timeout` makes a timer per call: it is inserted into the runtime's timer wheel
//! on the first poll and removed when dropped, each under the wheel's lock (measured: about 3%
//! of a plain request's instructions). A kept timer is only moved later for the next request,
//! which tokio does without the lock when the new deadline is not earlier than the old one; the
//! wheel reinserts it when the old deadline comes round. So a connection's requests share one
//! registration instead of making and removing one each.
//!
//! An HTTP/2 connection's concurrent requests find the kept timer taken and make their own; the
//! last to finish keeps its timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// The attempt's deadline passed before its future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// The timer a connection keeps between requests; empty while a request is using it.
#[derive(Debug, Default)]
pub struct KeptTimer(Mutex<Option<Pin<Box<Sleep>>>>);

impl KeptTimer {
    /// Runs `future` until it completes or `deadline` passes, whichever comes first. The timer
    /// is given back when the returned future is dropped.
    pub fn timeout_at<F: Future>(&self, deadline: Instant, future: F) -> Timed<'_, F> {
        let timer = match self.take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            // Registered with the runtime on its first poll.
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Timed {
            future,
            timer: Some(timer),
            kept: self,
        }
    }

    fn take(&self) -> Option<Pin<Box<Sleep>>> {
        self.0.try_lock().ok()?.take()
    }

    fn keep(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut slot) = self.0.try_lock()
            && slot.is_none()
        {
            *slot = Some(timer);
        }
    }
}

pin_project_lite::pin_project! {
    /// [`KeptTimer::timeout_at`]'s future: the inner future first, then the timer, so that a
    /// future ready at the deadline wins.
    pub struct Timed<'k, F> {
        #[pin]
        future: F,
        timer: Option<Pin<Box<Sleep>>>,
        kept: &'k KeptTimer,
    }

    impl<'k, F> PinnedDrop for Timed<'k, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(timer) = this.timer.take() {
                this.kept.keep(timer);
            }
        }
    }
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match this.timer {
            Some(timer) => timer.as_mut().poll(cx).map(|()| Err(TimedOut)),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_future_that_ends_in_time_gives_its_output_and_the_timer_is_kept() {
        let kept = KeptTimer::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let outcome = kept.timeout_at(deadline, async { 7 }).await;
        assert_eq!(outcome, Ok(7));
        assert!(
            kept.take().is_some(),
            "the timer is kept for the next request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_fires_at_each_new_deadline_later_or_earlier() {
        let kept = KeptTimer::default();
        for wait in [
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(2),
        ] {
            let started = Instant::now();
            let outcome = kept
                .timeout_at(started + wait, std::future::pending::<()>())
                .await;
            assert_eq!(outcome, Err(TimedOut));
            assert_eq!(Instant::now() - started, wait);
        }
        // A fired timer is kept as well, and moves to the next deadline.
        finishes_in_time(&kept, Duration::from_secs(3), Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_not_fired_at_the_earlier_one() {
        let kept = KeptTimer::default();
        // Pending once, so that the timer is polled and registered at +10 s, then done.
        let first = kept
            .timeout_at(
                Instant::now() + Duration::from_secs(10),
                tokio::task::yield_now(),
            )
            .await;
        assert_eq!(first, Ok(()));
        tokio::time::advance(Duration::from_secs(5)).await;
        // Moved to +5 s + 20 s without the lock; it must outlive the old deadline (+10 s).
        finishes_in_time(&kept, Duration::from_secs(15), Duration::from_secs(20)).await;
    }

    /// A future that takes `runs`, under a deadline `limit` away on `kept`: it must finish.
    async fn finishes_in_time(kept: &KeptTimer, runs: Duration, limit: Duration) {
        let started = Instant::now();
        let outcome = kept
            .timeout_at(started + limit, tokio::time::sleep(runs))
            .await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(Instant::now() - started, runs);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_attempts_each_have_a_timer_and_one_is_kept() {
        let kept = KeptTimer::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let (a, b) = tokio::join!(
            kept.timeout_at(deadline, std::future::pending::<()>()),
            kept.timeout_at(deadline + Duration::from_secs(1), async { 2 }),
        );
        assert_eq!((a, b), (Err(TimedOut), Ok(2)));
        assert!(kept.take().is_some());
    }
}
