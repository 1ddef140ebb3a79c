//! Rate limits and quotas (pipeline stage 8): policies from `[[rate_limit.policy]]`, each a key
//! built from the request, a limit per window and an algorithm ([`algorithm`]); kept in memory
//! ([`memory`]), Redis ([`redis`]) or PostgreSQL ([`postgres`]).
//!
//! [`RateLimiter::check`] is the whole stage: it builds the keys of the route's policies, asks
//! the store once for all of them, and turns the decisions into the `RateLimit-Policy` and
//! `RateLimit` headers ([`headers`]) and, when a policy refuses, a refusal. While a shared store
//! fails or is slower than `[rate_limit].timeout`, each policy does what its `on_store_failure`
//! says (local memory with the limit divided by `instances`, open, or closed); the store's
//! [`crate::store::StoreHealth`] logs the transition once, flags it in metrics and `/health`, and
//! the store's probe switches back when it answers again.

pub mod algorithm;
pub mod headers;
pub mod memory;
pub mod policy;
pub mod postgres;
pub mod redis;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use metrics::Counter;

use crate::observe::metrics as m;
use crate::store::{StoreKind, Stores, now_us};
use algorithm::{Decision, Limit};
use memory::MemoryLimits;
use policy::{FailureMode, KeySource, Policy, RateLimitConfig};

/// One policy's check for one request, as a store receives it.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The policy key ([`policy::Policy::key`]); each store adds its own prefix.
    pub key: &'a str,
    pub limit: Limit,
}

/// Memory state that outlives reloads: the memory store and the shared stores' local fallback.
pub struct LimitState {
    pub memory: Arc<MemoryLimits>,
    pub fallback: Arc<MemoryLimits>,
}

impl LimitState {
    pub fn new(max_keys: usize) -> Self {
        Self {
            memory: Arc::new(MemoryLimits::new(max_keys)),
            fallback: Arc::new(MemoryLimits::new(max_keys)),
        }
    }
}

enum Backend {
    Memory,
    Redis(redis::RedisLimits),
    Postgres(postgres::PostgresLimits),
}

/// The rate limiter of one pipeline.
pub struct RateLimiter {
    backend: Backend,
    state: Arc<LimitState>,
    config: RateLimitConfig,
}

/// A route's policies with their decision counters, built with the router.
pub struct RouteLimits {
    pub policies: Vec<Arc<Policy>>,
    counters: Vec<[Counter; 4]>,
}

const DECISIONS: [&str; 4] = ["allowed", "denied", "fail_open", "fail_closed"];

