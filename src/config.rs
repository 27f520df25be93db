//! Typed settings, read from command-line flags or environment variables, with defaults that
//! work on a laptop. `node --help` lists every one. Limits carry their unit in their name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use secrecy::SecretString;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The push provider notifications are delivered through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PushProviderKind {
    /// Sends nothing; records every push in memory (the last 10 000) and in
    /// `push_deliveries`, for development and tests.
    Recording,
}

/// Every setting of the node.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "node",
    version,
    about = "An actor-based real-time messaging and payments node",
    long_about = "Serves WebSocket clients, merchant terminals and REST clients from one process. \
                  Every setting below can also be given as the environment variable in brackets."
)]
pub struct Settings {
    /// A file of `NAME=value` lines (the environment variable names below) read before the
    /// settings; variables already in the environment win over the file.
    #[arg(long, env = "NODE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "NODE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` (created on first start, WAL mode) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/node.db")]
    pub database_url: String,

    /// Database connections in the pool.
    #[arg(long, env = "DB_POOL_CONNECTIONS_MAX", default_value_t = 16)]
    pub db_pool_connections_max: u32,

    /// Redis for pub/sub fanout between nodes; without it an in-process bus is used.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Name of this node in bus envelopes and logs (random when not set). Nodes sharing a Redis
    /// must have different names: a node drops the bus messages that carry its own.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Directory for files the node creates itself (the token signing key).
    #[arg(long, env = "NODE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// PEM file of the RSA key that signs tokens; generated on first start when missing.
    /// Defaults to `<data_dir>/token-signing-key.pem`.
    #[arg(long, env = "TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,

    /// Lifetime of access tokens and their sessions, in seconds.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: u64,

    /// Mark the access-token cookie `Secure` (set this behind HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Email of the superadmin created at start if no user has that email yet.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of that superadmin (never logged).
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,

    /// Argon2id memory cost in KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "HTTP_BODY_BYTES_MAX", default_value_t = 64 * 1024)]
    pub http_body_bytes_max: usize,

    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// Most open client connections (HTTP and WebSocket) the node keeps, shared evenly by
    /// its workers; beyond it, new connections wait to be accepted. (actix-web's own default is
    /// 25,000 per worker.) Each needs a file descriptor: the process's limit applies too.
    #[arg(long, env = "HTTP_CONNECTIONS_MAX", default_value_t = 200_000)]
    pub http_connections_max: usize,

    /// Largest WebSocket frame accepted, in bytes; a larger one closes the connection (1009).
    #[arg(long, env = "WS_FRAME_BYTES_MAX", default_value_t = 64 * 1024)]
    pub ws_frame_bytes_max: usize,

    /// Interval of heartbeats (a WebSocket ping and a `heartbeat` frame), in milliseconds.
    #[arg(long, env = "WS_HEARTBEAT_MS", default_value_t = 15_000)]
    pub ws_heartbeat_ms: u64,

    /// A connection that sends nothing for this long is closed (4000), in milliseconds.
    #[arg(long, env = "WS_IDLE_TIMEOUT_MS", default_value_t = 45_000)]
    pub ws_idle_timeout_ms: u64,

    /// How long an unauthenticated connection may wait before its `auth` frame, in ms.
    #[arg(long, env = "WS_AUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub ws_auth_timeout_ms: u64,

    /// Frames queued for one connection; a client that lets it fill is closed (4008).
    #[arg(long, env = "WS_SEND_QUEUE_MAX", default_value_t = 1024)]
    pub ws_send_queue_max: usize,

    /// Connections one user may hold at once; one more is refused (4029).
    #[arg(long, env = "WS_CONNECTIONS_PER_USER_MAX", default_value_t = 16)]
    pub ws_connections_per_user_max: usize,

