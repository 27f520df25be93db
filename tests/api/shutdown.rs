//! The real node binary, stopped the way an operator stops it (SIGTERM).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use node::bus::{Delivery, Hub, Subscriber, SubscriberId};
use protocol::Event;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::redis_pause::RedisPause;

/// Longest wait for the binary to start, to stop, or for a push to arrive.
const WAIT: Duration = Duration::from_secs(30);

/// The node binary running on its embedded defaults (SQLite in a temporary directory), with
/// JSON logs read line by line.
struct NodeProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
    address: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Start the binary with these extra settings, and wait until it listens.
    async fn start(env: &[(&str, &str)]) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_node"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NODE_LISTEN", "127.0.0.1:0")
            .env("NODE_DATA_DIR", dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("node.db").display()),
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the node binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut node = NodeProcess {
            child,
            lines,
            address: String::new(),
            _dir: dir,
        };
        let listening = node.wait_for_log("listening").await;
        let port = listening["port"]
            .as_u64()
            .expect("the listening line names the port");
        node.address = format!("http://127.0.0.1:{port}");
        node
    }

    /// Wait for the first log line with this message; panics if the node ends first.
    async fn wait_for_log(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.try_recv() {
                Ok(line) if line["message"] == message => return line,
                Ok(_) => continue,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    panic!("the node ended without logging {message:?}")
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                Instant::now() < deadline,
                "the node never logged {message:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait up to `wait` for the process to end; its exit status if it did.
    async fn exited_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn the_node_binary_stops_on_sigterm() {
    let mut node = NodeProcess::start(&[]).await;
    let health = reqwest::get(format!("{}/health", node.address))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    node.sigterm();
    let exit = node
        .exited_within(Duration::from_secs(15))
        .await
        .expect("the node did not stop within 15 s of SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

/// A subscriber standing in for another node's connections.
struct Probe(mpsc::UnboundedSender<Delivery>);

impl Subscriber for Probe {
    fn deliver(&self, push: &Delivery) -> bool {
        self.0.send(Arc::clone(push)).is_ok()
    }
}

/// What a node committed and a logout, just before the node is stopped, still reach the other
/// nodes: stopping waits for the last commits to be published and for the pushes queued for
/// Redis, here held back by Redis itself, instead of dropping them with the process.
/// Otherwise the other nodes' devices would miss the deposit until they next resume, and the
/// session's connections there would stay open.
#[actix_web::test]
async fn a_stopping_node_sends_what_it_queued_for_the_other_nodes() {
    let Ok(redis_url) = std::env::var("TEST_REDIS_URL") else {
        return;
    };
    let node_id = format!("stopping-{}", uuid::Uuid::new_v4().simple());
    let mut node = NodeProcess::start(&[("REDIS_URL", &redis_url), ("NODE_ID", &node_id)]).await;
    let http = reqwest::Client::new();
    let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = http
        .post(format!("{}/auth-api/v1/registeruser", node.address))
        .json(&json!({"email": email, "password": "correct horse battery", "fullname": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let session: Value = http
        .post(format!("{}/auth-api/login", node.address))
        .json(&json!({"username": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = session["userId"].as_str().unwrap();
    let session_id = session["sessionId"].as_str().unwrap();

    // Another node, subscribed to the user's topic.
    let other = Hub::redis(
        &redis_url,
        format!("other-{}", uuid::Uuid::new_v4().simple()),
    )
    .await
    .expect("TEST_REDIS_URL is set but the Redis bus failed");
    let (tx, mut on_other) = mpsc::unbounded_channel();
    other
        .subscribe(
            &format!("user:{user_id}"),
            SubscriberId(1),
            Arc::new(Probe(tx)),
        )
        .await
        .expect("subscribe");

    // Redis holds every PUBLISH while its writes are paused.
    let paused = RedisPause::start(&redis_url, Duration::from_secs(4)).await;
    // A deposit: committed, then pushed to the user's devices on every node.
    let deposit = http
        .post(format!("{}/rest/v01/deposit", node.address))
        .json(
            &json!({"meta": {"uuid": "shutdown", "client_version": "1.0",
            "request_id": uuid::Uuid::new_v4().to_string(),
            "evg_auth_token": session["accessToken"]}, "amount": "5"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deposit.status(), 200);
    let deposited: Value = deposit.json().await.unwrap();
    assert_eq!(deposited["status"], "success", "{deposited}");
    let logout = http
        .post(format!("{}/auth-api/logout", node.address))
        .bearer_auth(session["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    drop(http);
    node.sigterm();
    node.wait_for_log("journal flushed").await;
    // A node that dropped its queue would be gone by now; this one waits for Redis.
    let gone_early = node.exited_within(Duration::from_millis(1500)).await;
    if paused.held() {
        assert!(
            gone_early.is_none(),
            "the node exited while Redis still held its last push: {gone_early:?}"
        );
    }
    paused.end().await;

    // The deposit's sequenced feed entry, and after it the revocation.
    let mut pushes = Vec::new();
    loop {
        let push = timeout(WAIT, on_other.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the other node got {pushes:?} and never the logout \
                     (the node had exited: {gone_early:?})"
                )
            })
            .expect("the probe's queue closed");
        let revoked = matches!(&push.event, Event::SessionRevoked { session_id: ended }
            if ended == session_id);
        pushes.push(push);
        if revoked {
            break;
        }
    }
    assert!(
        pushes.iter().any(|push| push.seq.is_some()),
        "the deposit's push did not come before the logout: {pushes:?}"
    );
    let exit = node
        .exited_within(WAIT)
        .await
        .expect("the node did not stop once Redis answered");
    assert!(exit.success(), "{exit:?}");
}
