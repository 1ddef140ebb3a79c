//! The encoders (gzip, brotli, zstd) over in-memory buffers: whole bodies at once (cached
//! entries) and [`CompressedBody`], which encodes a streamed body frame by frame.
//!
//! A streamed body is encoded as it arrives; whenever the upstream has nothing more ready, what
//! was written so far is flushed to the client (a sync flush), so a slow stream is never held
//! back inside the encoder while a fast one still compresses in large blocks.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Encoding, Levels};
use crate::proxy::body::{BoxError, ResponseBody};

/// One encoder writing into a growing buffer.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(ZstdStream),
}

impl Encoder {
    /// `size`: the body's length when known; the encoders then size their tables and window
    /// for it instead of for the largest input (most of the cost on small bodies).
    fn new(encoding: Encoding, levels: &Levels, size: Option<u64>) -> std::io::Result<Self> {
        Ok(match encoding {
            Encoding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Encoding::Br => {
                // The window: the body's size rounded up to a power of two, 1 KiB to 4 MiB
                // (brotli's default, for unknown sizes).
                let lgwin = size.map_or(22, |n| (64 - n.max(1).leading_zeros()).clamp(10, 22));
                let params = brotli::enc::BrotliEncoderParams {
                    quality: levels.brotli as i32,
                    lgwin: lgwin as i32,
                    size_hint: size.map_or(0, |n| n as usize),
                    ..Default::default()
                };
                Self::Br(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            Encoding::Zstd => Self::Zstd(ZstdStream::new(levels.zstd, size)?),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Gzip(e) => e.write_all(data),
            Self::Br(e) => e.write_all(data),
            Self::Zstd(e) => e.run(
                data,
                zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue,
            ),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Gzip(e) => e.flush(),
            Self::Br(e) => e.flush(),
            Self::Zstd(e) => e.run(
                &[],
                zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush,
            ),
        }
    }

    /// The output produced so far, removed from the buffer.
    fn take(&mut self) -> Bytes {
        let buffer = match self {
            Self::Gzip(e) => e.get_mut(),
            Self::Br(e) => e.get_mut(),
            Self::Zstd(e) => &mut e.out,
        };
        Bytes::from(std::mem::take(buffer))
    }

    /// Ends the stream and returns the rest of the output.
    fn finish(self) -> std::io::Result<Bytes> {
        let rest = match self {
            Self::Gzip(e) => e.finish()?,
            Self::Br(e) => e.into_inner(),
            Self::Zstd(mut e) => {
                e.run(
                    &[],
                    zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end,
                )?;
                std::mem::take(&mut e.out)
            }
        };
        Ok(Bytes::from(rest))
    }
}

thread_local! {
    /// zstd contexts kept for reuse on this thread: creating one (and clearing its tables)
    /// costs more than compressing a small body.
    static ZSTD_CONTEXTS: std::cell::RefCell<Vec<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Contexts kept per thread.
const ZSTD_POOL: usize = 16;

/// A zstd frame written with a context from the thread's pool (returned when done).
struct ZstdStream {
    cctx: Option<zstd::zstd_safe::CCtx<'static>>,
    out: Vec<u8>,
}

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd::zstd_safe::get_error_name(code))
}

impl ZstdStream {
    fn new(level: i32, size: Option<u64>) -> std::io::Result<Self> {
        use zstd::zstd_safe::{CCtx, CParameter, ResetDirective};
        let mut cctx = ZSTD_CONTEXTS
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_else(CCtx::create);
        cctx.reset(ResetDirective::SessionAndParameters)
            .map_err(zstd_error)?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(zstd_error)?;
        cctx.set_pledged_src_size(size).map_err(zstd_error)?;
        Ok(Self {
            cctx: Some(cctx),
            out: Vec::new(),
        })
    }

    /// Feeds `input` and, for a flush or the end, drains everything zstd holds.
    fn run(
        &mut self,
        input: &[u8],
        op: zstd::zstd_safe::zstd_sys::ZSTD_EndDirective,
    ) -> std::io::Result<()> {
        use zstd::zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};
        let cctx = self.cctx.as_mut().expect("present until drop");
        let mut input = InBuffer::around(input);
        loop {
            self.out.reserve((input.src.len() - input.pos) / 2 + 1024);
            let len = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, len);
            let remaining = cctx
                .compress_stream2(&mut output, &mut input, op)
                .map_err(zstd_error)?;
            let consumed = input.pos == input.src.len();
            let done = match op {
                ZSTD_EndDirective::ZSTD_e_continue => consumed,
                _ => consumed && remaining == 0,
            };
            if done {
                return Ok(());
            }
        }
    }
}