    /// Topics one connection may subscribe to.
    #[arg(
        long,
        env = "WS_SUBSCRIPTIONS_PER_CONNECTION_MAX",
        default_value_t = 256
    )]
    pub ws_subscriptions_per_connection_max: usize,

    /// Most missed user-topic events a reconnecting client is sent (resume with `since`);
    /// a larger gap is answered `gap_too_large` and the client reloads over REST.
    #[arg(long, env = "WS_RESUME_MAX", default_value_t = 1000)]
    pub ws_resume_max: u64,

    /// Most actor submissions committed in one database transaction.
    #[arg(long, env = "JOURNAL_BATCH_MAX", default_value_t = 1024)]
    pub journal_batch_max: usize,

    /// Longest a batch waits to fill after its first submission, in microseconds, when the
    /// journal writer was idle (what queued during a commit is committed next, at once). 0:
    /// an idle writer commits what is queued without waiting.
    #[arg(long, env = "JOURNAL_BATCH_WINDOW_US", default_value_t = 500)]
    pub journal_batch_window_us: u64,

    /// Submissions waiting for the journal writer; when full, commands answer "busy".
    #[arg(long, env = "JOURNAL_QUEUE_MAX", default_value_t = 65_536)]
    pub journal_queue_max: usize,

    /// Longest one batch's transaction may take, in milliseconds, before the writer gives up
    /// on it: a database that stops answering (a cut network drops packets silently) fails
    /// commands instead of holding them until TCP gives up, many minutes later. Given up on
    /// before its COMMIT went out, the batch simply failed. After, on PostgreSQL the writer
    /// spends up to as long again asking what became of the transaction and answers
    /// accordingly; otherwise its commands fail as of unknown outcome (each can be retried
    /// with its key).
    #[arg(long, env = "JOURNAL_COMMIT_TIMEOUT_MS", default_value_t = 10_000)]
    pub journal_commit_timeout_ms: u64,

    /// Messages one actor's mailbox holds; when full, commands answer "busy".
    #[arg(long, env = "ACTOR_MAILBOX_MAX", default_value_t = 1024)]
    pub actor_mailbox_max: usize,

    /// Idle actors stop after this many seconds (their state stays in the database).
    #[arg(long, env = "ACTOR_PASSIVATE_AFTER_SECS", default_value_t = 300)]
    pub actor_passivate_after_secs: u64,

    /// Idempotency keys of one wallet or conversation whose digests its actor holds, to send
    /// new keys on with no store lookup; an entity with more looks each new key up first.
    #[arg(long, env = "ACTOR_KEY_DIGESTS_MAX", default_value_t = 10_000)]
    pub actor_key_digests_max: usize,

    /// Threads that run actors (0: one per core).
    #[arg(long, env = "ACTOR_ARBITERS", default_value_t = 0)]
    pub actor_arbiters: usize,

    /// Wrong PINs in a row that lock PIN payments.
    #[arg(long, env = "PIN_FAILURES_MAX", default_value_t = 5)]
    pub pin_failures_max: u32,

    /// How long PIN payments stay locked after too many wrong PINs, in seconds.
    #[arg(long, env = "PIN_LOCK_SECS", default_value_t = 900)]
    pub pin_lock_secs: u64,

    /// The largest amount one payment, deposit, withdrawal or charge may move, in whole units
    /// of its currency.
    #[arg(long, env = "AMOUNT_MAX", default_value_t = 1_000_000)]
    pub amount_max: u64,

    /// Evergreen clients older than this version are told to upgrade (`meta.status = upgrade`).
    #[arg(long, env = "EVERGREEN_CLIENT_VERSION_MIN", default_value = "0")]
    pub evergreen_client_version_min: String,

    /// Where Evergreen clients that must upgrade are sent.
    #[arg(
        long,
        env = "EVERGREEN_UPGRADE_URL",
        default_value = "https://example.invalid/upgrade"
    )]
    pub evergreen_upgrade_url: String,

    /// Base URL of the Facebook Graph API that verifies `register_device` tokens
    /// (`GET {base}/me?fields=id,name&access_token=…`).
    #[arg(
        long,
        env = "FACEBOOK_GRAPH_URL",
        default_value = "https://graph.facebook.com"
    )]
    pub facebook_graph_url: String,

    /// The provider that pushes notifications to devices (`recording` is the only one built in).
    #[arg(long, env = "PUSH_PROVIDER", value_enum, default_value_t = PushProviderKind::Recording)]
    pub push_provider: PushProviderKind,

    /// Seconds to finish in-flight work at shutdown before closing anyway.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Seconds after a stay's check-out during which its reviews stay double-blind; when the
    /// window closes, every review of the stay is published.
    #[arg(long, env = "REVIEW_WINDOW_SECS", default_value_t = 14 * 86_400)]
    pub review_window_secs: u64,

    /// Seconds a reservation may wait for its payment to start before it is cancelled and
    /// its nights released (0: never).
    #[arg(long, env = "RESERVATION_PAYMENT_WINDOW_SECS", default_value_t = 1800)]
    pub reservation_payment_window_secs: u64,

    /// How often the stays sweeper runs (expired unpaid reservations, interrupted payments),
    /// in milliseconds.
    #[arg(long, env = "STAYS_SWEEP_MS", default_value_t = 30_000)]
    pub stays_sweep_ms: u64,

    /// The node's clock; tests move it forward instead of sleeping.
    #[arg(skip)]
    pub clock: crate::clock::Clock,
}

