//! Building and running the node: `Application::build` wires every part and binds the
//! listener (port 0 picks a free one, which is how the tests start real nodes side by side);
//! `run_until_stopped` serves until a signal or a [`ShutdownHandle`] asks it to stop, then
//! shuts down in order: stop accepting, close WebSockets with 1001, finish in-flight requests,
//! flush the journal.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use actors::journal::{spawn_writer, JournalHandle, JournalSettings};
use actors::registry::ArbiterPool;
use actors::DomainEvent;
use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::marketplace::{self, MarketError};
use crate::api::{self, AppState};
use crate::auth::keys::SigningKeys;
use crate::auth::password::SecretHasher;
use crate::auth::Auth;
use crate::bus::Hub;
use crate::config::Settings;
use crate::conversations::Conversations;
use crate::fanout::Fanout;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::store::journal::{JournalFaults, SqlJournal};
use crate::store::Db;
use crate::wallets::Wallets;
use crate::ws::{self, Gateway};
use actors::wallet::PinPolicy;

/// Asks a running node to shut down.
#[derive(Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// Injects journal failures into a running node.
#[derive(Clone)]
pub struct Faults(Arc<JournalFaults>);

impl Faults {
    /// The next `n` journal batches write everything and then roll back, as a failing commit
    /// would.
    pub fn fail_next_batches(&self, n: u32) {
        self.0.fail_next.store(n, Ordering::Release);
    }

    /// The next `n` journal batches commit, and the writer is told that their commit was not
    /// confirmed, as when the connection breaks while the database answers COMMIT.
    pub fn unconfirm_next_batches(&self, n: u32) {
        self.0.unconfirm_next.store(n, Ordering::Release);
    }

    /// The next `n` journal batches write everything and roll back, and the writer is told
    /// that their commit was not confirmed, as when the connection breaks before COMMIT
    /// reaches the database.
    pub fn lose_next_batches(&self, n: u32) {
        self.0.lose_next.store(n, Ordering::Release);
    }
}

/// A built node, listening, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    journal: JournalHandle<DomainEvent>,
    writer: JournalThread,
    /// The journal's sink: publishes what commits (`Fanout::flush` at shutdown).
    fanout: Arc<Fanout>,
    arbiters: ArbiterPool,
    faults: Arc<JournalFaults>,
    stop: CancellationToken,
}

