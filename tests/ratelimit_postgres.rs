//! The PostgreSQL store against a real server (127.0.0.1:5432, or `DATABASE_URL`): migrations,
//! both algorithms against the reference functions (exact cases and a property test), several
//! instances at once, peeks, resets, the cleanup job, a database that is down, and the
//! blocklist. Each test works in a database of its own, created here and dropped at the end.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart::ratelimit::Check;
use rampart::ratelimit::algorithm::{self, Algorithm, Decision, Limit, Sliding};
use rampart::ratelimit::postgres::PostgresLimits;
use rampart::security::blocklist::BlockingSettings;
use rampart::security::blocklist::postgres::PostgresBlocks;
use rampart::store::postgres::{PostgresSettings, PostgresStore};
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row};

/// A database of this test's own; dropped (connections and all) when the guard goes.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Self {
        let db = Self::reserve().await;
        db.create_database().await;
        db
    }

    /// A name (and the guard that drops it) without the database yet.
    async fn reserve() -> Self {
        let admin_url = admin_url().await;
        let name = format!("rampart_t_{}", uuid::Uuid::new_v4().simple());
        let base = admin_url.split('?').next().unwrap();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn create_database(&self) {
        let admin = PgPool::connect(&self.admin_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {}", self.name)))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }

    fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            url: self.url.clone(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(3600),
            synchronous_commit: "off".into(),
        }
    }

    async fn store(&self) -> Arc<PostgresStore> {
        Arc::new(PostgresStore::open(&self.settings()).await.unwrap())
    }

    /// A plain pool on the test database, to look at the tables directly.
    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async: a runtime of its own, on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = PgPool::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop the test database {}", self.name);
        }
    }
}

/// `DATABASE_URL` if set, else the `test` database as `postgres`, else as `root`.
async fn admin_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return url;
    }
    for user in ["postgres", "root"] {
        let url = format!("postgres://{user}@127.0.0.1:5432/test");
        if let Ok(pool) = PgPool::connect(&url).await {
            pool.close().await;
            return url;
        }
    }
    panic!("no PostgreSQL at 127.0.0.1:5432 (set DATABASE_URL)");
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

async fn check_one(limits: &PostgresLimits, key: &str, limit: Limit, now_us: u64) -> Decision {
    limits
        .check(&[Check { key, limit }], Some(now_us))
        .await
        .unwrap()[0]
}

/// A key's state as the reference functions see it.
#[derive(Default, Clone, Copy)]
struct Model {
    sliding: Option<Sliding>,
    tat: Option<u64>,
}

impl Model {
    fn check(&mut self, limit: &Limit, now_us: u64) -> Decision {
        match limit.algorithm {
            Algorithm::SlidingWindow => {
                let (state, decision) =
                    algorithm::sliding_window(self.sliding, limit, now_us / 1000);
                if limit.cost > 0 {
                    self.sliding = Some(state);
                }
                decision
            }
            Algorithm::TokenBucket => {
                let (tat, decision) = algorithm::token_bucket(self.tat, limit, now_us);
                if limit.cost > 0 {
                    self.tat = Some(tat);
                }
                decision
            }
        }
    }
}

async fn table_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'rampart_%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_on_open_and_again_change_nothing() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    assert!(table_names(&pool).await.is_empty());
    let first = db.store().await;
    assert_eq!(
        table_names(&pool).await,
        [
            "rampart_block_violations",
            "rampart_blocks",
            "rampart_rate_limits"
        ]
    );
    // Again, and from several instances at once: no error, still one applied migration.
    let (a, b) = tokio::join!(db.store(), db.store());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files);
    let indexed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%(expires_at)%' \
         AND tablename = 'rampart_rate_limits'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(indexed, 1);
    assert!(first.ping().await.is_ok() && a.ping().await.is_ok() && b.ping().await.is_ok());
    pool.close().await;
}

#[tokio::test]
async fn migrations_run_on_first_use_when_the_database_was_missing_at_open() {
    let db = TestDb::reserve().await;
    // The database does not exist yet: open succeeds, every use fails.
    let store = db.store().await;
    let limits = PostgresLimits::new(store.clone());
    let check = [Check {
        key: "k",
        limit: sliding(1, 1000),
    }];
    assert!(limits.check(&check, None).await.is_err());
    db.create_database().await;
    // Now it answers: the first use migrates, then counts.
    let d = limits.check(&check, None).await.unwrap();
    assert!(d[0].allowed);
    assert!(!limits.check(&check, None).await.unwrap()[0].allowed);
    let pool = db.pool().await;
    assert_eq!(table_names(&pool).await.len(), 3);
    pool.close().await;
}

