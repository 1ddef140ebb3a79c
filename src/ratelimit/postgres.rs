//! Rate limits in PostgreSQL: table `rampart_rate_limits` (migrations in `migrations/`), one
//! atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING` statement for all of a request's policies
//! (rows locked in key order, so concurrent requests cannot deadlock). The arithmetic is a
//! translation of [`super::algorithm`] and uses the database clock. Expired rows are deleted by
//! the store's cleanup job.
//!
//! The statement decides: the SQL function `rampart_rate_limit_step` (in the migration) computes
//! each key's new state and whether it admits the request, and the row is written with it under
//! its row lock. Each policy is counted on its own (one that admits counts the request even when
//! another refuses). From the returned state and admission, the other [`Decision`] fields are
//! computed here with the reference functions, which also cross-check the database's answer.
//!
//! A check of cost 0 is a peek: it reads the row in the same statement and writes nothing. A key
//! that appears twice in one call (ON CONFLICT cannot touch a row twice in one statement) is
//! checked again in a second statement, after the first.
//!
//! The clock is read once per statement. A key's clock never goes backwards: a statement that
//! read the clock before it waited for a row another request had just written uses that row's
//! time instead (otherwise a sliding window could see its state as from the future).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;

use super::Check;
use super::algorithm::{self, Algorithm, Decision, Limit, Sliding};
use crate::store::postgres::PostgresStore;

pub struct PostgresLimits {
    store: Arc<PostgresStore>,
}

/// Checks every key once: counted checks are upserted, peeks only read. Parameters: $1 keys,
/// $2 algorithms, $3 limits, $4 windows (ms), $5 bursts, $6 costs, $7 the time in µs (NULL: the
/// database clock).
const CHECK_SQL: &str = "
WITH clock AS MATERIALIZED (
    SELECT COALESCE($7::bigint,
                    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) AS now_us
),
input AS (
    SELECT i.key, i.algorithm, i.lim, i.window_ms, i.burst, i.cost, c.now_us
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
             AS i(key, algorithm, lim, window_ms, burst, cost)
         CROSS JOIN clock c
),
counted AS (
    INSERT INTO rampart_rate_limits AS t
        (key, algorithm, lim, window_ms, burst, cost, checked_us, allowed,
         window_start_ms, prev_count, cur_count, tat_us, expires_at)
    SELECT i.key, i.algorithm, i.lim, i.window_ms, i.burst, i.cost, i.now_us, s.allowed,
           s.window_start_ms, s.prev_count, s.cur_count, s.tat_us, s.expires_at
    FROM input i
         CROSS JOIN LATERAL rampart_rate_limit_step(
             i.algorithm, i.lim, i.window_ms, i.burst, i.cost, i.now_us,
             NULL, NULL, NULL, NULL) s
    WHERE i.cost > 0
    ORDER BY i.key
    ON CONFLICT (key) DO UPDATE SET
        (algorithm, lim, window_ms, burst, cost, checked_us, allowed,
         window_start_ms, prev_count, cur_count, tat_us, expires_at) =
        (SELECT EXCLUDED.algorithm, EXCLUDED.lim, EXCLUDED.window_ms, EXCLUDED.burst,
                EXCLUDED.cost, GREATEST(EXCLUDED.checked_us, t.checked_us), s.allowed,
                s.window_start_ms, s.prev_count, s.cur_count, s.tat_us, s.expires_at
         FROM rampart_rate_limit_step(
             EXCLUDED.algorithm, EXCLUDED.lim, EXCLUDED.window_ms, EXCLUDED.burst,
             EXCLUDED.cost, GREATEST(EXCLUDED.checked_us, t.checked_us),
             CASE WHEN t.algorithm = EXCLUDED.algorithm THEN t.window_start_ms END,
             t.prev_count, t.cur_count,
             CASE WHEN t.algorithm = EXCLUDED.algorithm THEN t.tat_us END) s)
    RETURNING t.key, t.allowed, t.window_start_ms, t.prev_count, t.cur_count, t.tat_us,
              t.checked_us AS now_us
),
peeked AS (
    SELECT i.key, NULL::boolean AS allowed,
           CASE WHEN t.algorithm = i.algorithm THEN t.window_start_ms END AS window_start_ms,
           t.prev_count, t.cur_count,
           CASE WHEN t.algorithm = i.algorithm THEN t.tat_us END AS tat_us,
           GREATEST(i.now_us, t.checked_us) AS now_us
    FROM input i
         LEFT JOIN rampart_rate_limits t ON t.key = i.key
    WHERE i.cost = 0
)
SELECT * FROM counted
UNION ALL
SELECT * FROM peeked";

