//! Starting nodes and talking to them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use node::config::Settings;
use node::startup::{Application, Faults, ShutdownHandle};
use protocol::{ClientFrame, Codec, ServerFrame};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running node and a client for it.
pub struct TestNode {
    pub address: String,
    pub ws_address: String,
    pub http: reqwest::Client,
    pub shutdown: ShutdownHandle,
    /// Makes the node's next journal batches fail (a failing database batch).
    pub faults: Faults,
    /// The node's own database, for invariant checks straight from the ledger.
    pub database_url: String,
    /// Where the node keeps its files (its token signing key).
    pub data_dir: std::path::PathBuf,
    pub stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The node's clock: tests move it forward instead of sleeping.
    #[allow(dead_code)]
    pub clock: node::clock::Clock,
    _scratch: Scratch,
}

/// A test's scratch space: a temporary directory (the node's files, a SQLite store) and, under
/// `TEST_DATABASE_URL`, the PostgreSQL database made for the test. Dropping it removes both.
pub struct Scratch {
    _dir: tempfile::TempDir,
    _database: Option<node::store::scratch::ScratchDatabase>,
}

impl Scratch {
    /// A directory and no database: for a node on settings whose store lives elsewhere.
    fn directory() -> Self {
        Scratch {
            _dir: tempfile::tempdir().unwrap(),
            _database: None,
        }
    }
}

/// Settings for a test node, and the scratch space they point into: a free port, a temp data
/// dir, a fresh store (a new PostgreSQL database under `TEST_DATABASE_URL`, or a SQLite file),
/// fast hashing.
async fn test_settings() -> (Scratch, Settings) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = dir.path().to_path_buf();
    let (database_url, database) = node::store::scratch::test_store(dir.path())
        .await
        .expect("TEST_DATABASE_URL is set, so PostgreSQL must take a test database");
    settings.database_url = database_url;
    settings.redis_url = std::env::var("TEST_REDIS_URL").ok();
    settings.db_pool_connections_max = 5;
    settings.argon2_memory_kib = 1024;
    settings.argon2_iterations = 1;
    settings.http_workers = 2;
    settings.actor_arbiters = 2;
    settings.shutdown_grace_secs = 5;
    // Tests move the clock forward; an unpaid reservation must not expire under them unless a
    // test asks for it.
    settings.reservation_payment_window_secs = 0;
    (
        Scratch {
            _dir: dir,
            _database: database,
        },
        settings,
    )
}

/// A node with the test defaults.
pub async fn spawn_node() -> TestNode {
    spawn_node_with(|_| {}).await
}

/// A node with the test defaults changed by `tweak`.
pub async fn spawn_node_with(tweak: impl FnOnce(&mut Settings)) -> TestNode {
    let (scratch, mut settings) = test_settings().await;
    tweak(&mut settings);
    start(settings, scratch).await
}

/// Settings for nodes that take turns on one database and data directory (a restart), each
/// started with [`start_on`]. The scratch space holds both and must outlive the nodes.
pub async fn restartable_settings() -> (Scratch, Settings) {
    test_settings().await
}

/// A node with exactly these settings, and a scratch directory of its own.
pub async fn start_on(settings: &Settings) -> TestNode {
    start(settings.clone(), Scratch::directory()).await
}

/// Start a node with exactly these settings; `scratch` goes with the node.
pub async fn start(settings: Settings, scratch: Scratch) -> TestNode {
    let database_url = settings.database_url.clone();
    let data_dir = settings.data_dir.clone();
    let clock = settings.clock.clone();
    let app = Application::build(settings).await.expect("node starts");
    let port = app.port();
    let faults = app.faults();
    let shutdown = app.shutdown_handle();
    let stopped = actix_web::rt::spawn(app.run_until_stopped());
    TestNode {
        address: format!("http://127.0.0.1:{port}"),
        ws_address: format!("ws://127.0.0.1:{port}/ws"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        shutdown,
        faults,
        database_url,
        data_dir,
        stopped,
        clock,
        _scratch: scratch,
    }
}

/// A user with a live session.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
    pub session_id: String,
}