impl Drop for ZstdStream {
    fn drop(&mut self) {
        if let Some(cctx) = self.cctx.take() {
            let _ = ZSTD_CONTEXTS.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < ZSTD_POOL {
                    pool.push(cctx);
                }
            });
        }
    }
}

/// Encodes a whole body.
pub fn compress(encoding: Encoding, levels: &Levels, data: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = Encoder::new(encoding, levels, Some(data.len() as u64))?;
    encoder.write_all(data)?;
    let head = encoder.take();
    let tail = encoder.finish()?;
    if head.is_empty() {
        return Ok(tail);
    }
    let mut all = Vec::with_capacity(head.len() + tail.len());
    all.extend_from_slice(&head);
    all.extend_from_slice(&tail);
    Ok(Bytes::from(all))
}

pin_project_lite::pin_project! {
    /// A response body encoded on the fly.
    pub struct CompressedBody {
        #[pin]
        inner: ResponseBody,
        encoder: Option<Encoder>,
        // Input written since the last flush.
        unflushed: bool,
        // A trailers frame to send after the encoder's last bytes.
        trailers: Option<http::HeaderMap>,
        done: bool,
    }
}

impl CompressedBody {
    /// Wraps `inner` (of `size` bytes when known); gives it back if the encoder cannot be
    /// created.
    pub fn new(
        inner: ResponseBody,
        encoding: Encoding,
        levels: &Levels,
        size: Option<u64>,
    ) -> Result<Self, (std::io::Error, ResponseBody)> {
        let encoder = match Encoder::new(encoding, levels, size) {
            Ok(encoder) => encoder,
            Err(error) => return Err((error, inner)),
        };
        Ok(Self {
            inner,
            encoder: Some(encoder),
            unflushed: false,
            trailers: None,
            done: false,
        })
    }
}

impl Body for CompressedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        encoder.write_all(&data)?;
                        *this.unflushed = true;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            *this.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    *this.done = true;
                    let encoder = this.encoder.take().expect("present above");
                    let rest = encoder.finish()?;
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                }
                Poll::Pending => {
                    // Nothing more ready upstream: send what the client can decode so far.
                    if *this.unflushed {
                        *this.unflushed = false;
                        encoder.flush()?;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    pub(crate) fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    fn sample() -> Vec<u8> {
        (0..2000)
            .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn whole_bodies_round_trip_and_shrink() {
        let data = sample();
        for encoding in Encoding::ALL {
            let packed = compress(encoding, &Levels::default(), &data).unwrap();
            assert!(
                packed.len() < data.len() / 4,
                "{encoding:?}: {}",
                packed.len()
            );
            assert_eq!(decode(encoding, &packed), data, "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn streamed_bodies_round_trip() {
        let data = sample();
        for (encoding, size) in Encoding::ALL
            .into_iter()
            .flat_map(|e| [(e, None), (e, Some(data.len() as u64))])
        {
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = data
                .chunks(1000)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let inner = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
            let body = CompressedBody::new(
                BodyExt::boxed_unsync(inner),
                encoding,
                &Levels::default(),
                size,
            )
            .ok()
            .unwrap();
            let packed = body.collect().await.unwrap().to_bytes();
            assert_eq!(decode(encoding, &packed), data, "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn a_pause_upstream_flushes_what_came_so_far() {
        // One event, then the upstream waits: the client must be able to decode the event.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let inner = http_body_util::StreamBody::new(stream);
        let mut body = CompressedBody::new(
            BodyExt::boxed_unsync(inner),
            Encoding::Gzip,
            &Levels::default(),
            None,
        )
        .ok()
        .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello, first event"))))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Ok(Some(frame)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), body.frame()).await
        {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        decoder.write_all(&got).unwrap();
        decoder.flush().unwrap();
        assert_eq!(decoder.get_ref().as_slice(), b"hello, first event");
        drop(tx);
    }
}
