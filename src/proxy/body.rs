//! Body types on the data path. Bodies are streamed frame by frame, never collected.
//!
//! [`ObservedBody`] wraps every response body that leaves rampart: it counts bytes and, when the
//! body is finished or dropped (client gone), runs the request's completion hook exactly once
//! (access log, metrics, connection idle bookkeeping).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any body rampart sends downstream or upstream.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body. It is a zero-sized value, so boxing it allocates nothing.
pub fn empty() -> ResponseBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The declared `Content-Length`, if any.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Called once when a response body ends: bytes sent, and whether it ran to its end.
pub trait Completion: Send + 'static {
    fn complete(self: Box<Self>, bytes_sent: u64, finished: bool);
}

pin_project_lite::pin_project! {
    pub struct ObservedBody {
        #[pin]
        inner: ResponseBody,
        bytes: u64,
        completion: Option<Box<dyn Completion>>,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(completion) = this.completion.take() {
                completion.complete(*this.bytes, false);
            }
        }
    }
}

impl ObservedBody {
    pub fn new(inner: ResponseBody, completion: Box<dyn Completion>) -> Self {
        let mut body = Self {
            inner,
            bytes: 0,
            completion: Some(completion),
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion.complete(self.bytes, true);
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                // A sized body is not polled again after its last frame.
                if this.inner.is_end_stream()
                    && let Some(completion) = this.completion.take()
                {
                    completion.complete(*this.bytes, true);
                }
            }
            Poll::Ready(None) => {
                if let Some(completion) = this.completion.take() {
                    completion.complete(*this.bytes, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(completion) = this.completion.take() {
                    completion.complete(*this.bytes, false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
