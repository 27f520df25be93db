//! Just enough of a Socket.IO client for the reference scenarios: Engine.IO v4 over a
//! WebSocket (no long-polling), Socket.IO v5 packets in text frames, the default namespace.
//!
//! On the wire: the server opens with `0{"sid",…,"pingInterval",…}`; the client connects to
//! the namespace with `40`, the server answers `40{"sid":…}` (or `44{…}` when its middleware
//! refuses); events are `42["name",…]`, with an acknowledgement id after the type when an
//! answer is wanted (`42 7["name",…]`, answered `43 7[…]`, without the spaces); the server
//! pings with `2` and the client must answer `3` before its `pingTimeout`.

use std::net::IpAddr;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::REQUEST_TIMEOUT;
use crate::target::Target;

/// One Engine.IO / Socket.IO packet, as read from a text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `0{…}`: the handshake, with `sid`, `pingInterval`, `pingTimeout`, `maxPayload`.
    Open(Value),
    /// `1`: the server closes the Engine.IO session.
    Close,
    Ping,
    Pong,
    /// `40{…}`: connected to the namespace.
    Connect(Value),
    /// `41`: disconnected from the namespace.
    Disconnect,
    /// `42["message",{"thread":…,"content":…}]`: the reference server's delivery of a post,
    /// read in one pass (see [`parse_socket`]).
    Message {
        content: String,
    },
    /// `42[…]`: an event, with the id to acknowledge when the sender wants an answer.
    Event {
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
    },
    /// `43<id>[…]`: the answer to an event sent with acknowledgement id `id`.
    Ack {
        id: u64,
        args: Vec<Value>,
    },
    /// `44{…}`: the namespace refused the connection.
    ConnectError(Value),
    /// Anything else (binary events, upgrade, noop), kept as sent.
    Other(String),
}

/// Read a text frame.
pub fn parse(text: &str) -> anyhow::Result<Packet> {
    let mut chars = text.chars();
    let engine = chars.next().context("an empty frame")?;
    let rest = chars.as_str();
    match engine {
        '0' => Ok(Packet::Open(
            serde_json::from_str(rest).context("open packet")?,
        )),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping),
        '3' => Ok(Packet::Pong),
        '4' => parse_socket(rest),
        _ => Ok(Packet::Other(text.to_owned())),
    }
}

/// How the reference server's deliveries start (`42` and then this).
const MESSAGE_PREFIX: &str = "[\"message\",";

/// The argument of a delivery, of which the scenario reads the content.
#[derive(serde::Deserialize)]
struct MessageArg {
    content: String,
}

/// A Socket.IO packet: its type, then an optional namespace (`/admin,`), an optional
/// acknowledgement id (digits), then JSON.
fn parse_socket(text: &str) -> anyhow::Result<Packet> {
    let mut chars = text.chars();
    let kind = chars.next().context("a message packet without a type")?;
    let mut rest = chars.as_str();
    if rest.starts_with('/') {
        // Only the default namespace is used here; skip any other's name.
        rest = rest.split_once(',').map_or("", |(_, after)| after);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, json) = rest.split_at(digits);
    let id: Option<u64> = if id.is_empty() {
        None
    } else {
        Some(id.parse().context("acknowledgement id")?)
    };
    if kind == '2' && id.is_none() && json.starts_with(MESSAGE_PREFIX) {
        // A delivery, the bulk of a fanout run: read straight into the one field the scenario
        // checks rather than into a tree of `Value`s, as the node's fanout devices read theirs
        // (`scenarios::fanout::Seen`), so that neither client costs the shared machine more
        // than it must. Any other shape is read in full below.
        if let Ok((_, MessageArg { content })) = serde_json::from_str::<(String, MessageArg)>(json)
        {
            return Ok(Packet::Message { content });
        }
    }
    let value = || -> anyhow::Result<Value> {
        if json.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(json).context("packet payload")
        }
    };
    match kind {
        '0' => Ok(Packet::Connect(value()?)),
        '1' => Ok(Packet::Disconnect),
        '2' => {
            let Value::Array(mut args) = value()? else {
                bail!("an event that is not an array: {text}");
            };
            if args.is_empty() {
                bail!("an event without a name: {text}");
            }
            let Value::String(name) = args.remove(0) else {
                bail!("an event whose name is not a string: {text}");
            };
            Ok(Packet::Event {
                name,
                args,
                ack: id,
            })
        }
        '3' => {
            let Value::Array(args) = value()? else {
                bail!("an acknowledgement that is not an array: {text}");
            };
            Ok(Packet::Ack {
                id: id.context("an acknowledgement without an id")?,
                args,
            })
        }
        '4' => Ok(Packet::ConnectError(value()?)),
        _ => Ok(Packet::Other(format!("4{text}"))),
    }
}

