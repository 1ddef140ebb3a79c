//! Stage 11, the upstream call: for the route's upstream and then each fallback upstream in
//! turn, attempts (breakers, target choice, timeout, retry with backoff and budget), then the
//! static fallback response.
//!
//! Fallback order: an upstream is left for the next one in the route's `fallback` list when its
//! breaker is open (`circuit_open`), when none of its targets is available
//! (`no_healthy_target`), or when its attempts are spent on retryable failures
//! (`attempts_exhausted`: connect errors, timeouts, the retry statuses). After the last
//! upstream, `fallback_response` answers if configured; otherwise the last failure does (an
//! upstream's own response when there was one). A client error (body too large or too slow)
//! never falls back.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;

use super::{Pipeline, classify, upstream_failure};
use crate::observe::access::RequestRecord;
use crate::observe::metrics as m;
use crate::observe::trace::AttemptEnd;
use crate::proxy::attempt_timer::TimedOut;
use crate::proxy::body::{BoxError, ResponseBody, declared_length, full};
use crate::proxy::checks::read_body;
use crate::proxy::context::ConnInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::remove_hop_by_hop;
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::proxy::router::Route;
use crate::proxy::upstream::{Endpoint, Held, SendError, Upstream};
use crate::resilience::breaker::{self, Outcome};
use crate::resilience::retry::RetryPolicy;

/// Marks the route's static `fallback_response`, which a cached answer replaces.
#[derive(Debug, Clone, Copy)]
pub(super) struct StaticFallback;

/// Statuses that count as a failed attempt when the route has no `[route.retry]`.
const DEFAULT_FAILURE_STATUSES: [u16; 3] = [502, 503, 504];

/// Why an upstream was left.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    CircuitOpen,
    NoHealthyTarget,
    AttemptsExhausted,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::NoHealthyTarget => "no_healthy_target",
            Self::AttemptsExhausted => "attempts_exhausted",
        }
    }
}

/// How an upstream failed the request.
enum Failure {
    /// The upstream answered with a failure status; sent to the client if nothing better comes.
    Response(Response<ResponseBody>, Trigger),
    Error(ProxyError, Trigger),
    /// Not the upstream's fault (the client's body): answered as is, no fallback.
    Final(ProxyError),
}

impl Failure {
    fn trigger(&self) -> Option<Trigger> {
        match self {
            Self::Response(_, trigger) | Self::Error(_, trigger) => Some(*trigger),
            Self::Final(_) => None,
        }
    }

    fn into_result(self) -> Result<Response<ResponseBody>, ProxyError> {
        match self {
            Self::Response(response, _) => Ok(response),
            Self::Error(error, _) | Self::Final(error) => Err(error),
        }
    }
}

/// What every attempt of one request shares.
struct Attempts<'a> {
    route: &'a Route,
    parts: Option<http::request::Parts>,
    /// The first attempt's body when it cannot be replayed.
    body: Option<RequestBody>,
    /// The body kept for every attempt, when it can be replayed.
    replay: Option<Bytes>,
    limits: BodyLimits,
    conn: &'a ConnInfo,
    deadline: Option<Instant>,
    retry: Option<&'a RetryPolicy>,
}

impl Pipeline {
    /// Stage 11. `record` gets the upstream that answered and the number of attempts.
    pub(super) async fn call_upstream(
        &self,
        route: &Route,
        parts: http::request::Parts,
        body: RequestBody,
        limits: BodyLimits,
        conn: &ConnInfo,
        record: &mut RequestRecord,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let settings = &route.config.resilience;
        let retry = route.retry.as_ref();
        if let Some(retry) = retry {
            retry.count_request();
        }
        let retry = retry.filter(|r| r.allows_method(&parts.method) && r.settings.attempts > 1);
        let may_resend = retry.is_some() || !settings.fallback.is_empty();
        let (body, replay) = if may_resend {
            Box::pin(replayable(body, &parts, limits, retry)).await?
        } else {
            (Some(body), None)
        };
        let mut attempts = Attempts {
            route,
            parts: Some(parts),
            body,
            replay,
            limits,
            conn,
            deadline: settings.deadline.map(|d| record.started + d),
            retry,
        };

        let chain = std::iter::once(route.config.upstream).chain(settings.fallback.iter().copied());
        let mut last: Option<Failure> = None;
        for index in chain {
            let upstream = &self.upstreams[index];
            if let Some(previous) = &last {
                let trigger = previous.trigger().map_or("", Trigger::as_str);
                metrics::counter!(m::FALLBACKS_TOTAL, "route" => route.name.clone(), "fallback" => upstream.name.clone(), "trigger" => trigger).increment(1);
                tracing::info!(
                    route = &*route.name,
                    fallback = &*upstream.name,
                    trigger,
                    "trying the route's fallback upstream"
                );
            }
            record.upstream = Some(upstream.record_name.local().clone());
            match self.attempt_upstream(&mut attempts, upstream, record).await {
                Ok(response) => return Ok(response),
                Err(failure @ Failure::Final(_)) => return failure.into_result(),
                Err(failure) => last = Some(failure),
            }
            if !attempts.can_resend() || attempts.expired() {
                break;
            }
        }
        let failure = last.expect("the chain has the route's own upstream");
        match &settings.fallback_response {
            Some(answer) if failure.trigger().is_some() => {
                let trigger = failure.trigger().map_or("", Trigger::as_str);
                metrics::counter!(m::FALLBACKS_TOTAL, "route" => route.name.clone(), "fallback" => "static", "trigger" => trigger).increment(1);
                tracing::info!(
                    route = &*route.name,
                    trigger,
                    "answering with the route's fallback response"
                );
                let mut response = Response::new(full(answer.body.clone()));
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers.clone();
                // A stored answer, however stale, beats the static one (stage 12 looks).
                response.extensions_mut().insert(StaticFallback);
                Ok(response)
            }
            _ => failure.into_result(),
        }
    }

