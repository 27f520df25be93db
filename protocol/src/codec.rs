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
mod tests {
    use super::*;
    use crate::{ClientFrame, Event, Push, ServerFrame};

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
    fn unknown_fields_and_ops_are_refused() {
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"ping","id":"a","extra":1}"#)
            .is_err());
        assert!(Codec::Json
            .decode::<ClientFrame>(br#"{"op":"launch"}"#)
            .is_err());
        assert!(Codec::MsgPack.decode::<ClientFrame>(&[0xc1]).is_err());
    }
}
