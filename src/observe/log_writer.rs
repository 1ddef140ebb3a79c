//! The log sink: lines are appended to a buffer and written out in batches — when a buffer passes
//! 64 KiB, every 100 ms, for every warning or error at once, and on drop — so that a busy proxy
//! makes a few large writes instead of one write (and one thread wake-up) per line.
//! Like nginx's `access_log ... buffer=64k flush=100ms`; at most 100 ms of lines are at risk on a crash.
//!
//! Each worker thread appends to a buffer of its own (a slot, padded to its own cache line), so
//! writing a line takes a lock no other thread wants except while the buffer is being swapped out;
//! threads that are not workers share one more slot. Lines of one thread keep their order; lines of
//! different threads are written batch by batch, so they may interleave out of time order by up to
//! one batch — as with several nginx workers writing to one buffered log.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const FLUSH_AT_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Worker `i` appends to slot `1 + i % WORKER_SLOTS`; slot 0 is for every other thread.
const WORKER_SLOTS: usize = 64;

type Sink = Box<dyn Write + Send>;

/// One thread's buffer, alone on its cache line so writers on different cores do not contend.
#[derive(Default)]
#[repr(align(128))]
struct Slot(Mutex<Vec<u8>>);

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where batches go, with the buffer last written out, kept to be swapped into the next slot
/// drained (so flushing allocates nothing).
struct Output {
    sink: Sink,
    spare: Vec<u8>,
}

impl Output {
    /// Writes out what `slot` holds; false when it held nothing. The slot's lock is held only to
    /// swap its buffer, so its thread never waits on I/O.
    fn drain(&mut self, slot: &Slot) -> bool {
        {
            let mut buffer = slot.lock();
            if buffer.is_empty() {
                return false;
            }
            std::mem::swap(&mut *buffer, &mut self.spare);
        }
        let _ = self.sink.write_all(&self.spare);
        self.spare.clear();
        true
    }
}

struct Shared {
    slots: Box<[Slot]>,
    output: Mutex<Output>,
}

impl Shared {
    fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of the worker `worker`, or the shared one for other threads.
    fn slot(&self, worker: Option<usize>) -> &Slot {
        let index = worker.map_or(0, |worker| 1 + worker % (self.slots.len() - 1));
        &self.slots[index]
    }

    /// Appends a line to `worker`'s slot; writes that slot out once it is full, and every slot
    /// at once when the line is `urgent`.
    fn append(&self, worker: Option<usize>, line: &[u8], urgent: bool) {
        let slot = self.slot(worker);
        let full = {
            let mut buffer = slot.lock();
            buffer.extend_from_slice(line);
            buffer.len() >= FLUSH_AT_BYTES
        };
        if urgent {
            self.flush();
        } else if full {
            let mut output = self.output();
            if output.drain(slot) {
                let _ = output.sink.flush();
            }
        }
    }

