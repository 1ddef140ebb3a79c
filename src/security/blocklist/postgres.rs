//! The blocklist in PostgreSQL, shared by every instance: violations in
//! `rampart_block_violations`, live blocks in `rampart_blocks` (ip, until), each updated by one
//! atomic statement; each instance mirrors the live blocks locally (see the parent module).
//! Expired rows are deleted by the store's cleanup job.
//!
//! Violations are counted in a fixed window that starts with an address's first one (as the
//! Redis store does). The address's violations row is where concurrent violations queue up (its
//! row lock), so it also holds the end of the block they triggered: a violation recorded while
//! the address is blocked is not counted, even from another instance at the same moment. Times
//! are from the database clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use super::BlockingSettings;
use crate::store::postgres::PostgresStore;

pub struct PostgresBlocks {
    store: Arc<PostgresStore>,
}

/// Counts one violation of $1 (threshold $2, window $3 µs, block duration $4 µs); returns one
/// row, `blocked`, when it triggered a block, and no row otherwise.
const RECORD_SQL: &str = "
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
counted AS (
    INSERT INTO rampart_block_violations AS v (ip, count, window_ends, blocked_until, last_at)
    SELECT $1::inet,
           CASE WHEN $2 <= 1 THEN 0 ELSE 1 END,
           CASE WHEN $2 <= 1 THEN c.now + $4 * interval '1 microsecond'
                ELSE c.now + $3 * interval '1 microsecond' END,
           CASE WHEN $2 <= 1 THEN c.now + $4 * interval '1 microsecond' END,
           c.now
    FROM clock c
    WHERE NOT EXISTS (SELECT 1 FROM rampart_blocks b WHERE b.ip = $1::inet AND b.until > c.now)
    ON CONFLICT (ip) DO UPDATE SET
        (count, window_ends, blocked_until, last_at) = (
            SELECT CASE WHEN n.count >= $2 THEN 0 ELSE n.count END,
                   CASE WHEN n.count >= $2 THEN EXCLUDED.last_at + $4 * interval '1 microsecond'
                        WHEN v.window_ends > EXCLUDED.last_at THEN v.window_ends
                        ELSE EXCLUDED.last_at + $3 * interval '1 microsecond' END,
                   CASE WHEN n.count >= $2 THEN EXCLUDED.last_at + $4 * interval '1 microsecond'
                   END,
                   EXCLUDED.last_at
            FROM (SELECT CASE WHEN v.window_ends > EXCLUDED.last_at THEN v.count + 1 ELSE 1 END
                         AS count) n)
        -- A blocked address is not counted (and its row is not returned).
        WHERE v.blocked_until IS NULL OR v.blocked_until <= EXCLUDED.last_at
    RETURNING v.ip, v.blocked_until
),
blocked AS (
    INSERT INTO rampart_blocks (ip, until)
    SELECT ip, blocked_until FROM counted WHERE blocked_until IS NOT NULL
    ON CONFLICT (ip) DO UPDATE SET until = GREATEST(rampart_blocks.until, EXCLUDED.until)
    RETURNING ip
)
SELECT true AS blocked FROM blocked";

impl PostgresBlocks {
    pub fn new(store: Arc<PostgresStore>) -> Self {
        Self { store }
    }

    /// Same contract as `RedisBlocks::record_violation`.
    pub async fn record_violation(
        &self,
        ip: IpAddr,
        settings: &BlockingSettings,
    ) -> Result<Option<Duration>, String> {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let pool = self.store.ready().await?;
        let row = sqlx::query(RECORD_SQL)
            .bind(ip.to_string())
            .bind(i64::from(settings.threshold))
            .bind(micros(settings.window))
            .bind(micros(settings.duration))
            .fetch_optional(pool)
            .await
            .map_err(|e| self.store.describe(&e))?;
        Ok(row.map(|_| settings.duration))
    }

    /// Every live block with the time it has left.
    pub async fn list(&self) -> Result<Vec<(IpAddr, Duration)>, String> {
        let pool = self.store.ready().await?;
        let rows = sqlx::query(
            "WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now)
             SELECT host(b.ip) AS ip,
                    (extract(epoch FROM b.until - c.now) * 1000000)::bigint AS left_us
             FROM rampart_blocks b CROSS JOIN clock c
             WHERE b.until > c.now
             ORDER BY b.ip",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| self.store.describe(&e))?;
        rows.iter()
            .map(|row| {
                let ip: String = row.try_get("ip").map_err(|e| self.store.describe(&e))?;
                let left: i64 = row
                    .try_get("left_us")
                    .map_err(|e| self.store.describe(&e))?;
                let ip = ip
                    .parse::<IpAddr>()
                    .map_err(|_| format!("postgres: {ip:?} is not an address"))?;
                Ok((ip, Duration::from_micros(u64::try_from(left).unwrap_or(0))))
            })
            .collect()
    }

    /// Lifts a block; false when `ip` was not blocked. Its violations are forgotten too.
    pub async fn unblock(&self, ip: IpAddr) -> Result<bool, String> {
        let pool = self.store.ready().await?;
        let row = sqlx::query(
            "WITH violations AS (DELETE FROM rampart_block_violations WHERE ip = $1::inet),
                  blocks AS (DELETE FROM rampart_blocks WHERE ip = $1::inet RETURNING until)
             SELECT EXISTS (SELECT 1 FROM blocks WHERE until > clock_timestamp()) AS lifted",
        )
        .bind(ip.to_string())
        .fetch_one(pool)
        .await
        .map_err(|e| self.store.describe(&e))?;
        row.try_get("lifted").map_err(|e| self.store.describe(&e))
    }
}
