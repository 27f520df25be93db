//! `reference-bookings`: the usual way to keep nights from being booked twice, to compare the
//! node with. One table whose exclusion constraint
//! `EXCLUDE USING gist (listing_id WITH =, daterange(check_in, check_out) WITH &&)` refuses any
//! stay that shares a night with another of its listing; one `INSERT` per attempt, nothing
//! else guarding it. With `--insert plain` (the default) a violation of the constraint
//! (SQLSTATE 23P01) counts as a rejection; with `--insert on-conflict` the insert says
//! `ON CONFLICT DO NOTHING` and no row back is the rejection.
//!
//! A plain insert can also be aborted as a deadlock (40P01): two overlapping inserts in flight
//! at once each find the other's uncommitted row and wait for it, and PostgreSQL's detector
//! aborts one after `deadlock_timeout` (1 s by default). Nothing was inserted, and the night
//! may or may not be free; it is neither an acceptance nor a rejection, and is counted on its
//! own (`deadlocked`), not made again: retried at once, or after a pause of milliseconds, the
//! aborted inserts come back into the same cycle with the insert that survived it, and a
//! handful of them keep one another waiting a second per turn for a minute or more.
//! `ON CONFLICT DO NOTHING` goes through PostgreSQL's speculative insertion, which backs its
//! own row out instead of waiting in a cycle, and never deadlocks.
//!
//! The attempts are the very ones `bookings` makes with the same stream arguments (the same
//! seed, listings, guests, window and lengths), at the same concurrency as far as `--pool`
//! allows. The table has a name of its own run and is dropped afterwards (and so is
//! `btree_gist` when the run had to create it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::report::Report;
use crate::scenarios::bookings::{
    self, attempt, dates, first_night, parse_day, Stay, StreamArgs, Tally,
};
use crate::stats::{self, Recorder};
use crate::{progress, target};

/// PostgreSQL's SQLSTATE for a violated exclusion constraint.
const EXCLUSION_VIOLATION: &str = "23P01";
/// PostgreSQL's SQLSTATE for a deadlock it broke by aborting one side.
const DEADLOCK_DETECTED: &str = "40P01";

/// How an attempt is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InsertMode {
    /// `INSERT … RETURNING id`; a violation (23P01) is a rejection. Two overlapping inserts
    /// in flight at once can deadlock (each waits for the other's row), which PostgreSQL
    /// breaks after `deadlock_timeout` by aborting one.
    Plain,
    /// `INSERT … ON CONFLICT DO NOTHING RETURNING id`; no row back is a rejection. PostgreSQL
    /// checks speculatively and backs its own row out instead of waiting in a cycle, so no
    /// deadlock.
    OnConflict,
}

impl InsertMode {
    fn name(self) -> &'static str {
        match self {
            InsertMode::Plain => "plain",
            InsertMode::OnConflict => "on-conflict-do-nothing",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceBookingsArgs {
    /// The PostgreSQL database to create the reference table in (loopback only).
    #[arg(long, env = "REFERENCE_DATABASE_URL")]
    pub database_url: String,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Database connections (PostgreSQL allows 100 by default); one insert each at a time.
    #[arg(long, default_value_t = 64)]
    pub pool: u32,
    /// How each attempt is written.
    #[arg(long, value_enum, default_value_t = InsertMode::Plain)]
    pub insert: InsertMode,
}

impl ReferenceBookingsArgs {
    pub fn smoke(&mut self) {
        self.stream.smoke();
        self.pool = 8;
    }
}

pub async fn run(smoke: bool, mut args: ReferenceBookingsArgs) -> anyhow::Result<Report> {
    if smoke {
        args.smoke();
    }
    target::check_loopback_database_url(&args.database_url)?;
    args.stream.validate()?;
    if args.pool == 0 {
        bail!("--pool must be at least 1");
    }
    let stream = args.stream.clone();
    let concurrency = stream.concurrency().min(args.pool as usize);
    let mut report = Report::new("reference-bookings");
    stream.params(&mut report);
    report.param("asked_concurrency", stream.concurrency() as u64);
    report.param("concurrency", concurrency as u64);
    report.param("pool", u64::from(args.pool));
    report.param("insert", args.insert.name());

    let pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&args.database_url)
        .await
        .context("connecting to the reference database")?;
    let table = table_name(&crate::client::run_prefix());
    report.param("table", table.clone());
    let had_btree_gist: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gist')",
    )
    .fetch_one(&pool)
    .await
    .context("looking for btree_gist")?;
    let outcome = match create(&pool, &table).await {
        Ok(()) => measure(&pool, &table, &args, concurrency, &mut report).await,
        Err(error) => Err(error),
    };
    // Whatever happened, leave nothing behind: the table, and btree_gist if this run made it
    // (a plain DROP, which fails harmlessly while another run's table still needs it).
    let dropped = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await;
    if !had_btree_gist {
        let _ = sqlx::query("DROP EXTENSION IF EXISTS btree_gist")
            .execute(&pool)
            .await;
    }
    pool.close().await;
    outcome?;
    dropped.with_context(|| format!("dropping {table}"))?;
    Ok(report)
}

