//! Liveness, readiness and metrics.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use super::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// "OK" or "ERR".
    status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Dependency {
    /// Which implementation: "sqlite", "postgres", "in-process", "redis".
    backend: &'static str,
    ok: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminHealth {
    /// "OK" when every dependency answered, "ERR" otherwise.
    status: &'static str,
    database: Dependency,
    bus: Dependency,
}

/// Liveness: the process answers.
#[utoipa::path(tag = "node", responses((status = 200, body = Health)))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "OK" })
}

/// Readiness: the database answers a query and, when configured, Redis answers a PING.
#[utoipa::path(tag = "node", responses(
    (status = 200, body = AdminHealth, description = "every dependency answered"),
    (status = 503, body = AdminHealth, description = "a dependency did not answer"),
))]
#[get("/admin/health")]
pub async fn admin_health(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.ping().await;
    if let Err(error) = &database {
        tracing::warn!(%error, "health: database check failed");
    }
    let bus = state.bus.health().await;
    if let Err(error) = &bus {
        tracing::warn!(%error, "health: bus check failed");
    }
    let ok = database.is_ok() && bus.is_ok();
    let body = AdminHealth {
        status: if ok { "OK" } else { "ERR" },
        database: Dependency {
            backend: state.db.engine(),
            ok: database.is_ok(),
        },
        bus: Dependency {
            backend: state.bus.backend(),
            ok: bus.is_ok(),
        },
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(tag = "node", responses((status = 200, content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let set = |family: &prometheus::IntGaugeVec, kind: &str, value: u64| {
        family
            .with_label_values(&[kind])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    };
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let kinds = [
        (
            "wallet",
            state.wallets.registry().len(),
            state.wallets.registry().stats(),
        ),
        (
            "conversation",
            state.conversations.registry().len(),
            state.conversations.registry().stats(),
        ),
        (
            "calendar",
            state.stays.registry().len(),
            state.stays.registry().stats(),
        ),
    ];
    for (kind, live, stats) in kinds {
        set(&state.metrics.actors_live, kind, live as u64);
        set(
            &state.metrics.actor_activations,
            kind,
            stats.activations.load(relaxed),
        );
        set(
            &state.metrics.actor_key_lookups,
            kind,
            stats.key_lookups.load(relaxed),
        );
        set(
            &state.metrics.actor_key_reads,
            kind,
            stats.key_reads.load(relaxed),
        );
        set(&state.metrics.actor_busy, kind, stats.busy.load(relaxed));
    }
    set(&state.metrics.payee_cache, "hit", state.user_ids.hits());
    set(&state.metrics.payee_cache, "miss", state.user_ids.misses());
    let (topics, subscriptions) = state.bus.stats();
    state.metrics.bus_topics.set(topics as i64);
    state.metrics.bus_subscriptions.set(subscriptions as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
