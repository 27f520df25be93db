//! HTTP adapters, one folder per documented API dialect, plus the node's own routes. Handlers
//! parse and answer; the domain lives in `actors` and the data in `store`.

pub mod evergreen;
pub mod health;
pub mod marketplace;
pub mod openapi;
pub mod pavillion;

use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpMessage;

use crate::auth::Auth;
use crate::bus::Hub;
use crate::config::Settings;
use crate::conversations::Conversations;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Db;
use crate::wallets::Wallets;
use crate::ws::Gateway;

/// Everything a handler may use, shared by every worker.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub node_id: String,
    pub db: Db,
    pub auth: Arc<Auth>,
    pub bus: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub gateway: Arc<Gateway>,
    pub wallets: Arc<Wallets>,
    pub conversations: Arc<Conversations>,
    /// Pushes notifications to users' devices.
    pub notifier: Arc<Notifier>,
    /// The card payment gateway (the built-in test gateway unless configured otherwise).
    pub payments: Arc<dyn crate::payments::PaymentGateway>,
    /// Listings' calendars and the booking flows over them.
    pub stays: Arc<crate::stays::Stays>,
    /// Evergreen ids already resolved to an active user (see `evergreen::resolve_user`).
    pub user_ids: Arc<UserIds>,
}

/// Evergreen ids resolved to active users, so that a payment does not look its payee up in
/// the database every time: that lookup was a sixth of the node's CPU under a payments load
/// (BENCHMARKS.md, the flame graph). Only hits are kept, because an id that resolves to
/// nothing may resolve once the user registers. A hit stays true: the node never deactivates
/// or deletes a user, nor changes or removes an external id. Whatever adds either must clear
/// the entry (`remove`).
pub type UserIds = quick_cache::sync::Cache<String, String>;

/// How many resolved ids a node keeps.
pub const USER_IDS_CACHED_MAX: usize = 100_000;

/// When the request arrived, for `elapsedMs` in envelopes.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// Milliseconds since the request arrived.
pub fn elapsed_ms(req: &actix_web::HttpRequest) -> u64 {
    req.extensions()
        .get::<Arrived>()
        .map_or(0, |a| a.0.elapsed().as_millis() as u64)
}

/// Middleware: stamp the arrival time and count requests and latencies by route pattern.
pub fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        ServiceRequest,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let arrived = Instant::now();
    req.extensions_mut().insert(Arrived(arrived));
    let metrics = req
        .app_data::<actix_web::web::Data<AppState>>()
        .map(|s| Arc::clone(&s.metrics));
    let method = req.method().to_string();
    // Set by the tracing middleware, which runs first and puts it on every log line.
    let request_id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .map(|id| id.to_string());
    let fut = srv.call(req);
    async move {
        let mut res = fut.await?;
        if let Some(Ok(value)) = request_id.map(|id| HeaderValue::from_str(&id)) {
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), value);
        }
        if let Some(metrics) = metrics {
            // The pattern, not the path, so that ids do not explode the label space.
            let route = res
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".into());
            let status = res.status().as_u16().to_string();
            metrics
                .http_requests
                .with_label_values(&[&method, &route, &status])
                .inc();
            metrics
                .http_latency
                .with_label_values(&[&method, &route])
                .observe(arrived.elapsed().as_secs_f64());
        }
        Ok(res)
    }
}
