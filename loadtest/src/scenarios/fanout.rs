//! `fanout`: threads of two participants (a guest and a host), each on several devices, every
//! device subscribed to its thread; both participants post, and every device must receive
//! every message of its thread once, in order. Latency is from the client's send instant,
//! written into the message, to its delivery on each device: one process, one clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use serde::Deserialize;

use crate::client::{RawReceived, Rest, Ws};
use crate::report::Report;
use crate::scenarios::{micros_since_origin, parse_stamp, stamp, Common, SeqAudit};
use crate::stats::{self, Recorder};
use crate::{progress, setup};

/// What a device reads of a frame, in one pass. `ServerFrame` and its `Event` are internally
/// tagged enums, which serde decodes by first copying the whole frame into its own generic
/// tree (`Content`) and then decoding that: in a fanout run it was about a quarter of the load
/// generator's CPU (BENCHMARKS.md §3), taken from the machine the node is measured on. A
/// device needs a frame's kind, its answer id and, of a posted message, its sequence numbers
/// and content; everything else is skipped. An `error` answer, or a frame this cannot read,
/// is decoded in full (see [`Seen::read`]).
#[derive(Debug, Deserialize)]
struct Seen {
    #[serde(rename = "type")]
    kind: SeenKind,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    event: Option<SeenEvent>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SeenKind {
    Event,
    Posted,
    Heartbeat,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct SeenEvent {
    kind: SeenEventKind,
    #[serde(default)]
    message: Option<SeenMessage>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SeenEventKind {
    MessagePosted,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct SeenMessage {
    seq: u64,
    content: String,
}

/// A frame as a device handles it.
#[derive(Debug)]
enum DeviceFrame {
    /// A message posted on the device's thread: its topic sequence number (the message's own
    /// when the push has none) and its content.
    Posted { seq: u64, content: String },
    /// The answer to one of the device's posts.
    Answer { id: String },
    /// Anything else, in full (an `error` answer, say).
    Full(ServerFrame),
    /// A heartbeat.
    Skip,
}

impl Seen {
    /// Read a frame. `None` for bytes that are no frame at all.
    ///
    /// Only the three kinds that make up a run are read in one pass: a posted message, an
    /// answer to a post, a heartbeat. Unlike the full decode, that pass does not refuse fields
    /// it does not know; anything else, including a `message_posted` without its message and
    /// an event of a kind this does not know, goes to the full decode, so a frame the
    /// protocol does not define is still counted as undecodable (`undecodable_frames`).
    fn read(codec: Codec, bytes: &[u8]) -> Option<DeviceFrame> {
        let full = || {
            codec
                .decode::<ServerFrame>(bytes)
                .ok()
                .map(DeviceFrame::Full)
        };
        let Ok(seen) = codec.decode::<Seen>(bytes) else {
            return full();
        };
        match seen.kind {
            SeenKind::Event => match seen.event {
                Some(SeenEvent {
                    kind: SeenEventKind::MessagePosted,
                    message: Some(message),
                }) => Some(DeviceFrame::Posted {
                    seq: seen.seq.unwrap_or(message.seq),
                    content: message.content,
                }),
                _ => full(),
            },
            SeenKind::Posted => match seen.id {
                Some(id) => Some(DeviceFrame::Answer { id }),
                None => full(),
            },
            SeenKind::Heartbeat => Some(DeviceFrame::Skip),
            SeenKind::Other => full(),
        }
    }
}

/// How long deliveries still on their way are awaited after the run's time is up.
const DRAIN: Duration = Duration::from_secs(15);
/// Retries of one post after `busy`.
const BUSY_RETRIES_MAX: u32 = 100;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Threads (each between a guest and a host: two participants).
    #[arg(long, default_value_t = 100)]
    pub threads: usize,
    /// Devices (connections) per participant; the node allows 16 per user.
    #[arg(long, default_value_t = 4)]
    pub devices: usize,
    /// Messages each participant posts.
    #[arg(long, default_value_t = 50)]
    pub messages: u64,
    /// Posts in flight per posting device (the node allows 16 ops per connection).
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Stop posting after this long, whatever is left.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
}

impl FanoutArgs {
    pub fn smoke(&mut self) {
        self.threads = 4;
        self.devices = 2;
        self.messages = 10;
        self.in_flight = 4;
        self.max_secs = 30;
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.threads == 0 || self.messages == 0 {
            bail!("--threads and --messages must be at least 1");
        }
        if self.devices == 0 || self.devices > 16 {
            bail!("--devices must be 1 to 16 (the node's default connections per user)");
        }
        if self.in_flight == 0 || self.in_flight > super::payments::NODE_IN_FLIGHT_MAX {
            bail!("--in-flight must be 1 to 16");
        }
        Ok(())
    }
}

/// One device's part.
struct Device {
    ws: Ws,
    thread_id: String,
    /// `Some(participant index)` for the device that posts for its participant.
    poster: Option<usize>,
}

#[derive(Debug, Default)]
struct DeviceOutcome {
    delivered: u64,
    posted: u64,
    audit: SeqAudit,
    post_errors: HashMap<String, u64>,
    busy_retries: u64,
    /// Frames that are not protocol frames (see [`Seen::read`]).
    undecodable: u64,
    foreign: u64,
    ended: Option<String>,
    last_delivery: Option<Instant>,
}

pub async fn run(common: &Common, mut args: FanoutArgs) -> anyhow::Result<Report> {
    if common.smoke {
        args.smoke();
    }
    args.validate()?;
    let mut report = Report::new("fanout");
    report.param("codec", common.codec_name());
    report.param("threads", args.threads as u64);
    report.param("participants_per_thread", 2u64);
    report.param("devices_per_participant", args.devices as u64);
    report.param("messages_per_participant", args.messages);
    report.param("in_flight_per_poster", args.in_flight as u64);
    report.param("max_secs", args.max_secs);

    let rest = Rest::new(&common.target)?;
    rest.health().await?;
    let run_id = crate::client::run_prefix();
    let users = setup::users(&rest, args.threads * 2, &run_id, common.setup_concurrency).await?;
    let threads = setup::each(args.threads, common.setup_concurrency, "threads", |t| {
        let (rest, guest, host) = (rest.clone(), users[2 * t].clone(), users[2 * t + 1].clone());
        async move { rest.thread(&guest, &host).await }
    })
    .await?;
    // Device d of participant p of thread t: connection number (t·2 + p)·devices + d.
    let per_thread = 2 * args.devices;
    let devices = setup::each(
        args.threads * per_thread,
        common.setup_concurrency,
        "devices",
        |n| {
            let t = n / per_thread;
            let participant = 2 * t + (n % per_thread) / args.devices;
            let is_poster = n % args.devices == 0;
            let (target, token, thread_id) = (
                common.target.clone(),
                users[participant].token.clone(),
                threads[t].clone(),
            );
            async move {
                let mut ws = Ws::connect(&target, common.codec, &token, None).await?;
                subscribe(&mut ws, &thread_id, None).await?;
                Ok(Device {
                    ws,
                    thread_id,
                    poster: is_poster.then_some(participant),
                })
            }
        },
    )
    .await?;

    let deliveries = stats::shared();
    let acks = stats::shared();
    let per_device = 2 * args.messages;
    let expected = per_device * devices.len() as u64;
    let bar = progress::bar(expected, "deliveries");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for device in devices {
        let ctx = DeviceCtx {
            run_id: run_id.clone(),
            args: args.clone(),
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
    let gaps: u64 = outcomes.iter().map(|o| o.audit.gaps).sum();
    let duplicates: u64 = outcomes.iter().map(|o| o.audit.duplicates).sum();
    let busy: u64 = outcomes.iter().map(|o| o.busy_retries).sum();
    let undecodable: u64 = outcomes.iter().map(|o| o.undecodable).sum();
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
    report.metric("busy_retries", busy as f64, "retries");
    report.metric("undecodable_frames", undecodable as f64, "frames");
    report
        .latencies
        .push(stats::summary_of(&deliveries, "publish to delivery"));
    report.latencies.push(stats::summary_of(&acks, "post ack"));
    let posts_expected = 2 * args.messages * args.threads as u64;
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
        "no gap and no duplicate",
        gaps == 0 && duplicates == 0,
        format!("{gaps} gaps, {duplicates} duplicates"),
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

/// Subscribe to `thread:<id>` (resuming after `since`) and wait for `subscribed`. Frames
/// that arrive before the answer are handed back (a resume's replay follows the answer).
pub async fn subscribe(
    ws: &mut Ws,
    thread_id: &str,
    since: Option<u64>,
) -> anyhow::Result<Option<protocol::TopicResume>> {
    ws.send(&ClientFrame::Subscribe {
        id: Some("sub".into()),
        topic: format!("thread:{thread_id}"),
        since,
    })
    .await?;
    match ws
        .answer("sub", crate::client::REQUEST_TIMEOUT, |_| {})
        .await?
    {
        ServerFrame::Subscribed { resume, .. } => Ok(resume),
        other => bail!("subscribing to thread {thread_id}: {other:?}"),
    }
}

struct DeviceCtx {
    run_id: String,
    args: FanoutArgs,
    expected: u64,
    deliveries: Recorder,
    acks: Recorder,
    bar: indicatif::ProgressBar,
    deadline: Instant,
}

async fn device_task(device: Device, mut ctx: DeviceCtx) -> DeviceOutcome {
    let Device {
        mut ws,
        thread_id,
        poster,
    } = device;
    let mut out = DeviceOutcome {
        audit: SeqAudit::after(0),
        ..DeviceOutcome::default()
    };
    let to_post = if poster.is_some() {
        ctx.args.messages
    } else {
        0
    };
    let mut next = 0u64;
    let mut pending: HashMap<String, (Instant, u32, ClientFrame)> = HashMap::new();
    loop {
        let now = Instant::now();
        let sending = now < ctx.deadline;
        if let (Some(sender), true) = (poster, sending) {
            let mut fed = false;
            while pending.len() < ctx.args.in_flight && next < to_post {
                let id = format!("{}-f{sender}-{next}", ctx.run_id);
                let frame = ClientFrame::PostMessage {
                    id: Some(id.clone()),
                    thread_id: thread_id.clone(),
                    content: stamp(&ctx.run_id, sender, next, micros_since_origin()),
                    message_type: None,
                    media_url: None,
                };
                if ws.feed(&frame).await.is_err() {
                    out.ended = Some("post failed".into());
                    break;
                }
                fed = true;
                pending.insert(id, (Instant::now(), 0, frame));
                next += 1;
            }
            if fed && ws.flush().await.is_err() {
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
        let bytes = match tokio::time::timeout(wait, ws.recv_bytes()).await {
            Err(_) if sending => continue,
            Err(_) => break,
            Ok(Err(error)) => {
                out.ended = Some(format!("{error:#}"));
                break;
            }
            Ok(Ok(RawReceived::Closed(code))) => {
                out.ended = Some(format!("closed {code:?}"));
                break;
            }
            Ok(Ok(RawReceived::Frame(bytes))) => bytes,
        };
        let Some(frame) = Seen::read(ws.codec(), &bytes) else {
            out.undecodable += 1;
            continue;
        };
        match frame {
            DeviceFrame::Posted { seq, content } => {
                let received_us = micros_since_origin();
                out.audit.see(seq);
                out.delivered += 1;
                out.last_delivery = Some(Instant::now());
                ctx.bar.inc(1);
                match parse_stamp(&content) {
                    Some((run, _, _, sent_us)) if run == ctx.run_id => ctx
                        .deliveries
                        .record(Duration::from_micros(received_us.saturating_sub(sent_us))),
                    _ => out.foreign += 1,
                }
            }
            DeviceFrame::Answer { id } => {
                if let Some((sent_at, _, _)) = pending.remove(&id) {
                    ctx.acks.record(sent_at.elapsed());
                    out.posted += 1;
                }
            }
            DeviceFrame::Full(ServerFrame::Error {
                id: Some(id),
                code,
                message,
            }) => {
                let Some(entry) = pending.get_mut(&id) else {
                    continue;
                };
                if code == ErrorCode::Busy && entry.1 < BUSY_RETRIES_MAX {
                    entry.1 += 1;
                    out.busy_retries += 1;
                    let frame = entry.2.clone();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if ws.send(&frame).await.is_err() {
                        out.ended = Some("resend failed".into());
                    }
                } else {
                    pending.remove(&id);
                    *out.post_errors
                        .entry(format!("{code:?}: {message}"))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    ctx.deliveries.flush();
    ctx.acks.flush();
    ws.close().await;
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use protocol::{Event, Push, ThreadMessage};

    use super::*;

    fn message(seq: u64, content: &str) -> ThreadMessage {
        ThreadMessage {
            id: format!("m{seq}"),
            thread_id: "t1".into(),
            seq,
            sender_id: "u1".into(),
            content: content.into(),
            message_type: "text".into(),
            media_url: None,
            sent_at: 1,
        }
    }

    fn read(codec: Codec, frame: &ServerFrame) -> DeviceFrame {
        Seen::read(codec, &codec.encode(frame)).unwrap()
    }

    /// The one-pass read gets what the full decode would, in either codec, and hands
    /// everything it does not read itself to the full decode.
    #[test]
    fn a_device_reads_what_the_full_decode_would() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let pushed = |seq: Option<u64>| {
                ServerFrame::Event(Push {
                    topic: "thread:t1".into(),
                    seq,
                    event: Event::MessagePosted {
                        message: message(7, "stamp"),
                    },
                })
            };
            match read(codec, &pushed(Some(9))) {
                DeviceFrame::Posted { seq, content } => assert_eq!((seq, &*content), (9, "stamp")),
                other => panic!("{codec:?}: {other:?}"),
            }
            match read(codec, &pushed(None)) {
                DeviceFrame::Posted { seq, .. } => assert_eq!(seq, 7, "{codec:?}"),
                other => panic!("{codec:?}: {other:?}"),
            }
            let posted = ServerFrame::Posted {
                id: Some("p1".into()),
                message: message(3, "x"),
            };
            match read(codec, &posted) {
                DeviceFrame::Answer { id } => assert_eq!(id, "p1"),
                other => panic!("{codec:?}: {other:?}"),
            }
            let error = ServerFrame::Error {
                id: Some("p2".into()),
                code: ErrorCode::Busy,
                message: "full".into(),
            };
            match read(codec, &error) {
                DeviceFrame::Full(frame) => assert_eq!(frame, error),
                other => panic!("{codec:?}: {other:?}"),
            }
            let balance = ServerFrame::Event(Push {
                topic: "user:u1".into(),
                seq: Some(4),
                event: Event::Balance {
                    currency: "EVG".into(),
                    available: "1.00".into(),
                    total: "1.00".into(),
                },
            });
            match read(codec, &balance) {
                DeviceFrame::Full(frame) => assert_eq!(frame, balance),
                other => panic!("{codec:?}: {other:?}"),
            }
            let heartbeat = ServerFrame::Heartbeat { ts: 5 };
            assert!(matches!(read(codec, &heartbeat), DeviceFrame::Skip));
            assert!(Seen::read(codec, b"\xc1 not a frame").is_none());
        }
        // What the protocol does not define is no frame, as in the full decode: a posted
        // message without its message, an event of a kind it does not have.
        for json in [
            r#"{"type":"event","topic":"thread:t1","seq":1,"event":{"kind":"message_posted"}}"#,
            r#"{"type":"event","topic":"thread:t1","event":{"kind":"no_such_event"}}"#,
            r#"{"type":"posted","message":{"seq":1}}"#,
        ] {
            assert!(Seen::read(Codec::Json, json.as_bytes()).is_none(), "{json}");
        }
    }
}
