//! `reference-fanout`: the traffic of `fanout`, carried by the Socket.IO reference server
//! (`loadtest/reference/socketio`, with its Redis adapter) instead of the node. The same
//! threads of two participants with the same devices each, every device in its thread's
//! room, both participants' posting devices posting the same messages with the same posts in
//! flight; every device must receive every message of its thread once, each sender's in
//! order. Latency is from the send instant written into the message to its delivery.
//!
//! Socket.IO keeps no history and numbers nothing: where the node's `seq` is checked,
//! here each sender's post numbers are.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::report::Report;
use crate::scenarios::fanout::FanoutArgs;
use crate::scenarios::{micros_since_origin, parse_stamp, stamp, SeqAudit};
use crate::sio::{Sio, SioReceived};
use crate::stats::{self, Recorder};
use crate::target::{self, Target};
use crate::{progress, setup};

/// How long deliveries still on their way are awaited after the run's time is up.
const DRAIN: Duration = Duration::from_secs(15);

/// Where the Socket.IO reference server is, for `reference-fanout` and `reference-connections`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The Socket.IO reference server's base URL: loopback only.
    #[arg(long, env = "SOCKETIO_URL", default_value = "http://127.0.0.1:3000")]
    pub server_url: String,
    /// The token every connection presents (the server takes any non-empty one, or exactly
    /// its SIO_TOKEN when that is set).
    #[arg(long, env = "SIO_TOKEN", default_value = "loadtest")]
    pub token: String,
}