#[tokio::test]
async fn sliding_window_is_exact_at_the_boundary() {
    let db = TestDb::create().await;
    let limits = PostgresLimits::new(db.store().await);
    let limit = sliding(5, 1000);
    let t0_ms: u64 = 1_800_000_000_000;
    let mut model = Model::default();
    let at = |ms: u64| ms * 1000;
    for i in 0..5 {
        let d = check_one(&limits, "sw", limit, at(t0_ms + 100 + i)).await;
        assert_eq!(d, model.check(&limit, at(t0_ms + 100 + i)));
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, 4 - i);
        assert_eq!(d.reset_ms, 900 - i);
    }
    let d = check_one(&limits, "sw", limit, at(t0_ms + 200)).await;
    assert_eq!(d, model.check(&limit, at(t0_ms + 200)));
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    // Only the next window helps, once the previous five weigh four.
    assert_eq!(d.retry_after_ms, 800 + 200);
    // A refusal counted nothing: one millisecond before, still refused; at, admitted.
    let before = at(t0_ms + 200 + d.retry_after_ms - 1);
    let d2 = check_one(&limits, "sw", limit, before).await;
    assert_eq!(d2, model.check(&limit, before));
    assert!(!d2.allowed);
    let then = at(t0_ms + 200 + d.retry_after_ms);
    let d3 = check_one(&limits, "sw", limit, then).await;
    assert_eq!(d3, model.check(&limit, then));
    assert!(d3.allowed);
    // Two windows later the state no longer counts.
    let later = at(t0_ms + 3000);
    let d4 = check_one(&limits, "sw", limit, later).await;
    assert_eq!(d4, model.check(&limit, later));
    assert_eq!(d4.remaining, 4);
}

#[tokio::test]
async fn token_bucket_is_exact_at_the_boundary() {
    let db = TestDb::create().await;
    let limits = PostgresLimits::new(db.store().await);
    let limit = bucket(5, 1000, 3);
    let now: u64 = 1_800_000_000_000_000;
    let mut model = Model::default();
    for i in 0..3 {
        let d = check_one(&limits, "tb", limit, now).await;
        assert_eq!(d, model.check(&limit, now));
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, 2 - i);
        assert_eq!(d.reset_ms, 200 * (i + 1));
    }
    let d = check_one(&limits, "tb", limit, now).await;
    assert_eq!(d, model.check(&limit, now));
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ms, 200);
    let d = check_one(&limits, "tb", limit, now + 199_999).await;
    assert_eq!(d, model.check(&limit, now + 199_999));
    assert!(!d.allowed);
    let d = check_one(&limits, "tb", limit, now + 200_000).await;
    assert_eq!(d, model.check(&limit, now + 200_000));
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    // A full bucket after burst × interval.
    let full = now + 200_000 + 600_000;
    let d = check_one(&limits, "tb", limit, full).await;
    assert_eq!(d, model.check(&limit, full));
    assert_eq!(d.remaining, 2);
}

#[tokio::test]
async fn a_keys_clock_does_not_go_backwards() {
    // A statement that read the clock before waiting for a row written meanwhile uses the
    // row's (later) time: here, an earlier now_us after a later one.
    let db = TestDb::create().await;
    let limits = PostgresLimits::new(db.store().await);
    let limit = sliding(1, 1000);
    let t_ms: u64 = 1_800_000_001_500;
    assert!(
        check_one(&limits, "clock", limit, t_ms * 1000)
            .await
            .allowed
    );
    // At 600 ms earlier (the previous window) the reference alone would start afresh and admit.
    assert!(
        algorithm::sliding_window(
            Some(Sliding {
                start_ms: t_ms - 500,
                prev: 0,
                cur: 1
            }),
            &limit,
            t_ms - 600
        )
        .1
        .allowed
    );
    let d = check_one(&limits, "clock", limit, (t_ms - 600) * 1000).await;
    assert!(!d.allowed);
    assert_eq!(d.reset_ms, 500, "computed at the later time");
}

