//! The Jupyter messaging wire format (protocol 5.x): a multipart ZeroMQ message
//! `[identities..., "<IDS|MSG>", hmac, header, parent_header, metadata, content, buffers...]`,
//! the hmac being HMAC-SHA256 (hex) of the four JSON frames under the connection file's key.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::record::now_iso;

const DELIMITER: &[u8] = b"<IDS|MSG>";
pub const PROTOCOL_VERSION: &str = "5.3";

/// A decoded message; header fields are read through accessors.
#[derive(Debug, Clone)]
pub struct Message {
    pub header: Value,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
}

impl Message {
    pub fn msg_type(&self) -> &str {
        self.header
            .get("msg_type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn msg_id(&self) -> &str {
        self.header
            .get("msg_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The `msg_id` of the request this message answers.
    pub fn parent_id(&self) -> &str {
        self.parent_header
            .get("msg_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Signs and builds requests for one client session.
#[derive(Debug, Clone)]
pub struct Session {
    key: Vec<u8>,
    session_id: String,
}

impl Session {
    pub fn new(key: &str) -> Session {
        Session {
            key: key.as_bytes().to_vec(),
            session_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// A new request message of `msg_type`.
    pub fn request(&self, msg_type: &str, content: Value) -> Message {
        Message {
            header: json!({
                "msg_id": uuid::Uuid::new_v4().to_string(),
                "msg_type": msg_type,
                "username": "mofang",
                "session": self.session_id,
                "date": now_iso(),
                "version": PROTOCOL_VERSION,
            }),
            parent_header: json!({}),
            metadata: json!({}),
            content,
        }
    }

    fn signature(&self, frames: &[&[u8]]) -> String {
        if self.key.is_empty() {
            return String::new();
        }
        // HMAC accepts keys of any length; the error case cannot happen.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        for frame in frames {
            mac.update(frame);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The frames to send from a DEALER socket (no identities).
    pub fn encode(&self, message: &Message) -> Vec<Bytes> {
        let parts: Vec<Vec<u8>> = [
            &message.header,
            &message.parent_header,
            &message.metadata,
            &message.content,
        ]
        .iter()
        .map(|v| v.to_string().into_bytes())
        .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let signature = self.signature(&refs);
        let mut frames = Vec::with_capacity(6);
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(signature.into_bytes()));
        frames.extend(parts.into_iter().map(Bytes::from));
        frames
    }

    /// Decodes and verifies a received multipart message.
    pub fn decode(&self, frames: &[Bytes]) -> Result<Message, String> {
        let start = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or("no <IDS|MSG> delimiter")?;
        let rest = &frames[start + 1..];
        if rest.len() < 5 {
            return Err(format!(
                "{} frames after the delimiter, expected 5",
                rest.len()
            ));
        }
        let expected = self.signature(&[&rest[1], &rest[2], &rest[3], &rest[4]]);
        if !constant_time_eq(expected.as_bytes(), &rest[0]) {
            return Err("bad HMAC signature".to_owned());
        }
        let parse = |frame: &Bytes, what: &str| {
            serde_json::from_slice::<Value>(frame).map_err(|e| format!("{what}: {e}"))
        };
        Ok(Message {
            header: parse(&rest[1], "header")?,
            parent_header: parse(&rest[2], "parent_header")?,
            metadata: parse(&rest[3], "metadata")?,
            content: parse(&rest[4], "content")?,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let session = Session::new("secret");
        let msg = session.request("kernel_info_request", json!({}));
        let mut frames = vec![Bytes::from_static(b"identity")];
        frames.extend(session.encode(&msg));
        let back = session.decode(&frames).expect("valid message");
        assert_eq!(back.msg_type(), "kernel_info_request");
        assert_eq!(back.msg_id(), msg.msg_id());
        frames[5] = Bytes::from_static(b"{\"tampered\": 1}");
        assert!(session.decode(&frames).is_err());
        assert!(Session::new("other").decode(&session.encode(&msg)).is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let session = Session::new("Jefe");
        assert_eq!(
            session.signature(&[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
