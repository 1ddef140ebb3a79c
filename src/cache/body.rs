//! Storing a response while it streams: [`CachingBody`] passes every frame to the client as it
//! comes and keeps a copy, up to the entry size cap; when the body ends the entry is stored and
//! the requests waiting on the same key are released. A body that outgrows the cap, fails or is
//! abandoned by the client is not stored (the waiters are released all the same and go upstream).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName};
use http_body::{Body, Frame, SizeHint};

use super::CacheStore;
use super::entry::{Entry, Origin, Times};
use super::flight::FlightGuard;
use crate::proxy::body::{BoxError, ResponseBody};

/// An entry to store once its body is complete.
pub struct PendingStore {
    pub cache: Arc<CacheStore>,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub times: Times,
    pub origin: Origin,
    pub vary: Vec<HeaderName>,
    /// The request's headers, to select the variant key.
    pub request_headers: HeaderMap,
    /// Released after the store (or when this is dropped).
    pub guard: Option<FlightGuard>,
}

impl PendingStore {
    pub fn complete(self, body: Bytes) {
        let entry = Arc::new(Entry::new(
            self.status,
            self.headers,
            body,
            self.times,
            self.origin,
        ));
        self.cache.store(entry, &self.vary, &self.request_headers);
        drop(self.guard);
    }
}

pin_project_lite::pin_project! {
    pub struct CachingBody {
        #[pin]
        inner: ResponseBody,
        buffer: BytesMut,
        limit: usize,
        pending: Option<PendingStore>,
    }
}

impl CachingBody {
    pub fn new(inner: ResponseBody, limit: usize, pending: PendingStore) -> Self {
        let hint = inner.size_hint().exact().unwrap_or(0).min(limit as u64) as usize;
        Self {
            inner,
            buffer: BytesMut::with_capacity(hint),
            limit,
            pending: Some(pending),
        }
    }
}

impl Body for CachingBody {
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
                if this.pending.is_some()
                    && let Some(data) = frame.data_ref()
                {
                    if this.buffer.len() + data.len() > *this.limit {
                        // Too large to keep: stream on, uncached.
                        *this.pending = None;
                        *this.buffer = BytesMut::new();
                    } else {
                        this.buffer.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream()
                    && let Some(pending) = this.pending.take()
                {
                    pending.complete(std::mem::take(this.buffer).freeze());
                }
            }
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    pending.complete(std::mem::take(this.buffer).freeze());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                *this.pending = None;
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