impl TestNode {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/auth-api/v1/registeruser",
            &json!({"email": email, "password": password, "fullname": "Test User"}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/auth-api/login",
            &json!({"username": email, "password": password}),
        )
        .await
    }

    /// Register a fresh user and log in.
    pub async fn user(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery".to_owned();
        let registered = self.register(&email, &password).await;
        assert_eq!(registered.status(), 201, "registration failed");
        self.log_in_again(&email, &password).await
    }

    /// A new session for an existing user.
    pub async fn log_in_again(&self, email: &str, password: &str) -> TestUser {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login failed");
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["userId"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            token: body["accessToken"].as_str().unwrap().to_owned(),
            session_id: body["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    /// Open a WebSocket with the token in the query and read the `hello` frame.
    pub async fn ws(&self, token: &str) -> WsClient {
        let mut client = self
            .ws_connect(&format!("{}?access_token={token}", self.ws_address), None)
            .await
            .expect("upgrade succeeds");
        match client.recv().await {
            Some(ServerFrame::Hello(_)) => client,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    /// Open a WebSocket, optionally naming a subprotocol.
    pub async fn ws_connect(
        &self,
        url: &str,
        subprotocol: Option<&str>,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        if let Some(p) = subprotocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        let (stream, response) = tokio_tungstenite::connect_async(request).await?;
        let codec = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(Codec::from_subprotocol)
            .unwrap_or(Codec::Json);
        Ok(WsClient { stream, codec })
    }

    /// The ledger's invariants straight from the database: per currency the sum of all
    /// balances, and the number of user accounts below what they hold.
    pub async fn audit(&self) -> (Vec<(String, i64)>, i64) {
        let db = node::store::Db::connect(&self.database_url, 1)
            .await
            .unwrap();
        let audit = node::store::ledger::audit(&db).await.unwrap();
        db.close().await;
        audit
    }

    /// The node's metrics text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// One series of the node's metrics, named with its labels (for example
    /// `node_actor_key_lookups{kind="wallet"}`); fails the test if it is not there.
    pub async fn metric(&self, series: &str) -> u64 {
        let metrics = self.metrics().await;
        let prefix = format!("{series} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the node's protocol.
pub struct WsClient {
    pub stream: Stream,
    pub codec: Codec,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl WsClient {
    pub async fn send(&mut self, frame: &ClientFrame) {
        let bytes = self.codec.encode(frame);
        let message = if self.codec.is_text() {
            Message::text(String::from_utf8(bytes).unwrap())
        } else {
            Message::binary(bytes)
        };
        self.stream.send(message).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.unwrap();
    }

    /// The next protocol frame (skipping WebSocket pings and pongs), or `None` when the
    /// connection ended. Panics if nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a frame within the wait")?;
            match message.ok()? {
                Message::Text(text) => {
                    assert_eq!(self.codec, Codec::Json, "text frame in msgpack mode");
                    return Some(self.codec.decode(text.as_bytes()).unwrap());
                }
                Message::Binary(bytes) => {
                    assert_eq!(self.codec, Codec::MsgPack, "binary frame in JSON mode");
                    return Some(self.codec.decode(&bytes).unwrap());
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame that is not a heartbeat.
    pub async fn recv_skipping_heartbeats(&mut self) -> Option<ServerFrame> {
        loop {
            match self.recv().await {
                Some(ServerFrame::Heartbeat { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Read until the connection ends and say how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the connection ends within the wait");
            match message {
                None | Some(Err(_)) => return Ended::Dropped,
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// One HTTP call with an optional bearer token and JSON body: the status and the JSON body
/// (`null` when there is none).
pub async fn call(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = node.http.request(method, node.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The admin account of [`node_with_admin`].
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin secret phrase";

/// A node with an admin account, and that admin logged in.
pub async fn node_with_admin() -> (TestNode, TestUser) {
    let node = spawn_node_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()));
    })
    .await;
    let admin = node.log_in_again(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (node, admin)
}

pub async fn get(node: &TestNode, path: &str, token: Option<&str>) -> (u16, Value) {
    call(node, reqwest::Method::GET, path, token, None).await
}

pub async fn post(node: &TestNode, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(node, reqwest::Method::POST, path, Some(token), Some(&body)).await
}

pub async fn patch(node: &TestNode, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(node, reqwest::Method::PATCH, path, Some(token), Some(&body)).await
}

pub async fn delete(node: &TestNode, path: &str, token: &str) -> (u16, Value) {
    call(node, reqwest::Method::DELETE, path, Some(token), None).await
}
