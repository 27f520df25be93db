//! Health, readiness, metrics, the OpenAPI document and unknown routes.

use serde_json::Value;

use crate::helpers::spawn_node;

#[actix_web::test]
async fn health_answers_ok() {
    let node = spawn_node().await;
    let response = node.get("/health").await;
    assert_eq!(response.status(), 200);
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        request_id.is_some_and(|id| id.len() >= 32),
        "every answer names its request"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "OK"}));
}

#[actix_web::test]
async fn admin_health_checks_the_configured_backends() {
    let node = spawn_node().await;
    let response = node.get("/admin/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "OK");
    assert_eq!(body["database"]["ok"], true);
    assert_eq!(body["bus"]["ok"], true);
    let engine = if std::env::var("TEST_DATABASE_URL").is_ok() {
        "postgres"
    } else {
        "sqlite"
    };
    let bus = if std::env::var("TEST_REDIS_URL").is_ok() {
        "redis"
    } else {
        "in-process"
    };
    assert_eq!(body["database"]["backend"], engine);
    assert_eq!(body["bus"]["backend"], bus);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern() {
    let node = spawn_node().await;
    node.get("/health").await;
    node.get("/auth-api/currentuser").await;
    let text = node.metrics().await;
    assert!(
        text.contains("# TYPE node_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"node_http_requests_total{method="GET",route="/health",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/auth-api/currentuser",status="401""#),
        "{text}"
    );
    for family in [
        "node_ws_connections",
        "node_journal_batches_total",
        "node_journal_commit_seconds",
        "node_actors_live",
        "node_bus_topics",
        "node_offline_pushes_skipped_total",
        "node_payee_cache_lookups",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
}

#[actix_web::test]
async fn openapi_documents_every_route_the_node_serves() {
    let node = spawn_node().await;
    let response = node.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let api: Value = response.json().await.unwrap();
    let paths = api["paths"].as_object().unwrap();
    let mut expected = vec![
        "/health",
        "/admin/health",
        "/metrics",
        "/ws",
        "/auth-api/v1/registeruser",
        "/auth-api/login",
        "/auth-api/logout",
        "/auth-api/publickey",
        "/auth-api/relogin",
    ];
    let currentuser: Vec<String> = [
        "auth",
        "messaging",
        "propertycatalog",
        "bookingmanagement",
        "reviewsystem",
        "platformadmin",
        "agenthub",
        "bff",
        "notification",
    ]
    .iter()
    .map(|s| format!("/{s}-api/currentuser"))
    .collect();
    expected.extend(currentuser.iter().map(String::as_str));
    for path in expected {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    // And nothing documented that does not answer: every documented GET without parameters
    // is routed (a 404 here would come from the fallback with errMsg_routeNotFound).
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') && path != "/ws" {
            let response = node.get(path).await;
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("errMsg_routeNotFound"),
                "{path} is documented but not routed ({status})"
            );
        }
    }
}

#[actix_web::test]
async fn swagger_page_is_served() {
    let node = spawn_node().await;
    let redirect = node.get("/swagger").await;
    assert!(redirect.status().is_redirection());
    let page = node.get("/swagger/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");
}

#[actix_web::test]
async fn unknown_routes_get_the_error_envelope() {
    let node = spawn_node().await;
    let response = node.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"], "ERR");
    assert_eq!(body["status"], 404);
    assert_eq!(body["errCode"], 404);
    assert_eq!(body["message"], "errMsg_routeNotFound");
    assert!(body["date"].as_str().is_some());
}

/// Send one keep-alive `GET /health` on a raw connection; true once its answer has come.
async fn health_over(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
        Ok(Err(_)) | Err(_) => false,
    }
}

/// `HTTP_CONNECTIONS_MAX` bounds the open connections: beyond it a new one waits, unanswered,
/// until another closes (actix-web's own default would cap a node at 25,000 per worker).
#[actix_web::test]
async fn connections_beyond_the_maximum_wait_until_one_closes() {
    use std::time::Duration;
    let node = crate::helpers::spawn_node_with(|s| {
        s.http_workers = 1;
        s.http_connections_max = 2;
    })
    .await;
    let address = node.address.trim_start_matches("http://").to_owned();
    let mut first = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(health_over(&mut first, Duration::from_secs(10)).await);
    assert!(health_over(&mut second, Duration::from_secs(10)).await);
    let mut third = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(
        !health_over(&mut third, Duration::from_millis(700)).await,
        "a third connection was served while two were open"
    );
    drop(first);
    let mut answer = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        third.read(&mut answer).await.unwrap()
    })
    .await
    .expect("the waiting connection is served once another closes");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    assert!(health_over(&mut second, Duration::from_secs(10)).await);
}
