//! The PostgreSQL connection pool (sqlx), with rampart's migrations (`migrations/`, embedded in
//! the binary). Capabilities run their own statements through [`PostgresStore::ready`], which
//! applies the migrations first if they have not been yet.
//!
//! Opening never fails because the database is down: the pool connects lazily. `open` tries the
//! migrations once, for at most a second; if the database does not answer by then they run on
//! the first use that reaches it. A background job deletes expired rows every
//! `cleanup_interval`; it stops when the store is dropped.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use serde::Deserialize;

use super::{StoreError, StoreHealth};
use crate::config::units::deserialize_duration;

/// `[store.postgres]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub connect_timeout: Duration,
    /// How often expired rows (rate-limit state, expired blocks) are deleted.
    #[serde(
        default = "default_cleanup_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub cleanup_interval: Duration,
    /// PostgreSQL's `synchronous_commit` for rampart's sessions. `off` (the default) does not
    /// wait for each counter update to reach the disk: a database crash can lose the last
    /// fraction of a second of counts, never consistency, and each check holds a key's row lock
    /// for microseconds instead of a disk flush.
    #[serde(default = "default_synchronous_commit")]
    pub synchronous_commit: String,
}

fn default_synchronous_commit() -> String {
    "off".into()
}

/// The values PostgreSQL accepts for `synchronous_commit`.
const SYNCHRONOUS_COMMIT_VALUES: [&str; 5] = ["off", "local", "remote_write", "on", "remote_apply"];