/// One check's numbers, as the statement takes them.
struct Input<'a> {
    key: &'a str,
    limit: Limit,
    lim: i64,
    window_ms: i64,
    burst: i64,
    cost: i64,
}

impl<'a> Input<'a> {
    fn new(check: &Check<'a>) -> Result<Self, String> {
        let limit = check.limit;
        if limit.window_ms == 0 {
            return Err(format!("{}: the window must be above zero", check.key));
        }
        let int = |what: &str, n: u64| {
            i64::try_from(n).map_err(|_| format!("{}: {what} {n} is too large", check.key))
        };
        Ok(Self {
            key: check.key,
            limit,
            lim: int("limit", limit.limit)?,
            window_ms: int("window", limit.window_ms)?,
            burst: int("burst", limit.burst)?,
            cost: int("cost", limit.cost)?,
        })
    }
}

/// A row the statement returned.
struct Answer {
    /// Whether the check was admitted (counted checks); `None` for a peek.
    allowed: Option<bool>,
    start_ms: Option<i64>,
    prev: Option<i64>,
    cur: Option<i64>,
    tat_us: Option<i64>,
    now_us: i64,
}

impl PostgresLimits {
    pub fn new(store: Arc<PostgresStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<PostgresStore> {
        &self.store
    }

    /// Checks and counts `checks` (decisions in the same order). `now_us` replaces the database
    /// clock in tests only.
    pub async fn check(
        &self,
        checks: &[Check<'_>],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, String> {
        let inputs = checks
            .iter()
            .map(Input::new)
            .collect::<Result<Vec<_>, _>>()?;
        let now_us = now_us
            .map(|now| i64::try_from(now).map_err(|_| format!("time {now} µs is too large")))
            .transpose()?;
        // Round n holds each key's n-th occurrence: one statement per round, in order.
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let round = seen.entry(input.key).or_insert(0);
            if *round == rounds.len() {
                rounds.push(Vec::new());
            }
            rounds[*round].push(index);
            *round += 1;
        }
        let mut decisions: Vec<Option<Decision>> = vec![None; inputs.len()];
        for round in rounds {
            self.check_round(&inputs, &round, now_us, &mut decisions)
                .await?;
        }
        decisions
            .into_iter()
            .zip(&inputs)
            .map(|(d, input)| d.ok_or_else(|| format!("{}: no answer from postgres", input.key)))
            .collect()
    }

    /// One statement for the checks at `indices` (their keys are distinct).
    async fn check_round(
        &self,
        inputs: &[Input<'_>],
        indices: &[usize],
        now_us: Option<i64>,
        decisions: &mut [Option<Decision>],
    ) -> Result<(), String> {
        let pick = |f: &dyn Fn(&Input<'_>) -> i64| indices.iter().map(|&i| f(&inputs[i])).collect();
        let keys: Vec<&str> = indices.iter().map(|&i| inputs[i].key).collect();
        let algorithms: Vec<&str> = indices
            .iter()
            .map(|&i| inputs[i].limit.algorithm.as_str())
            .collect();
        let lims: Vec<i64> = pick(&|x| x.lim);
        let windows: Vec<i64> = pick(&|x| x.window_ms);
        let bursts: Vec<i64> = pick(&|x| x.burst);
        let costs: Vec<i64> = pick(&|x| x.cost);
        let pool = self.store.ready().await?;
        let rows = sqlx::query(CHECK_SQL)
            .bind(&keys)
            .bind(&algorithms)
            .bind(&lims)
            .bind(&windows)
            .bind(&bursts)
            .bind(&costs)
            .bind(now_us)
            .fetch_all(pool)
            .await
            .map_err(|e| self.store.describe(&e))?;
        let by_key: HashMap<&str, usize> = indices.iter().map(|&i| (inputs[i].key, i)).collect();
        for row in rows {
            let get = |e: sqlx::Error| self.store.describe(&e);
            let key: String = row.try_get("key").map_err(get)?;
            let answer = Answer {
                allowed: row.try_get("allowed").map_err(get)?,
                start_ms: row.try_get("window_start_ms").map_err(get)?,
                prev: row.try_get("prev_count").map_err(get)?,
                cur: row.try_get("cur_count").map_err(get)?,
                tat_us: row.try_get("tat_us").map_err(get)?,
                now_us: row.try_get("now_us").map_err(get)?,
            };
            let &index = by_key
                .get(key.as_str())
                .ok_or_else(|| format!("postgres answered for a key not asked: {key}"))?;
            decisions[index] = Some(decide(&inputs[index], &answer)?);
        }
        Ok(())
    }

    /// Forgets the state of `key`.
    pub async fn reset(&self, key: &str) -> Result<bool, String> {
        let pool = self.store.ready().await?;
        let done = sqlx::query("DELETE FROM rampart_rate_limits WHERE key = $1")
            .bind(key)
            .execute(pool)
            .await
            .map_err(|e| self.store.describe(&e))?;
        Ok(done.rows_affected() > 0)
    }
}

/// The decision for one answered row. A counted check returned the state it left and whether
/// it was admitted: the state before it is recovered from these, the reference function is run
/// on it, and its result must agree with what the database stored.
fn decide(input: &Input<'_>, answer: &Answer) -> Result<Decision, String> {
    let limit = &input.limit;
    let unsigned = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
    let now_us = u64::try_from(answer.now_us).map_err(|_| "postgres: time before 1970")?;
    let disagree = || {
        format!(
            "{}: postgres and the reference algorithm disagree (a bug)",
            input.key
        )
    };
    match limit.algorithm {
        Algorithm::SlidingWindow => {
            let stored = match (answer.start_ms, answer.prev, answer.cur) {
                (Some(start), Some(prev), Some(cur)) => Some(Sliding {
                    start_ms: unsigned(Some(start)).unwrap_or(0),
                    prev: unsigned(Some(prev)).unwrap_or(0),
                    cur: unsigned(Some(cur)).unwrap_or(0),
                }),
                _ => None,
            };
            let Some(allowed) = answer.allowed else {
                return Ok(algorithm::sliding_window(stored, limit, now_us / 1000).1);
            };
            let stored = stored.ok_or_else(disagree)?;
            let before = Sliding {
                cur: if allowed {
                    stored.cur.checked_sub(limit.cost).ok_or_else(disagree)?
                } else {
                    stored.cur
                },
                ..stored
            };
            let (after, decision) = algorithm::sliding_window(Some(before), limit, now_us / 1000);
            if after != stored || decision.allowed != allowed {
                return Err(disagree());
            }
            Ok(decision)
        }
        Algorithm::TokenBucket => {
            let stored = unsigned(answer.tat_us);
            let Some(allowed) = answer.allowed else {
                return Ok(algorithm::token_bucket(stored, limit, now_us).1);
            };
            let stored = stored.ok_or_else(disagree)?;
            let before = if allowed {
                limit
                    .cost
                    .checked_mul(limit.interval_us())
                    .and_then(|used| stored.checked_sub(used))
                    .ok_or_else(disagree)?
            } else {
                stored
            };
            let (after, decision) = algorithm::token_bucket(Some(before), limit, now_us);
            if after != stored || decision.allowed != allowed {
                return Err(disagree());
            }
            Ok(decision)
        }
    }
}
