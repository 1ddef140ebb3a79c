//! Delivery of error events: a bounded queue and one sending thread per reporter, so a Sentry
//! endpoint that hangs, refuses or fails never touches a request. A full queue drops the event
//! (counted); each delivery has a timeout; Sentry's rate limits (`429`, `Retry-After`,
//! `X-Sentry-Rate-Limits`) are honoured with the crate's [`RateLimiter`]. Must not block the
//! caller: handing an event over is one `try_send`.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use sentry::transports::{RateLimiter, RateLimitingCategory};
use sentry::{Envelope, Transport};

use crate::observe::metrics as m;

enum Task {
    Send(Box<Envelope>),
    Flush(SyncSender<()>),
}

/// The sentry [`Transport`] rampart installs in its client.
pub struct QueueTransport {
    sender: SyncSender<Task>,
}

pub fn count(result: &'static str) {
    metrics::counter!(m::ERROR_REPORTS_TOTAL, "result" => result).increment(1);
}

impl QueueTransport {
    /// Starts the sending thread; it ends when the transport is dropped (after the queue).
    pub fn start(dsn: &sentry::types::Dsn, timeout: Duration, queue_size: usize) -> Self {
        let (sender, receiver) = sync_channel(queue_size);
        let url = dsn.envelope_api_url().to_string();
        let user_agent = format!("rampart/{}", env!("CARGO_PKG_VERSION"));
        let auth = dsn.to_auth(Some(&user_agent)).to_string();
        let spawned = std::thread::Builder::new()
            .name("rampart-errors".into())
            .spawn(move || run(receiver, url, auth, user_agent, timeout));
        if let Err(error) = spawned {
            tracing::warn!(%error, "the error-reporting thread did not start; events are dropped");
        }
        Self { sender }
    }
}

impl Transport for QueueTransport {
    fn send_envelope(&self, envelope: Envelope) {
        // Client reports and sessions are not events: they are neither counted nor sent.
        if envelope.event().is_none() {
            return;
        }
        match self.sender.try_send(Task::Send(Box::new(envelope))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => count("dropped"),
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        if self.sender.try_send(Task::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(timeout).is_ok()
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.flush(timeout)
    }
}

fn run(receiver: Receiver<Task>, url: String, auth: String, user_agent: String, timeout: Duration) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "the error-reporting runtime did not start; events are dropped");
            return;
        }
    };
    let _entered = runtime.enter();
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(user_agent)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "no HTTP client for error reporting; events are dropped");
            return;
        }
    };
    let mut limits = RateLimiter::new();
    let mut failing = false;
    while let Ok(task) = receiver.recv() {
        let envelope = match task {
            Task::Send(envelope) => envelope,
            Task::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if limits.is_disabled(RateLimitingCategory::Error).is_some()
            || limits.is_disabled(RateLimitingCategory::Any).is_some()
        {
            count("rate_limited");
            continue;
        }
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            count("failed");
            continue;
        }
        let request = client
            .post(&url)
            .header("X-Sentry-Auth", &auth)
            .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
            .body(body)
            .send();
        let outcome = runtime.block_on(async {
            let response = request.await?;
            let headers = response.headers();
            if let Some(header) = headers
                .get("x-sentry-rate-limits")
                .and_then(|v| v.to_str().ok())
            {
                limits.update_from_sentry_header(header);
            } else if let Some(header) = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
            {
                limits.update_from_retry_after(header);
            } else if response.status() == http::StatusCode::TOO_MANY_REQUESTS {
                limits.update_from_429();
            }
            let status = response.status();
            let _ = response.bytes().await;
            Ok::<_, reqwest::Error>(status)
        });
        // One line per change between working and failing, never per event, and never the
        // DSN (it holds the key).
        let ok = matches!(&outcome, Ok(status) if status.is_success());
        count(if ok { "sent" } else { "failed" });
        if ok && failing {
            failing = false;
            tracing::info!(target: "rampart::error_report", "error reports are delivered again");
        } else if !ok && !failing {
            failing = true;
            let reason = match outcome {
                Ok(status) => format!("Sentry answered {}", status.as_u16()),
                Err(error) if error.is_timeout() => "the delivery timed out".into(),
                Err(error) if error.is_connect() => "Sentry cannot be reached".into(),
                Err(_) => "the delivery failed".into(),
            };
            tracing::warn!(target: "rampart::error_report", reason, "error reports are not delivered");
        }
    }
}
