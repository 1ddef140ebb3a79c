//! Active health checks: a background task per upstream that sends `GET <path>` to every
//! endpoint each `interval` (on a fresh connection, within `timeout`), and marks an endpoint
//! unhealthy after `unhealthy_threshold` failed checks in a row and healthy again after
//! `healthy_threshold` passing ones. The task ends when its upstream is dropped (a reload
//! starts the next pipeline's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use super::Upstream;
use super::endpoint::Endpoint;
use crate::resilience::health::ActiveSettings;

/// Consecutive results of one endpoint's checks.
#[derive(Default)]
struct Streak {
    passed: u32,
    failed: u32,
    /// Checked before: a new target's first passing check is enough to start it.
    seen: bool,
}

pub fn spawn(upstream: &Arc<Upstream>) {
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    let Some(settings) = upstream.config.health_check.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut streaks: HashMap<SocketAddr, Streak> = HashMap::new();
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let endpoints: Vec<Arc<Endpoint>> = {
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                upstream
                    .members()
                    .list
                    .iter()
                    .map(|m| m.endpoint.clone())
                    .collect()
            };
            let results = futures_util::future::join_all(
                endpoints.iter().map(|endpoint| check(endpoint, &settings)),
            )
            .await;
            streaks.retain(|addr, _| endpoints.iter().any(|e| e.addr == *addr));
            for (endpoint, result) in endpoints.iter().zip(results) {
                let streak = streaks.entry(endpoint.addr).or_default();
                let first = !std::mem::replace(&mut streak.seen, true);
                match result {
                    Ok(()) => {
                        streak.passed += 1;
                        streak.failed = 0;
                        if first || streak.passed >= settings.healthy_threshold {
                            endpoint.health.set_active(true);
                        }
                    }
                    Err(error) => {
                        streak.failed += 1;
                        streak.passed = 0;
                        tracing::debug!(target = endpoint.label(), error, "health check failed");
                        if streak.failed >= settings.unhealthy_threshold {
                            endpoint.health.set_active(false);
                        }
                    }
                }
            }
        }
    });
}

/// One check: connect, `GET path`, compare the status.
async fn check(endpoint: &Endpoint, settings: &ActiveSettings) -> Result<(), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(endpoint.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let host = settings
            .host
            .as_deref()
            .unwrap_or(endpoint.authority.as_str());
        let request = Request::get(settings.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "rampart-health-check")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if settings.is_expected(status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(settings.timeout, exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}