/// The text of an event: `42`, the acknowledgement id if one is wanted, `["name",args…]`.
pub fn event_text(name: &str, args: &[Value], ack: Option<u64>) -> String {
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(Value::String(name.to_owned()));
    array.extend(args.iter().cloned());
    let id = ack.map(|id| id.to_string()).unwrap_or_default();
    format!("42{id}{}", Value::Array(array))
}

/// The URL of a Socket.IO server's WebSocket transport, with the token in the query.
pub fn socket_url(target: &Target, token: &str) -> url::Url {
    let mut url = target.ws.clone();
    url.set_path("/socket.io/");
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("EIO", "4")
        .append_pair("transport", "websocket")
        .append_pair("token", token);
    url
}

/// What [`Sio::recv`] got.
pub enum SioReceived {
    /// A `message` event: the content of its first argument (empty when it has none).
    Message {
        content: String,
    },
    /// Any other event.
    OtherEvent,
    Ack {
        id: u64,
        args: Vec<Value>,
    },
    /// The connection or the namespace ended, and why if known.
    Closed(String),
}

/// One Socket.IO connection.
pub struct Sio {
    stream: WebSocketStream<TcpStream>,
    pub sid: String,
    next_ack: u64,
    /// Frames that could not be read as packets.
    pub undecodable: u64,
}

impl Sio {
    /// Open the WebSocket transport (from `source` when given), read the handshake, connect
    /// to the default namespace and wait for its answer.
    pub async fn connect(
        target: &Target,
        token: &str,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Sio> {
        let request = socket_url(target, token).as_str().into_client_request()?;
        let tcp = crate::client::tcp_connect(target.socket_addr, source).await?;
        let (stream, _response) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            tokio_tungstenite::client_async_with_config(
                request,
                tcp,
                Some(crate::client::ws_config()),
            ),
        )
        .await
        .context("WebSocket handshake timed out")?
        .context("WebSocket handshake")?;
        let mut sio = Sio {
            stream,
            sid: String::new(),
            next_ack: 0,
            undecodable: 0,
        };
        match sio.next_packet_timeout().await? {
            Packet::Open(open) => {
                sio.sid = open["sid"].as_str().unwrap_or_default().to_owned();
            }
            other => bail!("expected the Engine.IO open packet, got {other:?}"),
        }
        sio.send_text("40".to_owned()).await?;
        loop {
            match sio.next_packet_timeout().await? {
                Packet::Connect(_) => return Ok(sio),
                Packet::ConnectError(why) => bail!("the server refused the connection: {why}"),
                Packet::Ping => sio.send_text("3".to_owned()).await?,
                Packet::Close | Packet::Disconnect => bail!("closed while connecting"),
                _ => {}
            }
        }
    }