impl Application {
    /// Connect to the database and the bus, load or create the signing key, start the actor
    /// runtime and bind the listener. Must run inside an actix system (`#[actix_web::main]`,
    /// `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let node_id = settings
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let db = Db::connect(&settings.database_url, settings.db_pool_connections_max)
            .await
            .context("connecting to the database")?;
        tracing::info!(engine = db.engine(), "database ready");
        let keys = SigningKeys::load_or_generate(&settings.token_key_path())?;
        let hasher = SecretHasher::new(settings.argon2_memory_kib, settings.argon2_iterations)?;
        let auth = Auth::new(db.clone(), keys, hasher, settings.token_ttl_secs);
        auth.bootstrap_admin(
            settings.admin_email.as_deref(),
            settings.admin_password.as_ref(),
        )
        .await?;
        let bus = match &settings.redis_url {
            Some(url) => Hub::redis(url, node_id.clone())
                .await
                .context("connecting to Redis")?,
            None => Hub::in_process(node_id.clone()),
        };
        tracing::info!(backend = bus.backend(), "bus ready");
        let metrics = Arc::new(Metrics::new());
        let faults = Arc::new(JournalFaults::default());
        let fanout = Arc::new(Fanout::new(Arc::clone(&bus)));
        let (journal, writer) = start_journal(
            JournalSettings {
                batch_max: settings.journal_batch_max,
                batch_window: settings.journal_batch_window(),
                queue_max: settings.journal_queue_max,
                commit_timeout: settings.journal_commit_timeout(),
            },
            &db,
            Arc::clone(&faults),
            Arc::clone(&fanout),
            Arc::clone(&metrics),
        )
        .await?;
        let arbiters = ArbiterPool::start(Settings::threads(settings.actor_arbiters));
        let wallets = Wallets::new(
            db.clone(),
            auth.hasher.clone(),
            arbiters.clone(),
            journal.clone(),
            settings.registry_settings(),
            PinPolicy {
                failures_max: settings.pin_failures_max,
                lock_ms: i64::try_from(settings.pin_lock_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
        );
        if fanout.wallets.set(wallets.registry().clone()).is_err() {
            anyhow::bail!("the wallet registry was wired twice");
        }
        let conversations = Conversations::new(
            db.clone(),
            arbiters.clone(),
            journal.clone(),
            settings.registry_settings(),
        );
        let payments: Arc<dyn crate::payments::PaymentGateway> =
            Arc::new(crate::payments::test_gateway::TestGateway::new());
        let stays = crate::stays::Stays::new(
            db.clone(),
            arbiters.clone(),
            journal.clone(),
            settings.registry_settings(),
            Arc::clone(&wallets),
            Arc::clone(&payments),
            settings.clock.clone(),
        );
        let gateway = Gateway::new(
            Arc::clone(&settings),
            Arc::clone(&auth),
            Arc::clone(&bus),
            Arc::clone(&metrics),
        );
        let notifier = Arc::new(Notifier::new(
            db.clone(),
            notify::provider_for(settings.push_provider),
        ));
        if fanout
            .offline
            .set(notify::OfflinePush::new(
                Arc::clone(&gateway),
                Arc::clone(&notifier),
            ))
            .is_err()
        {
            anyhow::bail!("the notifier was wired twice");
        }
        let state = web::Data::new(AppState {
            settings: Arc::clone(&settings),
            node_id,
            db,
            auth,
            bus,
            metrics,
            gateway,
            wallets,
            conversations,
            notifier,
            payments,
            stays,
            user_ids: Arc::new(crate::api::UserIds::new(crate::api::USER_IDS_CACHED_MAX)),
        });
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let server = serve(listener, state.clone(), &settings)?;
        tracing::info!(port, "listening");
        Ok(Application {
            port,
            server,
            state,
            journal,
            writer,
            fanout,
            arbiters,
            faults,
            stop: CancellationToken::new(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// The fault injector of this node's journal, for tests of the durability contract.
    pub fn faults(&self) -> Faults {
        Faults(Arc::clone(&self.faults))
    }

    /// Serve until SIGINT/SIGTERM or the shutdown handle, then shut down in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        let stop = self.stop.clone();
        let sweeper = actix_web::rt::spawn(crate::stays::sweep_until(
            Arc::clone(&self.state.stays),
            Duration::from_millis(self.state.settings.stays_sweep_ms.max(10)),
            Duration::from_secs(self.state.settings.reservation_payment_window_secs),
            stop.clone(),
        ));
        tokio::select! {
            () = stop.cancelled() => {}
            () = signal() => tracing::info!("signal received: shutting down"),
        }
        // A signal stops everything the token stops (the stays sweeper among them).
        stop.cancel();
        // Going-away to every socket first: a WebSocket would otherwise hold its worker until
        // the grace period ends.
        self.state.gateway.shut_down();
        let _ = sweeper.await;
        handle.stop(true).await;
        let _ = server.await;
        let grace = Duration::from_secs(self.state.settings.shutdown_grace_secs);
        // Every step still runs when one fails: the writer ends and the pools close either way.
        // But a stop that may have left acknowledged-looking work unwritten is an error, so a
        // supervisor can tell it from a clean one by the exit code.
        let mut unclean = Vec::new();
        match tokio::time::timeout(grace, self.journal.close()).await {
            Ok(Ok(())) => tracing::info!("journal flushed"),
            Ok(Err(error)) => {
                tracing::error!(%error, "journal flush failed");
                unclean.push("the journal's last flush failed");
            }
            Err(_) => unclean.push("the journal's last flush timed out"),
        }
        drop(self.journal);
        self.arbiters.stop();
        match tokio::time::timeout(grace, self.writer.done).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => unclean.push("the journal writer's thread died"),
            Err(_) => unclean.push("the journal writer did not end in time"),
        }
        // The writer has handed its last commits to the publishing task, which may not have
        // published them yet, and with Redis what it published may still be queued for the
        // other nodes (so may a logout's revocation): ending the process would drop them. Not
        // unclean if it times out: nothing durable depends on it, and the other nodes' clients
        // recover what they missed by sequence number.
        if tokio::time::timeout(grace, self.fanout.flush())
            .await
            .is_err()
        {
            tracing::warn!("the last pushes may not have reached the other nodes");
        }
        // On SQLite, closing waits for every connection to come back; one held by a commit
        // that outlived the grace period would hold the process forever.
        if tokio::time::timeout(grace, self.state.db.close())
            .await
            .is_err()
        {
            unclean.push("the database pool did not close in time");
        }
        if unclean.is_empty() {
            tracing::info!("stopped");
            Ok(())
        } else {
            let why = unclean.join("; ");
            tracing::error!(%why, "stopped uncleanly");
            anyhow::bail!("stopped uncleanly: {why}")
        }
    }
}

/// Connections of the journal writer's own pool: it commits one batch at a time.
const JOURNAL_CONNECTIONS: u32 = 2;

/// The journal writer's thread, seen from the node.
struct JournalThread {
    /// Ends once the writer and its pool are done.
    done: oneshot::Receiver<()>,
    /// Dropped with the node. A node dropped without being stopped (a test whose runtime
    /// ends) ends the writer's thread too, as it ended a writer task on that runtime before,
    /// instead of leaving it holding database connections.
    _alive: oneshot::Sender<()>,
}

/// Start the journal writer on a thread of its own, with a runtime and a database pool of its
/// own. On the main runtime it waited behind the publishing task and the bus between its
/// statements (a batch's statements were half of its time), and its pooled connections could
/// be driven by a busy HTTP worker's reactor.
async fn start_journal(
    settings: JournalSettings,
    db: &Db,
    faults: Arc<JournalFaults>,
    sink: Arc<Fanout>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(JournalHandle<DomainEvent>, JournalThread)> {
    let (ready_tx, ready) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let (alive, dropped) = oneshot::channel::<()>();
    let db = db.clone();
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            // Built here, not by the caller: a runtime may not be dropped inside another one,
            // which is what a failed spawn would have done with it.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx
                        .send(Err(anyhow::Error::new(error)
                            .context("building the journal writer's runtime")));
                    return;
                }
            };
            runtime.block_on(async move {
                let own = match db.own_pool(JOURNAL_CONNECTIONS).await {
                    Ok(own) => own,
                    Err(error) => {
                        let _ =
                            ready_tx
                                .send(Err(anyhow::Error::new(error)
                                    .context("connecting the journal writer")));
                        return;
                    }
                };
                let store = Arc::new(SqlJournal::new(own.clone(), faults));
                let (handle, mut task) = spawn_writer(settings, store, sink, metrics);
                if ready_tx.send(Ok(handle)).is_ok() {
                    tokio::select! {
                        ended = &mut task => {
                            if let Err(error) = ended {
                                // Every write after this is refused (`ShuttingDown`): say why.
                                tracing::error!(%error, "the journal writer ended abnormally");
                            }
                        }
                        _ = dropped => {
                            task.abort();
                            let _ = task.await;
                        }
                    }
                }
                // A SQLite "own" pool is the shared one, which the node closes itself.
                if matches!(own, Db::Postgres(_)) {
                    own.close().await;
                }
            });
            let _ = done_tx.send(());
        })
        .context("starting the journal writer's thread")?;
    let handle = ready
        .await
        .context("the journal writer's thread ended before it started")??;
    Ok((
        handle,
        JournalThread {
            done,
            _alive: alive,
        },
    ))
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Answer for routes that do not exist.
async fn not_found() -> Result<HttpResponse, MarketError> {
    Err(MarketError::not_found(
        "errMsg_routeNotFound",
        "no such route; see /swagger",
    ))
}

fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: &Settings,
) -> anyhow::Result<Server> {
    let body_max = settings.http_body_bytes_max;
    let workers = Settings::threads(settings.http_workers);
    let grace = settings.shutdown_grace_secs;
    let server = HttpServer::new(move || {
        let (app, api) = App::new()
            .into_utoipa_app()
            .app_data(state.clone())
            .app_data(marketplace::json_config(body_max))
            .app_data(web::PayloadConfig::new(body_max))
            .service(api::health::health)
            .service(api::health::admin_health)
            .service(api::health::metrics)
            .service(ws::upgrade)
            .configure(|cfg| marketplace::configure(cfg, body_max))
            .configure(api::evergreen::configure)
            .configure(api::pavillion::configure)
            .split_for_parts();
        let api = api::openapi::finish(api);
        app.service(SwaggerUi::new("/swagger/{_:.*}").url("/openapi.json", api))
            .service(web::redirect("/swagger", "/swagger/"))
            .default_service(web::to(not_found))
            .wrap_fn(api::observe)
            .wrap(middleware::NormalizePath::new(
                middleware::TrailingSlash::MergeOnly,
            ))
            .wrap(TracingLogger::default())
    })
    .workers(workers)
    .max_connections(settings.http_connections_max.div_ceil(workers.max(1)))
    // Without it a WebSocket frame written right after another waits for the client's delayed
    // ACK (Nagle): a constant 40 ms on every answer at low load (BENCHMARKS.md).
    .tcp_nodelay(true)
    .shutdown_timeout(grace)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
