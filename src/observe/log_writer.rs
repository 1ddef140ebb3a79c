//! The log sink: lines are appended to a shared buffer and written to stdout in batches — when the
//! buffer passes 64 KiB, every 100 ms, for every warning or error at once, and on drop — so that a
//! busy proxy makes a few large writes instead of one write (and one thread wake-up) per line.
//! Like nginx's `access_log ... buffer=64k flush=100ms`; at most 100 ms of lines are at risk on a crash.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_AT_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

type Sink = Box<dyn Write + Send>;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    sink: Mutex<Sink>,
}

impl Shared {
    /// Writes out whatever is buffered, and returns only once it (and any batch another thread
    /// was writing) is out. The sink lock is taken first so a concurrent flush cannot be
    /// overtaken; the buffer lock is held only to swap the buffer, so writers never wait on I/O.
    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let pending = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.is_empty() {
                return;
            }
            std::mem::replace(&mut *buffer, Vec::with_capacity(FLUSH_AT_BYTES * 2))
        };
        let _ = sink.write_all(&pending);
        let _ = sink.flush();
    }
}

/// Cloneable handle given to the tracing subscriber.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl BatchWriter {
    /// A writer to `sink`, with a background thread that flushes on a timer.
    pub fn new(sink: Sink) -> Self {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(FLUSH_AT_BYTES * 2)),
            sink: Mutex::new(sink),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("rampart-log".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.flush();
                    drop(shared);
                    std::thread::sleep(FLUSH_EVERY);
                }
            })
            .expect("the log flush thread starts");
        Self { shared }
    }

    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    pub fn flush(&self) {
        self.shared.flush();
    }
}

/// One event's writer; `urgent` lines (warnings, errors) are flushed at once.
pub struct LineWriter {
    shared: Arc<Shared>,
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.extend_from_slice(bytes);
            buffer.len() >= FLUSH_AT_BYTES
        };
        if full {
            self.shared.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.urgent {
            self.shared.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batches_until_flushed_and_flushes_urgent_lines() {
        let capture = Capture::default();
        let writer = BatchWriter::new(Box::new(capture.clone()));
        std::thread::sleep(Duration::from_millis(20));
        writer.make_writer().write_all(b"one\n").unwrap();
        assert!(capture.0.lock().unwrap().is_empty(), "buffered");
        writer.flush();
        assert_eq!(&*capture.0.lock().unwrap(), b"one\n");

        let meta = tracing::Level::ERROR;
        let mut urgent = LineWriter {
            shared: writer.shared.clone(),
            urgent: meta <= tracing::Level::WARN,
        };
        urgent.write_all(b"two\n").unwrap();
        drop(urgent);
        assert_eq!(&*capture.0.lock().unwrap(), b"one\ntwo\n");

        writer.make_writer().write_all(b"three\n").unwrap();
        std::thread::sleep(FLUSH_EVERY * 3);
        assert_eq!(
            &*capture.0.lock().unwrap(),
            b"one\ntwo\nthree\n",
            "the timer flushes"
        );
    }
}