impl Settings {
    /// Parse the command line and environment, after loading the `--config` / `NODE_CONFIG`
    /// file into the environment (without overriding what is already set).
    pub fn from_env_and_args() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().collect();
        let from_args = args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--config=").map(str::to_owned).or_else(|| {
                (a == "--config")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
        });
        if let Some(path) = from_args.or_else(|| std::env::var("NODE_CONFIG").ok()) {
            dotenvy::from_path(&path).map_err(|e| format!("reading config file {path}: {e}"))?;
        }
        Ok(Settings::parse())
    }

    /// The defaults, as if the binary was started with no flags and an empty environment.
    pub fn defaults() -> Self {
        Settings {
            config: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/node.db".into(),
            db_pool_connections_max: 16,
            redis_url: None,
            node_id: None,
            data_dir: PathBuf::from("data"),
            token_key_file: None,
            token_ttl_secs: 86_400,
            cookie_secure: false,
            admin_email: None,
            admin_password: None,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            http_body_bytes_max: 64 * 1024,
            http_workers: 0,
            http_connections_max: 200_000,
            ws_frame_bytes_max: 64 * 1024,
            ws_heartbeat_ms: 15_000,
            ws_idle_timeout_ms: 45_000,
            ws_auth_timeout_ms: 10_000,
            ws_send_queue_max: 1024,
            ws_connections_per_user_max: 16,
            ws_subscriptions_per_connection_max: 256,
            ws_resume_max: 1000,
            journal_batch_max: 1024,
            journal_batch_window_us: 500,
            journal_queue_max: 65_536,
            journal_commit_timeout_ms: 10_000,
            actor_mailbox_max: 1024,
            actor_passivate_after_secs: 300,
            actor_key_digests_max: 10_000,
            actor_arbiters: 0,
            pin_failures_max: 5,
            pin_lock_secs: 900,
            amount_max: 1_000_000,
            evergreen_client_version_min: "0".into(),
            evergreen_upgrade_url: "https://example.invalid/upgrade".into(),
            facebook_graph_url: "https://graph.facebook.com".into(),
            push_provider: PushProviderKind::Recording,
            shutdown_grace_secs: 10,
            log_format: LogFormat::Pretty,
            review_window_secs: 14 * 86_400,
            reservation_payment_window_secs: 1800,
            stays_sweep_ms: 30_000,
            clock: crate::clock::Clock::default(),
        }
    }

    pub fn token_key_path(&self) -> PathBuf {
        self.token_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("token-signing-key.pem"))
    }

    /// The actor registries' limits.
    pub fn registry_settings(&self) -> actors::registry::RegistrySettings {
        actors::registry::RegistrySettings {
            mailbox_capacity: self.actor_mailbox_max,
            passivate_after: Duration::from_secs(self.actor_passivate_after_secs),
            key_digests_max: self.actor_key_digests_max,
            ..actors::registry::RegistrySettings::default()
        }
    }

    pub fn journal_commit_timeout(&self) -> Duration {
        Duration::from_millis(self.journal_commit_timeout_ms.max(1))
    }

    pub fn journal_batch_window(&self) -> Duration {
        Duration::from_micros(self.journal_batch_window_us)
    }

    pub fn ws_heartbeat(&self) -> Duration {
        Duration::from_millis(self.ws_heartbeat_ms)
    }

    pub fn ws_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_idle_timeout_ms)
    }

    pub fn ws_auth_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_auth_timeout_ms)
    }

    /// Threads for a pool sized "0 = one per core".
    pub fn threads(configured: usize) -> usize {
        if configured > 0 {
            configured
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_an_empty_command_line() {
        let parsed = Settings::try_parse_from(["node"]);
        // The environment may set some values (CI does), so compare only when it is clean.
        if std::env::vars().all(|(k, _)| k != "DATABASE_URL" && k != "REDIS_URL") {
            let parsed = parsed.map(|s| format!("{s:?}")).ok();
            assert_eq!(parsed, Some(format!("{:?}", Settings::defaults())));
        }
    }
}