    /// Attempts on one upstream until one succeeds, a failure is not retryable, or the
    /// attempts, budget or deadline run out.
    async fn attempt_upstream(
        &self,
        a: &mut Attempts<'_>,
        upstream: &Arc<Upstream>,
        record: &mut RequestRecord,
    ) -> Result<Response<ResponseBody>, Failure> {
        let route = a.route;
        let max_attempts = a.retry.map_or(1, |r| r.settings.attempts);
        let statuses: &[u16] = a
            .route
            .retry
            .as_ref()
            .map_or(&DEFAULT_FAILURE_STATUSES, |r| &r.settings.statuses);
        let mut avoid: Option<Held> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let circuit_open = |open: breaker::Open| {
                Failure::Error(
                    ProxyError::CircuitOpen {
                        upstream: upstream.name.to_string(),
                        retry_after_secs: open.retry_after.as_secs_f64().ceil().max(1.0) as u64,
                    },
                    Trigger::CircuitOpen,
                )
            };
            let route_permit = match &route.breaker {
                Some(b) => Some(b.admit().map_err(circuit_open)?),
                None => None,
            };
            let upstream_permit = match &upstream.breaker {
                Some(b) => Some(b.admit().map_err(circuit_open)?),
                None => None,
            };
            let Some(endpoint) = upstream.pick(avoid.as_ref()) else {
                return Err(Failure::Error(
                    ProxyError::NoHealthyTarget {
                        upstream: upstream.name.to_string(),
                    },
                    Trigger::NoHealthyTarget,
                ));
            };
            record.attempts += 1;
            let attempt_span;
            // In a block: the head is borrowed while it is prepared, and a borrowed local keeps
            // its room in this future's state until its scope ends, past the await below.
            let upstream_request = {
                let Some((mut head, body)) = a.next_request() else {
                    return Err(Failure::Final(ProxyError::BadRequest(
                        "the request body cannot be sent again",
                    )));
                };
                self.prepare_upstream_head(
                    &mut head,
                    route,
                    &endpoint.host,
                    a.conn,
                    &record.request_id,
                )
                .map_err(Failure::Final)?;
                // The attempt's span id goes upstream as the parent in `traceparent`.
                attempt_span = record
                    .trace
                    .as_ref()
                    .map(|t| t.propagate(&mut head.headers));
                Request::from_parts(head, body.into_upstream(a.limits))
            };
            let timeout = match a.deadline {
                Some(deadline) => route
                    .config
                    .timeout
                    .min(deadline.saturating_duration_since(Instant::now())),
                None => route.config.timeout,
            };
            let started = Instant::now();
            let sent = a
                .conn
                .attempt_timer
                .timeout_at(
                    (started + timeout).into(),
                    Endpoint::send(&endpoint, upstream_request, upstream.pool, started),
                )
                .await;
            let elapsed = started.elapsed();
            upstream.duration.record(elapsed.as_secs_f64());

            // Sort the result: an answer, or a failure that may be retried (and of which kind);
            // count it in the breakers and the target's health (`None`: the client's fault, the
            // upstream is not blamed).
            let (result, retry_kind, outcome) = match sent {
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    let outcome = if status >= 500 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    let (mut parts, body) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    let response =
                        Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
                    if statuses.contains(&status) {
                        (
                            Err(Failure::Response(response, Trigger::AttemptsExhausted)),
                            Some("status"),
                            Some(outcome),
                        )
                    } else {
                        (Ok(response), None, Some(outcome))
                    }
                }
                Err(TimedOut) => {
                    let error = upstream_failure(
                        upstream,
                        "timeout",
                        ProxyError::UpstreamTimeout {
                            upstream: upstream.name.to_string(),
                            timeout_ms: timeout.as_millis(),
                        },
                    );
                    let kind = a
                        .retry
                        .is_some_and(|r| r.settings.on_timeout)
                        .then_some("timeout");
                    (
                        Err(Failure::Error(error, Trigger::AttemptsExhausted)),
                        kind,
                        Some(Outcome::Failure),
                    )
                }
                Ok(Err(error)) => {
                    let connect = matches!(error, SendError::Connect { .. });
                    let error = classify(upstream, error, a.limits.max_bytes);
                    if matches!(
                        error,
                        ProxyError::BodyTooLarge { .. } | ProxyError::BodyTooSlow
                    ) {
                        // The client's fault: not retried, and the upstream is not blamed.
                        (Err(Failure::Final(error)), None, None)
                    } else {
                        let kind = if connect { "connect" } else { "protocol" };
                        (
                            Err(Failure::Error(error, Trigger::AttemptsExhausted)),
                            Some(kind),
                            Some(Outcome::Failure),
                        )
                    }
                }
            };
            if let Some(outcome) = outcome {
                for permit in [route_permit, upstream_permit].into_iter().flatten() {
                    permit.record(outcome, elapsed);
                }
                upstream.record(&endpoint, outcome == Outcome::Success);
            }
            if let (Some(trace), Some(span_id)) = (&record.trace, attempt_span) {
                let end = match &result {
                    Ok(response) | Err(Failure::Response(response, _)) => {
                        AttemptEnd::Status(response.status())
                    }
                    Err(Failure::Error(error, _) | Failure::Final(error)) => {
                        AttemptEnd::Error(error.kind())
                    }
                };
                trace.attempt_span(
                    span_id,
                    &record.method,
                    &upstream.name,
                    &endpoint.authority,
                    attempt,
                    elapsed,
                    end,
                );
            }
            let failure = match result {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };

