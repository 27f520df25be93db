//! `payments`: users pay each other over WebSocket, a share of them paying a few hot
//! merchants; every payment counts once its durable answer (`wallet`) is back. Afterwards each
//! account's balance is read with `balance` and must be what the acknowledged payments make
//! it, and all of them together what was deposited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::client::{RawReceived, Rest, User, Ws};
use crate::report::Report;
use crate::scenarios::Common;
use crate::stats::{self, Recorder};
use crate::{progress, setup};

/// What a paying user reads of a frame, in one pass: the frame's kind, an answer's id and
/// status, and a push's event kind. Decoding `ServerFrame` in full copies every frame into
/// serde's generic tree first (it is an internally tagged enum; see `fanout::Seen`), and most
/// frames of a run are the wallet's pushes (a balance, a payment received), which the run only
/// skips. An `error` answer, or a frame or event of a kind this does not know, is decoded in
/// full, so a frame the protocol does not define is still counted as undecodable.
#[derive(Debug, Deserialize)]
struct Seen {
    #[serde(rename = "type")]
    kind: SeenKind,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    event: Option<SeenEvent>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SeenKind {
    Wallet,
    Event,
    Heartbeat,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct SeenEvent {
    kind: SeenEventKind,
}

/// The pushes a payment makes.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SeenEventKind {
    Balance,
    PaymentReceived,
    #[serde(other)]
    Other,
}

/// A frame as a paying user handles it.
#[derive(Debug, PartialEq)]
enum UserFrame {
    /// The answer to a wallet op.
    Answer { id: Option<String>, status: String },
    /// Anything else, in full (an `error` answer, say).
    Full(ServerFrame),
    /// A heartbeat, or a push of the wallet's.
    Skip,
}

impl Seen {
    /// Read a frame. `None` for bytes that are no frame at all.
    fn read(codec: Codec, bytes: &[u8]) -> Option<UserFrame> {
        let full = || codec.decode::<ServerFrame>(bytes).ok().map(UserFrame::Full);
        let Ok(seen) = codec.decode::<Seen>(bytes) else {
            return full();
        };
        match (seen.kind, seen.status, seen.event) {
            (SeenKind::Wallet, Some(status), None) => Some(UserFrame::Answer {
                id: seen.id,
                status,
            }),
            (SeenKind::Event, _, Some(SeenEvent { kind })) if kind != SeenEventKind::Other => {
                Some(UserFrame::Skip)
            }
            (SeenKind::Heartbeat, ..) => Some(UserFrame::Skip),
            _ => full(),
        }
    }
}

/// The node refuses more than this many ops in flight on one connection (`busy` beyond).
pub const NODE_IN_FLIGHT_MAX: usize = 16;
/// How many times one payment is retried after `busy` before it counts as failed.
const BUSY_RETRIES_MAX: u32 = 100;
/// How long answers still in flight are awaited after the run's time is up.
const DRAIN: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsArgs {
    /// Paying users (each one WebSocket connection).
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Payments each user makes.
    #[arg(long, default_value_t = 100)]
    pub payments_per_user: u64,
    /// Hot merchant accounts.
    #[arg(long, default_value_t = 3)]
    pub hot: usize,
    /// Share of payments that go to a hot merchant (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    pub hot_share: f64,
    /// Payments in flight per connection (the node allows 16).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Credits deposited into each user's wallet.
    #[arg(long, default_value_t = 100_000)]
    pub deposit: u64,
    /// Credits per payment.
    #[arg(long, default_value_t = 1)]
    pub amount: u64,
    /// Stop sending after this long, whatever is left.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    /// Offer payments at this many a second in all, on a fixed schedule (an open loop), rather
    /// than keeping `--in-flight` outstanding (a closed loop, when 0). Each connection sends
    /// every `users ÷ rate` seconds, the connections evenly staggered, still at most
    /// `--in-flight` at once; a second latency, from each payment's scheduled time, shows
    /// what a backlog adds.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

impl PaymentsArgs {
    pub fn smoke(&mut self) {
        self.users = 8;
        self.payments_per_user = 20;
        self.hot = 2;
        self.in_flight = 4;
        self.deposit = 1_000;
        self.max_secs = 30;
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.users < 2 {
            bail!("--users must be at least 2 (someone to pay)");
        }
        if !(0.0..=1.0).contains(&self.hot_share) {
            bail!("--hot-share must be between 0 and 1");
        }
        if self.hot_share > 0.0 && self.hot == 0 {
            bail!("--hot-share needs --hot 1 or more");
        }
        if self.in_flight == 0 || self.in_flight > NODE_IN_FLIGHT_MAX {
            bail!("--in-flight must be 1 to {NODE_IN_FLIGHT_MAX}");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            bail!("--rate must be 0 (a closed loop) or a number of payments a second");
        }
        if self.payments_per_user == 0 {
            bail!("--payments-per-user must be at least 1");
        }
        if self.rate > 0.0 {
            // The schedule must end before --max-secs, or its last payments would silently
            // never be sent.
            let secs = self.payments_per_user as f64 * self.users as f64 / self.rate;
            if secs > self.max_secs as f64 {
                bail!(
                    "--rate {} takes {secs:.0} s for --users × --payments-per-user, over \
                     --max-secs {}",
                    self.rate,
                    self.max_secs
                );
            }
        }
        if self.amount == 0 || self.payments_per_user.saturating_mul(self.amount) > self.deposit {
            bail!("--deposit must cover --payments-per-user × --amount (so no payment is refused for funds)");
        }
        Ok(())
    }
}

/// What one paying connection did.
#[derive(Debug, Default)]
struct Outcome {
    succeeded: u64,
    refused: HashMap<String, u64>,
    errors: HashMap<String, u64>,
    busy_retries: u64,
    unanswered: u64,
    undecodable: u64,
    closed: Option<String>,
}

/// Where a payment goes: a hot merchant with probability `hot_share`, else another user.
pub fn pick_payee(
    rng: &mut impl Rng,
    me: usize,
    users: usize,
    hot: usize,
    hot_share: f64,
) -> Payee {
    if hot > 0 && rng.gen_bool(hot_share) {
        return Payee::Hot(rng.gen_range(0..hot));
    }
    // Uniform over the other users.
    let other = rng.gen_range(0..users - 1);
    Payee::User(if other >= me { other + 1 } else { other })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payee {
    User(usize),
    Hot(usize),
}

pub async fn run(common: &Common, mut args: PaymentsArgs) -> anyhow::Result<Report> {
    if common.smoke {
        args.smoke();
    }
    args.validate()?;
    let mut report = Report::new("payments");
    report.param("codec", common.codec_name());
    report.param("users", args.users as u64);
    report.param("payments_per_user", args.payments_per_user);
    report.param("hot", args.hot as u64);
    report.param("hot_share", args.hot_share);
    report.param("in_flight_per_connection", args.in_flight as u64);
    report.param("deposit", args.deposit);
    report.param("amount", args.amount);
    report.param("max_secs", args.max_secs);
    report.param("rate", args.rate);

    let rest = Rest::new(&common.target)?;
    rest.health().await?;
    let prefix = crate::client::run_prefix();
    let users = setup::users(
        &rest,
        args.users,
        &format!("{prefix}-u"),
        common.setup_concurrency,
    )
    .await?;
    let merchants = setup::users(
        &rest,
        args.hot,
        &format!("{prefix}-m"),
        common.setup_concurrency,
    )
    .await?;
    setup::each(users.len(), common.setup_concurrency, "deposits", |i| {
        let (rest, user) = (rest.clone(), users[i].clone());
        let request_id = format!("{prefix}-dep-{i}");
        async move { rest.deposit(&user, args.deposit, &request_id).await }
    })
    .await?;
    let deposited = args.deposit * users.len() as u64;
    let connections = setup::each(users.len(), common.setup_concurrency, "connect", |i| {
        let (target, token) = (common.target.clone(), users[i].token.clone());
        async move { Ws::connect(&target, common.codec, &token, None).await }
    })
    .await?;

    // Counts per account of the payments acknowledged as successful, to say afterwards what
    // each balance must be.
    let received: Arc<Vec<AtomicU64>> = Arc::new(
        (0..users.len() + merchants.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let acks = stats::shared();
    let from_schedule = stats::shared();
    let total = args.payments_per_user * users.len() as u64;
    let bar = progress::bar(total, "payments");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let payees: Arc<Vec<String>> = Arc::new(
        users
            .iter()
            .chain(merchants.iter())
            .map(|u| format!("user:{}", u.id))
            .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (me, ws) in connections.into_iter().enumerate() {
        let ctx = PayerCtx {
            me,
            users: users.len(),
            args: args.clone(),
            payees: Arc::clone(&payees),
            received: Arc::clone(&received),
            recorder: Recorder::new(&acks),
            from_schedule: Recorder::new(&from_schedule),
            schedule: Schedule::new(started, args.rate, me, users.len()),
            bar: bar.clone(),
            prefix: prefix.clone(),
            deadline,
        };
        tasks.spawn(payer(ws, ctx));
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.context("a paying task failed")?);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let mut sums = Outcome::default();
    for (_, o) in &outcomes {
        sums.succeeded += o.succeeded;
        sums.busy_retries += o.busy_retries;
        sums.unanswered += o.unanswered;
        sums.undecodable += o.undecodable;
        for (k, v) in &o.refused {
            *sums.refused.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *sums.errors.entry(k.clone()).or_default() += v;
        }
    }
    let closed: Vec<String> = outcomes
        .iter()
        .filter_map(|(_, o)| o.closed.clone())
        .collect();
    let mut sent_by = vec![0u64; users.len()];
    for (me, o) in &outcomes {
        sent_by[*me] = o.succeeded;
    }

    report.metric("payments_acknowledged", sums.succeeded as f64, "payments");
    report.metric(
        "payments_per_sec",
        stats::rate(sums.succeeded, elapsed),
        "1/s",
    );
    report.metric("busy_retries", sums.busy_retries as f64, "retries");
    report.metric("undecodable_frames", sums.undecodable as f64, "frames");
    report.latencies.push(stats::summary_of(&acks, "pay ack"));
    if args.rate > 0.0 {
        report.metric("payments_offered_per_sec", args.rate, "1/s");
        report
            .latencies
            .push(stats::summary_of(&from_schedule, "pay ack from schedule"));
    }
    report.check(
        "every payment acknowledged as success",
        sums.succeeded == total,
        format!(
            "{} of {total}; refused {:?}; errors {:?}; unanswered {}; connections closed: {}",
            sums.succeeded,
            sums.refused,
            sums.errors,
            sums.unanswered,
            if closed.is_empty() {
                "none".to_owned()
            } else {
                closed.join(", ")
            }
        ),
    );

    // Balances: every account's `balance`, against what the acknowledged payments make it.
    let everyone: Vec<User> = users.iter().chain(merchants.iter()).cloned().collect();
    let balances = setup::each(everyone.len(), common.setup_concurrency, "balances", |i| {
        let (target, token) = (common.target.clone(), everyone[i].token.clone());
        async move { balance_hundredths(&target, common.codec, &token).await }
    })
    .await?;
    let scale = 100u128;
    let mut mismatches = Vec::new();
    let mut sum: u128 = 0;
    for (i, actual) in balances.iter().enumerate() {
        sum += actual;
        let deposit = if i < users.len() { args.deposit } else { 0 };
        let spent = sent_by.get(i).copied().unwrap_or(0) * args.amount;
        let got = received[i].load(Ordering::Relaxed) * args.amount;
        let expected = u128::from(deposit + got).saturating_sub(u128::from(spent)) * scale;
        if *actual != expected {
            mismatches.push(format!(
                "{}: {} ≠ expected {}",
                everyone[i].id,
                *actual as f64 / 100.0,
                expected as f64 / 100.0
            ));
        }
    }
    let deposited_hundredths = u128::from(deposited) * scale;
    report.check(
        "balances sum to what was deposited",
        sum == deposited_hundredths,
        format!("sum {} vs deposited {deposited}", sum as f64 / 100.0),
    );
    report.check(
        "each balance is what its acknowledged payments make it",
        mismatches.is_empty(),
        if mismatches.is_empty() {
            format!("{} accounts checked", balances.len())
        } else {
            format!(
                "{} mismatches: {}",
                mismatches.len(),
                mismatches
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

struct PayerCtx {
    me: usize,
    users: usize,
    args: PaymentsArgs,
    payees: Arc<Vec<String>>,
    received: Arc<Vec<AtomicU64>>,
    recorder: Recorder,
    /// Latency from each payment's scheduled time (open loop only).
    from_schedule: Recorder,
    schedule: Option<Schedule>,
    bar: indicatif::ProgressBar,
    prefix: String,
    deadline: Instant,
}

/// When one connection's payments are due in an open loop.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    first: Instant,
    every: Duration,
}

impl Schedule {
    /// Connection `me` of `users` sharing `rate` payments a second from `start`; `None` for a
    /// closed loop (rate 0). Connection `me` starts `me ÷ users` of an interval late, so the
    /// connections' sends interleave instead of arriving together.
    fn new(start: Instant, rate: f64, me: usize, users: usize) -> Option<Schedule> {
        if rate <= 0.0 || users == 0 {
            return None;
        }
        let every = Duration::from_secs_f64(users as f64 / rate);
        let first = start + every.mul_f64(me as f64 / users as f64);
        Some(Schedule { first, every })
    }

    /// When payment `n` (from 0) is due.
    fn due(&self, n: u64) -> Instant {
        self.first + self.every.mul_f64(n as f64)
    }
}

/// When a payer stops waiting for an answer: while sending, at the next payment due if there
/// is room to send it (open loop), else at the deadline; once the deadline has passed, at the
/// end of the time answers still in flight are given.
fn wake_at(
    schedule: Option<&Schedule>,
    room: bool,
    next: u64,
    deadline: Instant,
    sending: bool,
) -> Instant {
    match schedule {
        _ if !sending => deadline + DRAIN,
        Some(s) if room => s.due(next).min(deadline),
        _ => deadline,
    }
}

/// A payment sent and not yet answered.
struct Pending {
    payee: usize,
    sent_at: Instant,
    /// When the schedule wanted it sent (open loop), else when it was sent.
    due: Instant,
    busy_retries: u32,
    frame: ClientFrame,
}

/// One user's connection: keep `in_flight` payments outstanding until all are made, or in an
/// open loop send each when its schedule says, with no more than `in_flight` outstanding.
async fn payer(mut ws: Ws, mut ctx: PayerCtx) -> (usize, Outcome) {
    let mut outcome = Outcome::default();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut next = 0u64;
    let amount = ctx.args.amount.to_string();
    loop {
        let now = Instant::now();
        let sending = now < ctx.deadline;
        if sending {
            while pending.len() < ctx.args.in_flight
                && next < ctx.args.payments_per_user
                && ctx.schedule.is_none_or(|s| s.due(next) <= now)
            {
                let payee = match pick_payee(
                    &mut rng,
                    ctx.me,
                    ctx.users,
                    ctx.args.hot,
                    ctx.args.hot_share,
                ) {
                    Payee::User(u) => u,
                    Payee::Hot(h) => ctx.users + h,
                };
                let id = format!("{}-p{}-{next}", ctx.prefix, ctx.me);
                let frame = ClientFrame::Pay {
                    id: Some(id.clone()),
                    payee: ctx.payees[payee].clone(),
                    amount: amount.clone(),
                    currency: None,
                    description: None,
                    transaction_id: None,
                };
                if let Err(error) = ws.feed(&frame).await {
                    outcome.closed = Some(format!("user {}: {error:#}", ctx.me));
                    break;
                }
                let sent_at = Instant::now();
                let due = ctx.schedule.map_or(sent_at, |s| s.due(next));
                pending.insert(
                    id,
                    Pending {
                        payee,
                        sent_at,
                        due,
                        busy_retries: 0,
                        frame,
                    },
                );
                next += 1;
            }
            if ws.flush().await.is_err() {
                outcome
                    .closed
                    .get_or_insert_with(|| format!("user {}: flush failed", ctx.me));
            }
        }
        if pending.is_empty() && (next >= ctx.args.payments_per_user || !sending) {
            break;
        }
        if outcome.closed.is_some() {
            break;
        }
        let wake = wake_at(
            ctx.schedule.as_ref(),
            pending.len() < ctx.args.in_flight && next < ctx.args.payments_per_user,
            next,
            ctx.deadline,
            sending,
        );
        let wake = tokio::time::Instant::from_std(wake);
        let bytes = match tokio::time::timeout_at(wake, ws.recv_bytes()).await {
            Err(_) if sending => continue,
            Err(_) => break,
            Ok(Err(error)) => {
                outcome.closed = Some(format!("user {}: {error:#}", ctx.me));
                break;
            }
            Ok(Ok(RawReceived::Closed(code))) => {
                outcome.closed = Some(format!("user {}: closed {code:?}", ctx.me));
                break;
            }
            Ok(Ok(RawReceived::Frame(bytes))) => bytes,
        };
        let Some(received) = Seen::read(ws.codec(), &bytes) else {
            ws.undecodable += 1;
            continue;
        };
        match received {
            UserFrame::Answer { id, status } => {
                let Some(Pending {
                    payee,
                    sent_at,
                    due,
                    ..
                }) = id.as_ref().and_then(|id| pending.remove(id))
                else {
                    continue;
                };
                ctx.recorder.record(sent_at.elapsed());
                if ctx.schedule.is_some() {
                    ctx.from_schedule.record(due.elapsed());
                }
                ctx.bar.inc(1);
                if status == "success" {
                    outcome.succeeded += 1;
                    ctx.received[payee].fetch_add(1, Ordering::Relaxed);
                } else {
                    *outcome.refused.entry(status).or_default() += 1;
                }
            }
            UserFrame::Full(ServerFrame::Error {
                id: Some(id),
                code,
                message,
            }) => {
                let Some(entry) = pending.get_mut(&id) else {
                    continue;
                };
                if code == ErrorCode::Busy && entry.busy_retries < BUSY_RETRIES_MAX {
                    // Nothing was applied: send the same id again after a short pause.
                    entry.busy_retries += 1;
                    outcome.busy_retries += 1;
                    let frame = entry.frame.clone();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if ws.send(&frame).await.is_err() {
                        outcome.closed = Some(format!("user {}: resend failed", ctx.me));
                        break;
                    }
                } else {
                    pending.remove(&id);
                    ctx.bar.inc(1);
                    *outcome
                        .errors
                        .entry(format!("{code:?}: {message}"))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    outcome.unanswered = pending.len() as u64;
    outcome.undecodable = ws.undecodable;
    ctx.recorder.flush();
    ctx.from_schedule.flush();
    ws.close().await;
    (ctx.me, outcome)
}

/// The EVG balance (`total`) of a user in hundredths, through the `balance` op.
async fn balance_hundredths(
    target: &crate::target::Target,
    codec: protocol::Codec,
    token: &str,
) -> anyhow::Result<u128> {
    let mut ws = Ws::connect(target, codec, token, None).await?;
    ws.send(&ClientFrame::Balance {
        id: Some("balance".into()),
    })
    .await?;
    let answer = ws
        .answer("balance", crate::client::REQUEST_TIMEOUT, |_| {})
        .await?;
    ws.close().await;
    let ServerFrame::Wallet(answer) = answer else {
        bail!("balance answered {answer:?}");
    };
    match answer.balances.iter().find(|b| b.currency == "EVG") {
        Some(b) => parse_hundredths(&b.total).with_context(|| format!("balance {:?}", b.total)),
        None => Ok(0),
    }
}

/// A non-negative decimal string (`"75"`, `"75.5"`, `"75.00"`) in hundredths.
pub fn parse_hundredths(raw: &str) -> anyhow::Result<u128> {
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        bail!("not a plain decimal");
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > 2 {
        bail!("more than two decimals");
    }
    let cents: u128 = format!("{frac_trimmed:0<2}").parse()?;
    Ok(int.parse::<u128>()? * 100 + cents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The one-pass read gets an answer's id and status as the full decode would, in either
    /// codec, skips the wallet's pushes and heartbeats, and hands everything else to the full
    /// decode.
    #[test]
    fn a_user_reads_what_the_full_decode_would() {
        use protocol::{Event, Push, WalletAnswer, WalletBalance};
        for codec in [Codec::Json, Codec::MsgPack] {
            let read = |frame: &ServerFrame| Seen::read(codec, &codec.encode(frame)).unwrap();
            let answer = ServerFrame::Wallet(WalletAnswer {
                id: Some("p1".into()),
                status: "insufficient_funds".into(),
                message: Some("not enough".into()),
                balances: vec![WalletBalance {
                    currency: "EVG".into(),
                    available: "1.00".into(),
                    total: "1.00".into(),
                }],
                transaction_id: None,
                transfer_id: None,
            });
            assert_eq!(
                read(&answer),
                UserFrame::Answer {
                    id: Some("p1".into()),
                    status: "insufficient_funds".into()
                },
                "{codec:?}"
            );
            let push = |event: Event| {
                ServerFrame::Event(Push {
                    topic: "user:u1".into(),
                    seq: Some(3),
                    event,
                })
            };
            let balance = push(Event::Balance {
                currency: "EVG".into(),
                available: "1.00".into(),
                total: "1.00".into(),
            });
            assert_eq!(read(&balance), UserFrame::Skip, "{codec:?}");
            assert_eq!(
                read(&ServerFrame::Heartbeat { ts: 1 }),
                UserFrame::Skip,
                "{codec:?}"
            );
            let error = ServerFrame::Error {
                id: Some("p2".into()),
                code: ErrorCode::Busy,
                message: "full".into(),
            };
            assert_eq!(read(&error), UserFrame::Full(error.clone()), "{codec:?}");
            // A push the payments do not make goes to the full decode.
            let other = push(Event::SessionRevoked {
                session_id: "s".into(),
            });
            assert_eq!(read(&other), UserFrame::Full(other.clone()), "{codec:?}");
            assert!(Seen::read(codec, b"\xc1 not a frame").is_none());
        }
        // A frame the protocol does not define is undecodable, as in the full decode.
        for json in [
            r#"{"type":"wallet","id":"p1"}"#,
            r#"{"type":"event","topic":"user:u1","event":{"kind":"no_such_event"}}"#,
            r#"{"type":"no_such_frame"}"#,
        ] {
            assert!(Seen::read(Codec::Json, json.as_bytes()).is_none(), "{json}");
        }
    }

    #[test]
    fn decimal_strings_become_hundredths() {
        assert_eq!(parse_hundredths("75").unwrap(), 7500);
        assert_eq!(parse_hundredths("75.5").unwrap(), 7550);
        assert_eq!(parse_hundredths("75.00").unwrap(), 7500);
        assert_eq!(parse_hundredths("0.07").unwrap(), 7);
        assert_eq!(parse_hundredths("1.230").unwrap(), 123);
        for bad in ["", "-1", "1.234", "1e3", "abc", ".5"] {
            assert!(parse_hundredths(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_open_loop_spreads_the_rate_over_staggered_connections() {
        let start = Instant::now();
        assert!(
            Schedule::new(start, 0.0, 0, 4).is_none(),
            "rate 0 is a closed loop"
        );
        // 4 connections sharing 1,000 a second: each sends every 4 ms, a millisecond apart.
        let firsts: Vec<Schedule> = (0..4)
            .map(|me| Schedule::new(start, 1_000.0, me, 4).unwrap())
            .collect();
        for (me, s) in firsts.iter().enumerate() {
            assert_eq!(s.every, Duration::from_millis(4));
            let offset = s.due(0) - start;
            let want = Duration::from_millis(me as u64);
            assert!(
                offset.abs_diff(want) < Duration::from_micros(1),
                "{me}: {offset:?}"
            );
            assert_eq!(s.due(250) - s.due(0), Duration::from_secs(1));
        }
        // Over one second the four together are due exactly 1,000 times.
        let due: usize = firsts
            .iter()
            .map(|s| {
                (0..)
                    .take_while(|&n| s.due(n) < start + Duration::from_secs(1))
                    .count()
            })
            .sum();
        assert_eq!(due, 1_000);
    }

    #[test]
    fn a_payer_wakes_for_the_next_payment_due_only_while_it_may_send_it() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(10);
        let s = Schedule::new(start, 100.0, 0, 1).unwrap();
        // Room: the next payment due (the 3rd, at 30 ms), not the deadline.
        assert_eq!(
            wake_at(Some(&s), true, 3, deadline, true),
            start + Duration::from_millis(30)
        );
        // Full: only an answer (or the deadline) can free room.
        assert_eq!(wake_at(Some(&s), false, 3, deadline, true), deadline);
        // A payment due after the deadline is never waited for.
        assert_eq!(wake_at(Some(&s), true, 5_000, deadline, true), deadline);
        // Closed loop: the deadline; after it, the drain, whatever the schedule.
        assert_eq!(wake_at(None, true, 3, deadline, true), deadline);
        assert_eq!(
            wake_at(Some(&s), true, 3, deadline, false),
            deadline + DRAIN
        );
        assert_eq!(wake_at(None, false, 3, deadline, false), deadline + DRAIN);
    }

    #[test]
    fn an_open_loop_must_fit_its_time() {
        let mut args = PaymentsArgs {
            users: 200,
            payments_per_user: 200,
            hot: 3,
            hot_share: 0.2,
            in_flight: 16,
            deposit: 100_000,
            amount: 1,
            max_secs: 120,
            rate: 10_000.0,
        };
        assert!(args.validate().is_ok());
        // 40,000 payments at 100 a second is 400 s: over 120.
        args.rate = 100.0;
        assert!(args.validate().is_err());
        args.rate = f64::MIN_POSITIVE;
        assert!(args.validate().is_err());
        args.rate = 0.0;
        assert!(
            args.validate().is_ok(),
            "a closed loop has no schedule to fit"
        );
        args.payments_per_user = 0;
        assert!(args.validate().is_err());
    }

    #[test]
    fn payees_are_never_the_payer_and_hot_ones_get_their_share() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut hot, n) = (0u32, 20_000);
        for _ in 0..n {
            match pick_payee(&mut rng, 3, 10, 3, 0.2) {
                Payee::User(u) => assert!(u != 3 && u < 10),
                Payee::Hot(h) => {
                    assert!(h < 3);
                    hot += 1;
                }
            }
        }
        let share = f64::from(hot) / f64::from(n);
        assert!((share - 0.2).abs() < 0.02, "{share}");
        assert!(matches!(pick_payee(&mut rng, 0, 2, 0, 0.0), Payee::User(1)));
    }
}
