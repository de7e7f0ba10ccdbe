//! How a session is set up: which end it is, its size limits, and the
//! negotiated compression.

use crate::ws::deflate::{DeflateConfig, DeflateParams};

/// Which end of the connection this session is. It decides masking: RFC 6455
/// §5.1, "a client MUST mask all frames that it sends to the server" and "A
/// server MUST NOT mask any frames that it sends to the client".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked.
    Server,
    /// We opened the connection: incoming frames must not be masked.
    Client,
}

/// How a session behaves; see [`SessionConfig::new`] for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our end of the connection.
    pub role: Role,
    /// The largest frame payload accepted, checked against the header before
    /// any payload byte is stored; larger frames fail the connection with
    /// 1009. For compressed frames this limits the compressed size.
    pub max_frame_size: u64,
    /// The largest message accepted (after decompression), checked as the
    /// message grows; larger messages fail the connection with 1009. In
    /// streaming mode it limits the sum of a message's fragments.
    pub max_message_size: u64,
    /// The negotiated permessage-deflate parameters; `None` when not
    /// negotiated (then RSV1 on an incoming frame fails the connection).
    pub deflate: Option<DeflateParams>,
    /// With deflate: whole messages shorter than this are sent uncompressed.
    pub compress_threshold: usize,
    /// With deflate: zlib compression level, 0 to 9.
    pub compression_level: u32,
    /// Deliver data as [`Incoming::Fragment`](super::Incoming::Fragment)s as it
    /// arrives, instead of whole [`Incoming::Message`](super::Incoming::Message)s,
    /// so the session never buffers a message.
    pub stream_fragments: bool,
}

impl SessionConfig {
    /// The default `max_frame_size`: 16 MiB.
    pub const DEFAULT_MAX_FRAME_SIZE: u64 = 16 << 20;
    /// The default `max_message_size`: 64 MiB.
    pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

    /// Defaults for `role`: 16 MiB frames, 64 MiB messages, no compression,
    /// whole messages.
    pub fn new(role: Role) -> Self {
        let deflate = DeflateConfig::default();
        Self {
            role,
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            deflate: None,
            compress_threshold: deflate.compress_threshold,
            compression_level: deflate.level,
            stream_fragments: false,
        }
    }

    /// Enables permessage-deflate with the negotiated `params`, taking the
    /// threshold and level from our `config`.
    pub fn with_deflate(mut self, params: DeflateParams, config: &DeflateConfig) -> Self {
        self.deflate = Some(params);
        self.compress_threshold = config.compress_threshold;
        self.compression_level = config.level;
        self
    }
}