            let Some(kind) = retry_kind else {
                return Err(failure);
            };
            let Some(retry) = a.retry else {
                return Err(failure);
            };
            if attempt >= max_attempts || !a.can_resend() || a.expired() {
                return Err(failure);
            }
            if !retry.take_retry() {
                metrics::counter!(m::RETRY_BUDGET_EXHAUSTED_TOTAL, "route" => route.name.clone())
                    .increment(1);
                return Err(failure);
            }
            metrics::counter!(m::UPSTREAM_RETRIES_TOTAL, "route" => route.name.clone(), "kind" => kind).increment(1);
            // The failed response's body is dropped with its connection.
            drop(failure);
            let mut wait = retry.backoff(attempt);
            if let Some(deadline) = a.deadline {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::time::sleep(wait).await;
            if a.expired() {
                return Err(Failure::Error(
                    ProxyError::UpstreamTimeout {
                        upstream: upstream.name.to_string(),
                        timeout_ms: route
                            .config
                            .resilience
                            .deadline
                            .unwrap_or_default()
                            .as_millis(),
                    },
                    Trigger::AttemptsExhausted,
                ));
            }
            avoid = Some(endpoint);
        }
    }
}

impl Attempts<'_> {
    /// Whether another attempt can be sent (the body is kept, or there was none to send).
    fn can_resend(&self) -> bool {
        self.replay.is_some()
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The next attempt's head and body: copies while the body is replayable, the originals
    /// otherwise (once).
    fn next_request(&mut self) -> Option<(http::request::Parts, RequestBody)> {
        match &self.replay {
            Some(bytes) => {
                let parts = self.parts.as_ref()?;
                let (mut head, ()) = Request::new(()).into_parts();
                head.method = parts.method.clone();
                head.uri = parts.uri.clone();
                head.version = parts.version;
                head.headers = parts.headers.clone();
                Some((head, RequestBody::Buffered(bytes.clone())))
            }
            None => Some((self.parts.take()?, self.body.take()?)),
        }
    }
}

/// The body as it will be sent, and a copy to replay when it is small enough to keep: already
/// in memory, empty, or declared within the retry's `buffer_body`. Others stream, once.
async fn replayable(
    body: RequestBody,
    parts: &http::request::Parts,
    limits: BodyLimits,
    retry: Option<&RetryPolicy>,
) -> Result<(Option<RequestBody>, Option<Bytes>), ProxyError> {
    let keep = retry.map_or(64 * 1024, |r| r.settings.buffer_body.0);
    match body {
        RequestBody::Buffered(bytes) => Ok((None, Some(bytes))),
        streaming => {
            let chunked = parts.headers.contains_key(http::header::TRANSFER_ENCODING);
            match declared_length(&parts.headers) {
                None if !chunked => Ok((None, Some(Bytes::new()))),
                Some(length) if length <= keep => {
                    let bytes = read_body(streaming, limits).await?;
                    Ok((None, Some(bytes)))
                }
                _ => Ok((Some(streaming), None)),
            }
        }
    }
}