impl ServerArgs {
    pub fn target(&self) -> anyhow::Result<Target> {
        target::parse_target(&self.server_url)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceFanoutArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub shape: FanoutArgs,
}

struct Device {
    sio: Sio,
    thread: String,
    /// `Some(participant index)` for the device that posts for its participant.
    poster: Option<usize>,
}

#[derive(Debug, Default)]
struct DeviceOutcome {
    delivered: u64,
    posted: u64,
    /// Per sender: its post numbers as they arrived (+1, so that the first is 1).
    audits: HashMap<usize, SeqAudit>,
    post_errors: HashMap<String, u64>,
    foreign: u64,
    ended: Option<String>,
    last_delivery: Option<Instant>,
}

pub async fn run(
    smoke: bool,
    setup_concurrency: usize,
    mut args: ReferenceFanoutArgs,
) -> anyhow::Result<Report> {
    if smoke {
        args.shape.smoke();
    }
    args.shape.validate()?;
    let shape = args.shape.clone();
    let target = args.server.target()?;
    let mut report = Report::new("reference-fanout");
    report.param("server", "socket.io + redis adapter");
    report.param("threads", shape.threads as u64);
    report.param("participants_per_thread", 2u64);
    report.param("devices_per_participant", shape.devices as u64);
    report.param("messages_per_participant", shape.messages);
    report.param("in_flight_per_poster", shape.in_flight as u64);
    report.param("max_secs", shape.max_secs);

    let run_id = crate::client::run_prefix();
    let per_thread = 2 * shape.devices;
    let devices = setup::each(
        shape.threads * per_thread,
        setup_concurrency,
        "devices",
        |n| {
            let t = n / per_thread;
            let participant = 2 * t + (n % per_thread) / shape.devices;
            let is_poster = n % shape.devices == 0;
            let (target, token) = (target.clone(), args.server.token.clone());
            let thread = format!("{run_id}-t{t}");
            async move {
                let mut sio = Sio::connect(&target, &token, None).await?;
                let answer = sio.call("join", &[json!(thread)]).await?;
                if answer.first().and_then(|a| a.get("ok")) != Some(&Value::Bool(true)) {
                    bail!("joining {thread}: {answer:?}");
                }
                Ok(Device {
                    sio,
                    thread,
                    poster: is_poster.then_some(participant),
                })
            }
        },
    )
    .await?;

    let deliveries = stats::shared();
    let acks = stats::shared();
    let per_device = 2 * shape.messages;
    let expected = per_device * devices.len() as u64;
    let bar = progress::bar(expected, "deliveries");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(shape.max_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for device in devices {
        let ctx = DeviceCtx {
            run_id: run_id.clone(),
            shape: shape.clone(),
            expected: per_device,
            deliveries: Recorder::new(&deliveries),
            acks: Recorder::new(&acks),
            bar: bar.clone(),
            deadline,
        };
        tasks.spawn(device_task(device, ctx));
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.context("a device task failed")?);
    }
    bar.finish_and_clear();
    let last = outcomes
        .iter()
        .filter_map(|o| o.last_delivery)
        .max()
        .unwrap_or_else(Instant::now);
    let elapsed = last.saturating_duration_since(started);

    let delivered: u64 = outcomes.iter().map(|o| o.delivered).sum();
    let posted: u64 = outcomes.iter().map(|o| o.posted).sum();
    let audits = || outcomes.iter().flat_map(|o| o.audits.values());
    let gaps: u64 = audits().map(|a| a.gaps).sum();
    let duplicates: u64 = audits().map(|a| a.duplicates).sum();
    let foreign: u64 = outcomes.iter().map(|o| o.foreign).sum();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for o in &outcomes {
        for (k, v) in &o.post_errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let ended: Vec<String> = outcomes.iter().filter_map(|o| o.ended.clone()).collect();
    report.metric("messages_posted", posted as f64, "messages");
    report.metric("deliveries", delivered as f64, "deliveries");
    report.metric("deliveries_per_sec", stats::rate(delivered, elapsed), "1/s");
    report.metric("posts_per_sec", stats::rate(posted, elapsed), "1/s");
    report
        .latencies
        .push(stats::summary_of(&deliveries, "publish to delivery"));
    report.latencies.push(stats::summary_of(&acks, "post ack"));
    let posts_expected = 2 * shape.messages * shape.threads as u64;
    report.check(
        "every post acknowledged",
        posted == posts_expected && errors.is_empty(),
        format!("{posted} of {posts_expected}; errors {errors:?}"),
    );
    report.check(
        "every device got every message of its thread",
        delivered == expected,
        format!(
            "{delivered} of {expected}; unattributed {foreign}; connections ended early: {}",
            if ended.is_empty() {
                "none".to_owned()
            } else {
                ended.join(", ")
            }
        ),
    );
    report.check(
        "no gap and no duplicate in any sender's posts",
        gaps == 0 && duplicates == 0,
        format!("{gaps} gaps, {duplicates} duplicates"),
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

struct DeviceCtx {
    run_id: String,
    shape: FanoutArgs,
    expected: u64,
    deliveries: Recorder,
    acks: Recorder,
    bar: indicatif::ProgressBar,
    deadline: Instant,
}

async fn device_task(device: Device, mut ctx: DeviceCtx) -> DeviceOutcome {
    let Device {
        mut sio,
        thread,
        poster,
    } = device;
    let mut out = DeviceOutcome::default();
    let to_post = if poster.is_some() {
        ctx.shape.messages
    } else {
        0
    };
    let mut next = 0u64;
    // Acknowledgement id → sent at.
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        let sending = now < ctx.deadline;
        if let (Some(sender), true) = (poster, sending) {
            let mut fed = false;
            while pending.len() < ctx.shape.in_flight && next < to_post {
                let post = json!({
                    "thread": thread,
                    "content": stamp(&ctx.run_id, sender, next, micros_since_origin()),
                });
                match sio.feed_with_ack("post", &[post]).await {
                    Ok(id) => {
                        pending.insert(id, Instant::now());
                        next += 1;
                        fed = true;
                    }
                    Err(_) => {
                        out.ended = Some("post failed".into());
                        break;
                    }
                }
            }
            if fed && sio.flush().await.is_err() {
                out.ended.get_or_insert_with(|| "flush failed".into());
            }
        }
        let posting_done = pending.is_empty() && (next >= to_post || !sending);
        if (out.delivered >= ctx.expected && posting_done) || out.ended.is_some() {
            break;
        }
        let until = if sending {
            ctx.deadline
        } else {
            ctx.deadline + DRAIN
        };
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let got = match tokio::time::timeout(wait, sio.recv()).await {
            Err(_) if sending => continue,
            Err(_) => break,
            Ok(Err(error)) => {
                out.ended = Some(format!("{error:#}"));
                break;
            }
            Ok(Ok(SioReceived::Closed(why))) => {
                out.ended = Some(why);
                break;
            }
            Ok(Ok(got)) => got,
        };
        match got {
            SioReceived::Message { content } => {
                let received_us = micros_since_origin();
                out.delivered += 1;
                out.last_delivery = Some(Instant::now());
                ctx.bar.inc(1);
                match parse_stamp(&content) {
                    Some((run, sender, n, sent_us)) if run == ctx.run_id => {
                        out.audits
                            .entry(sender)
                            .or_insert_with(|| SeqAudit::after(0))
                            .see(n + 1);
                        ctx.deliveries
                            .record(Duration::from_micros(received_us.saturating_sub(sent_us)));
                    }
                    _ => out.foreign += 1,
                }
            }
            SioReceived::Ack { id, args } => {
                let Some(sent_at) = pending.remove(&id) else {
                    continue;
                };
                if args.first().and_then(|a| a.get("ok")) == Some(&Value::Bool(true)) {
                    ctx.acks.record(sent_at.elapsed());
                    out.posted += 1;
                } else {
                    *out.post_errors.entry(format!("{args:?}")).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    ctx.deliveries.flush();
    ctx.acks.flush();
    sio.close().await;
    out
}
