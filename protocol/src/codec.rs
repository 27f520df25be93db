//! JSON and MessagePack encodings of frames.

use serde::{de::DeserializeOwned, Serialize};

/// The subprotocol a client names to get JSON text frames (also the default).
pub const SUBPROTOCOL_JSON: &str = "node.v1.json";
/// The subprotocol a client names to get MessagePack binary frames.
pub const SUBPROTOCOL_MSGPACK: &str = "node.v1.msgpack";

/// A frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed JSON frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed MessagePack frame: {0}")]
    MsgPack(#[from] rmp_serde::decode::Error),
}

/// The encoding of a connection's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// JSON in WebSocket text messages.
    Json,
    /// MessagePack with named fields in WebSocket binary messages.
    MsgPack,
}

impl Codec {
    /// The codec a subprotocol name selects, if it is one of ours.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_JSON => Some(Codec::Json),
            SUBPROTOCOL_MSGPACK => Some(Codec::MsgPack),
            _ => None,
        }
    }

    /// The subprotocol name of this codec.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => SUBPROTOCOL_JSON,
            Codec::MsgPack => SUBPROTOCOL_MSGPACK,
        }
    }

    /// True when frames of this codec travel in WebSocket text messages.
    pub fn is_text(self) -> bool {
        matches!(self, Codec::Json)
    }

    /// Encode a frame. JSON output is valid UTF-8.
    pub fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        let encoded = match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Codec::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        };
        // Our frame types are plain data (string keys, no non-finite floats), so encoding
        // cannot fail; should a future type break that, the frame degrades to an empty map
        // rather than taking the connection down.
        encoded.unwrap_or_else(|_| match self {
            Codec::Json => b"{}".to_vec(),
            Codec::MsgPack => vec![0x80],
        })
    }

    /// Decode a frame.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, DecodeError> {
        Ok(match self {
            Codec::Json => serde_json::from_slice(bytes)?,
            Codec::MsgPack => rmp_serde::from_slice(bytes)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{
        AuthFrame, ClientFrame, Event, Hello, Push, ServerFrame, TopicResume, WalletAnswer,
        WalletBalance,
    };

    #[test]
    fn client_frames_round_trip_in_both_codecs() {
        let frame = ClientFrame::Subscribe {
            id: Some("c1".into()),
            topic: "thread:1".into(),
            since: Some(7),
        };
        for codec in [Codec::Json, Codec::MsgPack] {
            let bytes = codec.encode(&frame);
            let back: ClientFrame = codec.decode(&bytes).expect("decodes");
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn json_shapes_are_the_documented_ones() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"op":"ping","id":"a"}"#).expect("valid ping");
        assert_eq!(
            frame,
            ClientFrame::Ping {
                id: Some("a".into())
            }
        );
        let push = ServerFrame::Event(Push {
            topic: "user:u1".into(),
            seq: None,
            event: Event::SessionRevoked {
                session_id: "s1".into(),
            },
        });
        let text = String::from_utf8(Codec::Json.encode(&push)).expect("utf8");
        assert_eq!(
            text,
            r#"{"type":"event","topic":"user:u1","event":{"kind":"session_revoked","session_id":"s1"}}"#
        );
    }

    #[test]
    fn wallet_frames_round_trip_in_both_codecs() {
        let frames = [
            ClientFrame::Balance { id: None },
            ClientFrame::Pay {
                id: Some("p1".into()),
                payee: "user:u2".into(),
                amount: "25".into(),
                currency: None,
                description: Some("lunch".into()),
                transaction_id: Some("t1".into()),
            },
            ClientFrame::RequestPayment {
                id: Some("r1".into()),
                payor: "qr:abc".into(),
                amount: "12.50".into(),
                currency: Some("USD".into()),
                description: "tickets".into(),
            },
            ClientFrame::RejectPayment {
                id: Some("j1".into()),
                transaction_id: "t1".into(),
            },
            ClientFrame::CancelRequest {
                id: Some("c1".into()),
                transaction_id: "t1".into(),
            },
        ];
        for frame in frames {
            for codec in [Codec::Json, Codec::MsgPack] {
                let back: ClientFrame = codec.decode(&codec.encode(&frame)).expect("decodes");
                assert_eq!(back, frame);
            }
        }
        let answer = ServerFrame::Wallet(WalletAnswer {
            id: Some("p1".into()),
            status: "insufficient_funds".into(),
            message: Some("Your balance is only 3 EVG".into()),
            balances: vec![WalletBalance {
                currency: "EVG".into(),
                available: "3.00".into(),
                total: "3.00".into(),
            }],
            transaction_id: None,
            transfer_id: None,
        });
        for codec in [Codec::Json, Codec::MsgPack] {
            let back: ServerFrame = codec.decode(&codec.encode(&answer)).expect("decodes");
            assert_eq!(back, answer);
        }
    }

    #[test]
    fn wallet_json_shapes_are_the_documented_ones() {
        let pay: ClientFrame = serde_json::from_str(
            r#"{"op":"pay","id":"p1","payee":"user:u2","amount":"25","description":"lunch"}"#,
        )
        .expect("valid pay");
        assert!(matches!(pay, ClientFrame::Pay { ref currency, .. } if currency.is_none()));
        assert_eq!(pay.id(), Some("p1"));
        let answer = ServerFrame::Wallet(WalletAnswer {
            id: Some("p1".into()),
            status: "success".into(),
            message: None,
            balances: vec![WalletBalance {
                currency: "EVG".into(),
                available: "75.00".into(),
                total: "75.00".into(),
            }],
            transaction_id: None,
            transfer_id: Some("x1".into()),
        });
        assert_eq!(
            String::from_utf8(Codec::Json.encode(&answer)).expect("utf8"),
            r#"{"type":"wallet","id":"p1","status":"success","balances":[{"currency":"EVG","available":"75.00","total":"75.00"}],"transfer_id":"x1"}"#
        );
        let hello = ServerFrame::Hello(Hello {
            user_id: "u1".into(),
            session_id: "s1".into(),
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_frame_bytes: 65_536,
            user_topic: "user:u1".into(),
            resume: Some(TopicResume {
                replayed: 2,
                head: 9,
                gap_too_large: false,
            }),
        });
        let text = String::from_utf8(Codec::Json.encode(&hello)).expect("utf8");
        assert!(
            text.ends_with(
                r#""user_topic":"user:u1","resume":{"replayed":2,"head":9,"gap_too_large":false}}"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_auth_frame_may_carry_since_and_nothing_else() {
        let auth: AuthFrame =
            serde_json::from_str(r#"{"op":"auth","token":"t","since":41}"#).expect("valid auth");
        assert_eq!(
            auth,
            AuthFrame::Auth {
                id: None,
                token: "t".into(),
                since: Some(41),
            }
        );
        // The narrow `ClientFrame::Auth` encodes to a valid full one.
        let narrow = Codec::MsgPack.encode(&ClientFrame::Auth {
            id: Some("a".into()),
            token: "t".into(),
        });
        assert!(Codec::MsgPack.decode::<AuthFrame>(&narrow).is_ok());
        for bad in [
            r#"{"op":"ping","token":"t"}"#,
            r#"{"op":"auth","token":"t","since":-1}"#,
            r#"{"op":"auth","token":"t","extra":1}"#,
        ] {
            assert!(
                Codec::Json.decode::<AuthFrame>(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_undecodable_frame_still_tells_its_id() {
        let bad = br#"{"op":"pay","id":"p9","payee":"user:u2","amount":25}"#;
        assert!(Codec::Json.decode::<ClientFrame>(bad).is_err());
        assert_eq!(
            ClientFrame::id_of_undecodable(Codec::Json, bad).as_deref(),
            Some("p9")
        );
        assert_eq!(ClientFrame::id_of_undecodable(Codec::Json, b"[]"), None);
        assert_eq!(
            ClientFrame::id_of_undecodable(Codec::Json, br#"{"id":5}"#),
            None
        );
        let packed =
            rmp_serde::to_vec_named(&serde_json::json!({"op": "pay", "id": "m1", "x": [1]}))
                .expect("encodes");
        assert_eq!(
            ClientFrame::id_of_undecodable(Codec::MsgPack, &packed).as_deref(),
            Some("m1")
        );
    }

    #[test]
    fn unknown_fields_and_ops_are_refused() {
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"ping","id":"a","extra":1}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"launch"}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"balance","id":"a","currency":"EVG"}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"pay","id":"a","payee":"x"}"#)
            .is_err());
        assert!(Codec::MsgPack.decode::<ClientFrame>(&[0xc1]).is_err());
    }
}
