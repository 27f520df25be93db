//! The real-time gateway at `/ws` (DESIGN.md section 6, `docs/PROTOCOL.md`).
//!
//! A connection authenticates at upgrade (the same four token locations as REST) or with an
//! `auth` frame, negotiates JSON or MessagePack by subprotocol, and is subscribed to its user's
//! topic before the `hello` frame, so nothing published after `hello` can be missed. Each
//! connection has a reader (this module's loop) and a writer task with a bounded queue; a
//! client that lets the queue fill is closed with 4008 instead of growing memory.
//!
//! A reconnecting client names the last sequence number it saw on its user topic (`since`, in
//! the query or the `auth` frame) and gets exactly what it missed, then live events: see
//! [`connection`] for why nothing falls between the replay and the live stream. Wallet ops
//! (`pay`, …) are answered by [`wallet_ops`] with the Evergreen semantics.

mod connection;
pub mod message_ops;
mod wallet_ops;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{get, web, HttpRequest, HttpResponse};
use dashmap::DashMap;
use protocol::{Codec, Event, Push};
use tokio_util::sync::CancellationToken;

use crate::api::marketplace::MarketError;
use crate::api::AppState;
use crate::auth::{token_from_request, Auth, AuthError, Identity, Remember};
use crate::bus::{Hub, SubscriberId};
use crate::config::Settings;
use crate::metrics::Metrics;

/// The topic every connection of a user is subscribed to.
pub fn user_topic(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The topic of a listing: its calendar days as they change (see `Event::CalendarDay`).
pub fn listing_topic(listing_id: &str) -> String {
    format!("listing:{listing_id}")
}

/// The topic of a message thread: its messages, edits, read marks and state changes, each
/// with the thread's sequence number, and typing indicators.
pub fn thread_topic(thread_id: &str) -> String {
    format!("thread:{thread_id}")
}

/// Connections of this node and what they share.
pub struct Gateway {
    settings: Arc<Settings>,
    auth: Arc<Auth>,
    bus: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    /// Open connections per user on this node, for the per-user limit.
    per_user: DashMap<String, usize>,
    /// Connections on this node subscribed to a thread, per (thread, participant): presence.
    watching: DashMap<(String, String), usize>,
    next_id: AtomicU64,
    /// Cancelled at shutdown: every connection closes with 1001.
    shutdown: CancellationToken,
}

impl Gateway {
    pub fn new(
        settings: Arc<Settings>,
        auth: Arc<Auth>,
        bus: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            settings,
            auth,
            bus,
            metrics,
            per_user: DashMap::new(),
            watching: DashMap::new(),
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        })
    }

    /// Tell every connection of the user (on every node) that a session ended; connections
    /// authenticated with it close with 4001.
    pub async fn session_revoked(&self, user_id: &str, session_id: &str) {
        let push = Push {
            topic: user_topic(user_id),
            seq: None,
            event: Event::SessionRevoked {
                session_id: session_id.to_owned(),
            },
        };
        if let Err(error) = self.bus.publish(push).await {
            tracing::error!(%error, "a session revocation closed its connections on this node only, not on the other nodes");
        }
    }

    /// Close every connection with 1001 (going away).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// A participant's connection subscribed to a thread: their first one announces them.
    pub async fn watch(&self, thread_id: &str, user_id: &str) {
        let first = {
            let mut count = self
                .watching
                .entry((thread_id.to_owned(), user_id.to_owned()))
                .or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            self.presence(thread_id, user_id, true).await;
        }
    }

    /// A participant's connection left a thread: their last one announces they are gone.
    pub async fn unwatch(&self, thread_id: &str, user_id: &str) {
        let key = (thread_id.to_owned(), user_id.to_owned());
        let mut last = false;
        self.watching.remove_if_mut(&key, |_, count| {
            *count = count.saturating_sub(1);
            last = *count == 0;
            last
        });
        if last {
            self.presence(thread_id, user_id, false).await;
        }
    }

    /// Whether a participant watches a thread from a connection on this node.
    pub fn is_watching(&self, thread_id: &str, user_id: &str) -> bool {
        self.watching
            .contains_key(&(thread_id.to_owned(), user_id.to_owned()))
    }

    async fn presence(&self, thread_id: &str, user_id: &str, online: bool) {
        let push = Push {
            topic: thread_topic(thread_id),
            seq: None,
            event: Event::Presence {
                thread_id: thread_id.to_owned(),
                user_id: user_id.to_owned(),
                online,
            },
        };
        if let Err(error) = self.bus.publish(push).await {
            tracing::warn!(%error, "presence reached this node's connections only");
        }
    }

    /// Tell both participants of a new thread, on their user topics.
    pub async fn thread_created(&self, thread_id: &str, guest_id: &str, host_id: &str) {
        for user in [guest_id, host_id] {
            let push = Push {
                topic: user_topic(user),
                seq: None,
                event: Event::ThreadCreated {
                    thread_id: thread_id.to_owned(),
                    guest_id: guest_id.to_owned(),
                    host_id: host_id.to_owned(),
                },
            };
            if let Err(error) = self.bus.publish(push).await {
                tracing::warn!(%error, "a new thread was announced on this node only");
            }
        }
    }

    /// True when the user has a connection open on this node.
    pub fn is_connected(&self, user_id: &str) -> bool {
        self.per_user.contains_key(user_id)
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.per_user.iter().map(|e| *e.value()).sum()
    }

    fn next_subscriber(&self) -> SubscriberId {
        SubscriberId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Count a new connection of the user, unless they are at the limit.
    fn admit(self: &Arc<Self>, user_id: &str) -> Option<Admission> {
        let mut count = self.per_user.entry(user_id.to_owned()).or_insert(0);
        if *count >= self.settings.ws_connections_per_user_max {
            return None;
        }
        *count += 1;
        self.metrics.ws_connections.inc();
        Some(Admission {
            gateway: Arc::clone(self),
            user_id: user_id.to_owned(),
        })
    }
}

