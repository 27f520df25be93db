//! The marketplace success envelope (seed L280-328).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::elapsed_ms;
use crate::auth::Identity;

/// Paging of list answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    pub page_number: u64,
    pub page_row_count: u64,
    pub total_row_count: u64,
    pub page_count: u64,
}

/// Builds one envelope.
pub struct Envelope<'a> {
    req: &'a HttpRequest,
    identity: Option<&'a Identity>,
    status: StatusCode,
    data_name: &'a str,
    action: &'a str,
}

impl<'a> Envelope<'a> {
    pub fn new(req: &'a HttpRequest, identity: Option<&'a Identity>, data_name: &'a str) -> Self {
        Envelope {
            req,
            identity,
            status: StatusCode::OK,
            data_name,
            action: "get",
        }
    }

    /// `create` answers 201; the other actions 200.
    pub fn action(mut self, action: &'a str) -> Self {
        self.action = action;
        self.status = if action == "create" {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        self
    }

    fn head(&self, row_count: usize) -> Map<String, Value> {
        let request_id = self
            .req
            .query_string()
            .split('&')
            .find_map(|p| p.strip_prefix("requestId="))
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mut head = Map::new();
        head.insert("status".into(), "OK".into());
        head.insert("statusCode".into(), self.status.as_u16().into());
        head.insert("elapsedMs".into(), elapsed_ms(self.req).into());
        head.insert("ssoTime".into(), 0.into());
        head.insert("source".into(), "db".into());
        head.insert("cacheKey".into(), Value::Null);
        head.insert(
            "userId".into(),
            self.identity.map(|i| i.user.id.clone()).into(),
        );
        head.insert(
            "sessionId".into(),
            self.identity.map(|i| i.session.id.clone()).into(),
        );
        head.insert("requestId".into(), request_id.into());
        head.insert("dataName".into(), self.data_name.into());
        head.insert("method".into(), self.req.method().as_str().into());
        head.insert("action".into(), self.action.into());
        head.insert("appVersion".into(), env!("CARGO_PKG_VERSION").into());
        head.insert("rowCount".into(), row_count.into());
        head
    }

    /// An envelope around one object.
    pub fn one(self, data: impl Serialize) -> HttpResponse {
        let mut body = self.head(1);
        body.insert(
            self.data_name.into(),
            serde_json::to_value(data).unwrap_or(Value::Null),
        );
        HttpResponse::build(self.status).json(body)
    }

    /// An envelope around one object, with more top-level keys (`paymentResult`).
    pub fn one_with(self, data: impl Serialize, extra: Map<String, Value>) -> HttpResponse {
        let mut body = self.head(1);
        body.extend(extra);
        body.insert(
            self.data_name.into(),
            serde_json::to_value(data).unwrap_or(Value::Null),
        );
        HttpResponse::build(self.status).json(body)
    }

    /// An envelope around a page of objects.
    pub fn list<T: Serialize>(self, rows: &[T], paging: Paging) -> HttpResponse {
        self.list_with(rows, paging, Map::new())
    }

    /// An envelope around a page of objects, with more top-level keys.
    pub fn list_with<T: Serialize>(
        self,
        rows: &[T],
        paging: Paging,
        extra: Map<String, Value>,
    ) -> HttpResponse {
        let mut body = self.head(rows.len());
        body.extend(extra);
        body.insert(
            self.data_name.into(),
            serde_json::to_value(rows).unwrap_or(Value::Null),
        );
        body.insert(
            "paging".into(),
            serde_json::to_value(paging).unwrap_or(Value::Null),
        );
        body.insert("filters".into(), Value::Array(Vec::new()));
        body.insert("uiPermissions".into(), Value::Array(Vec::new()));
        HttpResponse::build(self.status).json(body)
    }
}

/// Unix milliseconds as the ISO-8601 text the marketplace shows.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