fn limit_strategy() -> impl Strategy<Value = Limit> {
    (any::<bool>(), 1u64..12, 1u64..3000, 1u64..15).prop_map(|(sw, limit, window_ms, burst)| {
        Limit {
            algorithm: if sw {
                Algorithm::SlidingWindow
            } else {
                Algorithm::TokenBucket
            },
            limit,
            window_ms,
            burst,
            cost: 1,
        }
    })
}

#[test]
fn sql_matches_the_reference_on_random_sequences() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (db, limits) = runtime.block_on(async {
        let db = TestDb::create().await;
        let limits = PostgresLimits::new(db.store().await);
        (db, limits)
    });
    let case = std::cell::Cell::new(0u32);
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        limits_of in proptest::collection::vec(limit_strategy(), 1..4),
        start_us in 1_700_000_000_000_000u64..1_700_100_000_000_000,
        steps in proptest::collection::vec(
            (0u64..1_500_000, proptest::collection::vec(0u64..4, 3)), 1..30),
    )| {
        case.set(case.get() + 1);
        let n = case.get();
        let keys: Vec<String> = (0..limits_of.len()).map(|i| format!("case{n}:{i}")).collect();
        let mut models = vec![Model::default(); limits_of.len()];
        let mut now = start_us;
        for (step, costs) in &steps {
            now += step;
            let checks: Vec<Check<'_>> = keys
                .iter()
                .zip(&limits_of)
                .zip(costs)
                .map(|((key, limit), &cost)| Check { key, limit: limit.with_cost(cost) })
                .collect();
            let got = runtime.block_on(limits.check(&checks, Some(now))).unwrap();
            let want: Vec<Decision> = checks
                .iter()
                .zip(models.iter_mut())
                .map(|(c, model)| model.check(&c.limit, now))
                .collect();
            prop_assert_eq!(got, want, "at {} µs", now);
        }
    });
    drop(limits);
    drop(db);
}

#[tokio::test]
async fn three_instances_admit_exactly_the_limit() {
    let db = TestDb::create().await;
    let instances: Vec<_> = futures_util::future::join_all((0..3).map(|_| db.store()))
        .await
        .into_iter()
        .map(|store| Arc::new(PostgresLimits::new(store)))
        .collect();
    // Sliding window at a fixed time (no window boundary in the middle); token bucket on the
    // database clock, with a day per refill so none comes back during the test.
    let now = Some(1_800_000_000_000_500);
    for (key, limit, now) in [
        ("shared-sw", sliding(50, 60_000), now),
        ("shared-tb", bucket(1, 86_400_000, 50), None),
    ] {
        let mut tasks = Vec::new();
        for limits in &instances {
            for _ in 0..25 {
                let limits = limits.clone();
                tasks.push(tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..4 {
                        let d = limits.check(&[Check { key, limit }], now).await.unwrap();
                        admitted += u32::from(d[0].allowed);
                    }
                    admitted
                }));
            }
        }
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert_eq!(admitted, 50, "{key}: 300 attempts");
    }
}