/// A counted connection; uncounted when dropped, however the connection ends.
struct Admission {
    gateway: Arc<Gateway>,
    user_id: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gateway.metrics.ws_connections.dec();
        self.gateway
            .per_user
            .remove_if_mut(&self.user_id, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            });
    }
}

/// The codec a request negotiated: `Ok(None)` when it named no subprotocol (JSON, and no
/// header in the answer), an error when it named only ones we do not speak.
fn negotiate(req: &HttpRequest) -> Result<Option<Codec>, MarketError> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|p| Codec::from_subprotocol(p))
        .map(Some)
        .ok_or_else(|| {
            MarketError::bad_request(
                "errMsg_unsupportedSubprotocol",
                format!(
                    "offer {} or {}",
                    protocol::SUBPROTOCOL_JSON,
                    protocol::SUBPROTOCOL_MSGPACK
                ),
            )
        })
}

/// The upgrade's own query parameters (the token is read by the auth extractor).
#[derive(serde::Deserialize)]
struct UpgradeQuery {
    /// The last sequence number the client saw on its user topic.
    #[serde(default)]
    since: Option<u64>,
}

/// Open a WebSocket. Authenticate with a token in the query (`access_token`), an
/// `Authorization: Bearer` header, the `airbnb3-access-token` header or cookie, or with an
/// `auth` frame first. Subprotocol `node.v1.json` (default) or `node.v1.msgpack`. With
/// `since`, the connection starts by replaying the user topic's events after it.
#[utoipa::path(
    tag = "realtime",
    params(
        ("access_token" = Option<String>, Query, description = "access token"),
        ("since" = Option<u64>, Query, description = "resume the user topic after this sequence number"),
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol; see docs/PROTOCOL.md"),
        (status = 400, body = crate::api::marketplace::error::ErrorBody, description = "not a WebSocket handshake, or no subprotocol we speak"),
        (status = 401, body = crate::api::marketplace::error::ErrorBody, description = "the token is invalid or its session ended"),
    )
)]
#[get("/ws")]
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let gateway = Arc::clone(&state.gateway);
    let codec = negotiate(&req)?;
    let since = web::Query::<UpgradeQuery>::from_query(req.query_string())
        .map_err(|_| {
            MarketError::bad_request("errMsg_invalidSince", "since must be a sequence number")
        })?
        .since;
    let identity: Option<Identity> = match token_from_request(&req) {
        Some(token) => Some(
            gateway
                .auth
                .authenticate_with(&token, Remember::No)
                .await
                .map_err(|e| match e {
                    AuthError::Store(e) => MarketError::from(e),
                    other => MarketError::from(other),
                })?,
        ),
        None => None,
    };
    let (mut response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| MarketError::bad_request("errMsg_notAWebSocketHandshake", e.to_string()))?;
    if let Some(codec) = codec {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(codec.subprotocol()),
        );
    }
    let stream = stream
        .max_frame_size(gateway.settings.ws_frame_bytes_max)
        .aggregate_continuations()
        .max_continuation_size(gateway.settings.ws_frame_bytes_max);
    let codec = codec.unwrap_or(Codec::Json);
    actix_web::rt::spawn(connection::run(
        gateway, state, session, stream, codec, identity, since,
    ));
    Ok(response)
}
