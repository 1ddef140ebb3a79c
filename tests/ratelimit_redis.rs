//! The Redis rate-limit and blocklist stores against real servers: the script's arithmetic
//! against the reference functions in `ratelimit::algorithm` (fixed cases and a property test),
//! several instances counting one key concurrently, an outage and recovery of a server this test
//! starts itself, a three-node Redis Cluster, and the shared blocklist.
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`) with a fresh key prefix per
//! test, so tests run in parallel; the outage and cluster tests start their own `redis-server`
//! processes on free ports and kill them when they end.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart::ratelimit::Check;
use rampart::ratelimit::algorithm::{
    Algorithm, Decision, Limit, Sliding, sliding_window, token_bucket, ttl_ms,
};
use rampart::ratelimit::redis::RedisLimits;
use rampart::security::blocklist::BlockingSettings;
use rampart::security::blocklist::redis::RedisBlocks;
use rampart::store::redis::{RedisSettings, RedisStore};

// ---------------------------------------------------------------------------------------------
// Helpers

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    format!("rampart-test:{}:", uuid::Uuid::new_v4().simple())
}

fn settings(url: &str, prefix: &str) -> RedisSettings {
    RedisSettings {
        url: url.into(),
        cluster: false,
        cluster_urls: Vec::new(),
        connect_timeout: Duration::from_millis(500),
        key_prefix: prefix.into(),
    }
}

async fn open(url: &str, prefix: &str) -> Arc<RedisStore> {
    Arc::new(RedisStore::open(&settings(url, prefix)).await.unwrap())
}

/// A plain connection for looking at (and adjusting) what the scripts wrote.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key under `prefix` (some have no expiry: the blocks, keys a test persisted).
async fn forget(url: &str, prefix: &str) {
    let mut con = raw(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .unwrap();
    }
}

fn sliding(limit: u64, window_ms: u64) -> Limit {
    Limit {
        algorithm: Algorithm::SlidingWindow,
        limit,
        window_ms,
        burst: limit,
        cost: 1,
    }
}

fn bucket(limit: u64, window_ms: u64, burst: u64) -> Limit {
    Limit {
        algorithm: Algorithm::TokenBucket,
        limit,
        window_ms,
        burst,
        cost: 1,
    }
}

/// The reference store: the pure functions plus "write only when admitted with a cost".
#[derive(Default)]
struct Model {
    sliding: HashMap<String, Sliding>,
    tat: HashMap<String, u64>,
}

impl Model {
    /// The decision and, when the store writes, the expected TTL in ms.
    fn check(&mut self, key: &str, limit: &Limit, now_us: u64) -> (Decision, Option<u64>) {
        match limit.algorithm {
            Algorithm::SlidingWindow => {
                let old = self.sliding.get(key).copied();
                let (state, decision) = sliding_window(old, limit, now_us / 1000);
                if decision.allowed && limit.cost > 0 {
                    self.sliding.insert(key.into(), state);
                    (decision, Some(ttl_ms(limit, Some(&state), None, now_us)))
                } else {
                    (decision, None)
                }
            }
            Algorithm::TokenBucket => {
                let old = self.tat.get(key).copied();
                let (tat, decision) = token_bucket(old, limit, now_us);
                if decision.allowed && limit.cost > 0 {
                    self.tat.insert(key.into(), tat);
                    (decision, Some(ttl_ms(limit, None, Some(tat), now_us)))
                } else {
                    (decision, None)
                }
            }
        }
    }
}

/// 2027-01-15 (roughly), aligned to nothing in particular.
const T0_US: u64 = 1_800_000_000_123_456;

/// A `redis-server` child process, killed (and waited for) on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(port: u16, extra: &[&str], dir: &Path) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// The arithmetic, exactly

#[tokio::test]
async fn sliding_window_is_exact_at_the_boundary() {
    let url = redis_url();
    let limits = RedisLimits::new(open(&url, &unique_prefix()).await);
    let limit = sliding(5, 60_000);
    let start_ms = T0_US / 1000 - (T0_US / 1000) % 60_000 + 60_000;
    let t = |ms: u64| start_ms * 1000 + ms * 1000;
    let mut model = Model::default();
    let check = [Check {
        key: "api|ip=1.2.3.4",
        limit,
    }];

    for i in 0..5 {
        let d = limits.check(&check, Some(t(i * 10))).await.unwrap();
        assert!(d[0].allowed, "request {i}");
        assert_eq!(d[0].remaining, 4 - i);
        assert_eq!(d[0], model.check(check[0].key, &limit, t(i * 10)).0);
    }
    let d = limits.check(&check, Some(t(100))).await.unwrap()[0];
    assert!(!d.allowed, "the sixth is refused");
    assert_eq!(d, model.check(check[0].key, &limit, t(100)).0);
    assert_eq!(d.reset_ms, 60_000 - 100);
    // Only the next window helps; there the five weigh in until 1/5 of it has passed.
    assert_eq!(d.retry_after_ms, 60_000 - 100 + 12_000);

    let just_before = t(100 + d.retry_after_ms - 1);
    let refused = limits.check(&check, Some(just_before)).await.unwrap()[0];
    assert!(!refused.allowed);
    assert_eq!(refused, model.check(check[0].key, &limit, just_before).0);
    let at = t(100 + d.retry_after_ms);
    let admitted = limits.check(&check, Some(at)).await.unwrap()[0];
    assert!(admitted.allowed, "capacity returns as the old window fades");
    assert_eq!(admitted, model.check(check[0].key, &limit, at).0);
}

#[tokio::test]
async fn token_bucket_is_exact_at_the_boundary() {
    let url = redis_url();
    let limits = RedisLimits::new(open(&url, &unique_prefix()).await);
    let limit = bucket(5, 900_000, 5);
    let mut model = Model::default();
    let check = [Check {
        key: "login|ip=::1",
        limit,
    }];

    for i in 0..5 {
        let d = limits.check(&check, Some(T0_US)).await.unwrap()[0];
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, 4 - i);
        assert_eq!(d, model.check(check[0].key, &limit, T0_US).0);
    }
    let d = limits.check(&check, Some(T0_US)).await.unwrap()[0];
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ms, 180_000);
    assert_eq!(d.reset_ms, 900_000);
    assert_eq!(d, model.check(check[0].key, &limit, T0_US).0);

    let before = T0_US + 179_999_999;
    let refused = limits.check(&check, Some(before)).await.unwrap()[0];
    assert!(!refused.allowed);
    assert_eq!(refused, model.check(check[0].key, &limit, before).0);
    let at = T0_US + 180_000_000;
    let admitted = limits.check(&check, Some(at)).await.unwrap()[0];
    assert!(admitted.allowed);
    assert_eq!(admitted.remaining, 0);
    assert_eq!(admitted, model.check(check[0].key, &limit, at).0);
}

#[tokio::test]
async fn several_policies_in_one_call_count_independently_and_peeks_write_nothing() {
    let url = redis_url();
    let prefix = unique_prefix();
    let limits = RedisLimits::new(open(&url, &prefix).await);
    let strict = sliding(2, 60_000);
    let loose = bucket(10, 60_000, 10);
    let checks = |cost: u64| {
        [
            Check {
                key: "strict|ip=10.0.0.1",
                limit: strict.with_cost(cost),
            },
            Check {
                key: "loose|ip=10.0.0.1",
                limit: loose.with_cost(cost),
            },
        ]
    };
    let now = Some(T0_US);
    for _ in 0..2 {
        let d = limits.check(&checks(1), now).await.unwrap();
        assert!(d[0].allowed && d[1].allowed);
    }
    // The strict policy refuses; the loose one still counts the request.
    let d = limits.check(&checks(1), now).await.unwrap();
    assert_eq!((d[0].allowed, d[1].allowed), (false, true));
    assert_eq!(d[1].remaining, 7);

    // Peeks: nothing changes, however often.
    let mut con = raw(&url).await;
    let dump = |con: &mut redis::aio::MultiplexedConnection| {
        let strict_key = format!("{prefix}rl:{{strict|ip=10.0.0.1}}");
        let loose_key = format!("{prefix}rl:{{loose|ip=10.0.0.1}}");
        let mut con = con.clone();
        async move {
            let s: Option<String> = redis::cmd("GET")
                .arg(&strict_key)
                .query_async(&mut con)
                .await
                .unwrap();
            let l: Option<String> = redis::cmd("GET")
                .arg(&loose_key)
                .query_async(&mut con)
                .await
                .unwrap();
            (s, l)
        }
    };
    let before = dump(&mut con).await;
    let stored_strict = before.0.clone().unwrap();
    assert!(
        stored_strict.ends_with(":0:2"),
        "start:prev:cur, two counted: {stored_strict}"
    );
    assert!(before.1.is_some());
    for _ in 0..3 {
        let d = limits.check(&checks(0), now).await.unwrap();
        assert!(d[0].allowed, "a peek of cost 0 always fits");
        assert_eq!(d[0].remaining, 0);
        assert_eq!(d[1].remaining, 7);
    }
    assert_eq!(dump(&mut con).await, before);

    // A peek on a key never seen writes nothing either.
    let fresh = [Check {
        key: "fresh|ip=10.0.0.9",
        limit: strict.with_cost(0),
    }];
    assert_eq!(limits.check(&fresh, now).await.unwrap()[0].remaining, 2);
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}rl:{{fresh|ip=10.0.0.9}}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    // Reset forgets a key: the strict policy admits again.
    assert!(limits.reset("strict|ip=10.0.0.1").await.unwrap());
    assert!(!limits.reset("strict|ip=10.0.0.1").await.unwrap());
    let d = limits.check(&checks(1), now).await.unwrap();
    assert!(d[0].allowed);
    assert_eq!(d[0].remaining, 1);
    assert!(limits.check(&[], now).await.unwrap().is_empty());
    forget(&url, &prefix).await;
}

#[tokio::test]
async fn the_server_clock_is_used_without_now_and_keys_expire() {
    let url = redis_url();
    let prefix = unique_prefix();
    let limits = RedisLimits::new(open(&url, &prefix).await);
    let check = [Check {
        key: "clock",
        limit: bucket(10, 1000, 2),
    }];
    let d = limits.check(&check, None).await.unwrap()[0];
    assert!(d.allowed);
    assert_eq!(d.remaining, 1);
    let mut con = raw(&url).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}rl:{{clock}}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (1..=100).contains(&ttl),
        "a TAT 100 ms ahead expires then: {ttl}"
    );
}

/// A policy whose algorithm changes keeps its key: the other algorithm's state reads as none and
/// is replaced, never an error.
#[tokio::test]
async fn a_key_changing_algorithm_starts_afresh() {
    let url = redis_url();
    let prefix = unique_prefix();
    let limits = RedisLimits::new(open(&url, &prefix).await);
    let now = Some(T0_US);
    let as_sliding = [Check {
        key: "switch",
        limit: sliding(3, 60_000),
    }];
    let as_bucket = [Check {
        key: "switch",
        limit: bucket(3, 60_000, 3),
    }];
    for _ in 0..3 {
        assert!(limits.check(&as_sliding, now).await.unwrap()[0].allowed);
    }
    assert!(!limits.check(&as_sliding, now).await.unwrap()[0].allowed);
    // Switched to the bucket: a full bucket, whatever the window had counted.
    let d = limits.check(&as_bucket, now).await.unwrap()[0];
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
    // And back: the window starts from zero.
    let d = limits.check(&as_sliding, now).await.unwrap()[0];
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
    // A value of another type (an older format, a stray write) is replaced too.
    let mut con = raw(&url).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}rl:{{switch}}"))
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}rl:{{switch}}"))
        .arg("start")
        .arg("1")
        .query_async(&mut con)
        .await
        .unwrap();
    let d = limits.check(&as_bucket, now).await.unwrap()[0];
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
}

/// What the script left under a key, in the model's terms, and its TTL in ms (-2: no key).
type Stored = (Option<Sliding>, Option<u64>, i64);

/// Whatever the script stored under each of `keys`, read and made persistent in one transaction
/// right after the check, so that real time passing between steps cannot expire what simulated
/// time keeps (expiry never changes a decision: the algorithms ignore state that old).
async fn stored_all(con: &mut redis::aio::MultiplexedConnection, keys: &[String]) -> Vec<Stored> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in keys {
        pipe.cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .cmd("PERSIST")
            .arg(key)
            .ignore();
    }
    let replies: Vec<(Option<String>, i64)> = pipe.query_async(con).await.unwrap();
    replies
        .into_iter()
        .map(|(value, ttl)| {
            let parts: Option<Vec<u64>> = value
                .as_deref()
                .map(|v| v.split(':').map(|n| n.parse().unwrap()).collect());
            match parts.as_deref() {
                Some([start_ms, prev, cur]) => {
                    let s = Sliding {
                        start_ms: *start_ms,
                        prev: *prev,
                        cur: *cur,
                    };
                    (Some(s), None, ttl)
                }
                Some([tat]) => (None, Some(*tat), ttl),
                _ => (None, None, ttl),
            }
        })
        .collect()
}

/// [`stored_all`] for one key.
async fn stored(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Stored {
    stored_all(con, &[key.to_owned()]).await.remove(0)
}

/// Writes the model's state for `key` back, without expiry, as the script had written it before
/// Redis expired it in real time.
async fn restore(
    con: &mut redis::aio::MultiplexedConnection,
    redis_key: &str,
    model: &Model,
    key: &str,
) {
    let value = match (model.sliding.get(key), model.tat.get(key)) {
        (Some(s), _) => format!("{}:{}:{}", s.start_ms, s.prev, s.cur),
        (None, Some(tat)) => tat.to_string(),
        (None, None) => return,
    };
    let _: () = redis::cmd("SET")
        .arg(redis_key)
        .arg(value)
        .query_async(con)
        .await
        .unwrap();
}

fn limit_strategy() -> impl Strategy<Value = Limit> {
    (
        prop_oneof![Just(Algorithm::SlidingWindow), Just(Algorithm::TokenBucket)],
        1..=20u64,
        prop_oneof![Just(1000u64), Just(1500), Just(60_000), 1..5_000u64],
        1..=30u64,
    )
        .prop_map(|(algorithm, limit, window_ms, burst)| Limit {
            algorithm,
            limit,
            window_ms,
            burst,
            cost: 1,
        })
}

fn step_strategy() -> impl Strategy<Value = (u64, [u64; 3])> {
    (
        prop_oneof![Just(0u64), 0..5_000u64, 0..2_000_000u64, 0..120_000_000u64],
        prop::array::uniform3(prop_oneof![Just(1u64), Just(1), Just(0), 0..=4u64]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random policies and request sequences give the reference's decisions, state and expiry.
    #[test]
    fn the_script_matches_the_reference(
        limits in prop::collection::vec(limit_strategy(), 1..=3),
        offset in 0..1_000_000_000u64,
        steps in prop::collection::vec(step_strategy(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let url = redis_url();
            let prefix = unique_prefix();
            let store = RedisLimits::new(open(&url, &prefix).await);
            let mut con = raw(&url).await;
            let keys: Vec<String> = (0..limits.len()).map(|i| format!("p{i}|ip=192.0.2.{i}")).collect();
            let redis_keys: Vec<String> = keys.iter().map(|k| format!("{prefix}rl:{{{k}}}")).collect();
            let mut model = Model::default();
            let mut now = T0_US + offset;
            for (dt, costs) in &steps {
                now += dt;
                let checks: Vec<Check<'_>> = keys
                    .iter()
                    .zip(&limits)
                    .zip(costs)
                    .map(|((key, limit), &cost)| Check { key, limit: limit.with_cost(cost) })
                    .collect();
                let started = Instant::now();
                let got = store.check(&checks, Some(now)).await.unwrap();
                let states = stored_all(&mut con, &redis_keys).await;
                let real_time = started.elapsed();
                for ((check, got), ((s, tat, pttl), redis_key)) in
                    checks.iter().zip(&got).zip(states.into_iter().zip(&redis_keys))
                {
                    let (want, ttl) = model.check(check.key, &check.limit, now);
                    prop_assert_eq!(*got, want, "{:?} at {}", check.limit, now);
                    if let Some(ttl) = ttl
                        && pttl == -2
                        && real_time + Duration::from_millis(1) >= Duration::from_millis(ttl)
                    {
                        // A TTL of a few ms ran out in real time before the state was read (a
                        // busy machine): put back what the script wrote, as simulated time keeps it.
                        restore(&mut con, redis_key, &model, check.key).await;
                        continue;
                    }
                    match check.limit.algorithm {
                        Algorithm::SlidingWindow => prop_assert_eq!(s, model.sliding.get(check.key).copied()),
                        Algorithm::TokenBucket => prop_assert_eq!(tat, model.tat.get(check.key).copied()),
                    }
                    if let Some(ttl) = ttl {
                        // Set just now by the script: at most the reference's TTL, and not long ago.
                        let ttl = ttl as i64;
                        prop_assert!(pttl <= ttl && pttl >= ttl - 1000, "PTTL {} for TTL {}", pttl, ttl);
                    }
                }
            }
            forget(&url, &prefix).await;
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Near the config's cap (limit × window < 2^53) the doubles in Lua must still give the exact
    /// integers: stored states with large counts, checked once against the reference.
    #[test]
    fn large_numbers_stay_exact(
        log_limit in 20..=40u32,
        limit_frac in 0.5..1.0f64,
        prev_frac in 0.0..1.0f64,
        cur_frac in 0.0..1.0f64,
        cost_frac in 0.0..0.3f64,
        into in 0.0..1.0f64,
        tat_frac in 0.0..1.2f64,
    ) {
        let limit = ((1u64 << log_limit) as f64 * limit_frac) as u64 + 1;
        // The largest window the cap allows for this limit, at most a day.
        let window_ms = (((1u64 << 53) - 1) / limit).min(86_400_000);
        let prev = (limit as f64 * prev_frac) as u64;
        let cur = (limit as f64 * cur_frac) as u64;
        let cost = (limit as f64 * cost_frac) as u64;
        let now_ms = T0_US / 1000;
        let start = now_ms - now_ms % window_ms;
        let now_ms = start + (window_ms as f64 * into) as u64;
        let now_us = now_ms * 1000 + 999;
        let sliding_limit = Limit { cost, ..sliding(limit, window_ms) };
        let bucket_limit = Limit { cost, ..bucket(limit, window_ms, limit) };
        let state = Sliding { start_ms: start, prev, cur };
        let tolerance = bucket_limit.burst * bucket_limit.interval_us();
        let tat = now_us + (tolerance as f64 * tat_frac) as u64;

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let url = redis_url();
            let prefix = unique_prefix();
            let store = RedisLimits::new(open(&url, &prefix).await);
            let mut con = raw(&url).await;
            let _: () = redis::cmd("SET")
                .arg(format!("{prefix}rl:{{s}}"))
                .arg(format!("{start}:{prev}:{cur}"))
                .query_async(&mut con)
                .await
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("{prefix}rl:{{t}}"))
                .arg(tat.to_string())
                .query_async(&mut con)
                .await
                .unwrap();
            let checks = [
                Check { key: "s", limit: sliding_limit },
                Check { key: "t", limit: bucket_limit },
            ];
            let got = store.check(&checks, Some(now_us)).await.unwrap();
            let (new_state, want) = sliding_window(Some(state), &sliding_limit, now_ms);
            prop_assert_eq!(got[0], want);
            let (new_tat, want) = token_bucket(Some(tat), &bucket_limit, now_us);
            prop_assert_eq!(got[1], want);
            let (s, _, _) = stored(&mut con, &format!("{prefix}rl:{{s}}")).await;
            let (_, t, _) = stored(&mut con, &format!("{prefix}rl:{{t}}")).await;
            prop_assert_eq!(s, Some(new_state));
            prop_assert_eq!(t, Some(new_tat));
            forget(&url, &prefix).await;
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// Shared counting

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_admit_exactly_the_limit_together() {
    let url = redis_url();
    let prefix = unique_prefix();
    let instances = [
        Arc::new(RedisLimits::new(open(&url, &prefix).await)),
        Arc::new(RedisLimits::new(open(&url, &prefix).await)),
        Arc::new(RedisLimits::new(open(&url, &prefix).await)),
    ];
    for (limit, key) in [
        (sliding(25, 3_600_000), "hot-sliding"),
        (bucket(25, 3_600_000, 25), "hot-bucket"),
    ] {
        let mut tasks = Vec::new();
        for instance in &instances {
            for _ in 0..40 {
                let instance = instance.clone();
                tasks.push(tokio::spawn(async move {
                    let d = instance.check(&[Check { key, limit }], None).await.unwrap();
                    d[0].allowed
                }));
            }
        }
        let mut admitted = 0;
        for task in tasks {
            admitted += u64::from(task.await.unwrap());
        }
        assert_eq!(admitted, 25, "{key}: 120 tries against a limit of 25");
    }
    forget(&url, &prefix).await;
}

// ---------------------------------------------------------------------------------------------
// Outage and recovery

async fn check_one(limits: &RedisLimits) -> Result<Decision, String> {
    let check = [Check {
        key: "outage",
        limit: sliding(1000, 60_000),
    }];
    limits.check(&check, None).await.map(|d| d[0])
}

/// Retries `check_one` until it works (the manager reconnects on its own), within 10 s.
async fn until_it_works(limits: &RedisLimits) -> Decision {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check_one(limits).await {
            Ok(d) => return d,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fails_fast(limits: &RedisLimits) {
    for _ in 0..3 {
        let started = Instant::now();
        let result = check_one(limits).await;
        assert!(result.is_err(), "the server is down: {result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a call took {:?} to fail",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_outage_fails_fast_and_recovers_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let store = open(&url, &unique_prefix()).await;
    let limits = RedisLimits::new(store.clone());

    // Down from the start: opening worked, calls fail quickly.
    fails_fast(&limits).await;
    assert!(store.ping().await.is_err());

    let mut server = Server::start(port, &[], dir.path());
    assert_eq!(until_it_works(&limits).await.remaining, 999);
    assert!(store.ping().await.is_ok());

    // Killed while connected, then back (empty: it kept nothing).
    server.stop();
    fails_fast(&limits).await;
    let _server = Server::start(port, &[], dir.path());
    assert_eq!(until_it_works(&limits).await.remaining, 999);
    assert_eq!(check_one(&limits).await.unwrap().remaining, 998);
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster

struct Cluster {
    nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(ports: [u16; 3]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for port in ports {
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let conf = conf.to_str().unwrap().to_owned();
            nodes.push(Server::start(
                port,
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf],
                dir.path(),
            ));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli on PATH");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { nodes, _dir: dir }
    }

    /// `CLUSTER KEYSLOT key`.
    fn slot(&self, key: &str) -> u16 {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.nodes[0].port.to_string(),
                "cluster",
                "keyslot",
                key,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_counts_keys_in_different_slots_in_one_request() {
    let ports = [free_port(), free_port(), free_port()];
    let prefix = unique_prefix();
    let url = |port: u16| format!("redis://127.0.0.1:{port}");
    let mut settings = settings(&url(ports[0]), &prefix);
    settings.cluster = true;
    settings.cluster_urls = ports[1..].iter().map(|&p| url(p)).collect();
    // Opened before the cluster exists: calls fail quickly, then work once it is up.
    let store = Arc::new(RedisStore::open(&settings).await.unwrap());
    let limits = RedisLimits::new(store.clone());
    fails_fast(&limits).await;
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(ports))
        .await
        .unwrap();

    // Policy keys whose slots fall on each of the three masters.
    let mut keys: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let key = format!("policy{i}|ip=198.51.100.7");
        // `redis-cli --cluster create` gives the three masters 0–5460, 5461–10922, 10923–16383.
        let third = match cluster.slot(&format!("{prefix}rl:{{{key}}}")) {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        if keys[third].is_none() {
            keys[third] = Some(key);
        }
        if keys.iter().all(Option::is_some) {
            break;
        }
    }
    let keys: Vec<String> = keys.into_iter().flatten().collect();
    // Two policies in one slot too: a group of more than one check.
    let same_slot = format!("{}|other", keys[0]);
    let limit = sliding(3, 60_000);
    let mut checks: Vec<Check<'_>> = keys.iter().map(|key| Check { key, limit }).collect();
    checks.push(Check {
        key: &same_slot,
        limit: bucket(3, 60_000, 3),
    });

    let started = Instant::now();
    let mut model = Model::default();
    for round in 0..4u64 {
        let now = T0_US + round;
        let got = loop {
            // The connection may still be learning the slots at first.
            match limits.check(&checks, Some(now)).await {
                Ok(got) => break got,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(20), "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        for (check, got) in checks.iter().zip(&got) {
            assert_eq!(*got, model.check(check.key, &check.limit, now).0);
            assert_eq!(got.allowed, round < 3, "round {round}");
        }
    }
    assert!(store.ping().await.is_ok());
    assert!(limits.reset(&keys[1]).await.unwrap());

    // The blocklist on a cluster: its keys share one slot.
    let blocks = RedisBlocks::new(store);
    let ip: IpAddr = "203.0.113.5".parse().unwrap();
    let settings = blocking(2, Duration::from_secs(60));
    assert_eq!(blocks.record_violation(ip, &settings).await.unwrap(), None);
    assert_eq!(
        blocks.record_violation(ip, &settings).await.unwrap(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(blocks.list().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The blocklist

fn blocking(threshold: u32, duration: Duration) -> BlockingSettings {
    BlockingSettings {
        threshold,
        window: Duration::from_secs(60),
        duration,
        ..BlockingSettings::default()
    }
}

#[tokio::test]
async fn violations_block_and_every_instance_sees_it() {
    let url = redis_url();
    let prefix = unique_prefix();
    let a = RedisBlocks::new(open(&url, &prefix).await);
    let b = RedisBlocks::new(open(&url, &prefix).await);
    let ip: IpAddr = "2001:db8::7".parse().unwrap();
    let other: IpAddr = "192.0.2.44".parse().unwrap();
    let settings = blocking(3, Duration::from_secs(600));

    assert_eq!(a.record_violation(ip, &settings).await.unwrap(), None);
    assert_eq!(b.record_violation(ip, &settings).await.unwrap(), None);
    assert_eq!(b.record_violation(other, &settings).await.unwrap(), None);
    assert!(a.list().await.unwrap().is_empty());
    assert_eq!(
        a.record_violation(ip, &settings).await.unwrap(),
        Some(Duration::from_secs(600)),
        "the third violation, counted across instances, blocks"
    );
    for instance in [&a, &b] {
        let list = instance.list().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].0, ip);
        assert!(list[0].1 <= Duration::from_secs(600) && list[0].1 > Duration::from_secs(590));
    }
    // Blocked: further violations are not counted (and do not extend the block).
    assert_eq!(b.record_violation(ip, &settings).await.unwrap(), None);

    assert!(b.unblock(ip).await.unwrap());
    assert!(!b.unblock(ip).await.unwrap(), "nothing left to lift");
    assert!(a.list().await.unwrap().is_empty());
    assert!(!a.unblock(other).await.unwrap(), "counted but not blocked");
    // The count started again with the block.
    assert_eq!(a.record_violation(ip, &settings).await.unwrap(), None);
    assert_eq!(a.record_violation(ip, &settings).await.unwrap(), None);
    assert!(a.record_violation(ip, &settings).await.unwrap().is_some());
    forget(&url, &prefix).await;
}

#[tokio::test]
async fn violations_during_a_block_are_not_counted_and_blocks_expire() {
    let url = redis_url();
    let prefix = unique_prefix();
    let blocks = RedisBlocks::new(open(&url, &prefix).await);
    let ip: IpAddr = "198.51.100.20".parse().unwrap();
    let settings = blocking(3, Duration::from_millis(700));
    for _ in 0..2 {
        assert_eq!(blocks.record_violation(ip, &settings).await.unwrap(), None);
    }
    assert!(
        blocks
            .record_violation(ip, &settings)
            .await
            .unwrap()
            .is_some()
    );
    // Two violations while blocked: were they counted, the next two would block again.
    for _ in 0..2 {
        assert_eq!(blocks.record_violation(ip, &settings).await.unwrap(), None);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(blocks.list().await.unwrap().is_empty(), "the block expired");
    for _ in 0..2 {
        assert_eq!(blocks.record_violation(ip, &settings).await.unwrap(), None);
    }
    assert!(
        blocks
            .record_violation(ip, &settings)
            .await
            .unwrap()
            .is_some()
    );
    forget(&url, &prefix).await;
}