/// A table name for this run: `loadtest_ref_bookings_` and the run's prefix, which is made of
/// letters and digits only (checked, since it goes into SQL text).
pub fn table_name(run_prefix: &str) -> String {
    let safe: String = run_prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("loadtest_ref_bookings_{safe}")
}

async fn create(pool: &PgPool, table: &str) -> anyhow::Result<()> {
    for statement in [
        // btree_gist gives the gist index its `=` on integers.
        "CREATE EXTENSION IF NOT EXISTS btree_gist".to_owned(),
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, \
             listing_id INTEGER NOT NULL, guest_id INTEGER NOT NULL, \
             check_in DATE NOT NULL, check_out DATE NOT NULL CHECK (check_out > check_in), \
             EXCLUDE USING gist (listing_id WITH =, daterange(check_in, check_out) WITH &&))"
        ),
    ] {
        sqlx::query(&statement)
            .execute(pool)
            .await
            .with_context(|| statement.clone())?;
    }
    Ok(())
}

async fn measure(
    pool: &PgPool,
    table: &str,
    args: &ReferenceBookingsArgs,
    concurrency: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stream = &args.stream;
    let mode = args.insert;
    let deadlock_timeout: String = sqlx::query_scalar("SHOW deadlock_timeout")
        .fetch_one(pool)
        .await
        .context("reading deadlock_timeout")?;
    report.param("deadlock_timeout", deadlock_timeout);
    let first = first_night();
    report.param("first_night", first.to_string());
    let total = stream.total();
    let next = Arc::new(AtomicU64::new(0));
    let latencies = bookings::Latencies::new();
    let deadlock_latencies = stats::shared();
    let bar = progress::bar(total, "attempts");
    let insert = Arc::new(format!(
        "INSERT INTO {table} (listing_id, guest_id, check_in, check_out) \
         VALUES ($1, $2, $3::date, $4::date) {}RETURNING id",
        match mode {
            InsertMode::Plain => "",
            InsertMode::OnConflict => "ON CONFLICT DO NOTHING ",
        }
    ));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(stream.max_secs);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pool, next, insert) = (pool.clone(), Arc::clone(&next), Arc::clone(&insert));
        let (stream, bar) = (stream.clone(), bar.clone());
        let [mut all, mut accepted, mut rejected]: [Recorder; 3] = latencies.recorders();
        let mut deadlocked = Recorder::new(&deadlock_latencies);
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut deadlocks = 0u64;
            let mut last_answer = Instant::now();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total || Instant::now() >= deadline {
                    break;
                }
                let a = attempt(&stream, k);
                let (check_in, check_out) = dates(first, &a);
                let begun = Instant::now();
                let answer = sqlx::query_scalar::<_, i64>(&insert)
                    .bind(i32::try_from(a.listing).unwrap_or(i32::MAX))
                    .bind(i32::try_from(a.guest).unwrap_or(i32::MAX))
                    .bind(check_in.to_string())
                    .bind(check_out.to_string())
                    .fetch_optional(&pool)
                    .await;
                let took = begun.elapsed();
                last_answer = Instant::now();
                tally.attempts += 1;
                bar.inc(1);
                match answer {
                    Ok(Some(id)) => {
                        all.record(took);
                        accepted.record(took);
                        tally.accepted += 1;
                        tally.stays.entry(a.listing).or_default().push(Stay {
                            id: id.to_string(),
                            check_in,
                            check_out,
                        });
                    }
                    // No row back (ON CONFLICT DO NOTHING) or a violation (plain).
                    Ok(None) => {
                        all.record(took);
                        rejected.record(took);
                        tally.rejected += 1;
                    }
                    Err(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some(EXCLUSION_VIOLATION) =>
                    {
                        all.record(took);
                        rejected.record(took);
                        tally.rejected += 1;
                    }
                    Err(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some(DEADLOCK_DETECTED) =>
                    {
                        all.record(took);
                        deadlocked.record(took);
                        deadlocks += 1;
                    }
                    Err(error) => {
                        *tally.errors.entry(format!("{error}")).or_default() += 1;
                    }
                }
            }
            all.flush();
            accepted.flush();
            rejected.flush();
            deadlocked.flush();
            (tally, deadlocks, last_answer)
        });
    }
    let mut tally = Tally::default();
    let mut deadlocks = 0u64;
    let mut last_answer = started;
    while let Some(joined) = workers.join_next().await {
        let (part, deadlocked, last) = joined.context("a reference worker panicked")?;
        tally.add(part);
        deadlocks += deadlocked;
        last_answer = last_answer.max(last);
    }
    let elapsed = last_answer.saturating_duration_since(started);
    bar.finish_and_clear();

    bookings::push_rates(report, &tally, elapsed);
    report.metric("deadlocked", deadlocks as f64, "attempts");
    latencies.push_into(report, "insert");
    report
        .latencies
        .push(stats::summary_of(&deadlock_latencies, "insert deadlocked"));
    report.check(
        "every attempt inserted, refused by the constraint or aborted as a deadlock",
        tally.error_count() == 0,
        format!(
            "{} attempts: {} inserted, {} refused, {deadlocks} deadlocked; errors: {}",
            tally.attempts,
            tally.accepted,
            tally.rejected,
            tally.errors_listed()
        ),
    );

    // What the table holds, against what the inserts answered.
    let rows = sqlx::query(&format!(
        "SELECT id, listing_id, check_in::text AS check_in, check_out::text AS check_out FROM {table}"
    ))
    .fetch_all(pool)
    .await
    .context("reading the reference bookings back")?;
    let mut held: BTreeMap<usize, Vec<Stay>> = BTreeMap::new();
    for row in &rows {
        let listing = usize::try_from(row.try_get::<i32, _>("listing_id")?)?;
        held.entry(listing).or_default().push(Stay {
            id: row.try_get::<i64, _>("id")?.to_string(),
            check_in: parse_day(&row.try_get::<String, _>("check_in")?)?,
            check_out: parse_day(&row.try_get::<String, _>("check_out")?)?,
        });
    }
    bookings::check_overlaps(report, &held);
    let ids = |stays: Option<&Vec<Stay>>| -> BTreeSet<String> {
        stays
            .map(|s| s.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default()
    };
    let listings: BTreeSet<usize> = held.keys().chain(tally.stays.keys()).copied().collect();
    let mismatches: usize = listings
        .iter()
        .map(|l| {
            ids(held.get(l))
                .symmetric_difference(&ids(tally.stays.get(l)))
                .count()
        })
        .sum();
    let nights: usize = held
        .values()
        .map(|s| bookings::union_of_nights(s).len())
        .sum();
    report.metric("reservation_mismatches", mismatches as f64, "reservations");
    report.metric("nights_booked", nights as f64, "nights");
    report.check(
        "the table holds exactly the inserted stays",
        mismatches == 0,
        format!(
            "{} rows, {} inserts answered; {mismatches} differ",
            rows.len(),
            tally.accepted
        ),
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(table_name("lt123x456"), "loadtest_ref_bookings_lt123x456");
        assert_eq!(
            table_name("LT-1; DROP TABLE x"),
            "loadtest_ref_bookings_lt1droptablex"
        );
    }
}
