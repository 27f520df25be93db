//! The OpenAPI document. Paths are collected from the handlers as they are registered (see
//! `startup::routes`), so the document cannot drift from the routes; this file only adds what
//! is not in any handler: the title, the security schemes, the tags.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi};

/// Fill in the document-level parts of the collected document.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("node")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "One node serving the wallet (Evergreen, `/rest/v01`), pay-per-use (Pavillion, `/api`), \
             studio (Muvi, `/rest`), subscription (Jarvis) and rental marketplace \
             (`/{service}-api`) APIs, plus the real-time protocol at `/ws` \
             (see docs/PROTOCOL.md in the repository).",
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components.add_security_scheme(
        "accessTokenHeader",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("airbnb3-access-token"))),
    );
    api.tags = Some(vec![
        TagBuilder::new()
            .name("node")
            .description(Some("health, readiness and metrics"))
            .build(),
        TagBuilder::new()
            .name("auth")
            .description(Some("marketplace auth service: accounts, sessions, tokens"))
            .build(),
        TagBuilder::new()
            .name("realtime")
            .description(Some("the WebSocket gateway"))
            .build(),
    ]);
    api
}
