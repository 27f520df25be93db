//! Talking to the node as its clients do: REST for accounts, money in and threads, the
//! WebSocket protocol (`protocol` crate frames in the chosen codec) for everything live.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, Codec, ServerFrame};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::target::Target;

/// How long one REST call or one WebSocket handshake may take before the run gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The password every load-test user gets: the users are throwaway, on a throwaway node.
const PASSWORD: &str = "loadtest password 1";

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// The node's REST side.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    target: Target,
}

impl Rest {
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Nothing may lead the load off loopback: no redirect, no proxy from the environment.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Rest {
            http,
            target: target.clone(),
        })
    }

    fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        self.target.http.join(path).context("joining a path")
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.post(self.url(path)?).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET path` (with its query), with a bearer token when given: the status and the body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.get(self.url(path)?);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET /health`: is a node there at all?
    pub async fn health(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .get(self.url("/health")?)
            .send()
            .await
            .with_context(|| format!("no node answers at {}", self.target.http))?;
        if !response.status().is_success() {
            bail!(
                "{} /health answered {}",
                self.target.http,
                response.status()
            );
        }
        Ok(())
    }

    /// Register a user (`POST /auth-api/v1/registeruser`) and log in (`POST /auth-api/login`).
    pub async fn user(&self, email: &str) -> anyhow::Result<User> {
        let (status, body) = self
            .post(
                "/auth-api/v1/registeruser",
                None,
                &json!({"email": email, "password": PASSWORD, "fullname": "Load Test"}),
            )
            .await?;
        if status != 201 {
            bail!("registering {email}: HTTP {status} {body}");
        }
        let (status, body) = self
            .post(
                "/auth-api/login",
                None,
                &json!({"username": email, "password": PASSWORD}),
            )
            .await?;
        if status != 200 {
            bail!("logging in {email}: HTTP {status} {body}");
        }
        let field = |name: &str| {
            body[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("login answer without {name}: {body}"))
        };
        Ok(User {
            id: field("userId")?,
            token: field("accessToken")?,
        })
    }

    /// Evergreen `deposit` of whole credits, with `meta` as the Evergreen clients send it.
    pub async fn deposit(&self, user: &User, amount: u64, request_id: &str) -> anyhow::Result<()> {
        let body = json!({
            "meta": {
                "uuid": "loadtest",
                "client_version": "1.0",
                "request_id": request_id,
                "evg_auth_token": user.token,
            },
            "amount": amount.to_string(),
        });
        let (status, answer) = self.post("/rest/v01/deposit", None, &body).await?;
        if status != 200 || answer["status"] != "success" {
            bail!("deposit for {}: HTTP {status} {answer}", user.id);
        }
        Ok(())
    }

    /// A thread between a guest and a host (`POST /messaging-api/v1/messagethreads`).
    pub async fn thread(&self, guest: &User, host: &User) -> anyhow::Result<String> {
        let (status, body) = self
            .post(
                "/messaging-api/v1/messagethreads",
                Some(&guest.token),
                &json!({"guestId": guest.id, "hostId": host.id, "isOpen": true}),
            )
            .await?;
        if status != 201 {
            bail!("creating a thread: HTTP {status} {body}");
        }
        body["messageThread"]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("thread answer without an id: {body}"))
    }
}

/// A listing as the booking scenario needs it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub id: String,
    pub host_id: String,
    /// Whole units of `currency` per night.
    pub price_per_night: u64,
}

impl Rest {
    /// A published, instantly bookable listing of `host` (`POST /propertycatalog-api/v1/listings`).
    pub async fn listing(
        &self,
        host: &User,
        title: &str,
        price_per_night: u64,
    ) -> anyhow::Result<Listing> {
        let (status, body) = self
            .post(
                "/propertycatalog-api/v1/listings",
                Some(&host.token),
                &json!({
                    "title": title,
                    "address": "1 Main St",
                    "pricePerNight": price_per_night,
                    "description": "a load-test listing",
                    "propertyType": "apartment",
                    "location": {},
                    "currency": "USD",
                    "approvalType": "instant",
                    "isPublished": true,
                }),
            )
            .await?;
        if status != 201 {
            bail!("creating a listing: HTTP {status} {body}");
        }
        let id = body["listing"]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("listing answer without an id: {body}"))?;
        Ok(Listing {
            id,
            host_id: host.id.clone(),
            price_per_night,
        })
    }

    /// `POST /bookingmanagement-api/v1/reservations` as `guest`: the status and the body, for
    /// the caller to tell a booking (201) from a taken night (409) and anything else.
    pub async fn reserve(&self, guest: &User, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.post(
            "/bookingmanagement-api/v1/reservations",
            Some(&guest.token),
            body,
        )
        .await
    }
}

