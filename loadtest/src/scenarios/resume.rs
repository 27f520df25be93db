//! `resume`: a device watches a thread, goes away, K messages are posted, and it comes back
//! with `subscribe … since`; it must receive exactly the missed messages, in order, then live
//! ones (a post racing the reconnect included), with no gap and no duplicate. Measured: the
//! time from starting to reconnect until the last missed message is in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::{ClientFrame, ErrorCode, Event, ServerFrame};

use crate::client::{Received, Rest, User, Ws, REQUEST_TIMEOUT};
use crate::report::Report;
use crate::scenarios::fanout::subscribe;
use crate::scenarios::{micros_since_origin, stamp, Common, SeqAudit};
use crate::stats::{self, Recorder};
use crate::target::Target;
use crate::{progress, setup};

#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// Clients, each with its own thread (a poster and a watching device).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Messages posted while the device is away. The node replays up to `WS_RESUME_MAX`
    /// (1000) events, and the live post that races the reconnect can commit before the
    /// node reads the gap, making it one longer: 999 is the largest gap always replayed.
    #[arg(long, default_value_t = 999)]
    pub missed: u64,
    /// Disconnect, miss, reconnect: how many times per client.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// Posts in flight while posting the missed messages.
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// The whole scenario's time limit.
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
}

impl ResumeArgs {
    pub fn smoke(&mut self) {
        self.clients = 4;
        self.missed = 50;
        self.rounds = 2;
        self.max_secs = 60;
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.clients == 0 || self.rounds == 0 || self.missed == 0 {
            bail!("--clients, --rounds and --missed must be at least 1");
        }
        if self.in_flight == 0 || self.in_flight > super::payments::NODE_IN_FLIGHT_MAX {
            bail!("--in-flight must be 1 to 16");
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct ClientOutcome {
    rounds_done: u64,
    gaps: u64,
    duplicates: u64,
    /// Rounds where the received seqs were not exactly the posted ones.
    wrong: Vec<String>,
    gap_too_large: u64,
    failed: Option<String>,
}

pub async fn run(common: &Common, mut args: ResumeArgs) -> anyhow::Result<Report> {
    if common.smoke {
        args.smoke();
    }
    args.validate()?;
    let mut report = Report::new("resume");
    report.param("codec", common.codec_name());
    report.param("clients", args.clients as u64);
    report.param("missed_per_round", args.missed);
    report.param("rounds", args.rounds);
    report.param("in_flight", args.in_flight as u64);
    report.param("max_secs", args.max_secs);

    let rest = Rest::new(&common.target)?;
    rest.health().await?;
    let run_id = crate::client::run_prefix();
    let users = setup::users(&rest, args.clients * 2, &run_id, common.setup_concurrency).await?;
    let threads = setup::each(args.clients, common.setup_concurrency, "threads", |c| {
        let (rest, guest, host) = (rest.clone(), users[2 * c].clone(), users[2 * c + 1].clone());
        async move { rest.thread(&guest, &host).await }
    })
    .await?;

    let recovery = stats::shared();
    let to_live = stats::shared();
    let bar = progress::bar(args.clients as u64 * args.rounds, "rounds");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.clients {
        let ctx = ClientCtx {
            target: common.target.clone(),
            codec: common.codec,
            run_id: run_id.clone(),
            sender: c,
            guest: users[2 * c].clone(),
            host: users[2 * c + 1].clone(),
            thread_id: threads[c].clone(),
            args: args.clone(),
            recovery: Recorder::new(&recovery),
            to_live: Recorder::new(&to_live),
            bar: bar.clone(),
        };
        let limit = Duration::from_secs(args.max_secs);
        tasks.spawn(async move {
            match tokio::time::timeout(limit, client(ctx)).await {
                Ok(outcome) => outcome,
                Err(_) => ClientOutcome {
                    failed: Some("the time limit ran out".into()),
                    ..ClientOutcome::default()
                },
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.context("a resume client failed")?);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    let rounds: u64 = outcomes.iter().map(|o| o.rounds_done).sum();
    let gaps: u64 = outcomes.iter().map(|o| o.gaps).sum();
    let duplicates: u64 = outcomes.iter().map(|o| o.duplicates).sum();
    let too_large: u64 = outcomes.iter().map(|o| o.gap_too_large).sum();
    let wrong: Vec<String> = outcomes.iter().flat_map(|o| o.wrong.clone()).collect();
    let failed: Vec<String> = outcomes.iter().filter_map(|o| o.failed.clone()).collect();
    let expected_rounds = args.clients as u64 * args.rounds;
    report.metric("recoveries", rounds as f64, "rounds");
    report.metric(
        "messages_replayed",
        (rounds * args.missed) as f64,
        "messages",
    );
    report.metric("gaps", gaps as f64, "gaps");
    report.metric("duplicates", duplicates as f64, "duplicates");
    report.metric("gap_too_large_answers", too_large as f64, "rounds");
    report
        .latencies
        .push(stats::summary_of(&recovery, "reconnect to full recovery"));
    report.latencies.push(stats::summary_of(
        &to_live,
        "reconnect to first live message",
    ));
    report.check(
        "every round recovered",
        rounds == expected_rounds && failed.is_empty(),
        format!(
            "{rounds} of {expected_rounds}; failures: {}",
            if failed.is_empty() {
                "none".into()
            } else {
                failed
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        ),
    );
    report.check(
        "no gap and no duplicate",
        gaps == 0 && duplicates == 0 && wrong.is_empty(),
        format!(
            "{gaps} gaps, {duplicates} duplicates, {} rounds with other seqs than posted{}",
            wrong.len(),
            wrong
                .first()
                .map(|w| format!(" (first: {w})"))
                .unwrap_or_default()
        ),
    );
    report.check(
        "replayed, not refused",
        too_large == 0 || args.missed >= 1000,
        format!("{too_large} rounds answered gap_too_large"),
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

struct ClientCtx {
    target: Target,
    codec: protocol::Codec,
    run_id: String,
    sender: usize,
    guest: User,
    host: User,
    thread_id: String,
    args: ResumeArgs,
    recovery: Recorder,
    to_live: Recorder,
    bar: indicatif::ProgressBar,
}

async fn client(mut ctx: ClientCtx) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    if let Err(error) = rounds(&mut ctx, &mut out).await {
        out.failed = Some(format!("client {}: {error:#}", ctx.sender));
    }
    ctx.recovery.flush();
    ctx.to_live.flush();
    out
}

async fn rounds(ctx: &mut ClientCtx, out: &mut ClientOutcome) -> anyhow::Result<()> {
    let mut poster = Ws::connect(&ctx.target, ctx.codec, &ctx.guest.token, None).await?;
    let mut device = Ws::connect(&ctx.target, ctx.codec, &ctx.host.token, None).await?;
    subscribe(&mut device, &ctx.thread_id, None).await?;
    // The thread is new: nothing seen yet.
    let mut last_seen = 0u64;
    let mut posts = 0u64;
    for round in 0..ctx.args.rounds {
        device.close().await;
        let missed = post_many(&mut poster, ctx, &mut posts, ctx.args.missed).await?;
        let started = Instant::now();
        let live_id = format!("{}-r{}-live{round}", ctx.run_id, ctx.sender);
        let (reconnected, live) = tokio::join!(
            reconnect(ctx, last_seen, missed.len() as u64, started),
            async {
                // The live post races the reconnect: sent once the device has begun.
                tokio::time::sleep(Duration::from_millis(1)).await;
                post_one(&mut poster, ctx, &live_id, posts).await
            }
        );
        posts += 1;
        let (ws, got, resume, recovered, live_at) = reconnected?;
        let live_seq = live?;
        device = ws;
        if let Some(refused) = resume.as_ref().filter(|r| r.gap_too_large) {
            out.gap_too_large += 1;
            bail!(
                "round {round}: the node answered gap_too_large after since={last_seen}: head {}, \
                 a gap of {} (more than WS_RESUME_MAX, the live post included)",
                refused.head,
                refused.head.saturating_sub(last_seen)
            );
        }
        let mut audit = SeqAudit::after(last_seen);
        got.iter().for_each(|s| audit.see(*s));
        out.gaps += audit.gaps;
        out.duplicates += audit.duplicates;
        let mut expected = missed.clone();
        expected.push(live_seq);
        if got != expected {
            out.wrong.push(format!(
                "client {} round {round}: got {} seqs {:?}…, expected {} from {:?}",
                ctx.sender,
                got.len(),
                got.first(),
                expected.len(),
                expected.first()
            ));
        }
        if let Some(at) = recovered {
            ctx.recovery.record(at);
        }
        if let Some(at) = live_at {
            ctx.to_live.record(at);
        }
        last_seen = got.last().copied().unwrap_or(last_seen);
        out.rounds_done += 1;
        ctx.bar.inc(1);
    }
    device.close().await;
    poster.close().await;
    Ok(())
}

type Reconnected = (
    Ws,
    Vec<u64>,
    Option<protocol::TopicResume>,
    Option<Duration>,
    Option<Duration>,
);

/// Connect again, subscribe with `since`, and read the replay then the live post: the seqs
/// in arrival order, and when the last missed one and the live one arrived.
async fn reconnect(
    ctx: &ClientCtx,
    since: u64,
    missed: u64,
    started: Instant,
) -> anyhow::Result<Reconnected> {
    let mut ws = Ws::connect(&ctx.target, ctx.codec, &ctx.host.token, None).await?;
    let resume = subscribe(&mut ws, &ctx.thread_id, Some(since)).await?;
    let mut got = Vec::new();
    let (mut recovered, mut live) = (None, None);
    if resume.as_ref().is_some_and(|r| r.gap_too_large) {
        // Nothing is replayed: the caller reports the refusal rather than wait for it.
        return Ok((ws, got, resume, recovered, live));
    }
    if missed == 0 {
        recovered = Some(started.elapsed());
    }
    while (got.len() as u64) < missed + 1 {
        let next = ws.recv_timeout(REQUEST_TIMEOUT).await.with_context(|| {
            format!(
                "waiting for the replay after since={since}: {} of {} messages in, the last seq {:?}",
                got.len(),
                missed + 1,
                got.last()
            )
        })?;
        match next {
            Received::Frame(frame) => {
                if let ServerFrame::Event(push) = *frame {
                    if let Event::MessagePosted { message } = push.event {
                        got.push(push.seq.unwrap_or(message.seq));
                        if got.len() as u64 == missed {
                            recovered = Some(started.elapsed());
                        }
                        if got.len() as u64 == missed + 1 {
                            live = Some(started.elapsed());
                        }
                    }
                }
            }
            Received::Closed(code) => bail!("the device was closed ({code:?}) while resuming"),
        }
    }
    Ok((ws, got, resume, recovered, live))
}

/// Post `n` messages with `in_flight` outstanding; their seqs in seq order.
async fn post_many(
    ws: &mut Ws,
    ctx: &ClientCtx,
    posts: &mut u64,
    n: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut pending: HashMap<String, (ClientFrame, u32)> = HashMap::new();
    let mut seqs = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut sent = 0u64;
    while (seqs.len() as u64) < n {
        while pending.len() < ctx.args.in_flight && sent < n {
            let id = format!("{}-r{}-{}", ctx.run_id, ctx.sender, *posts);
            let frame = post_frame(ctx, &id, *posts);
            ws.feed(&frame).await?;
            pending.insert(id, (frame, 0));
            sent += 1;
            *posts += 1;
        }
        ws.flush().await?;
        match ws
            .recv_timeout(REQUEST_TIMEOUT)
            .await
            .context("waiting for posted")?
        {
            Received::Frame(frame) => match *frame {
                ServerFrame::Posted {
                    id: Some(id),
                    message,
                } if pending.remove(&id).is_some() => {
                    seqs.push(message.seq);
                }
                ServerFrame::Error {
                    id: Some(id),
                    code: ErrorCode::Busy,
                    ..
                } => {
                    if let Some((frame, tries)) = pending.get_mut(&id) {
                        *tries += 1;
                        if *tries > 100 {
                            bail!("post {id} stayed busy");
                        }
                        let frame = frame.clone();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        ws.send(&frame).await?;
                    }
                }
                ServerFrame::Error { id, code, message } => {
                    bail!("post {id:?}: {code:?} {message}")
                }
                _ => {}
            },
            Received::Closed(code) => bail!("the poster was closed ({code:?})"),
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

async fn post_one(ws: &mut Ws, ctx: &ClientCtx, id: &str, n: u64) -> anyhow::Result<u64> {
    ws.send(&post_frame(ctx, id, n)).await?;
    match ws.answer(id, REQUEST_TIMEOUT, |_| {}).await? {
        ServerFrame::Posted { message, .. } => Ok(message.seq),
        other => bail!("live post: {other:?}"),
    }
}

fn post_frame(ctx: &ClientCtx, id: &str, n: u64) -> ClientFrame {
    ClientFrame::PostMessage {
        id: Some(id.to_owned()),
        thread_id: ctx.thread_id.clone(),
        content: stamp(&ctx.run_id, ctx.sender, n, micros_since_origin()),
        message_type: None,
        media_url: None,
    }
}
