//! `reference-payments`: the usual way to move money, to compare the node with. One
//! PostgreSQL transaction per payment: lock both accounts (`SELECT … FOR UPDATE`, in id order
//! so that two payments between the same pair cannot deadlock), check the payor's balance,
//! update both, insert a transfer row, commit. Same users, hot merchants and share as
//! `payments`, in its own tables (`loadtest_ref_*`) of the database it is given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::SeedableRng;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::report::Report;
use crate::scenarios::payments::{pick_payee, Payee};
use crate::stats::{self, Recorder};
use crate::{progress, target};

#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceArgs {
    /// The PostgreSQL database to create the reference tables in (loopback only).
    #[arg(long, env = "REFERENCE_DATABASE_URL")]
    pub database_url: String,
    /// Paying users.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Payments each user makes.
    #[arg(long, default_value_t = 100)]
    pub payments_per_user: u64,
    #[arg(long, default_value_t = 3)]
    pub hot: usize,
    #[arg(long, default_value_t = 0.2)]
    pub hot_share: f64,
    /// Payments in flight per user; with `--users` this is the same concurrency as
    /// `payments`, limited by `--pool` (one transaction per connection at a time).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Database connections (PostgreSQL allows 100 by default).
    #[arg(long, default_value_t = 64)]
    pub pool: u32,
    #[arg(long, default_value_t = 100_000)]
    pub deposit: u64,
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
}

impl ReferenceArgs {
    pub fn smoke(&mut self) {
        self.users = 8;
        self.payments_per_user = 20;
        self.hot = 2;
        self.in_flight = 4;
        self.pool = 8;
        self.deposit = 1_000;
        self.max_secs = 30;
    }
}

pub async fn run(smoke: bool, mut args: ReferenceArgs) -> anyhow::Result<Report> {
    if smoke {
        args.smoke();
    }
    target::check_loopback_database_url(&args.database_url)?;
    if args.users < 2 || args.pool == 0 || args.in_flight == 0 {
        bail!("--users must be at least 2, --pool and --in-flight at least 1");
    }
    let concurrency = (args.users * args.in_flight).min(args.pool as usize);
    let mut report = Report::new("reference-payments");
    report.param("users", args.users as u64);
    report.param("payments_per_user", args.payments_per_user);
    report.param("hot", args.hot as u64);
    report.param("hot_share", args.hot_share);
    report.param("asked_concurrency", (args.users * args.in_flight) as u64);
    report.param("concurrency", concurrency as u64);
    report.param("pool", u64::from(args.pool));

    let pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&args.database_url)
        .await
        .context("connecting to the reference database")?;
    prepare(&pool, args.users, args.hot, args.deposit).await?;

    let total = args.payments_per_user * args.users as u64;
    let next = Arc::new(AtomicU64::new(0));
    let acks = stats::shared();
    let refused = Arc::new(AtomicU64::new(0));
    let bar = progress::bar(total, "payments");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (pool, next, refused) = (pool.clone(), Arc::clone(&next), Arc::clone(&refused));
        let (args, bar, mut recorder) = (args.clone(), bar.clone(), Recorder::new(&acks));
        workers.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let mut done = 0u64;
            // Payment number k is made by user k mod users: each user pays its share.
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total || Instant::now() >= deadline {
                    break;
                }
                let payor = (k % args.users as u64) as usize;
                let payee = match pick_payee(&mut rng, payor, args.users, args.hot, args.hot_share)
                {
                    Payee::User(u) => u,
                    Payee::Hot(h) => args.users + h,
                };
                let begun = Instant::now();
                match pay(&pool, payor as i64, payee as i64, 1).await? {
                    true => done += 1,
                    false => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                recorder.record(begun.elapsed());
                bar.inc(1);
            }
            recorder.flush();
            anyhow::Ok(done)
        });
    }
    let mut done = 0u64;
    while let Some(joined) = workers.join_next().await {
        done += joined.context("a reference worker panicked")??;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let sum: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0)::BIGINT FROM loadtest_ref_accounts")
            .fetch_one(&pool)
            .await?;
    let transfers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM loadtest_ref_transfers")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    let deposited = i64::try_from(args.deposit * args.users as u64)?;
    report.metric("payments_committed", done as f64, "payments");
    report.metric("payments_per_sec", stats::rate(done, elapsed), "1/s");
    report.latencies.push(stats::summary_of(&acks, "commit"));
    report.check(
        "every payment committed",
        done == total,
        format!(
            "{done} of {total}; refused {}",
            refused.load(Ordering::Relaxed)
        ),
    );
    report.check(
        "balances sum to what was deposited",
        sum == deposited && transfers == i64::try_from(done)?,
        format!("sum {sum} vs deposited {deposited}; {transfers} transfer rows"),
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

/// Fresh tables: users with their deposit, hot merchants with nothing.
async fn prepare(pool: &PgPool, users: usize, hot: usize, deposit: u64) -> anyhow::Result<()> {
    for statement in [
        "DROP TABLE IF EXISTS loadtest_ref_transfers",
        "DROP TABLE IF EXISTS loadtest_ref_accounts",
        "CREATE TABLE loadtest_ref_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))",
        "CREATE TABLE loadtest_ref_transfers (id BIGSERIAL PRIMARY KEY, \
            payor BIGINT NOT NULL REFERENCES loadtest_ref_accounts(id), \
            payee BIGINT NOT NULL REFERENCES loadtest_ref_accounts(id), \
            amount BIGINT NOT NULL CHECK (amount > 0), \
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    ] {
        sqlx::query(statement).execute(pool).await.with_context(|| statement.to_owned())?;
    }
    let deposit = i64::try_from(deposit)?;
    sqlx::query(
        "INSERT INTO loadtest_ref_accounts (id, balance) \
         SELECT g, CASE WHEN g < $1 THEN $2 ELSE 0 END FROM generate_series(0, $3 - 1) AS g",
    )
    .bind(i64::try_from(users)?)
    .bind(deposit)
    .bind(i64::try_from(users + hot)?)
    .execute(pool)
    .await
    .context("creating the reference accounts")?;
    Ok(())
}

/// One payment, the usual way. `false` when the payor's balance is short.
async fn pay(pool: &PgPool, payor: i64, payee: i64, amount: i64) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, balance FROM loadtest_ref_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(vec![payor, payee])
    .fetch_all(&mut *tx)
    .await?;
    let mut balance = None;
    for row in &rows {
        if row.try_get::<i64, _>("id")? == payor {
            balance = Some(row.try_get::<i64, _>("balance")?);
        }
    }
    if rows.len() != 2 || balance.unwrap_or(0) < amount {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query("UPDATE loadtest_ref_accounts SET balance = balance - $2 WHERE id = $1")
        .bind(payor)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE loadtest_ref_accounts SET balance = balance + $2 WHERE id = $1")
        .bind(payee)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO loadtest_ref_transfers (payor, payee, amount) VALUES ($1, $2, $3)")
        .bind(payor)
        .bind(payee)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
