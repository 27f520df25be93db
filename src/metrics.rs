//! Prometheus metrics, one registry per node (never global, so tests that run several nodes in
//! one process do not see each other's numbers). Served at `/metrics` in the text format.

use std::time::Duration;

use actors::journal::AttemptResult;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub ws_connections: IntGauge,
    pub ws_frames_in: IntCounter,
    pub ws_frames_out: IntCounter,
    pub ws_closed: IntCounterVec,
    pub journal_batches: IntCounterVec,
    pub journal_batch_submissions: Histogram,
    pub journal_batch_events: Histogram,
    pub journal_commit_seconds: Histogram,
    pub actors_live: IntGaugeVec,
    pub actor_activations: IntGaugeVec,
    pub actor_key_lookups: IntGaugeVec,
    pub actor_key_reads: IntGaugeVec,
    pub actor_busy: IntGaugeVec,
    pub bus_topics: IntGauge,
    pub bus_subscriptions: IntGauge,
    pub offline_pushes_skipped: IntCounter,
    /// Payee id lookups answered from the cache, and not, since start.
    pub payee_cache: IntGaugeVec,
}

fn built<T>(result: prometheus::Result<T>) -> T {
    match result {
        Ok(metric) => metric,
        // Names and labels below are constants: an error here is a programming error found by
        // every test run, not a runtime condition.
        Err(error) => panic!("metric definition is invalid: {error}"),
    }
}

impl Metrics {
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Self {
        let registry = built(Registry::new_custom(Some("node".into()), None));
        let register = |c: Box<dyn prometheus::core::Collector>| {
            built(registry.register(c));
        };
        let http_requests = built(IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        ));
        let http_latency = built(HistogramVec::new(
            HistogramOpts::new("http_request_seconds", "HTTP request latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        ));
        let ws_connections = built(IntGauge::new(
            "ws_connections",
            "Open authenticated WebSocket connections",
        ));
        let ws_frames_in = built(IntCounter::new("ws_frames_in_total", "Frames received"));
        let ws_frames_out = built(IntCounter::new("ws_frames_out_total", "Frames sent"));
        let ws_closed = built(IntCounterVec::new(
            Opts::new("ws_closed_total", "Connections closed, by close code"),
            &["code"],
        ));
        let journal_batches = built(IntCounterVec::new(
            Opts::new(
                "journal_batches_total",
                "Journal commit attempts by result: committed, refused (its parts are tried \
                 again, each an attempt of its own), fenced (tried again without the stale \
                 actors), failed, unconfirmed (it may have committed)",
            ),
            &["result"],
        ));
        let journal_batch_submissions = built(Histogram::with_opts(
            HistogramOpts::new(
                "journal_batch_submissions",
                "Actor submissions per journal batch",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        ));
        let journal_batch_events = built(Histogram::with_opts(
            HistogramOpts::new("journal_batch_events", "Events per journal batch").buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ]),
        ));
        let journal_commit_seconds = built(Histogram::with_opts(
            HistogramOpts::new("journal_commit_seconds", "Time to commit one batch").buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
        ));
        let actors_live = built(IntGaugeVec::new(
            Opts::new("actors_live", "Live actors by kind"),
            &["kind"],
        ));
        let actor_activations = built(IntGaugeVec::new(
            Opts::new("actor_activations", "Activations since start, by kind"),
            &["kind"],
        ));
        let actor_key_lookups = built(IntGaugeVec::new(
            Opts::new(
                "actor_key_lookups",
                "Idempotency keys looked up in the store before reaching their actor since \
                 start, by kind",
            ),
            &["kind"],
        ));
        let actor_key_reads = built(IntGaugeVec::new(
            Opts::new(
                "actor_key_reads",
                "Activations that read their entity's stored idempotency keys since start, by \
                 kind (wallets and conversations; an entity whose read found more than \
                 ACTOR_KEY_DIGESTS_MAX is not read again)",
            ),
            &["kind"],
        ));
        let actor_busy = built(IntGaugeVec::new(
            Opts::new(
                "actor_busy",
                "Commands refused with a full mailbox since start, by kind",
            ),
            &["kind"],
        ));
        let bus_topics = built(IntGauge::new("bus_topics", "Topics with local subscribers"));
        let bus_subscriptions = built(IntGauge::new(
            "bus_subscriptions",
            "Local (topic, connection) subscriptions",
        ));
        let offline_pushes_skipped = built(IntCounter::new(
            "offline_pushes_skipped_total",
            "Pushes to offline users' devices skipped because too many were in flight \
             (the notifications stay stored)",
        ));
        register(Box::new(offline_pushes_skipped.clone()));
        let payee_cache = built(IntGaugeVec::new(
            Opts::new(
                "payee_cache_lookups",
                "Evergreen user ids resolved since start, by whether the cache answered",
            ),
            &["result"],
        ));
        register(Box::new(payee_cache.clone()));
        for result in ["hit", "miss"] {
            payee_cache.with_label_values(&[result]);
        }
        register(Box::new(http_requests.clone()));
        register(Box::new(http_latency.clone()));
        register(Box::new(ws_connections.clone()));
        register(Box::new(ws_frames_in.clone()));
        register(Box::new(ws_frames_out.clone()));
        register(Box::new(ws_closed.clone()));
        register(Box::new(journal_batches.clone()));
        register(Box::new(journal_batch_submissions.clone()));
        register(Box::new(journal_batch_events.clone()));
        register(Box::new(journal_commit_seconds.clone()));
        register(Box::new(actors_live.clone()));
        register(Box::new(actor_activations.clone()));
        register(Box::new(actor_key_lookups.clone()));
        register(Box::new(actor_key_reads.clone()));
        register(Box::new(actor_busy.clone()));
        register(Box::new(bus_topics.clone()));
        register(Box::new(bus_subscriptions.clone()));
        // Families with labels appear only once a label value exists: create the known ones so
        // that dashboards see zeros, not gaps.
        for result in AttemptResult::ALL {
            journal_batches.with_label_values(&[result.as_str()]);
        }
        for kind in ["wallet", "conversation", "calendar"] {
            actors_live.with_label_values(&[kind]);
            actor_activations.with_label_values(&[kind]);
            actor_key_lookups.with_label_values(&[kind]);
            actor_key_reads.with_label_values(&[kind]);
            actor_busy.with_label_values(&[kind]);
        }
        Metrics {
            registry,
            http_requests,
            http_latency,
            ws_connections,
            ws_frames_in,
            ws_frames_out,
            ws_closed,
            journal_batches,
            journal_batch_submissions,
            journal_batch_events,
            journal_commit_seconds,
            actors_live,
            actor_activations,
            actor_key_lookups,
            actor_key_reads,
            actor_busy,
            bus_topics,
            bus_subscriptions,
            offline_pushes_skipped,
            payee_cache,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "metrics encoding failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl actors::journal::JournalObserver for Metrics {
    fn batch(
        &self,
        submissions: usize,
        events: usize,
        commit_time: Duration,
        result: AttemptResult,
    ) {
        self.journal_batches
            .with_label_values(&[result.as_str()])
            .inc();
        if result == AttemptResult::Committed {
            self.journal_batch_submissions.observe(submissions as f64);
            self.journal_batch_events.observe(events as f64);
            self.journal_commit_seconds
                .observe(commit_time.as_secs_f64());
        }
    }
}
