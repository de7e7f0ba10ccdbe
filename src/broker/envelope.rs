//! The envelope a node wraps around each message it publishes to Redis.
//!
//! ```text
//! offset  size  field
//!      0     3  magic: 0xFF 'W' 'S'
//!      3     1  version: 1
//!      4     1  kind: 1 text, 2 binary (the WebSocket opcode the message is sent with)
//!      5    16  node id: the publishing node's random 128-bit id
//!     21     -  payload, as the application gave it
//! ```
//!
//! Binary-safe: the envelope travels as one RESP bulk string, which is length-prefixed,
//! so the payload may hold any bytes. The first byte, 0xFF, never occurs in UTF-8: a text
//! message published to the channel by another program (`redis-cli PUBLISH`) can never be
//! taken for an envelope. Those are "foreign" messages: the session delivers them as they
//! are, text when they are valid UTF-8, binary otherwise, unless configured not to. A
//! foreign binary payload that happens to start with `FF 57 53` is read as an envelope
//! (and most likely dropped as malformed): programs that publish binary next to this
//! library should wrap their messages in this envelope.
//!
//! Versioning: a receiver drops (and counts) envelopes of a version it does not know. A
//! later version that only appends fields after the node id keeps the payload offset in
//! its own header and bumps the version; nodes of mixed versions then ignore each other's
//! messages rather than misread them, which is why a cluster is upgraded with both
//! versions understood first.

use std::fmt;

/// The first bytes of every envelope.
pub const MAGIC: [u8; 3] = [0xFF, b'W', b'S'];
/// The version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 21;

/// A node's identity: 128 random bits chosen when its session starts, so that it can
/// recognise its own messages when Redis sends them back.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// A fresh id from the operating system's random source (the clock and std's
    /// per-process hash keys should that ever fail: uniqueness, not secrecy, matters).
    pub fn random() -> NodeId {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            use std::hash::{BuildHasher, Hasher};
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            for (i, half) in id.chunks_mut(8).enumerate() {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(nanos);
                h.write_u32(std::process::id());
                h.write_usize(i);
                half.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        NodeId(id)
    }
}

/// Lower-case hex, 32 digits.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// How a message is sent to WebSocket clients; the values are the WebSocket opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A text message (UTF-8).
    Text = 1,
    /// A binary message.
    Binary = 2,
}

impl Kind {
    /// `1` text, `2` binary; `None` otherwise.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Text),
            2 => Some(Kind::Binary),
            _ => None,
        }
    }
}

/// The header that goes before a payload.
pub fn header(node: &NodeId, kind: Kind) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..3].copy_from_slice(&MAGIC);
    h[3] = VERSION;
    h[4] = kind as u8;
    h[5..].copy_from_slice(&node.0);
    h
}

/// An envelope with its payload, as one buffer.
pub fn encode(node: &NodeId, kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header(node, kind));
    v.extend_from_slice(payload);
    v
}

/// What a message received from Redis turns out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A message published by a node (maybe this one).
    Envelope {
        /// The publishing node.
        node: NodeId,
        /// Text or binary.
        kind: Kind,
        /// The application's bytes.
        payload: &'a [u8],
    },
    /// No envelope: published by some other program.
    Foreign,
    /// An envelope this version cannot read: why.
    Invalid(&'static str),
}

/// Reads an envelope.
pub fn decode(msg: &[u8]) -> Decoded<'_> {
    if !msg.starts_with(&MAGIC) {
        return Decoded::Foreign;
    }
    match msg.get(3) {
        None => return Decoded::Invalid("truncated envelope"),
        Some(&VERSION) => {}
        Some(_) => return Decoded::Invalid("unsupported envelope version"),
    }
    if msg.len() < HEADER_LEN {
        return Decoded::Invalid("truncated envelope");
    }
    let Some(kind) = Kind::from_u8(msg[4]) else {
        return Decoded::Invalid("unknown message kind in envelope");
    };
    let mut node = [0u8; 16];
    node.copy_from_slice(&msg[5..HEADER_LEN]);
    Decoded::Envelope {
        node: NodeId(node),
        kind,
        payload: &msg[HEADER_LEN..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_any_payload() {
        let node = NodeId::random();
        for (kind, payload) in [
            (Kind::Text, &b""[..]),
            (Kind::Text, "h\u{e9}llo".as_bytes()),
            (Kind::Binary, &[0xFF, b'W', b'S', 1, 0, 13, 10, 0][..]),
            (Kind::Binary, &[0u8; 70_000][..]),
        ] {
            let wire = encode(&node, kind, payload);
            assert_eq!(wire.len(), HEADER_LEN + payload.len());
            assert_eq!(
                decode(&wire),
                Decoded::Envelope {
                    node,
                    kind,
                    payload
                }
            );
        }
    }

    #[test]
    fn the_wire_layout_is_fixed() {
        let node = NodeId(*b"0123456789abcdef");
        let wire = encode(&node, Kind::Binary, b"xy");
        assert_eq!(wire, b"\xffWS\x01\x020123456789abcdefxy");
        assert_eq!(node.to_string(), "30313233343536373839616263646566");
    }

    #[test]
    fn text_from_other_programs_is_foreign() {
        for m in [
            &b""[..],
            b"hello",
            b"WS",
            "\u{ff}WS".as_bytes(),
            b"\xfeWS\x01",
        ] {
            assert_eq!(decode(m), Decoded::Foreign, "{m:?}");
        }
    }

    #[test]
    fn damaged_or_newer_envelopes_are_invalid() {
        let node = NodeId::random();
        let good = encode(&node, Kind::Text, b"x");
        for cut in 3..HEADER_LEN {
            assert!(matches!(decode(&good[..cut]), Decoded::Invalid(_)), "{cut}");
        }
        let mut newer = good.clone();
        newer[3] = 2;
        assert_eq!(
            decode(&newer),
            Decoded::Invalid("unsupported envelope version")
        );
        let mut kind = good.clone();
        kind[4] = 9;
        assert!(matches!(decode(&kind), Decoded::Invalid(_)));
    }

    #[test]
    fn node_ids_differ() {
        assert_ne!(NodeId::random(), NodeId::random());
        assert_eq!(NodeId::random().to_string().len(), 32);
    }
}
