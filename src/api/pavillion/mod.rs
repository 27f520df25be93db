//! Pavillion (seed 000): pay-per-use charges by apps (being written).

use utoipa_actix_web::service_config::ServiceConfig;

/// Register Pavillion's routes.
pub fn configure(_cfg: &mut ServiceConfig<'_>) {}
