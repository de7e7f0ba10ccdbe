//! The per-connection WebSocket state machine (RFC 6455 §5–§7).
//!
//! A [`Session`] turns the bytes read from a connection into [`Incoming`]
//! items, and the application's messages into bytes to write. It owns no
//! socket: the caller reads into a buffer, hands it to [`Session::read`],
//! drops the consumed prefix, and writes whatever the session appended to
//! `out` (pongs, close replies, the close frame of a failure, sent messages).
//!
//! Reading is incremental at every level: a frame's payload is consumed as
//! it arrives (only an incomplete header is ever left in the caller's
//! buffer), text is UTF-8-validated as it arrives, compressed data is
//! inflated as it arrives, and every size limit is enforced before the bytes
//! it limits are stored.

use crate::bufpool::BufPool;
use crate::ws::buffer::reserve_capped;
use crate::ws::close;
use crate::ws::deflate::{DeflateConfig, DeflateParams, Deflater, InflateError, Inflater};
use crate::ws::frame::{encode_header, FrameHeader, HeaderBytes, MAX_CONTROL_PAYLOAD};
use crate::ws::mask::{apply_mask, extend_unmasked};
use crate::ws::random::MaskKeys;
use crate::ws::utf8::{self, Utf8Validator};
use crate::ws::OpCode;
use std::fmt;

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
    /// Deliver data as [`Incoming::Fragment`]s as it arrives, instead of
    /// whole [`Incoming::Message`]s, so the session never buffers a message.
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

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message (default mode). Text is valid UTF-8.
    Message {
        /// A text message (else binary).
        text: bool,
        /// The payload, decompressed.
        data: Vec<u8>,
    },
    /// A piece of a message (streaming mode): each data frame's payload,
    /// decompressed, as it arrives; a frame that arrives over several reads
    /// (or inflates to a lot) comes as several pieces. Pieces of a text
    /// message may split a UTF-8 sequence; their concatenation is valid.
    Fragment {
        /// A text message (else binary).
        text: bool,
        /// This piece.
        data: Vec<u8>,
        /// The first piece of the message.
        first: bool,
        /// The last piece of the message (it may be empty).
        fin: bool,
    },
    /// A ping; the pong has already been appended to `out`.
    Ping(Vec<u8>),
    /// A pong (solicited or not).
    Pong(Vec<u8>),
    /// The peer's Close frame; nothing more will be delivered. If we had not
    /// sent a Close yet, the reply is already in `out`.
    Close {
        /// The status code; 1005 ([`close::NO_STATUS`]) when the frame had
        /// none.
        code: u16,
        /// The UTF-8 reason, possibly empty.
        reason: Vec<u8>,
    },
}

/// Why the session failed the connection (RFC 6455 §7.1.7). The close frame
/// carrying `code` has been appended to `out` (unless we had already sent a
/// Close); the caller flushes `out` and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// 1002 (protocol error), 1007 (invalid payload, e.g. bad UTF-8) or 1009
    /// (too big).
    pub code: u16,
    /// What went wrong, for logs; also the close frame's reason.
    pub reason: &'static str,
}

impl Failure {
    const fn protocol(reason: &'static str) -> Self {
        Self {
            code: close::PROTOCOL_ERROR,
            reason,
        }
    }

    const fn invalid_utf8() -> Self {
        Self {
            code: close::INVALID_PAYLOAD,
            reason: "invalid UTF-8 in text message",
        }
    }

    const fn too_big(reason: &'static str) -> Self {
        Self {
            code: close::MESSAGE_TOO_BIG,
            reason,
        }
    }