/// One WebSocket connection speaking the node's protocol.
pub struct Ws {
    stream: WebSocketStream<TcpStream>,
    pub codec: Codec,
    /// Frames the codec could not read (for example an event kind newer than this build).
    pub undecodable: u64,
}

/// What [`Ws::recv_bytes`] got: a frame's bytes (a text frame's UTF-8), or the end.
pub enum RawReceived {
    Frame(tokio_tungstenite::tungstenite::Bytes),
    /// The connection ended, with the close code if the node sent one.
    Closed(Option<u16>),
}

/// What [`Ws::recv`] got.
pub enum Received {
    Frame(Box<ServerFrame>),
    /// The connection ended, with the close code if the node sent one.
    Closed(Option<u16>),
}

impl Ws {
    /// Open `/ws` with the token in the query (and `since` when resuming the user topic),
    /// from `source` when given (a loopback address to bind), and read `hello`.
    pub async fn connect(
        target: &Target,
        codec: Codec,
        token: &str,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Ws> {
        let mut url = target.ws.clone();
        url.query_pairs_mut().append_pair("access_token", token);
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let tcp = tcp_connect(target.socket_addr, source).await?;
        let (stream, _response) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config())),
        )
        .await
        .context("WebSocket handshake timed out")?
        .context("WebSocket handshake")?;
        let mut ws = Ws {
            stream,
            codec,
            undecodable: 0,
        };
        match ws.recv_timeout(REQUEST_TIMEOUT).await? {
            Received::Frame(frame) if matches!(*frame, ServerFrame::Hello(_)) => Ok(ws),
            Received::Frame(other) => bail!("expected hello, got {other:?}"),
            Received::Closed(code) => bail!("closed before hello (code {code:?})"),
        }
    }

    /// Queue a frame without flushing (see [`Ws::flush`]).
    pub async fn feed(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        let message = self.message(frame)?;
        self.stream.feed(message).await.context("sending a frame")
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.flush().await.context("flushing frames")
    }

    pub async fn send(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        let message = self.message(frame)?;
        self.stream.send(message).await.context("sending a frame")
    }

    fn message(&self, frame: &ClientFrame) -> anyhow::Result<Message> {
        let bytes = self.codec.encode(frame);
        Ok(if self.codec.is_text() {
            Message::text(String::from_utf8(bytes).context("JSON frames are UTF-8")?)
        } else {
            Message::binary(bytes)
        })
    }

    /// The next protocol frame, skipping WebSocket control frames (the library answers pings
    /// while it reads) and heartbeats. Frames the codec cannot read are counted and skipped.
    pub async fn recv(&mut self) -> anyhow::Result<Received> {
        loop {
            let bytes = match self.recv_bytes().await? {
                RawReceived::Frame(bytes) => bytes,
                RawReceived::Closed(code) => return Ok(Received::Closed(code)),
            };
            match self.codec.decode::<ServerFrame>(&bytes) {
                Ok(ServerFrame::Heartbeat { .. }) => continue,
                Ok(frame) => return Ok(Received::Frame(Box::new(frame))),
                Err(_) => self.undecodable += 1,
            }
        }
    }

    /// The next protocol frame as it arrived, undecoded (for a scenario that reads only a
    /// few of its fields: see `fanout`), skipping WebSocket control frames.
    pub async fn recv_bytes(&mut self) -> anyhow::Result<RawReceived> {
        loop {
            let Some(message) = self.stream.next().await else {
                return Ok(RawReceived::Closed(None));
            };
            return match message {
                Ok(Message::Text(text)) => Ok(RawReceived::Frame(text.into())),
                Ok(Message::Binary(bytes)) => Ok(RawReceived::Frame(bytes)),
                Ok(Message::Close(frame)) => {
                    Ok(RawReceived::Closed(frame.map(|f| u16::from(f.code))))
                }
                Ok(_) => continue,
                Err(error) => {
                    use tokio_tungstenite::tungstenite::Error;
                    match error {
                        Error::ConnectionClosed | Error::AlreadyClosed => {
                            Ok(RawReceived::Closed(None))
                        }
                        Error::Protocol(_) | Error::Io(_) => Ok(RawReceived::Closed(None)),
                        other => Err(other).context("reading a frame"),
                    }
                }
            };
        }
    }

    /// The codec this connection speaks.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub async fn recv_timeout(&mut self, wait: Duration) -> anyhow::Result<Received> {
        tokio::time::timeout(wait, self.recv())
            .await
            .context("no frame from the node in time")?
    }

    /// Read until the answer to `id` arrives, handing every other frame to `other`.
    pub async fn answer(
        &mut self,
        id: &str,
        wait: Duration,
        mut other: impl FnMut(ServerFrame),
    ) -> anyhow::Result<ServerFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_timeout(left).await? {
                Received::Frame(frame) if answer_id(&frame) == Some(id) => return Ok(*frame),
                Received::Frame(frame) => other(*frame),
                Received::Closed(code) => bail!("closed (code {code:?}) while waiting for {id}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// The request id an answer echoes.
pub fn answer_id(frame: &ServerFrame) -> Option<&str> {
    match frame {
        ServerFrame::Pong { id }
        | ServerFrame::Subscribed { id, .. }
        | ServerFrame::Unsubscribed { id, .. }
        | ServerFrame::Error { id, .. }
        | ServerFrame::Posted { id, .. }
        | ServerFrame::Ack { id, .. } => id.as_deref(),
        ServerFrame::Wallet(answer) => answer.id.as_deref(),
        ServerFrame::Hello(_) | ServerFrame::Event(_) | ServerFrame::Heartbeat { .. } => None,
    }
}

/// How much tungstenite reads from the socket at once. Its default (128 KiB) is zeroed
/// before every read, whatever arrives: in a fanout run, where each read brings a few small
/// frames, that memset was an eighth of the load generator's CPU, and the buffers it
/// touched took the load generator of an 800-connection fanout run to 127 MB resident
/// (31 MB at 8 KiB). A frame larger than this still arrives whole (the buffer grows to the
/// frame's length); only the read size is smaller.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The client side's WebSocket settings, for the node's clients and Socket.IO's alike.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

/// A TCP connection to the node, from a chosen loopback source address when given (each
/// source address has its own ephemeral port range, which is how one machine opens more than
/// ~28,000 connections to one port).
pub async fn tcp_connect(node: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = match node {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        if !crate::target::is_loopback_ip(ip) {
            bail!("refusing source address {ip}: not loopback");
        }
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding {ip}"))?;
    }
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, socket.connect(node))
        .await
        .context("TCP connect timed out")?
        .with_context(|| format!("connecting to {node}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A unique, short prefix for this run's names (emails, request ids): the process id and the
/// clock, so two runs against one node never collide.
pub fn run_prefix() -> String {
    format!(
        "lt{}x{}",
        std::process::id(),
        crate::report::unix_ms() % 1_000_000_000
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The small read size bounds each read, not a frame: a frame many reads long arrives
    /// whole and unchanged, and so does a small one behind it.
    #[tokio::test]
    async fn a_frame_larger_than_the_read_buffer_arrives_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let large: Vec<u8> = (0..READ_BUFFER_BYTES * 12 + 7)
            .map(|n| (n % 251) as u8)
            .collect();
        let sent = large.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(Message::Binary(sent.into())).await.unwrap();
            ws.send(Message::Binary(vec![1, 2, 3].into()))
                .await
                .unwrap();
            ws.close(None).await.unwrap();
        });
        let tcp = tcp_connect(addr, None).await.unwrap();
        let request = format!("ws://{addr}/").into_client_request().unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config()))
                .await
                .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert_eq!(first, Message::Binary(large.into()));
        let second = ws.next().await.unwrap().unwrap();
        assert_eq!(second, Message::Binary(vec![1, 2, 3].into()));
        server.await.unwrap();
    }
}