    async fn next_packet_timeout(&mut self) -> anyhow::Result<Packet> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.next_packet())
            .await
            .context("no packet from the Socket.IO server in time")?
    }

    /// The next packet, skipping WebSocket control frames; a closed stream is `Close`.
    async fn next_packet(&mut self) -> anyhow::Result<Packet> {
        loop {
            let Some(message) = self.stream.next().await else {
                return Ok(Packet::Close);
            };
            match message {
                Ok(Message::Text(text)) => match parse(text.as_str()) {
                    Ok(packet) => return Ok(packet),
                    Err(_) => self.undecodable += 1,
                },
                Ok(Message::Close(_)) => return Ok(Packet::Close),
                Ok(Message::Binary(_)) => self.undecodable += 1,
                Ok(_) => continue,
                Err(error) => {
                    use tokio_tungstenite::tungstenite::Error;
                    return match error {
                        Error::ConnectionClosed
                        | Error::AlreadyClosed
                        | Error::Protocol(_)
                        | Error::Io(_) => Ok(Packet::Close),
                        other => Err(other).context("reading a frame"),
                    };
                }
            }
        }
    }

    async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.stream
            .send(Message::text(text))
            .await
            .context("sending a packet")
    }

    /// Queue an event that wants an answer, without flushing; returns its acknowledgement id.
    pub async fn feed_with_ack(&mut self, name: &str, args: &[Value]) -> anyhow::Result<u64> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.stream
            .feed(Message::text(event_text(name, args, Some(id))))
            .await
            .context("sending an event")?;
        Ok(id)
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.flush().await.context("flushing packets")
    }

    /// Send an event and wait for its answer (events arriving meanwhile are dropped: this is
    /// for setup, before any traffic).
    pub async fn call(&mut self, name: &str, args: &[Value]) -> anyhow::Result<Vec<Value>> {
        let id = self.feed_with_ack(name, args).await?;
        self.flush().await?;
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = tokio::time::timeout(left, self.recv())
                .await
                .with_context(|| format!("no answer to {name} in time"))??;
            match got {
                SioReceived::Ack { id: got, args } if got == id => return Ok(args),
                SioReceived::Closed(why) => bail!("closed while waiting for {name}: {why}"),
                _ => {}
            }
        }
    }

    /// The next event or acknowledgement; pings are answered on the way.
    pub async fn recv(&mut self) -> anyhow::Result<SioReceived> {
        loop {
            match self.next_packet().await? {
                Packet::Message { content } => return Ok(SioReceived::Message { content }),
                // A `message` of a shape the one-pass read does not take (an acknowledgement
                // id, more arguments): its content read from the tree.
                Packet::Event { name, args, .. } if name == "message" => {
                    let content = args
                        .first()
                        .and_then(|m| m.get("content"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Ok(SioReceived::Message {
                        content: content.to_owned(),
                    });
                }
                Packet::Event { .. } => return Ok(SioReceived::OtherEvent),
                Packet::Ack { id, args } => return Ok(SioReceived::Ack { id, args }),
                Packet::Ping if self.send_text("3".to_owned()).await.is_err() => {
                    return Ok(SioReceived::Closed("pong failed".into()));
                }
                Packet::Close => return Ok(SioReceived::Closed("closed".into())),
                Packet::Disconnect => return Ok(SioReceived::Closed("disconnected".into())),
                Packet::ConnectError(why) => return Ok(SioReceived::Closed(why.to_string())),
                _ => {}
            }
        }
    }

    /// Leave the namespace and close the WebSocket.
    pub async fn close(mut self) {
        let _ = self.send_text("41".to_owned()).await;
        let _ = self.stream.close(None).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        let open = parse(r#"0{"sid":"abc","pingInterval":25000,"pingTimeout":20000}"#).unwrap();
        assert_eq!(
            open,
            Packet::Open(json!({"sid":"abc","pingInterval":25000,"pingTimeout":20000}))
        );
        assert_eq!(parse("1").unwrap(), Packet::Close);
        assert_eq!(parse("2").unwrap(), Packet::Ping);
        assert_eq!(parse("3").unwrap(), Packet::Pong);
        assert_eq!(parse("6").unwrap(), Packet::Other("6".into()));
        assert!(parse("").is_err());
    }

    #[test]
    fn socket_packets() {
        assert_eq!(
            parse(r#"40{"sid":"x"}"#).unwrap(),
            Packet::Connect(json!({"sid":"x"}))
        );
        assert_eq!(parse("41").unwrap(), Packet::Disconnect);
        // A delivery is read in one pass; a `message` of any other shape in full.
        assert_eq!(
            parse(r#"42["message",{"thread":"t1","content":"hi"}]"#).unwrap(),
            Packet::Message {
                content: "hi".into()
            }
        );
        assert_eq!(
            parse(r#"42["message",{"content":7}]"#).unwrap(),
            Packet::Event {
                name: "message".into(),
                args: vec![json!({"content":7})],
                ack: None
            }
        );
        assert_eq!(
            parse(r#"42["message",{"content":"hi"},2]"#).unwrap(),
            Packet::Event {
                name: "message".into(),
                args: vec![json!({"content":"hi"}), json!(2)],
                ack: None
            }
        );
        assert_eq!(
            parse(r#"423["message",{"content":"hi"}]"#).unwrap(),
            Packet::Event {
                name: "message".into(),
                args: vec![json!({"content":"hi"})],
                ack: Some(3)
            }
        );
        assert_eq!(
            parse(r#"4217["post",1,"two"]"#).unwrap(),
            Packet::Event {
                name: "post".into(),
                args: vec![json!(1), json!("two")],
                ack: Some(17)
            }
        );
        assert_eq!(
            parse(r#"43123[{"ok":true}]"#).unwrap(),
            Packet::Ack {
                id: 123,
                args: vec![json!({"ok":true})]
            }
        );
        assert_eq!(
            parse(r#"42/admin,5["x"]"#).unwrap(),
            Packet::Event {
                name: "x".into(),
                args: vec![],
                ack: Some(5)
            }
        );
        assert_eq!(
            parse(r#"44{"message":"unauthorized"}"#).unwrap(),
            Packet::ConnectError(json!({"message":"unauthorized"}))
        );
        assert!(parse("42[]").is_err());
        assert!(parse("42{}").is_err());
        assert!(parse("43[1]").is_err(), "an ack needs its id");
    }

    #[test]
    fn events_are_written_as_the_server_reads_them() {
        let text = event_text("post", &[json!("t"), json!(2)], Some(9));
        assert_eq!(text, r#"429["post","t",2]"#);
        assert_eq!(
            event_text("join", &[json!("t1")], None),
            r#"42["join","t1"]"#
        );
        // And read back.
        assert!(matches!(
            parse(&text).unwrap(),
            Packet::Event { ack: Some(9), .. }
        ));
    }

    #[test]
    fn the_url_is_the_websocket_transport_with_the_token() {
        let target = crate::target::parse_target("http://127.0.0.1:3000").unwrap();
        let url = socket_url(&target, "tok en");
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket&token=tok+en"
        );
    }
}