    const fn inflate(e: InflateError) -> Self {
        match e {
            InflateError::Corrupt => Self {
                code: e.close_code(),
                reason: "invalid compressed data",
            },
            InflateError::TooBig => Self::too_big("message too big"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Failure {}

/// Why the application cannot send something right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is not [`State::Open`]: after a Close (sent or received)
    /// no data frames may follow (RFC 6455 §5.5.1).
    NotOpen,
    /// A control frame payload above 125 bytes (§5.5).
    ControlTooLong,
    /// The opcode cannot be used with this call (`Close` goes through
    /// [`Session::close`]; `Continuation` through [`Session::send_fragment`]).
    WrongOpcode,
    /// A new message while a fragmented one is being sent (§5.4: fragments
    /// of different messages must not interleave).
    MessageInProgress,
    /// A continuation without a fragmented message being sent.
    NoMessageInProgress,
    /// Text that is not valid UTF-8 (the peer would fail the connection).
    InvalidUtf8,
    /// An invalid close code or reason.
    InvalidClose(close::CloseError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => f.write_str("the connection is closing or closed"),
            Self::ControlTooLong => f.write_str("control frame payload longer than 125 bytes"),
            Self::WrongOpcode => f.write_str("opcode not allowed here"),
            Self::MessageInProgress => f.write_str("a fragmented message is still being sent"),
            Self::NoMessageInProgress => f.write_str("no fragmented message is being sent"),
            Self::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            Self::InvalidClose(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

/// Where the session is in the closing handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close and wait for the peer's; incoming data frames are
    /// discarded, control frames still handled.
    CloseSent,
    /// The peer sent a Close and we replied: the handshake is complete. A
    /// server now closes the connection (§7.1.1: "the server SHOULD close
    /// it first"); a client waits a moment for the server to do so.
    CloseReceived,
    /// We sent a Close and the peer replied: close the connection.
    Closed,
    /// We failed the connection (see [`Failure`]): flush `out`, then close.
    Failed,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes seen so far, modulo 4: the masking key's phase.
    mask_phase: usize,
    /// A data frame of a message being discarded (we sent a Close).
    discard: bool,
}

/// The data message being received.
#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    text: bool,
    compressed: bool,
    /// Bytes of the message so far (decompressed).
    size: u64,
    /// Streaming mode: a fragment of it has been delivered.
    emitted: bool,
    /// We sent a Close: nothing of it will be delivered.
    discard: bool,
    /// Compressed: some compressed payload byte has arrived.
    has_compressed_data: bool,
}

/// Feeds the next bytes of a text message to its validator, and at the message's end
/// checks that no character was left unfinished (RFC 6455 §8.1: 1007 otherwise).
fn check_utf8(v: &mut Utf8Validator, bytes: &[u8], end: bool) -> Result<(), Failure> {
    v.feed(bytes).map_err(|_| Failure::invalid_utf8())?;
    if end {
        v.finish().map_err(|_| Failure::invalid_utf8())?;
    }
    Ok(())
}

impl FrameInProgress {
    /// Takes the next `chunk` of this frame's payload (at most `remaining`): unmasks
    /// it unless the frame is discarded, moves the mask phase and the count on.
    /// True when the payload is complete.
    fn advance(&mut self, chunk: &mut [u8]) -> bool {
        if let (Some(key), false) = (self.mask, self.discard) {
            apply_mask(chunk, key, self.mask_phase);
        }
        self.mask_phase = (self.mask_phase + chunk.len()) & 3;
        // Widening: the chunk is at most `remaining`.
        self.remaining -= chunk.len() as u64;
        self.remaining == 0
    }
}

/// The largest piece streaming mode delivers from inflated data at once, so
/// that a small compressed frame cannot become one huge allocation.
const STREAM_PIECE: usize = 256 * 1024;

/// Compression output buffers above this size are not kept between messages.
const SCRATCH_KEEP: usize = 64 * 1024;

/// One WebSocket connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    max_frame_size: u64,
    max_message_size: u64,
    stream_fragments: bool,
    compress_threshold: usize,
    compression_level: u32,
    deflate: Option<DeflateParams>,
    state: State,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    /// The message being assembled (whole-message mode).
    buffer: Vec<u8>,
    /// A control frame's payload when it arrives over several reads.
    control: Vec<u8>,
    incoming_utf8: Utf8Validator,
    // Boxed: the compression states are large and most connections never use them;
    // an idle session should stay small (memory per idle connection).
    inflater: Option<Box<Inflater>>,
    deflater: Option<Box<Deflater>>,
    /// `Some(text)` while a fragmented message is being sent.
    sending: Option<bool>,
    outgoing_utf8: Utf8Validator,
    /// Masking keys (client role only).
    keys: Option<Box<MaskKeys>>,
    /// Length of the close frame `fail` appended.
    failure_frame_len: u16,
    /// Length of the close frame sent in reply to the peer's.
    close_reply_len: u16,
}

/// Empty buffers a session may fill instead of allocating (see [`Session::read_pooled`]).
#[derive(Debug)]
pub struct Spares<'a> {
    /// Large buffers, for messages assembled from several pieces.
    pub large: &'a mut BufPool,
    /// Small buffers, for messages that arrive whole in one read.
    pub small: &'a mut BufPool,
}

impl Spares<'_> {
    /// A copy of `chunk`, in a pooled buffer when one fits: at least as large (no
    /// reallocation) and not much larger, because the message may wait in the event
    /// queue and a 16-byte message should not hold a 64 KiB buffer meanwhile.
    fn copy_small(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut b = self.small_for(chunk.len());
        b.extend_from_slice(chunk);
        b
    }

    /// An empty buffer for a whole message of `n` bytes: pooled when one fits (see
    /// [`Spares::copy_small`]), else a fresh one of exactly that capacity.
    fn small_for(&mut self, n: usize) -> Vec<u8> {
        self.small
            .pop_fit(n, n.max(SMALL_FIT) * 2)
            .unwrap_or_else(|| Vec::with_capacity(n))
    }
}

/// Below this size any pooled buffer up to twice it is taken for a message.
const SMALL_FIT: usize = 512;

/// A data frame with at least this much payload still to come is read straight into
/// its message buffer (see [`Session::wants_bulk`]).
pub const BULK_MIN: u64 = 64 * 1024;

impl Session {
    /// A session for a connection whose handshake has completed.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            role: config.role,
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            stream_fragments: config.stream_fragments,
            compress_threshold: config.compress_threshold,
            compression_level: config.compression_level,
            deflate: config.deflate,
            state: State::Open,
            frame: None,
            message: None,
            buffer: Vec::new(),
            control: Vec::new(),
            incoming_utf8: Utf8Validator::new(),
            inflater: None,
            deflater: None,
            sending: None,
            outgoing_utf8: Utf8Validator::new(),
            keys: None,
            failure_frame_len: 0,
            close_reply_len: 0,
        }
    }

    /// Where the session is in the closing handshake.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our end of the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a fragmented message is being sent (other data frames must wait).
    pub fn is_sending_fragmented(&self) -> bool {
        self.sending.is_some()
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// Consumes as much of `input` as possible and returns how many bytes it
    /// consumed; the caller drops those and keeps the rest for the next call.
    ///
    /// Only an incomplete frame header (under 14 bytes) is ever left
    /// unconsumed: partial payloads are consumed, unmasked in place (hence
    /// `&mut`) and kept inside the session, so the caller never buffers a
    /// large frame. Decoded items are pushed to `items`; bytes owed to the
    /// peer (a pong, the reply to a Close) are appended to `out` as frames.
    ///
    /// On a protocol violation the close frame of the failure is appended to
    /// `out`, the session becomes [`State::Failed`] and the [`Failure`] is
    /// returned; items pushed before it are valid. Once the session is
    /// failed or the closing handshake is complete, later input is ignored:
    /// all of it is reported consumed and nothing is delivered.
    pub fn read(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        let (mut large, mut small) = (BufPool::none(), BufPool::none());
        let spares = Spares {
            large: &mut large,
            small: &mut small,
        };
        self.read_pooled(input, items, out, spares)
    }

    /// [`read`](Self::read), with empty buffers to lend: a message that does not arrive
    /// whole in one piece is assembled in a large one instead of a fresh allocation, so
    /// large messages reuse memory that is already mapped; a message that arrives whole is
    /// copied into a small one of a fitting size, so the echo path allocates nothing.
    pub fn read_pooled(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        mut spares: Spares<'_>,
    ) -> Result<usize, Failure> {
        if !self.is_reading() {
            return Ok(input.len());
        }
        match self.read_frames(input, items, out, &mut spares) {
            Ok(consumed) => Ok(consumed),
            Err(failure) => {
                self.fail(failure, out);
                Err(failure)
            }
        }
    }

    /// Whether the rest of the current frame should come through [`Session::read_bulk`]:
    /// a large part of an uncompressed data frame is still to come, and the message
    /// is being assembled whole. Reading it straight into the message buffer saves
    /// the copy out of the connection's read buffer and most of the reads (a 1 MiB
    /// message took sixteen 64 KiB reads and sixteen copies).
    pub fn wants_bulk(&self) -> bool {
        let (Some(frame), Some(message)) = (self.frame, self.message) else {
            return false;
        };
        self.is_reading()
            && !self.stream_fragments
            && !frame.opcode.is_control()
            && !frame.discard
            && !message.discard
            && !message.compressed
            && frame.remaining >= BULK_MIN
    }

    /// Reads payload of the current frame straight into the message buffer, when
    /// [`Session::wants_bulk`] says so (otherwise reads nothing and returns 0).
    /// `read(buf, max)` appends at most `max` bytes to `buf` and returns how many
    /// (0 at end of stream). The bytes are then taken like any payload: unmasked,
    /// checked as UTF-8 in a text message, and the message delivered into `items`
    /// when this completes it. Returns the bytes read and the protocol outcome; on a
    /// failure the Close frame is in `out`, as with [`Session::read_pooled`].
    ///
    /// The buffer grows with what has arrived (at least [`BULK_MIN`] at a time, or
    /// into capacity it already has), so a header announcing a large frame does not
    /// by itself make the session allocate it.
    pub fn read_bulk(
        &mut self,
        read: impl FnOnce(&mut Vec<u8>, usize) -> std::io::Result<usize>,
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: Spares<'_>,
    ) -> std::io::Result<(usize, Result<(), Failure>)> {
        if !self.wants_bulk() {
            return Ok((0, Ok(())));
        }
        let Some(frame) = self.frame else {
            return Ok((0, Ok(())));
        };
        if self.buffer.capacity() == 0 {
            if let Some(b) = spares.large.pop_at_least(0) {
                self.buffer = b;
            }
        }
        let len = self.buffer.len();
        let room = (self.buffer.capacity() - len)
            .max(len)
            .max(BULK_MIN as usize);
        let want = usize::try_from(frame.remaining).map_or(room, |r| r.min(room));
        let cap = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        reserve_capped(&mut self.buffer, want, cap);
        let n = read(&mut self.buffer, want)?;
        assert!(
            n <= want && self.buffer.len() == len + n,
            "read_bulk: the reader appended other than it returned"
        );
        if n == 0 {
            return Ok((0, Ok(())));
        }
        let r = self.on_bulk_payload(len, items);
        if let Err(failure) = r {
            self.fail(failure, out);
        }
        Ok((n, r))
    }

    /// Takes the payload bytes [`Session::read_bulk`] appended to the message buffer
    /// from `start` on: the steps of [`Session::read_frames`] and `on_plain` for them.
    fn on_bulk_payload(&mut self, start: usize, items: &mut Vec<Incoming>) -> Result<(), Failure> {
        let (Some(mut frame), Some(mut message)) = (self.frame, self.message) else {
            return Ok(());
        };
        let chunk = self.buffer.get_mut(start..).unwrap_or_default();
        // At most `remaining` (checked by read_bulk).
        let complete = frame.advance(chunk);
        message.size += chunk.len() as u64;
        let end = complete && frame.fin;
        if message.text {
            check_utf8(&mut self.incoming_utf8, chunk, end)?;
        }
        self.frame = if complete { None } else { Some(frame) };
        if end {
            self.message = None;
            items.push(Incoming::Message {
                text: message.text,
                data: std::mem::take(&mut self.buffer),
            });
        } else {
            self.message = Some(message);
        }
        Ok(())
    }

    fn is_reading(&self) -> bool {
        matches!(self.state, State::Open | State::CloseSent)
    }

    fn read_frames(
        &mut self,
        input: &mut [u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: &mut Spares<'_>,
    ) -> Result<usize, Failure> {
        let mut pos = 0;
        loop {
            if self.frame.is_none() && self.takes_whole_frames() {
                // In bounds: pos <= input.len().
                if let Some(used) = self.take_whole_frame(&input[pos..], items, spares) {
                    pos += used;
                    continue;
                }
            }
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let rest = input.get(pos..).unwrap_or_default();
                    // A length with the top bit set breaks RFC 6455 §5.2, and it is also
                    // beyond any frame limit: answer 1009 like every oversized frame, so
                    // "announces 2^63 bytes" and "announces 2^63 - 1" get the same answer.
                    let Some((header, header_len)) = FrameHeader::parse(rest).map_err(|_| {
                        Failure::too_big("64-bit payload length with the top bit set")
                    })?
                    else {
                        break;
                    };
                    pos += header_len;
                    self.begin_frame(&header)?
                }
            };
            let available = input.len() - pos;
            let n = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
            // In bounds: n <= input.len() - pos.
            let chunk = &mut input[pos..pos + n];
            pos += n;
            let complete = frame.advance(chunk);
            self.frame = if complete { None } else { Some(frame) };
            if n > 0 || complete {
                self.on_payload(&frame, chunk, complete, items, out, spares)?;
            }
            if !complete {
                // All input used, the frame goes on in the next read.
                break;
            }
            if !self.is_reading() {
                // The closing handshake is done: nothing after the Close
                // frame is delivered.
                return Ok(input.len());
            }
        }
        Ok(pos)
    }

    /// Whether the next frame may take [`Session::take_whole_frame`]: a server between
    /// messages, in whole-message mode, not closing.
    fn takes_whole_frames(&self) -> bool {
        self.message.is_none()
            && self.state == State::Open
            && self.role == Role::Server
            && !self.stream_fragments
    }

    /// The common case in one step: `input` starts with a whole client frame that is a
    /// whole message (FIN, Text or Binary, RSV clear: not compressed, masked) within the
    /// size limits. Its payload is unmasked as it is copied into a pooled buffer (one
    /// pass; `input` is left as it was) and delivered; returns the bytes it used.
    /// `None` leaves the frame to the general path, which gives every error its answer:
    /// a text message that is not valid UTF-8 is left to it as well.
    fn take_whole_frame(
        &mut self,
        input: &[u8],
        items: &mut Vec<Incoming>,
        spares: &mut Spares<'_>,
    ) -> Option<usize> {
        let (h, header_len) = FrameHeader::parse(input).ok()??;
        let data_opcode = h.opcode == OpCode::Text.as_u8() || h.opcode == OpCode::Binary.as_u8();
        if !h.fin || h.rsv1 || h.rsv2 || h.rsv3 || !data_opcode {
            return None;
        }
        let key = h.mask?;
        if h.payload_len > self.max_frame_size || h.payload_len > self.max_message_size {
            return None;
        }
        let len = usize::try_from(h.payload_len).ok()?;
        let payload = input.get(header_len..header_len.checked_add(len)?)?;
        let text = h.opcode == OpCode::Text.as_u8();
        let mut data = spares.small_for(len);
        extend_unmasked(&mut data, payload, key);
        if text && utf8::validate(&data).is_err() {
            spares.small.push(data);
            return None;
        }
        items.push(Incoming::Message { text, data });
        Some(header_len + len)
    }

    /// Checks a new frame's header against the connection state (RFC 6455
    /// §5.2–§5.5) and sets up the frame (and, for a first data frame, the
    /// message).
    fn begin_frame(&mut self, header: &FrameHeader) -> Result<FrameInProgress, Failure> {
        // §5.2: "MUST be 0 unless an extension is negotiated that defines
        // meanings for non-zero values. If a nonzero value is received and
        // none of the negotiated extensions defines the meaning of such a
        // nonzero value, the receiving endpoint MUST _Fail the WebSocket
        // Connection_."
        if header.rsv2 || header.rsv3 {
            return Err(Failure::protocol("reserved bit set"));
        }
        let opcode = OpCode::from_u8(header.opcode).ok_or(Failure::protocol("reserved opcode"))?;
        match (self.role, header.mask.is_some()) {
            // §5.1: "The server MUST close the connection upon receiving a
            // frame that is not masked."
            (Role::Server, false) => return Err(Failure::protocol("unmasked client frame")),
            // §5.1: "A client MUST close a connection if it detects a masked
            // frame."
            (Role::Client, true) => return Err(Failure::protocol("masked server frame")),
            _ => {}
        }
        let mut discard = false;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125
            // bytes or less and MUST NOT be fragmented."
            if !header.fin {
                return Err(Failure::protocol("fragmented control frame"));
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Failure::protocol("control frame payload over 125 bytes"));
            }
            // RFC 7692 §6: RSV1 marks a compressed *message*; control frames
            // are never compressed.
            if header.rsv1 {
                return Err(Failure::protocol("RSV1 set on a control frame"));
            }
        } else {
            if header.payload_len > self.max_frame_size {
                return Err(Failure::too_big("frame too big"));
            }
            let message = match (opcode, self.message) {
                (OpCode::Continuation, None) => {
                    return Err(Failure::protocol("continuation frame without a message"))
                }
                (OpCode::Continuation, Some(message)) => {
                    // RFC 7692 §6.1: RSV1 is set "on the first frame of a
                    // message" only.
                    if header.rsv1 {
                        return Err(Failure::protocol("RSV1 set on a continuation frame"));
                    }
                    message
                }
                // §5.4: fragments of one message must not be interleaved
                // with another data message.
                (_, Some(_)) => {
                    return Err(Failure::protocol(
                        "new message before the previous one ended",
                    ))
                }
                (_, None) => {
                    if header.rsv1 && self.deflate.is_none() {
                        return Err(Failure::protocol("RSV1 set without permessage-deflate"));
                    }
                    self.incoming_utf8.reset();
                    let message = MessageInProgress {
                        text: opcode == OpCode::Text,
                        compressed: header.rsv1,
                        size: 0,
                        emitted: false,
                        discard: self.state == State::CloseSent,
                        has_compressed_data: false,
                    };
                    self.message = Some(message);
                    message
                }
            };
            discard = message.discard;
            // Uncompressed sizes are known up front: refuse before storing.
            if !message.compressed
                && !discard
                && message.size.saturating_add(header.payload_len) > self.max_message_size
            {
                return Err(Failure::too_big("message too big"));
            }
        }
        Ok(FrameInProgress {
            opcode,
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            mask_phase: 0,
            discard,
        })
    }

    /// Handles the next (unmasked) piece of the current frame's payload.
    fn on_payload(
        &mut self,
        frame: &FrameInProgress,
        chunk: &[u8],
        complete: bool,
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
        spares: &mut Spares<'_>,
    ) -> Result<(), Failure> {
        if frame.opcode.is_control() {
            if !complete {
                // At most 125 bytes (checked in the header).
                self.control.extend_from_slice(chunk);
                return Ok(());
            }
            if self.control.is_empty() {
                return self.on_control(frame.opcode, chunk, items, out);
            }
            let mut payload = std::mem::take(&mut self.control);
            payload.extend_from_slice(chunk);
            let result = self.on_control(frame.opcode, &payload, items, out);
            payload.clear();
            self.control = payload;
            return result;
        }
        let Some(mut message) = self.message else {
            return Ok(());
        };
        let end = complete && frame.fin;
        if !message.discard {
            if message.compressed {
                self.on_compressed(&mut message, chunk, end, items)?;
            } else {
                self.on_plain(&mut message, chunk, end, items, spares)?;
            }
        }
        self.message = if end { None } else { Some(message) };
        Ok(())
    }

    /// Uncompressed data: validate, then deliver or buffer.
    fn on_plain(
        &mut self,
        message: &mut MessageInProgress,
        chunk: &[u8],
        end: bool,
        items: &mut Vec<Incoming>,
        spares: &mut Spares<'_>,
    ) -> Result<(), Failure> {
        if message.text {
            check_utf8(&mut self.incoming_utf8, chunk, end)?;
        }
        // Widening; the total was checked against the limit in the header.
        message.size += chunk.len() as u64;
        if self.stream_fragments {
            if !chunk.is_empty() || end {
                items.push(Incoming::Fragment {
                    text: message.text,
                    data: chunk.to_vec(),
                    first: !message.emitted,
                    fin: end,
                });
                message.emitted = true;
            }
            return Ok(());
        }
        if end && self.buffer.is_empty() {
            // The common case, a whole frame in one read: one copy.
            items.push(Incoming::Message {
                text: message.text,
                data: spares.copy_small(chunk),
            });
            return Ok(());
        }
        let cap = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        if self.buffer.capacity() == 0 {
            if let Some(b) = spares.large.pop_at_least(0) {
                self.buffer = b;
            }
        }
        reserve_capped(&mut self.buffer, chunk.len(), cap);
        self.buffer.extend_from_slice(chunk);
        if end {
            items.push(Incoming::Message {
                text: message.text,
                data: std::mem::take(&mut self.buffer),
            });
        }
        Ok(())
    }

    /// Compressed data: inflate (bounded by the message limit), validate,
    /// then deliver or buffer.
    fn on_compressed(
        &mut self,
        message: &mut MessageInProgress,
        chunk: &[u8],
        end: bool,
        items: &mut Vec<Incoming>,
    ) -> Result<(), Failure> {
        let peer_no_context_takeover = self.deflate.is_some_and(|p| match self.role {
            Role::Server => p.client_no_context_takeover,
            Role::Client => p.server_no_context_takeover,
        });
        message.has_compressed_data |= !chunk.is_empty();
        if end && !message.has_compressed_data {
            // RSV1 with no payload at all. RFC 7692 §7.2.3.6 encodes an empty
            // message as the single byte 0x00; appending the tail to nothing
            // would leave the decompressor inside a stored block header and
            // corrupt the next message, so this is taken as an empty message
            // without touching the decompressor.
            items.push(if self.stream_fragments {
                Incoming::Fragment {
                    text: message.text,
                    data: Vec::new(),
                    first: !message.emitted,
                    fin: true,
                }
            } else {
                Incoming::Message {
                    text: message.text,
                    data: Vec::new(),
                }
            });
            return Ok(());
        }
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(peer_no_context_takeover)));
        let budget = |message: &MessageInProgress| {
            usize::try_from(self.max_message_size.saturating_sub(message.size))
                .unwrap_or(usize::MAX)
        };

        if !self.stream_fragments {
            let start = self.buffer.len();
            inflater
                .inflate_capped(chunk, end, &mut self.buffer, budget(message))
                .map_err(Failure::inflate)?;
            let inflated = self.buffer.get(start..).unwrap_or_default();
            if message.text {
                check_utf8(&mut self.incoming_utf8, inflated, end)?;
            }
            message.size = message.size.saturating_add(inflated.len() as u64);
            if end {
                items.push(Incoming::Message {
                    text: message.text,
                    data: std::mem::take(&mut self.buffer),
                });
            }
            return Ok(());
        }

        let mut rest = chunk;
        loop {
            let budget = budget(message);
            let mut piece = Vec::new();
            let used = inflater
                .inflate(
                    rest,
                    end,
                    &mut piece,
                    budget.saturating_add(1).min(STREAM_PIECE),
                )
                .map_err(Failure::inflate)?;
            rest = rest.get(used..).unwrap_or_default();
            if piece.len() > budget {
                return Err(Failure::too_big("message too big"));
            }
            let more = !rest.is_empty() || inflater.has_pending_output();
            let last = end && !more;
            if message.text {
                check_utf8(&mut self.incoming_utf8, &piece, last)?;
            }
            message.size = message.size.saturating_add(piece.len() as u64);
            if !piece.is_empty() || last {
                items.push(Incoming::Fragment {
                    text: message.text,
                    data: piece,
                    first: !message.emitted,
                    fin: last,
                });
                message.emitted = true;
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn on_control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        match opcode {
            OpCode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                // a Pong frame in response, unless it already received a
                // Close frame." We are still reading, so we have not.
                self.write_frame(true, false, OpCode::Pong, payload, out);
                items.push(Incoming::Ping(payload.to_vec()));
            }
            // §5.5.3: "A response to an unsolicited Pong frame is not
            // expected."
            OpCode::Pong => items.push(Incoming::Pong(payload.to_vec())),
            OpCode::Close => self.on_close(payload, items, out)?,
            OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
        }
        Ok(())
    }

    fn on_close(
        &mut self,
        payload: &[u8],
        items: &mut Vec<Incoming>,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let body = close::parse_payload(payload).map_err(|e| Failure {
            code: e.close_code(),
            reason: match e {
                close::CloseError::InvalidUtf8 => "invalid UTF-8 in close reason",
                close::CloseError::Truncated => "one-byte close payload",
                _ => "invalid close code",
            },
        })?;
        if self.state == State::Open {
            // §5.5.1: "If an endpoint receives a Close frame and did not
            // previously send a Close frame, the endpoint MUST send a Close
            // frame in response. (When sending a Close frame in response,
            // the endpoint typically echos the status code it received.)"
            let echoed = body.code.map(u16::to_be_bytes);
            let before = out.len();
            self.write_frame(
                true,
                false,
                OpCode::Close,
                echoed.as_ref().map_or(&[][..], |c| &c[..]),
                out,
            );
            self.close_reply_len = u16::try_from(out.len() - before).unwrap_or(0);
            self.state = State::CloseReceived;
        } else {
            self.state = State::Closed;
        }
        items.push(Incoming::Close {
            code: body.code.unwrap_or(close::NO_STATUS),
            reason: body.reason.to_vec(),
        });
        self.release_read_state();
        Ok(())
    }

    /// §7.1.7 _Fail the WebSocket Connection_: send a Close with the reason
    /// unless one was already sent, and stop processing input.
    fn fail(&mut self, failure: Failure, out: &mut Vec<u8>) {
        let before = out.len();
        if self.state == State::Open {
            let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
            let reason = failure.reason.as_bytes();
            let reason = reason.get(..close::MAX_REASON_LEN).unwrap_or(reason);
            if close::encode_payload(failure.code, reason, &mut payload).is_ok() {
                self.write_frame(true, false, OpCode::Close, &payload, out);
            }
        }
        self.failure_frame_len = u16::try_from(out.len() - before).unwrap_or(0);
        self.state = State::Failed;
        self.release_read_state();
        self.deflater = None;
    }

    /// After a failed `read`: how many bytes at the end of `out` are the failure's close
    /// frame (0 when none was sent, because a close had already gone out). A caller may
    /// hold those bytes back until the application has answered the messages that came
    /// before the bad frame.
    pub fn failure_frame_len(&self) -> usize {
        usize::from(self.failure_frame_len)
    }

    /// After a `read` that received the peer's close (state `CloseReceived`): how many
    /// bytes at the end of `out` are our reply. A caller may hold them back until the
    /// application has answered the messages that came before the close.
    pub fn close_reply_len(&self) -> usize {
        usize::from(self.close_reply_len)
    }

    /// Frees everything kept for reading once no more input will be read.
    fn release_read_state(&mut self) {
        self.frame = None;
        self.message = None;
        self.buffer = Vec::new();
        self.control = Vec::new();
        self.inflater = None;
    }

    /// Appends one frame, masked with a fresh key in the client role.
    fn write_frame(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        // Widening: a slice length always fits in u64.
        let len = payload.len() as u64;
        match self.role {
            Role::Server => {
                encode_header(fin, rsv1, opcode, None, len, out);
                out.extend_from_slice(payload);
            }
            Role::Client => {
                let key = self
                    .keys
                    .get_or_insert_with(|| Box::new(MaskKeys::new()))
                    .next_key();
                encode_header(fin, rsv1, opcode, Some(key), len, out);
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], key, 0);
            }
        }
    }

    /// Appends a whole message (`Text` or `Binary`) or a control frame
    /// (`Ping` or `Pong`; use [`close`](Self::close) for Close) to `out`.
    ///
    /// With permessage-deflate, messages of at least the configured threshold
    /// are compressed. Control frames may be sent while a fragmented message
    /// is open; data messages may not.
    pub fn send(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        match opcode {
            OpCode::Ping | OpCode::Pong => {
                if payload.len() > MAX_CONTROL_PAYLOAD {
                    return Err(SendError::ControlTooLong);
                }
                self.write_frame(true, false, opcode, payload, out);
                Ok(())
            }
            OpCode::Text | OpCode::Binary => {
                if self.sending.is_some() {
                    return Err(SendError::MessageInProgress);
                }
                if opcode == OpCode::Text && utf8::validate(payload).is_err() {
                    return Err(SendError::InvalidUtf8);
                }
                self.write_message(opcode, payload, out);
                Ok(())
            }
            OpCode::Close | OpCode::Continuation => Err(SendError::WrongOpcode),
        }
    }

    /// Like [`send`](Self::send), but where the frame goes out as it is (server role,
    /// not compressed) only its header is made, returned as `Ok(Some(header))`: the
    /// caller sends `payload` right after it, sparing a copy of the payload. Otherwise
    /// the whole frame is appended to `out` and the answer is `Ok(None)`.
    pub fn send_header(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<HeaderBytes>, SendError> {
        let plain = self.role == Role::Server
            && matches!(opcode, OpCode::Text | OpCode::Binary)
            && (self.deflate.is_none() || payload.len() < self.compress_threshold);
        if !plain {
            return self.send(opcode, payload, out).map(|()| None);
        }
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        if self.sending.is_some() {
            return Err(SendError::MessageInProgress);
        }
        if opcode == OpCode::Text && utf8::validate(payload).is_err() {
            return Err(SendError::InvalidUtf8);
        }
        // Widening.
        let len = payload.len() as u64;
        Ok(Some(
            FrameHeader::outgoing(true, false, opcode, None, len).encode(),
        ))
    }

    fn write_message(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        let Some(params) = self
            .deflate
            .filter(|_| payload.len() >= self.compress_threshold)
        else {
            self.write_frame(true, false, opcode, payload, out);
            return;
        };
        let (bits, no_context_takeover) = match self.role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
        };
        let level = self.compression_level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(level, bits, no_context_takeover)));
        let mut scratch = std::mem::take(&mut deflater.scratch);
        scratch.clear();
        // Without context takeover nothing depends on this message having
        // gone through the compressor, so an incompressible message can go
        // out as it is. With it, the peer's window must see what ours saw.
        let compressed = deflater.compress(payload, &mut scratch).is_ok()
            && !(deflater.no_context_takeover() && scratch.len() >= payload.len());
        if compressed {
            // RFC 7692 §6: RSV1 on the first (here: only) frame.
            self.write_frame(true, true, opcode, &scratch, out);
        } else {
            self.write_frame(true, false, opcode, payload, out);
        }
        if scratch.capacity() > SCRATCH_KEEP {
            scratch = Vec::new();
        }
        if let Some(d) = self.deflater.as_mut() {
            d.scratch = scratch;
        }
    }

    /// Appends one frame of a fragmented message: `Text` or `Binary` for the
    /// first, `Continuation` for the rest, `fin` on the last (a single
    /// `fin` first frame is a whole message).
    ///
    /// Fragmented messages are sent uncompressed: compressing them would need
    /// the whole message to decide whether compression pays, or a flush per
    /// fragment, and a message is fragmented precisely because it is
    /// produced piece by piece (typically large, often already compressed
    /// data). Text is UTF-8-checked across fragments.
    pub fn send_fragment(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        let text = match (opcode, self.sending) {
            (OpCode::Text | OpCode::Binary, None) => opcode == OpCode::Text,
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(SendError::MessageInProgress),
            (OpCode::Continuation, Some(text)) => text,
            (OpCode::Continuation, None) => return Err(SendError::NoMessageInProgress),
            _ => return Err(SendError::WrongOpcode),
        };
        if text {
            // Check on a copy so that a refused piece leaves the message's
            // validation state as it was.
            let mut validator = if self.sending.is_some() {
                self.outgoing_utf8.clone()
            } else {
                Utf8Validator::new()
            };
            validator
                .feed(payload)
                .map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                validator.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            self.outgoing_utf8 = validator;
        }
        self.write_frame(fin, false, opcode, payload, out);
        self.sending = if fin { None } else { Some(text) };
        Ok(())
    }

    /// Starts the closing handshake: appends a Close frame with `code` and
    /// `reason` (UTF-8, at most 123 bytes) and moves to
    /// [`State::CloseSent`]. Codes 1005, 1006 and 1015 and the other codes
    /// [`close::is_valid_code`] refuses cannot be sent.
    pub fn close(&mut self, code: u16, reason: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
        close::encode_payload(code, reason, &mut payload).map_err(SendError::InvalidClose)?;
        self.write_frame(true, false, OpCode::Close, &payload, out);
        self.state = State::CloseSent;
        self.sending = None;
        self.deflater = None;
        // From now on incoming data is discarded, including the rest of a
        // message already under way.
        if let Some(message) = &mut self.message {
            message.discard = true;
        }
        if let Some(frame) = self.frame.as_mut().filter(|f| !f.opcode.is_control()) {
            frame.discard = true;
        }
        self.buffer = Vec::new();
        Ok(())
    }
}

/// Appends one unmasked, uncompressed, unfragmented frame: what a server
/// sends, encoded once and written to many connections (broadcast). The
/// payload is taken as is: text is not UTF-8-checked and control payloads are
/// not length-checked, so callers pass valid text and at most 125 bytes for
/// control frames.
pub fn encode_server_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    encode_header(true, false, opcode, None, payload.len() as u64, out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests;