impl RouteLimits {
    pub fn new(route: &Arc<str>, policies: &[Arc<Policy>]) -> Self {
        let counters = policies
            .iter()
            .map(|p| {
                DECISIONS.map(|decision| {
                    metrics::counter!(m::RATELIMIT_DECISIONS_TOTAL, "route" => route.clone(), "policy" => p.name.clone(), "decision" => decision)
                })
            })
            .collect();
        Self {
            policies: policies.to_vec(),
            counters,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// What stage 8 decided.
pub struct Verdict {
    /// `RateLimit-Policy` and `RateLimit`, for every response of the route.
    pub headers: Option<(HeaderValue, HeaderValue)>,
    pub refusal: Option<Refusal>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A policy's limit is reached (429).
    Limited {
        policy: Arc<str>,
        retry_after_secs: u64,
        block_on_violation: bool,
    },
    /// The store is down and the policy fails closed (503).
    Unavailable { retry_after_secs: u64 },
}

/// What one policy's check came to.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Decided(Decision),
    FailOpen,
    FailClosed,
}

impl RateLimiter {
    /// The limiter for `config`, on the store it names (opened in `stores`).
    pub fn new(config: RateLimitConfig, stores: &Stores, state: Arc<LimitState>) -> Self {
        let backend = match config.store {
            StoreKind::Memory => Backend::Memory,
            StoreKind::Redis => Backend::Redis(redis::RedisLimits::new(
                stores.redis.clone().expect("the redis store is opened"),
            )),
            StoreKind::Postgres => Backend::Postgres(postgres::PostgresLimits::new(
                stores
                    .postgres
                    .clone()
                    .expect("the postgres store is opened"),
            )),
        };
        Self {
            backend,
            state,
            config,
        }
    }

    pub fn store(&self) -> StoreKind {
        self.config.store
    }

    /// Stage 8: checks the route's policies that apply to this request's method.
    pub async fn check(&self, route: &RouteLimits, source: &KeySource<'_>) -> Verdict {
        let applicable: Vec<usize> = (0..route.policies.len())
            .filter(|&i| route.policies[i].applies_to(source.method))
            .collect();
        if applicable.is_empty() {
            return Verdict {
                headers: None,
                refusal: None,
            };
        }
        let keys: Vec<String> = applicable
            .iter()
            .map(|&i| route.policies[i].key(source))
            .collect();
        let checks: Vec<Check<'_>> = applicable
            .iter()
            .zip(&keys)
            .map(|(&i, key)| Check {
                key,
                limit: route.policies[i].limit,
            })
            .collect();
        let policies: Vec<&Arc<Policy>> = applicable.iter().map(|&i| &route.policies[i]).collect();
        let outcomes = self.decide(&policies, &checks).await;

        let mut refusal = None;
        for ((&index, policy), outcome) in applicable.iter().zip(&policies).zip(&outcomes) {
            let counters = &route.counters[index];
            match outcome {
                Outcome::Decided(d) if d.allowed => counters[0].increment(1),
                Outcome::Decided(d) => {
                    counters[1].increment(1);
                    let retry_after_secs = d.retry_after_ms.div_ceil(1000).max(1);
                    let later = match &refusal {
                        Some(Refusal::Limited {
                            retry_after_secs: r,
                            ..
                        }) => retry_after_secs > *r,
                        Some(Refusal::Unavailable { .. }) => false,
                        None => true,
                    };
                    if later {
                        refusal = Some(Refusal::Limited {
                            policy: policy.name.clone(),
                            retry_after_secs,
                            block_on_violation: policy.block_on_violation,
                        });
                    }
                }
                Outcome::FailOpen => counters[2].increment(1),
                Outcome::FailClosed => {
                    counters[3].increment(1);
                    refusal = Some(Refusal::Unavailable {
                        retry_after_secs: self.config.probe_interval.as_secs().max(1),
                    });
                }
            }
        }
        let decided: Vec<(&Policy, Option<Decision>)> = policies
            .iter()
            .zip(&outcomes)
            .map(|(p, o)| {
                (
                    p.as_ref(),
                    match o {
                        Outcome::Decided(d) => Some(*d),
                        _ => None,
                    },
                )
            })
            .collect();
        Verdict {
            headers: Some(headers::render(&decided)),
            refusal,
        }
    }

    /// Asks the store, or the fallback while it fails.
    async fn decide(&self, policies: &[&Arc<Policy>], checks: &[Check<'_>]) -> Vec<Outcome> {
        let (name, health) = match &self.backend {
            Backend::Memory => {
                return self
                    .state
                    .memory
                    .check(checks, now_us())
                    .into_iter()
                    .map(Outcome::Decided)
                    .collect();
            }
            Backend::Redis(redis) => ("redis", &redis.store().health),
            Backend::Postgres(pg) => ("postgres", &pg.store().health),
        };
        if !health.is_degraded() {
            let started = Instant::now();
            let call = async {
                match &self.backend {
                    Backend::Redis(redis) => redis.check(checks, None).await,
                    Backend::Postgres(pg) => pg.check(checks, None).await,
                    Backend::Memory => unreachable!("answered above"),
                }
            };
            let failure = match tokio::time::timeout(self.config.timeout, call).await {
                Ok(Ok(decisions)) => {
                    metrics::histogram!(m::RATELIMIT_STORE_DURATION, "store" => name)
                        .record(started.elapsed().as_secs_f64());
                    return decisions.into_iter().map(Outcome::Decided).collect();
                }
                Ok(Err(error)) => ("error", error),
                Err(_) => (
                    "timeout",
                    format!(
                        "no answer within the {} ms budget",
                        self.config.timeout.as_millis()
                    ),
                ),
            };
            metrics::counter!(m::RATELIMIT_STORE_ERRORS_TOTAL, "store" => name, "kind" => failure.0)
                .increment(1);
            health.mark_failed(&failure.1);
        }
        let now = now_us();
        policies
            .iter()
            .zip(checks)
            .map(|(policy, check)| match policy.on_store_failure {
                FailureMode::Open => Outcome::FailOpen,
                FailureMode::Closed => Outcome::FailClosed,
                FailureMode::Local => {
                    let local = Check {
                        key: check.key,
                        limit: local_share(check.limit, self.config.instances),
                    };
                    Outcome::Decided(self.state.fallback.check_one(&local, now))
                }
            })
            .collect()
    }

    /// The current state of `key` under `policy` without counting (admin).
    pub async fn peek(&self, policy: &Policy, key: &str) -> Result<Decision, String> {
        let check = [Check {
            key,
            limit: policy.limit.with_cost(0),
        }];
        let decisions = match &self.backend {
            Backend::Memory => Ok(self.state.memory.check(&check, now_us())),
            Backend::Redis(redis) => redis.check(&check, None).await,
            Backend::Postgres(pg) => pg.check(&check, None).await,
        }?;
        decisions
            .into_iter()
            .next()
            .ok_or_else(|| "the store returned no decision".to_owned())
    }

    /// Forgets `key` in the store and in the local fallback (admin).
    pub async fn reset(&self, key: &str) -> Result<bool, String> {
        let now = now_us();
        let local = self.state.fallback.reset(key, now);
        let stored = match &self.backend {
            Backend::Memory => Ok(self.state.memory.reset(key, now)),
            Backend::Redis(redis) => redis.reset(key).await,
            Backend::Postgres(pg) => pg.reset(key).await,
        }?;
        Ok(stored || local)
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        self.config.policies.iter().find(|p| &*p.name == name)
    }
}

/// This instance's share of a limit while the shared store is down.
fn local_share(limit: Limit, instances: u64) -> Limit {
    let instances = instances.max(1);
    Limit {
        limit: (limit.limit / instances).max(1),
        burst: (limit.burst / instances).max(1),
        cost: limit.cost.min((limit.limit / instances).max(1)),
        ..limit
    }
}
