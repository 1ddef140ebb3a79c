//! The client's request body on its way upstream: a minimum upload rate (slow clients get 408
//! instead of holding a connection and an upstream request open), the route's size limit, and
//! buffering for the routes whose checks must read the body (validation, attack filtering).
//!
//! A body that is not needed by a check streams through untouched, frame by frame.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::body::{BoxError, ResponseBody, empty, full};

/// The client sent its body slower than the configured minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("request body arrived slower than {rate} bytes/s")]
pub struct BodyTooSlow {
    pub rate: u64,
}

/// The body limits that apply to one request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: u64,
    /// Bytes per second; 0 = no rate check.
    pub min_rate: u64,
    pub grace: Duration,
}

pin_project_lite::pin_project! {
    /// Fails with [`BodyTooSlow`] when the deadline `start + grace + received / rate` passes
    /// before the next frame arrives: after the grace period, bytes must keep up with the rate.
    pub struct MinRateBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        started: Instant,
        received: u64,
        rate: u64,
        grace: Duration,
    }
}

impl<B> MinRateBody<B> {
    pub fn new(inner: B, rate: u64, grace: Duration) -> Self {
        let started = Instant::now();
        Self {
            inner,
            deadline: tokio::time::sleep_until(started + grace),
            started,
            received: 0,
            rate,
            grace,
        }
    }
}

impl<B> Body for MinRateBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    let earned = Duration::from_secs_f64(*this.received as f64 / *this.rate as f64);
                    this.deadline
                        .as_mut()
                        .reset(*this.started + *this.grace + earned);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(Box::new(BodyTooSlow { rate: *this.rate }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long an unread request body is drained after rampart answered early (a refusal, an
/// upstream error), so that the client finishes sending and reads the answer instead of a reset;
/// and how long the drain waits for each next frame (a stalled client is dropped at once).
const LINGER: Duration = Duration::from_secs(10);
const LINGER_IDLE: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// The client's body; if dropped before its end (rampart answered without reading it all),
    /// the rest is read and discarded in the background for up to [`LINGER`], like nginx's
    /// lingering close, so that the client sees the response rather than a broken pipe.
    pub struct Lingering {
        #[pin]
        inner: Option<Incoming>,
        // Data bytes read, for a body whose length the head does not declare.
        counted: Option<Arc<AtomicU64>>,
    }

    impl PinnedDrop for Lingering {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(mut body) = this.inner.get_mut().take() else { return };
            if body.is_end_stream() {
                return;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let drain = async {
                        while let Ok(Some(Ok(_))) =
                            tokio::time::timeout(LINGER_IDLE, body.frame()).await
                        {}
                    };
                    let _ = tokio::time::timeout(LINGER, drain).await;
                });
            }
        }
    }
}

impl Lingering {
    pub fn new(incoming: Incoming) -> Self {
        Self {
            inner: Some(incoming),
            counted: None,
        }
    }

    /// Counts the data bytes read from now on into the returned counter.
    pub fn count(&mut self) -> Arc<AtomicU64> {
        self.counted.get_or_insert_with(Default::default).clone()
    }
}

impl Body for Lingering {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = match this.inner.as_pin_mut() {
            Some(inner) => inner.poll_frame(cx),
            None => return Poll::Ready(None),
        };
        if let (Some(counted), Poll::Ready(Some(Ok(frame)))) = (this.counted, &polled)
            && let Some(data) = frame.data_ref()
        {
            counted.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The body as the pipeline holds it: still streaming, or read whole by a check.
pub enum RequestBody {
    Streaming(Lingering),
    Buffered(Bytes),
}

impl RequestBody {
    /// Reads the whole body (within the limits) so that checks can look at it.
    pub async fn buffer(self, limits: BodyLimits) -> Result<Bytes, BoxError> {
        match self {
            Self::Buffered(bytes) => Ok(bytes),
            Self::Streaming(incoming) => Ok(guarded(incoming, limits).collect().await?.to_bytes()),
        }
    }

    /// The body to send upstream: buffered bytes as they are, a stream with the limits applied.
    pub fn into_upstream(self, limits: BodyLimits) -> ResponseBody {
        match self {
            Self::Buffered(bytes) => full(bytes),
            // A request without a body (most GETs) sends an empty one: nothing to guard, and
            // nothing allocated for it.
            Self::Streaming(incoming) if incoming.is_end_stream() => empty(),
            Self::Streaming(incoming) => guarded(incoming, limits),
        }
    }

    /// The buffered bytes, if the body has been read.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Buffered(bytes) => Some(bytes),
            Self::Streaming(_) => None,
        }
    }
}

/// The size limit, and the rate check unless the body is already complete.
fn guarded(incoming: Lingering, limits: BodyLimits) -> ResponseBody {
    let check_rate = limits.min_rate > 0 && !incoming.is_end_stream();
    if check_rate {
        let slow = MinRateBody::new(incoming, limits.min_rate, limits.grace);
        Limited::new(slow, limits.max_bytes as usize)
            .map_err(BoxError::from)
            .boxed_unsync()
    } else {
        Limited::new(incoming, limits.max_bytes as usize)
            .map_err(BoxError::from)
            .boxed_unsync()
    }
}

/// What kind of body failure `error` (or any of its causes) is.
pub fn body_failure(error: &(dyn std::error::Error + 'static)) -> Option<BodyFailure> {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return Some(BodyFailure::TooLarge);
        }
        if cause.is::<BodyTooSlow>() {
            return Some(BodyFailure::TooSlow);
        }
        source = cause.source();
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    TooLarge,
    TooSlow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_grace_period() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = MinRateBody::new(StreamBody::new(stream), 1000, Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from(vec![0; 2000]))))
            .await
            .unwrap();
        let started = Instant::now();
        let error = body.collect().await.expect_err("times out");
        // 5 s grace + 2000 bytes earned 2 s.
        assert_eq!(started.elapsed().as_secs(), 7);
        assert!(body_failure(error.as_ref()) == Some(BodyFailure::TooSlow));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = MinRateBody::new(StreamBody::new(stream), 100, Duration::from_secs(1));
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                tx.send(Ok(Frame::data(Bytes::from(vec![1; 100]))))
                    .await
                    .unwrap();
            }
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 1000);
    }
}