#[tokio::test]
async fn concurrent_multi_key_checks_do_not_deadlock() {
    let db = TestDb::create().await;
    let a = Arc::new(PostgresLimits::new(db.store().await));
    let b = Arc::new(PostgresLimits::new(db.store().await));
    let limit = sliding(1_000, 60_000);
    let now = Some(1_800_000_000_000_500);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let limits = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            // Opposite orders in the call; the statement locks in key order.
            let keys = if i % 2 == 0 {
                ["x", "y", "z"]
            } else {
                ["z", "y", "x"]
            };
            for _ in 0..5 {
                let checks: Vec<_> = keys.iter().map(|key| Check { key, limit }).collect();
                let d = limits.check(&checks, now).await.unwrap();
                assert!(d.iter().all(|d| d.allowed));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let d = a
        .check(
            &[Check {
                key: "x",
                limit: limit.with_cost(0),
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(d[0].remaining, 1_000 - 200);
}

async fn row(pool: &PgPool, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT t::text FROM rampart_rate_limits t WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn policies_count_independently_peeks_change_nothing_and_reset_forgets() {
    let db = TestDb::create().await;
    let limits = PostgresLimits::new(db.store().await);
    let pool = db.pool().await;
    let now = 1_800_000_000_000_000u64;
    let strict = sliding(1, 60_000);
    let loose = bucket(10, 60_000, 10);
    let both = |now| {
        let checks = [
            Check {
                key: "ip:1",
                limit: loose,
            },
            Check {
                key: "user:1",
                limit: strict,
            },
        ];
        let limits = &limits;
        async move { limits.check(&checks, Some(now)).await.unwrap() }
    };
    let first = both(now).await;
    assert!(first[0].allowed && first[1].allowed);
    assert_eq!((first[0].remaining, first[1].remaining), (9, 0));
    let second = both(now + 1000).await;
    assert!(second[0].allowed, "the loose policy admits and counts");
    assert!(!second[1].allowed);
    assert_eq!(second[0].remaining, 8);

    // A peek writes nothing, on an existing key or a new one.
    let before = row(&pool, "ip:1").await.unwrap();
    let peek = limits
        .check(
            &[
                Check {
                    key: "ip:1",
                    limit: loose.with_cost(0),
                },
                Check {
                    key: "nobody",
                    limit: strict.with_cost(0),
                },
            ],
            Some(now + 5_000_000),
        )
        .await
        .unwrap();
    let mut model = Model {
        tat: Some(now + 2 * 6_000_000),
        ..Model::default()
    };
    assert_eq!(peek[0], model.check(&loose.with_cost(0), now + 5_000_000));
    assert_eq!(peek[1].remaining, 1);
    assert_eq!(row(&pool, "ip:1").await.unwrap(), before);
    assert_eq!(row(&pool, "nobody").await, None);

    // The same key twice in one call: the second sees the first.
    let twice = limits
        .check(
            &[
                Check {
                    key: "dup",
                    limit: strict,
                },
                Check {
                    key: "other",
                    limit: strict,
                },
                Check {
                    key: "dup",
                    limit: strict,
                },
            ],
            Some(now),
        )
        .await
        .unwrap();
    assert_eq!(
        twice.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, true, false]
    );

    assert!(limits.reset("user:1").await.unwrap());
    assert!(!limits.reset("user:1").await.unwrap());
    assert!(both(now + 2000).await[1].allowed, "forgotten");
    pool.close().await;
}

#[tokio::test]
async fn cleanup_deletes_expired_rows_and_stops_with_the_store() {
    let db = TestDb::create().await;
    let mut settings = db.settings();
    settings.cleanup_interval = Duration::from_millis(200);
    let store = Arc::new(PostgresStore::open(&settings).await.unwrap());
    let limits = PostgresLimits::new(store.clone());
    let blocks = PostgresBlocks::new(store.clone());
    let pool = db.pool().await;
    let past = 1_600_000_000_000_000; // 2020: long expired on the database clock
    check_one(&limits, "old", sliding(5, 1000), past).await;
    limits
        .check(
            &[Check {
                key: "live",
                limit: sliding(5, 3_600_000),
            }],
            None,
        )
        .await
        .unwrap();
    let short = BlockingSettings {
        threshold: 1,
        duration: Duration::from_millis(100),
        window: Duration::from_millis(100),
        ..BlockingSettings::default()
    };
    let long = BlockingSettings {
        threshold: 1,
        ..BlockingSettings::default()
    };
    let (brief, lasting): (IpAddr, IpAddr) =
        ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    assert!(
        blocks
            .record_violation(brief, &short)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        blocks
            .record_violation(lasting, &long)
            .await
            .unwrap()
            .is_some()
    );
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("rampart_rate_limits").await, 2);
    assert_eq!(count("rampart_blocks").await, 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while count("rampart_rate_limits").await
        + count("rampart_blocks").await
        + count("rampart_block_violations").await
        > 3
    {
        assert!(Instant::now() < deadline, "the cleanup job did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(row(&pool, "old").await, None);
    assert!(row(&pool, "live").await.is_some());
    assert_eq!(blocks.list().await.unwrap().len(), 1);

    // Once the store is gone, so is its job.
    drop((limits, blocks, store));
    tokio::task::yield_now().await;
    sqlx::query(
        "INSERT INTO rampart_blocks (ip, until) VALUES ('192.0.2.3', clock_timestamp() - interval '1 hour')",
    )
    .execute(&pool)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count("rampart_blocks").await, 2);
    pool.close().await;
}

#[tokio::test]
async fn a_database_that_is_down_fails_fast_and_keeps_the_password() {
    let settings = PostgresSettings {
        url: "postgres://rampart:hunter2@127.0.0.1:1/rampart".into(),
        max_connections: 2,
        connect_timeout: Duration::from_millis(300),
        cleanup_interval: Duration::from_millis(100),
        synchronous_commit: "on".into(),
    };
    let started = Instant::now();
    let store = Arc::new(PostgresStore::open(&settings).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "open waited {:?}",
        started.elapsed()
    );
    assert!(
        !store.health.is_degraded(),
        "open leaves health to the callers"
    );
    let limits = PostgresLimits::new(store.clone());
    let started = Instant::now();
    let e = limits
        .check(
            &[Check {
                key: "k",
                limit: sliding(1, 1000),
            }],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "check waited {:?}",
        started.elapsed()
    );
    assert!(!e.contains("hunter2"), "{e}");
    let e = store.ping().await.unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    let blocks = PostgresBlocks::new(store);
    assert!(blocks.list().await.is_err());
}

async fn violations(pool: &PgPool, ip: &str) -> Option<i32> {
    sqlx::query("SELECT count FROM rampart_block_violations WHERE ip = $1::inet")
        .bind(ip)
        .fetch_optional(pool)
        .await
        .unwrap()
        .map(|row| row.get("count"))
}

#[tokio::test]
async fn blocklist_blocks_at_the_threshold_on_every_instance() {
    let db = TestDb::create().await;
    let a = PostgresBlocks::new(db.store().await);
    let b = PostgresBlocks::new(db.store().await);
    let pool = db.pool().await;
    let settings = BlockingSettings {
        threshold: 3,
        window: Duration::from_secs(60),
        duration: Duration::from_secs(120),
        ..BlockingSettings::default()
    };
    for ip in ["203.0.113.7", "2001:db8::7"] {
        let addr: IpAddr = ip.parse().unwrap();
        assert_eq!(a.record_violation(addr, &settings).await.unwrap(), None);
        assert_eq!(b.record_violation(addr, &settings).await.unwrap(), None);
        assert_eq!(violations(&pool, ip).await, Some(2));
        assert_eq!(
            a.record_violation(addr, &settings).await.unwrap(),
            Some(settings.duration)
        );
        for store in [&a, &b] {
            let list = store.list().await.unwrap();
            let (_, left) = list.iter().find(|(listed, _)| *listed == addr).unwrap();
            assert!(
                *left <= settings.duration && *left > Duration::from_secs(110),
                "{left:?}"
            );
        }
        // Blocked: not counted, whichever instance sees it.
        assert_eq!(violations(&pool, ip).await, Some(0));
        for _ in 0..5 {
            assert_eq!(b.record_violation(addr, &settings).await.unwrap(), None);
        }
        assert_eq!(violations(&pool, ip).await, Some(0));
        assert!(b.unblock(addr).await.unwrap());
        assert!(!a.unblock(addr).await.unwrap());
        assert!(
            a.list()
                .await
                .unwrap()
                .iter()
                .all(|(listed, _)| *listed != addr)
        );
        // Counting starts again.
        assert_eq!(a.record_violation(addr, &settings).await.unwrap(), None);
        assert_eq!(violations(&pool, ip).await, Some(1));
    }
    pool.close().await;
}

#[tokio::test]
async fn concurrent_violations_block_once() {
    let db = TestDb::create().await;
    let stores: Vec<_> = futures_util::future::join_all((0..3).map(|_| db.store()))
        .await
        .into_iter()
        .map(|s| Arc::new(PostgresBlocks::new(s)))
        .collect();
    let settings = BlockingSettings {
        threshold: 5,
        ..BlockingSettings::default()
    };
    let ip: IpAddr = "198.51.100.9".parse().unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let blocks = stores[i % 3].clone();
        let settings = settings.clone();
        tasks.push(tokio::spawn(async move {
            blocks.record_violation(ip, &settings).await.unwrap()
        }));
    }
    let mut blocked = 0;
    for task in tasks {
        blocked += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(blocked, 1);
    assert_eq!(stores[0].list().await.unwrap().len(), 1);
}
