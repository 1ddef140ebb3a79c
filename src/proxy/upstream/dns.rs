//! Targets written as DNS names: resolved when the upstream is built (waiting at most
//! [`RESOLVE_TIMEOUT`]) and again every `resolve_interval` by a background task, which swaps in
//! the new endpoint list when the answer changes. Every address of a name is a target of the
//! name's weight. A failed lookup keeps the last answer.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Upstream;
use crate::config::{TargetConfig, UpstreamConfig};

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Each target's addresses, in order (an IP target is its own address).
pub async fn resolve_all(config: &UpstreamConfig) -> Vec<Vec<SocketAddr>> {
    let lookups = config.targets.iter().map(|target| async move {
        match resolve(target).await {
            Ok(addrs) => addrs,
            Err(error) => {
                tracing::warn!(
                    upstream = config.name,
                    target = target.authority,
                    error,
                    "cannot resolve upstream target; it gets no traffic until it resolves"
                );
                Vec::new()
            }
        }
    });
    futures_util::future::join_all(lookups).await
}

async fn resolve(target: &TargetConfig) -> Result<Vec<SocketAddr>, String> {
    if let Some(ip) = target.ip {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let mut addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| "DNS lookup timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// Each target's addresses in the upstream's current endpoint list.
fn current(upstream: &Upstream) -> Vec<Vec<SocketAddr>> {
    let members = upstream.members();
    upstream
        .config
        .targets
        .iter()
        .map(|target| {
            members
                .list
                .iter()
                .filter(|m| m.endpoint.authority.as_str() == target.authority)
                .map(|m| m.endpoint.addr)
                .collect()
        })
        .collect()
}

/// Re-resolves the upstream's names every `resolve_interval` until the upstream is dropped.
pub fn spawn(upstream: &Arc<Upstream>) {
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    let interval = upstream.config.resolve_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(upstream) = weak.upgrade() else {
                return;
            };
            let last = current(&upstream);
            let mut resolved = Vec::new();
            for (target, had) in upstream.config.targets.iter().zip(&last) {
                match resolve(target).await {
                    Ok(addrs) => resolved.push(addrs),
                    Err(error) => {
                        // Keep what this target had.
                        tracing::debug!(
                            target = target.authority,
                            error,
                            "DNS re-resolution failed"
                        );
                        resolved.push(had.clone());
                    }
                }
            }
            if resolved != last {
                let members = upstream.registry.members(&upstream.config, &resolved);
                tracing::info!(
                    upstream = &*upstream.name,
                    endpoints = members.list.len(),
                    "upstream targets changed by DNS"
                );
                upstream.set_members(members);
            }
        }
    });
}