    /// Writes out every slot, and returns only once all of it (and any batch another thread was
    /// writing) is out. The output lock is taken first so a concurrent flush cannot be overtaken.
    fn flush(&self) {
        let mut output = self.output();
        let mut wrote = false;
        for slot in &self.slots {
            wrote |= output.drain(slot);
        }
        if wrote {
            let _ = output.sink.flush();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Cloneable handle to one batched sink.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl BatchWriter {
    /// A writer to `sink`, with a background thread that flushes on a timer.
    pub fn new(sink: Sink) -> Self {
        let shared = Arc::new(Shared {
            slots: (0..=WORKER_SLOTS).map(|_| Slot::default()).collect(),
            output: Mutex::new(Output {
                sink,
                spare: Vec::new(),
            }),
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

    /// Appends one whole line (newline included) to this thread's buffer. Warnings and errors
    /// are written out at once, together with everything buffered before them.
    pub fn write_line(&self, line: &[u8], level: tracing::Level) {
        self.shared.append(
            crate::server::worker::current(),
            line,
            level <= tracing::Level::WARN,
        );
    }

    /// Writes out everything buffered; returns once it is written.
    pub fn flush(&self) {
        self.shared.flush();
    }
}

/// A writer to memory, for tests: the writer and what it has written out so far.
#[cfg(test)]
pub(crate) fn capture() -> (BatchWriter, tests::Capture) {
    let capture = tests::Capture::default();
    (BatchWriter::new(Box::new(capture.clone())), capture)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A writer whose timer has just run (so it will not run again for about 100 ms).
    fn writer() -> (BatchWriter, Capture) {
        let (writer, capture) = capture();
        std::thread::sleep(Duration::from_millis(20));
        (writer, capture)
    }

    fn append(writer: &BatchWriter, worker: Option<usize>, line: &str, urgent: bool) {
        writer.shared.append(worker, line.as_bytes(), urgent);
    }

    #[test]
    fn batches_until_flushed_and_flushes_urgent_lines() {
        let (writer, capture) = writer();
        writer.write_line(b"one\n", tracing::Level::INFO);
        assert!(capture.text().is_empty(), "buffered");
        writer.flush();
        assert_eq!(capture.text(), "one\n");

        writer.write_line(b"two\n", tracing::Level::ERROR);
        assert_eq!(capture.text(), "one\ntwo\n");

        writer.write_line(b"three\n", tracing::Level::INFO);
        std::thread::sleep(FLUSH_EVERY * 3);
        assert_eq!(capture.text(), "one\ntwo\nthree\n", "the timer flushes");
    }

    #[test]
    fn the_timer_and_an_explicit_flush_drain_every_slot() {
        let (writer, capture) = writer();
        append(&writer, Some(0), "w0\n", false);
        append(&writer, Some(1), "w1\n", false);
        append(&writer, None, "other\n", false);
        assert!(capture.text().is_empty(), "buffered");
        writer.flush();
        assert_eq!(capture.text(), "other\nw0\nw1\n", "slot by slot");

        append(&writer, Some(WORKER_SLOTS + 1), "shares w1's slot\n", false);
        append(&writer, Some(5), "w5\n", false);
        std::thread::sleep(FLUSH_EVERY * 3);
        assert_eq!(
            capture.text(),
            "other\nw0\nw1\nshares w1's slot\nw5\n",
            "the timer flushes"
        );
    }

    #[test]
    fn an_urgent_line_drains_every_slot() {
        let (writer, capture) = writer();
        append(&writer, Some(1), "w1 info\n", false);
        append(&writer, Some(0), "w0 info\n", false);
        append(&writer, Some(0), "w0 error\n", true);
        assert_eq!(capture.text(), "w0 info\nw0 error\nw1 info\n");
    }

    #[test]
    fn a_full_slot_is_written_out_alone() {
        let (writer, capture) = writer();
        append(&writer, Some(1), "w1\n", false);
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..FLUSH_AT_BYTES / line.len() {
            append(&writer, Some(0), &line, false);
        }
        assert_eq!(
            capture.0.lock().unwrap().len(),
            FLUSH_AT_BYTES,
            "w0's batch"
        );
        assert!(!capture.text().contains("w1"), "w1's slot waits");
        writer.flush();
        assert!(capture.text().ends_with("w1\n"));
    }

    #[test]
    fn lines_of_one_thread_keep_their_order() {
        let (writer, capture) = writer();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    let worker = (thread > 0).then_some(thread);
                    for n in 0..20_000 {
                        let urgent = n % 5_000 == 0;
                        append(&writer, worker, &format!("{thread} {n}\n"), urgent);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.flush();
        let mut next = [0u32; 4];
        for line in capture.text().lines() {
            let (thread, n) = line.split_once(' ').unwrap();
            let thread: usize = thread.parse().unwrap();
            assert_eq!(n.parse::<u32>().unwrap(), next[thread], "{line}");
            next[thread] += 1;
        }
        assert_eq!(next, [20_000; 4]);
    }

    #[test]
    fn dropping_the_last_handle_writes_out_the_rest() {
        let (writer, capture) = writer();
        writer.write_line(b"last\n", tracing::Level::INFO);
        drop(writer);
        assert_eq!(capture.text(), "last\n");
    }
}