fn default_max_connections() -> u32 {
    8
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_cleanup_interval() -> Duration {
    Duration::from_secs(60)
}

/// An open PostgreSQL pool.
pub struct PostgresStore {
    pub settings: PostgresSettings,
    pub health: Arc<StoreHealth>,
    shared: Arc<Shared>,
    cleanup: AbortHandle,
}

/// What the store and its cleanup job share.
struct Shared {
    pool: PgPool,
    /// Set once the migrations have been applied through this pool.
    migrated: OnceCell<()>,
    /// The URL's password, removed from every error message.
    password: Option<String>,
    connect_timeout: Duration,
}

/// The most `open` waits for the database before leaving the migrations to the first use.
const OPEN_BOUND: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Validates the URL and creates the pool lazily; runs migrations as soon as the database
    /// answers (at open when it is up; otherwise on first successful contact). Starts the
    /// cleanup job.
    pub async fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let error = |message: String| StoreError {
            store: "postgres",
            message,
        };
        let password = url_password(&settings.url);
        let options = parse_url(&settings.url, password.as_deref()).map_err(error)?;
        if settings.max_connections == 0 {
            return Err(error("max_connections: expected at least 1".into()));
        }
        if settings.connect_timeout.is_zero() {
            return Err(error(
                "connect_timeout: expected a duration above zero".into(),
            ));
        }
        if settings.cleanup_interval.is_zero() {
            return Err(error(
                "cleanup_interval: expected a duration above zero".into(),
            ));
        }
        if !SYNCHRONOUS_COMMIT_VALUES.contains(&settings.synchronous_commit.as_str()) {
            return Err(error(format!(
                "synchronous_commit: expected one of {}, found {:?}",
                SYNCHRONOUS_COMMIT_VALUES.join(", "),
                settings.synchronous_commit
            )));
        }
        let options = options
            .application_name("rampart")
            .options([("synchronous_commit", settings.synchronous_commit.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_lazy_with(options);
        let shared = Arc::new(Shared {
            pool,
            migrated: OnceCell::new(),
            password,
            connect_timeout: settings.connect_timeout,
        });

        // Migrate now if the database answers quickly; a database that answers but cannot be
        // migrated is a setup error worth failing for.
        let bound = settings.connect_timeout.min(OPEN_BOUND);
        if let Ok(Ok(conn)) = tokio::time::timeout(bound, shared.pool.acquire()).await {
            drop(conn);
            if let Err(e) = shared.migrate().await {
                return Err(error(e));
            }
        }

        let cleanup = tokio::spawn(cleanup_job(
            Arc::downgrade(&shared),
            settings.cleanup_interval,
        ))
        .abort_handle();
        Ok(Self {
            settings: settings.clone(),
            health: Arc::new(StoreHealth::new("postgres")),
            shared,
            cleanup,
        })
    }

    /// `SELECT 1`, for health checks and recovery probes.
    pub async fn ping(&self) -> Result<Duration, String> {
        let started = Instant::now();
        sqlx::query("SELECT 1")
            .execute(&self.shared.pool)
            .await
            .map_err(|e| self.shared.describe(&e))?;
        Ok(started.elapsed())
    }

    /// The pool, once the migrations are applied (they run here if they have not yet). Every
    /// statement on rampart's tables goes through this.
    pub(crate) async fn ready(&self) -> Result<&PgPool, String> {
        self.shared.migrate().await?;
        Ok(&self.shared.pool)
    }

    /// An error message for `e`, without the password.
    pub(crate) fn describe(&self, e: &sqlx::Error) -> String {
        self.shared.describe(e)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.cleanup.abort();
    }
}

impl Shared {
    async fn migrate(&self) -> Result<(), String> {
        self.migrated
            .get_or_try_init(|| async {
                sqlx::migrate!()
                    .run(&self.pool)
                    .await
                    .map_err(|e| self.redact(format!("migrations: {e}")))
            })
            .await
            .map(|_| ())
    }

    /// Deletes every expired row (rate-limit state, blocks, violation counts); returns how many.
    async fn delete_expired(&self) -> Result<u64, String> {
        self.migrate().await?;
        let row: (i64,) = sqlx::query_as(
            "WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
                  limits AS (DELETE FROM rampart_rate_limits
                             WHERE expires_at <= (SELECT now FROM clock) RETURNING 1),
                  blocks AS (DELETE FROM rampart_blocks
                             WHERE until <= (SELECT now FROM clock) RETURNING 1),
                  violations AS (DELETE FROM rampart_block_violations
                                 WHERE window_ends <= (SELECT now FROM clock) RETURNING 1)
             SELECT (SELECT count(*) FROM limits) + (SELECT count(*) FROM blocks)
                    + (SELECT count(*) FROM violations)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.describe(&e))?;
        Ok(row.0.max(0) as u64)
    }

    fn describe(&self, e: &sqlx::Error) -> String {
        match e {
            sqlx::Error::PoolTimedOut => format!(
                "no connection to the database within {:?} (connect_timeout)",
                self.connect_timeout
            ),
            e => self.redact(e.to_string()),
        }
    }

    fn redact(&self, message: String) -> String {
        match &self.password {
            Some(password) if !password.is_empty() => message.replace(password.as_str(), "***"),
            _ => message,
        }
    }
}

/// Every `interval` (the first time one interval after open), deletes expired rows; ends when
/// the store is gone.
async fn cleanup_job(shared: Weak<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.delete_expired().await {
            Ok(deleted) => tracing::debug!(deleted, "postgres: expired rows deleted"),
            Err(error) => tracing::debug!(error, "postgres: cleanup failed, will retry"),
        }
    }
}

/// The password in `url` as written (percent-encoded or not, both are removed from messages).
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

fn parse_url(url: &str, password: Option<&str>) -> Result<PgConnectOptions, String> {
    const EXPECTED: &str = "expected postgres://user[:password]@host[:port]/database";
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(format!("url: {EXPECTED}"));
    }
    PgConnectOptions::from_str(url).map_err(|e| {
        let mut message = format!("url: {EXPECTED} ({e})");
        if let Some(password) = password {
            message = message.replace(password, "***");
        }
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> PostgresSettings {
        PostgresSettings {
            url: url.into(),
            max_connections: 2,
            connect_timeout: Duration::from_millis(200),
            cleanup_interval: Duration::from_secs(60),
            synchronous_commit: "off".into(),
        }
    }

    #[test]
    fn finds_the_password_to_hide() {
        assert_eq!(
            url_password("postgres://u:s3cr%40t@h:5432/db").as_deref(),
            Some("s3cr%40t")
        );
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(url_password("postgres://h/db"), None);
    }

    #[tokio::test]
    async fn malformed_urls_are_refused_without_the_password() {
        for url in [
            "mysql://u:hunter2@h/db",
            "hunter2",
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@[::1/db",
        ] {
            let Err(e) = PostgresStore::open(&settings(url)).await else {
                panic!("{url} was accepted");
            };
            let text = e.to_string();
            assert_eq!(e.store, "postgres");
            assert!(text.contains("expected postgres://"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[tokio::test]
    async fn bad_numbers_are_refused() {
        let mut s = settings("postgres://u@127.0.0.1:1/db");
        s.max_connections = 0;
        let Err(e) = PostgresStore::open(&s).await else {
            panic!("max_connections = 0 was accepted");
        };
        assert!(e.message.contains("max_connections"), "{e}");
        let mut s = settings("postgres://u@127.0.0.1:1/db");
        s.synchronous_commit = "sometimes".into();
        let Err(e) = PostgresStore::open(&s).await else {
            panic!("synchronous_commit = sometimes was accepted");
        };
        assert!(
            e.message
                .contains("synchronous_commit: expected one of off, local"),
            "{e}"
        );
    }
}
