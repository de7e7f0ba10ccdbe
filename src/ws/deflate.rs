//! The permessage-deflate extension (RFC 7692): negotiation, compression and
//! bounded decompression.
//!
//! RFC 7692 §7.2.1: a message is compressed as raw DEFLATE ending with an
//! empty stored block (a sync flush), and "Remove 4 octets (that are 0x00
//! 0x00 0xff 0xff) from the tail end". §7.2.2: the receiver appends those
//! four octets back before inflating. With context takeover (the default)
//! the LZ77 window carries over from one message to the next, so both ends
//! keep one compressor or decompressor per direction for the whole
//! connection.

use crate::ws::buffer::reserve_capped;
use crate::ws::header::{self, Extension};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;
use std::fmt::Write as _;

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest LZ77 window (2^8 bytes) RFC 7692 lets a peer ask for.
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest LZ77 window (2^15 bytes), the DEFLATE maximum.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The octets a sync flush ends with, stripped by the sender and appended by
/// the receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Our side's permessage-deflate preferences, for either role.
///
/// For a server these are limits it imposes or accepts; for a client they are
/// what it asks for in its offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The server resets its compressor after every message. A server sets it
    /// to save memory between messages; a client sets it to ask for it.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message. A server sets it
    /// to require it; a client sets it to announce it.
    pub client_no_context_takeover: bool,
    /// The largest window (8..=15) the server compresses with. A server never
    /// exceeds it; a client asks the server to stay within it.
    pub server_max_window_bits: u8,
    /// The largest window (8..=15) the client compresses with. A server asks
    /// the client to stay within it (when the client allows that); a client
    /// announces it.
    pub client_max_window_bits: u8,
    /// Messages shorter than this are sent uncompressed: below a few dozen
    /// bytes deflate's block overhead outweighs any gain.
    pub compress_threshold: usize,
    /// zlib compression level, 0 (store) to 9 (smallest); higher values are
    /// treated as 9.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            compress_threshold: 64,
            level: 6,
        }
    }
}

/// The parameters both ends agreed on; what a session needs to compress and
/// decompress. Window sizes are the upper bounds each side's compressor
/// honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^this bytes.
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most 2^this bytes.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// RFC 7692's defaults: context takeover on both sides, 32 KiB windows.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// A server's acceptance of one permessage-deflate offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateResponse {
    /// The agreed parameters.
    pub params: DeflateParams,
    /// The `Sec-WebSocket-Extensions` response value, e.g.
    /// `permessage-deflate; server_no_context_takeover`.
    pub header_value: String,
}

/// A server response a client must refuse (RFC 7692 §5: the client then
/// "MUST _Fail the WebSocket Connection_").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionError {
    /// The header value does not parse.
    Malformed,
    /// An extension we did not offer, or more than one.
    NotOffered,
    /// An unknown, repeated or out-of-range parameter, or one the response
    /// may not carry given our offer.
    InvalidParameter,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed Sec-WebSocket-Extensions header",
            Self::NotOffered => "server accepted an extension that was not offered",
            Self::InvalidParameter => "invalid permessage-deflate parameter in the response",
        })
    }
}

impl std::error::Error for ExtensionError {}

/// The parameters of one offer or response, syntax-checked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Parameters {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in offers only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses a window-bits value. RFC 7692 §7.1.2.1: "a decimal integer value
/// without leading zeroes between 8 to 15, inclusive"; a quoted value has
/// already been unquoted by the header parser ("the value after
/// quoted-string unescaping MUST conform to the 'token' ABNF", §7).
fn parse_window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// Checks the parameters of one element. RFC 7692 §5.1: a server must
/// decline an offer with "an extension parameter not defined for use in an
/// offer", "an extension parameter with an invalid value" or "multiple
/// extension parameters with the same name"; §5.2 puts the same rules on
/// a client reading the response. `None` means "not acceptable".
fn parse_parameters(params: &[(String, Option<String>)]) -> Option<Parameters> {
    let mut p = Parameters::default();
    let mut seen_server_nct = false;
    let mut seen_client_nct = false;
    for (name, value) in params {
        match name.as_str() {
            "server_no_context_takeover" if !seen_server_nct && value.is_none() => {
                seen_server_nct = true;
                p.server_no_context_takeover = true;
            }
            "client_no_context_takeover" if !seen_client_nct && value.is_none() => {
                seen_client_nct = true;
                p.client_no_context_takeover = true;
            }
            "server_max_window_bits" if p.server_max_window_bits.is_none() => {
                p.server_max_window_bits = Some(parse_window_bits(value.as_deref()?)?);
            }
            "client_max_window_bits" if p.client_max_window_bits.is_none() => {
                p.client_max_window_bits = Some(match value {
                    None => None,
                    Some(v) => Some(parse_window_bits(v)?),
                });
            }
            _ => return None,
        }
    }
    Some(p)
}

/// Clamps a configured window size into the range the RFC allows.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

impl DeflateConfig {
    /// Server side: picks the first acceptable permessage-deflate offer from
    /// the request's `Sec-WebSocket-Extensions` values (several headers and
    /// comma lists allowed) and answers it.
    ///
    /// Offers with an unknown or repeated parameter, or an invalid value, are
    /// skipped in favour of the next one (RFC 7692 §5.1: the client lists
    /// offers in preference order and the server accepts at most one). When
    /// none is acceptable the result is `None`: the handshake goes on without
    /// compression and without an extensions header, never failing.
    pub fn negotiate<'v>(
        &self,
        header_values: impl IntoIterator<Item = &'v [u8]>,
    ) -> Option<DeflateResponse> {
        header::parse_extensions(header_values)
            .into_iter()
            .flatten()
            .filter(|e| e.name == EXTENSION_NAME)
            .find_map(|e| parse_parameters(&e.params))
            .map(|offer| self.answer(offer))
    }

    /// Builds the response to an acceptable offer.
    fn answer(&self, offer: Parameters) -> DeflateResponse {
        // §7.1.1.1: "A server accepts an extension negotiation offer that
        // includes the server_no_context_takeover extension parameter by
        // including the server_no_context_takeover extension parameter in
        // the corresponding extension negotiation response"; the server may
        // also add it on its own.
        let server_nct = offer.server_no_context_takeover || self.server_no_context_takeover;
        // §7.1.1.2: the server may include client_no_context_takeover even
        // if not offered. Echoing the client's own hint lets us reset our
        // decompressor between its messages.
        let client_nct = offer.client_no_context_takeover || self.client_no_context_takeover;
        // §7.1.2.1: the server accepts server_max_window_bits "by including
        // the server_max_window_bits extension parameter in the extension
        // negotiation response ... with the same or smaller value as the
        // offer", and may include it unasked to announce a smaller window.
        let server_bits = clamp_bits(self.server_max_window_bits)
            .min(offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS));
        let send_server_bits =
            offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS;
        // §7.1.2.2: "If a received extension negotiation offer doesn't have
        // the client_max_window_bits extension parameter, the corresponding
        // extension negotiation response to the offer MUST NOT include the
        // client_max_window_bits extension parameter." When offered, the
        // server may limit the client to a value no larger than the client's
        // own hint. Without the parameter the client may use 15 bits, which
        // our decompressor (always 15 bits) handles, so the offer is still
        // acceptable.
        let (client_bits, send_client_bits) = match offer.client_max_window_bits {
            None => (MAX_WINDOW_BITS, false),
            Some(hint) => {
                let limit = hint.unwrap_or(MAX_WINDOW_BITS);
                let bits = clamp_bits(self.client_max_window_bits).min(limit);
                (bits, bits < limit)
            }
        };

        let mut header_value = String::from(EXTENSION_NAME);
        if server_nct {
            header_value.push_str("; server_no_context_takeover");
        }
        if client_nct {
            header_value.push_str("; client_no_context_takeover");
        }
        if send_server_bits {
            let _ = write!(header_value, "; server_max_window_bits={server_bits}");
        }
        if send_client_bits {
            let _ = write!(header_value, "; client_max_window_bits={client_bits}");
        }
        DeflateResponse {
            params: DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            },
            header_value,
        }
    }

    /// Client side: the `Sec-WebSocket-Extensions` value offering
    /// permessage-deflate with these preferences.
    ///
    /// `client_max_window_bits` is always offered (without a value when 15)
    /// to tell the server it may limit our window (§7.1.2.2).
    pub fn client_offer(&self) -> String {
        let mut offer = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        let server_bits = clamp_bits(self.server_max_window_bits);
        if server_bits < MAX_WINDOW_BITS {
            let _ = write!(offer, "; server_max_window_bits={server_bits}");
        }
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < MAX_WINDOW_BITS {
            let _ = write!(offer, "; client_max_window_bits={client_bits}");
        } else {
            offer.push_str("; client_max_window_bits");
        }
        offer
    }

    /// Client side: validates the server's `Sec-WebSocket-Extensions`
    /// response to [`client_offer`](Self::client_offer) and returns the
    /// agreed parameters.
    ///
    /// Refused (RFC 7692 §5.2): anything but exactly one permessage-deflate
    /// element, unknown or repeated parameters, invalid values,
    /// `client_max_window_bits` without a value or above what we offered, and
    /// `server_max_window_bits` above what we asked for.
    pub fn accept_response<'v>(
        &self,
        header_values: impl IntoIterator<Item = &'v [u8]>,
    ) -> Result<DeflateParams, ExtensionError> {
        let elements = header::parse_extensions(header_values);
        let element: &Extension = match elements.as_slice() {
            [Some(e)] => e,
            [None] => return Err(ExtensionError::Malformed),
            _ if elements.iter().any(Option::is_none) => return Err(ExtensionError::Malformed),
            _ => return Err(ExtensionError::NotOffered),
        };
        if element.name != EXTENSION_NAME {
            return Err(ExtensionError::NotOffered);
        }
        let response = parse_parameters(&element.params).ok_or(ExtensionError::InvalidParameter)?;
        let offered_server_bits = clamp_bits(self.server_max_window_bits);
        let server_bits = response.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
        if server_bits > offered_server_bits {
            return Err(ExtensionError::InvalidParameter);
        }
        let offered_client_bits = clamp_bits(self.client_max_window_bits);
        let client_bits = match response.client_max_window_bits {
            None => offered_client_bits,
            // §7.1.2.2: in a response the parameter carries a value.
            Some(None) => return Err(ExtensionError::InvalidParameter),
            Some(Some(bits)) if bits > offered_client_bits => {
                return Err(ExtensionError::InvalidParameter)
            }
            Some(Some(bits)) => bits,
        };
        Ok(DeflateParams {
            server_no_context_takeover: response.server_no_context_takeover,
            // Offering it was a promise (§7.1.1.2), echoed or not.
            client_no_context_takeover: response.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }
}

/// The outgoing direction: one compressor per connection.
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
    /// Compressed output, reused between messages (kept here, with the rest of the
    /// compression state, so that sessions that never compress stay small).
    pub scratch: Vec<u8>,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

/// Compression failed inside zlib. Never expected with valid parameters; the
/// compressor has been reset and the message can be sent uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressError;

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deflate compression failed")
    }
}

impl std::error::Error for CompressError {}

impl Deflater {
    /// A compressor whose window never exceeds 2^`max_window_bits` bytes.
    ///
    /// zlib cannot produce a raw DEFLATE stream with an 8-bit window: it
    /// silently uses 9 bits (and flate2 refuses 8 outright), which would break
    /// a peer that asked for `server_max_window_bits=8`. At 8 bits we compress
    /// at level 0 instead: stored blocks contain no back-references at all, so
    /// they honour any window size. The peer still gets a valid
    /// permessage-deflate stream, just not a smaller one.
    pub fn new(level: u32, max_window_bits: u8, no_context_takeover: bool) -> Self {
        let bits = clamp_bits(max_window_bits);
        let (level, bits) = if bits < 9 {
            (0, 9)
        } else {
            (level.min(9), bits)
        };
        Self {
            inner: Compress::new_with_window_bits(Compression::new(level), false, bits),
            no_context_takeover,
            scratch: Vec::new(),
        }
    }

    /// Whether the compressor forgets its window after each message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Appends the compressed form of one whole message to `out`: raw
    /// DEFLATE, ending with a sync flush whose `00 00 ff ff` is stripped.
    ///
    /// On error `out` is left as it was and the compressor is reset, which is
    /// always safe: a fresh stream never refers back to earlier messages.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        if message.is_empty() {
            // RFC 7692 §7.2.3.6: an empty message is the single byte 0x00 (an
            // empty stored block once the tail is re-appended). zlib cannot
            // be asked for it: a sync flush with nothing new to flush emits
            // nothing at all.
            out.push(0x00);
            return Ok(());
        }
        let start = out.len();
        let result = self.compress_inner(message, out);
        if result.is_err() || !out[start..].ends_with(&TAIL) {
            out.truncate(start);
            self.inner.reset();
            return Err(CompressError);
        }
        out.truncate(out.len() - TAIL.len());
        if self.no_context_takeover {
            self.inner.reset();
        }
        Ok(())
    }

    fn compress_inner(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let mut rest = message;
        loop {
            // Room for the whole input plus block and flush overhead, so one
            // round usually suffices. Output beyond that (incompressible data
            // can grow by up to 1/8 when the window is smaller than a block
            // and zlib cannot fall back to a stored block) takes more rounds.
            out.reserve(rest.len() + rest.len() / 4096 + 64);
            let before_in = self.inner.total_in();
            let before_out = self.inner.total_out();
            self.inner
                .compress_vec(rest, out, FlushCompress::Sync)
                .map_err(|_| CompressError)?;
            let used = usize::try_from(self.inner.total_in().wrapping_sub(before_in))
                .unwrap_or(usize::MAX);
            let made = self.inner.total_out().wrapping_sub(before_out);
            rest = rest.get(used..).ok_or(CompressError)?;
            let stalled = used == 0 && made == 0;
            // zlib's contract: the flush is complete once a call consumed all
            // input and still left output space unused. If the output was
            // filled exactly, one more call tells: it either emits the rest
            // of the flush or makes no progress because nothing is pending.
            if rest.is_empty() && (out.len() < out.capacity() || stalled) {
                return Ok(());
            }
            if stalled {
                return Err(CompressError);
            }
        }
    }
}

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid DEFLATE stream (or data after a final block).
    Corrupt,
    /// The message inflates to more than the allowed size.
    TooBig,
}

impl InflateError {
    /// The close code to fail the connection with: 1009 for a message too
    /// big to process, 1007 (data inconsistent with the message type) for a
    /// broken stream — RFC 7692 §8 only says "MUST _Fail the WebSocket
    /// Connection_".
    pub const fn close_code(self) -> u16 {
        match self {
            Self::Corrupt => crate::ws::close::INVALID_PAYLOAD,
            Self::TooBig => crate::ws::close::MESSAGE_TOO_BIG,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Corrupt => "invalid compressed data",
            Self::TooBig => "decompressed message too big",
        })
    }
}

impl std::error::Error for InflateError {}

/// The first output chunk offered to zlib, and its upper bound. Output goes
/// straight into the caller's buffer; chunks start small so that a short
/// message costs little zero-filling, and double while zlib fills them.
const MIN_CHUNK: usize = 256;
const MAX_CHUNK: usize = 256 * 1024;

/// The incoming direction: one decompressor per connection.
///
/// Compressed bytes are fed as they arrive, so text can be validated as it
/// inflates and memory is bounded by the caller's limits, never by what the
/// peer announces or what a "decompression bomb" would expand to.
pub struct Inflater {
    inner: Decompress,
    no_context_takeover: bool,
    /// How much of [`TAIL`] the current message has been given.
    tail_fed: usize,
    /// The peer ended its stream with a BFINAL block (RFC 7692 §7.2.3.3
    /// allows that); the window is gone and a reset is due.
    stream_ended: bool,
    /// The last call stopped because its output room was used up.
    output_pending: bool,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("output_pending", &self.output_pending)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor. It always uses a 15-bit window, which inflates streams
    /// made with any smaller window; `no_context_takeover` resets it after
    /// each message, as the peer resets its compressor.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            inner: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            no_context_takeover,
            tail_fed: 0,
            stream_ended: false,
            output_pending: false,
        }
    }

    /// Inflates the next piece of a compressed message, appending at most
    /// `room` bytes to `out`, and returns how many bytes of `input` it used.
    ///
    /// Set `end_of_message` on the piece that ends the message (it may be
    /// empty): the stripped `00 00 ff ff` is then appended internally.
    ///
    /// The call stops early when `room` is used up; [`has_pending_output`]
    /// then says so, and the caller calls again with the rest of the input
    /// (possibly none) and more room. Otherwise all of `input` was used.
    ///
    /// [`has_pending_output`]: Self::has_pending_output
    pub fn inflate(
        &mut self,
        input: &[u8],
        end_of_message: bool,
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, InflateError> {
        let limit = out.len().saturating_add(room);
        let mut consumed = 0;
        let mut chunk = input.len().saturating_mul(4).clamp(MIN_CHUNK, MAX_CHUNK);
        loop {
            let peer = input.get(consumed..).unwrap_or_default();
            let from_peer = !peer.is_empty();
            let src: &[u8] = if from_peer {
                if self.stream_ended {
                    // Bytes after the final block belong to no stream.
                    return Err(InflateError::Corrupt);
                }
                peer
            } else if end_of_message && !self.stream_ended {
                TAIL.get(self.tail_fed..).unwrap_or_default()
            } else {
                &[]
            };
            let Some(space) = limit.checked_sub(out.len()).filter(|&s| s > 0) else {
                self.output_pending = true;
                return Ok(consumed);
            };
            let want = chunk.min(space);
            let (used, made) = self.step(src, out, want, limit)?;
            if from_peer {
                consumed += used;
            } else {
                self.tail_fed += used;
            }
            if used == 0 && made == 0 {
                if from_peer {
                    // Input and output space but no progress: zlib is stuck.
                    return Err(InflateError::Corrupt);
                }
                break;
            }
            if made == want {
                chunk = chunk.saturating_mul(2).min(MAX_CHUNK);
            }
        }
        self.output_pending = false;
        if end_of_message && (self.stream_ended || self.tail_fed >= TAIL.len()) {
            self.end_message();
        }
        Ok(consumed)
    }

    /// Inflates `input` into `out` in one go, failing with
    /// [`InflateError::TooBig`] as soon as the output would exceed `budget`
    /// bytes. `out` then holds at most `budget + 1` new bytes and its
    /// capacity never grows beyond that (plus what it already had).
    pub fn inflate_capped(
        &mut self,
        input: &[u8],
        end_of_message: bool,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Result<(), InflateError> {
        let start = out.len();
        self.inflate(input, end_of_message, out, budget.saturating_add(1))?;
        if out.len() - start > budget {
            return Err(InflateError::TooBig);
        }
        Ok(())
    }

    /// Whether the last [`inflate`](Self::inflate) call ran out of room with
    /// output possibly still to come.
    pub fn has_pending_output(&self) -> bool {
        self.output_pending
    }

    /// Drops the state of a message that will not be finished (e.g. the
    /// connection failed): the next message starts a fresh stream.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.tail_fed = 0;
        self.stream_ended = false;
        self.output_pending = false;
    }

    fn end_message(&mut self) {
        if self.no_context_takeover || self.stream_ended {
            self.inner.reset(false);
        }
        self.tail_fed = 0;
        self.stream_ended = false;
    }

    /// One zlib call: inflates from `src` into up to `want` new bytes of
    /// `out`, whose capacity stays within `limit`. Returns (used, made).
    fn step(
        &mut self,
        src: &[u8],
        out: &mut Vec<u8>,
        want: usize,
        limit: usize,
    ) -> Result<(usize, usize), InflateError> {
        let start = out.len();
        reserve_capped(out, want, limit);
        out.resize(start + want, 0);
        let before_in = self.inner.total_in();
        let before_out = self.inner.total_out();
        let status = self
            .inner
            .decompress(src, &mut out[start..], FlushDecompress::Sync);
        let used = usize::try_from(self.inner.total_in().wrapping_sub(before_in))
            .unwrap_or(usize::MAX)
            .min(src.len());
        let made = usize::try_from(self.inner.total_out().wrapping_sub(before_out))
            .unwrap_or(usize::MAX)
            .min(want);
        out.truncate(start + made);
        match status {
            Ok(Status::StreamEnd) => self.stream_ended = true,
            Ok(Status::Ok | Status::BufError) => {}
            Err(_) => return Err(InflateError::Corrupt),
        }
        Ok((used, made))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn negotiate(config: &DeflateConfig, headers: &[&str]) -> Option<String> {
        config
            .negotiate(headers.iter().map(|h| h.as_bytes()))
            .map(|r| r.header_value)
    }

    #[test]
    fn negotiation_table() {
        let default = cfg();
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["permessage-deflate"], Some("permessage-deflate")),
            (&["Permessage-Deflate"], Some("permessage-deflate")),
            (&["permessage-deflate; client_max_window_bits"], Some("permessage-deflate")),
            (
                &["permessage-deflate; server_no_context_takeover"],
                Some("permessage-deflate; server_no_context_takeover"),
            ),
            (
                &["permessage-deflate; client_no_context_takeover"],
                Some("permessage-deflate; client_no_context_takeover"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=10"],
                Some("permessage-deflate; server_max_window_bits=10"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"8\""],
                Some("permessage-deflate; server_max_window_bits=8"),
            ),
            (
                &["permessage-deflate; server_max_window_bits=15"],
                Some("permessage-deflate; server_max_window_bits=15"),
            ),
            (&["permessage-deflate; client_max_window_bits=10"], Some("permessage-deflate")),
            // Invalid offers are skipped; the next acceptable one wins.
            (&["permessage-deflate; server_max_window_bits"], None),
            (&["permessage-deflate; server_max_window_bits=7"], None),
            (&["permessage-deflate; server_max_window_bits=16"], None),
            (&["permessage-deflate; server_max_window_bits=08"], None),
            (&["permessage-deflate; server_max_window_bits=+9"], None),
            (&["permessage-deflate; client_max_window_bits=0"], None),
            (&["permessage-deflate; server_no_context_takeover=1"], None),
            (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
            (&["permessage-deflate; client_max_window_bits; client_max_window_bits=9"], None),
            (&["permessage-deflate; foo"], None),
            (&["permessage-deflate; server_max_window_bits=\"1,0\""], None),
            (&["x-webkit-deflate-frame"], None),
            (&[""], None),
            (&[";;;"], None),
            (
                &["permessage-deflate; foo, permessage-deflate; server_max_window_bits=12"],
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            (
                &["x-foo", "permessage-deflate; server_max_window_bits=16", "permessage-deflate; client_no_context_takeover"],
                Some("permessage-deflate; client_no_context_takeover"),
            ),
            (
                &["permessage-deflate;   server_no_context_takeover  ;client_max_window_bits , permessage-deflate"],
                Some("permessage-deflate; server_no_context_takeover"),
            ),
            // Autobahn 13.x-style offers.
            (
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits"],
                Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=8"),
            ),
            (
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits"],
                Some("permessage-deflate; client_no_context_takeover"),
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                negotiate(&default, headers).as_deref(),
                *expected,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn negotiation_with_server_preferences() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 11,
            client_max_window_bits: 12,
            ..cfg()
        };
        let all = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11";
        assert_eq!(
            negotiate(&config, &["permessage-deflate"]).as_deref(),
            Some(all)
        );
        assert_eq!(
            negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(&*format!("{all}; client_max_window_bits=12"))
        );
        // The client's hint is smaller than our limit: no need to send ours.
        assert_eq!(
            negotiate(&config, &["permessage-deflate; client_max_window_bits=9"]).as_deref(),
            Some(all)
        );
        let r = config
            .negotiate([
                &b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=13"[..],
            ])
            .unwrap();
        assert_eq!(
            r.header_value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"
        );
        assert_eq!(
            r.params,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 9,
                client_max_window_bits: 12,
            }
        );
    }

    #[test]
    fn client_offer_and_response() {
        let default = cfg();
        assert_eq!(
            default.client_offer(),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(
            default.accept_response([&b"permessage-deflate"[..]]),
            Ok(DeflateParams::default())
        );
        let p = default
            .accept_response([
                &b"permessage-deflate; server_no_context_takeover; client_max_window_bits=9"[..],
            ])
            .unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 9)
        );

        let asking = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
            ..cfg()
        };
        assert_eq!(
            asking.client_offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
        );
        let p = asking
            .accept_response([&b"permessage-deflate; server_max_window_bits=10"[..]])
            .unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 11)
        );

        let bad: &[(&DeflateConfig, &str, ExtensionError)] = &[
            (
                &default,
                "permessage-deflate; foo",
                ExtensionError::InvalidParameter,
            ),
            (
                &default,
                "permessage-deflate; client_max_window_bits",
                ExtensionError::InvalidParameter,
            ),
            (
                &default,
                "permessage-deflate; server_max_window_bits=16",
                ExtensionError::InvalidParameter,
            ),
            (
                &asking,
                "permessage-deflate; server_max_window_bits=11",
                ExtensionError::InvalidParameter,
            ),
            (
                &asking,
                "permessage-deflate; client_max_window_bits=12",
                ExtensionError::InvalidParameter,
            ),
            (
                &default,
                "permessage-deflate, permessage-deflate",
                ExtensionError::NotOffered,
            ),
            (
                &default,
                "x-webkit-deflate-frame",
                ExtensionError::NotOffered,
            ),
            (&default, "permessage-deflate; =", ExtensionError::Malformed),
        ];
        for (config, response, error) in bad {
            assert_eq!(
                config.accept_response([response.as_bytes()]),
                Err(*error),
                "{response}"
            );
        }
    }

    /// The server's answer is always acceptable to a client with the same
    /// preferences: negotiation is consistent with itself.
    #[test]
    fn server_answers_are_accepted_by_clients() {
        for server_bits in 8..=15 {
            for client_bits in 8..=15 {
                for flags in 0..4 {
                    let config = DeflateConfig {
                        server_no_context_takeover: flags & 1 != 0,
                        client_no_context_takeover: flags & 2 != 0,
                        server_max_window_bits: server_bits,
                        client_max_window_bits: client_bits,
                        ..cfg()
                    };
                    let offer = config.client_offer();
                    let response = config
                        .negotiate([offer.as_bytes()])
                        .expect("own offer acceptable");
                    let client = config
                        .accept_response([response.header_value.as_bytes()])
                        .unwrap();
                    assert_eq!(
                        client, response.params,
                        "{offer} -> {}",
                        response.header_value
                    );
                }
            }
        }
    }

    fn sample_text(len: usize) -> Vec<u8> {
        let words = [
            "alpha ",
            "beta ",
            "gamma ",
            "delta ",
            "epsilon ",
            "zeta ",
            "κόσμε ",
            "\u{1f600} ",
        ];
        let mut state = 12345u32;
        let mut out = Vec::new();
        while out.len() < len {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.extend_from_slice(words[(state >> 16) as usize % words.len()].as_bytes());
        }
        out.truncate(len);
        out
    }

    /// Data whose repeats lie far apart, so that a large window helps and a
    /// small one must not be used.
    fn far_repeats() -> Vec<u8> {
        let mut state = 7u32;
        let block: Vec<u8> = (0..3000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        let mut data = block.clone();
        data.extend(sample_text(20_000));
        data.extend_from_slice(&block);
        data.extend_from_slice(&block[..1000]);
        data
    }

    /// Inflates with an independent reader, the way a peer would: the
    /// concatenated messages with the tail re-appended to each.
    fn independent_inflate(messages: &[Vec<u8>], reset_each: bool) -> Vec<Vec<u8>> {
        if reset_each {
            return messages
                .iter()
                .map(|m| {
                    let mut input = m.clone();
                    input.extend_from_slice(&TAIL);
                    let mut out = Vec::new();
                    let mut reader = flate2::read::DeflateDecoder::new(&input[..]);
                    // A sync-flushed stream has no end marker: read until the
                    // reader runs dry.
                    let _ = reader.read_to_end(&mut out);
                    out
                })
                .collect();
        }
        let mut d = Decompress::new(false);
        messages
            .iter()
            .map(|m| {
                let mut input = m.clone();
                input.extend_from_slice(&TAIL);
                let mut out = Vec::with_capacity(1 << 20);
                d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
                    .unwrap();
                out
            })
            .collect()
    }

    /// Inflates the messages (tail re-appended) with [`puff`], an
    /// independent DEFLATE decoder, and checks that no back-reference
    /// reaches further than 2^bits bytes. zlib-rs cannot check this: its
    /// decompressor always keeps a 32 KiB window whatever it is told.
    fn inflate_with_window(messages: &[Vec<u8>], bits: u8) -> Result<Vec<u8>, &'static str> {
        let mut stream = Vec::new();
        for m in messages {
            stream.extend_from_slice(m);
            stream.extend_from_slice(&TAIL);
        }
        let (data, max_distance) = puff::inflate(&stream).ok_or("corrupt")?;
        if max_distance > 1 << bits {
            return Err("distance beyond the window");
        }
        Ok(data)
    }

    #[test]
    fn round_trip_every_window_with_and_without_context_takeover() {
        let messages: Vec<Vec<u8>> = vec![
            sample_text(5000),
            far_repeats(),
            sample_text(5000),
            Vec::new(),
            b"x".to_vec(),
        ];
        for bits in 8..=15u8 {
            for no_context_takeover in [false, true] {
                let mut deflater = Deflater::new(6, bits, no_context_takeover);
                let compressed: Vec<Vec<u8>> = messages
                    .iter()
                    .map(|m| {
                        let mut out = Vec::new();
                        deflater.compress(m, &mut out).unwrap();
                        assert!(!out.ends_with(&TAIL) || m.is_empty());
                        out
                    })
                    .collect();
                // An independent inflater gets the messages back...
                assert_eq!(
                    independent_inflate(&compressed, no_context_takeover),
                    messages,
                    "bits {bits}"
                );
                // ...so does ours, fed in awkward pieces...
                let mut inflater = Inflater::new(no_context_takeover);
                for (c, m) in compressed.iter().zip(&messages) {
                    let mut out = Vec::new();
                    for piece in c.chunks(7) {
                        inflater
                            .inflate_capped(piece, false, &mut out, 1 << 20)
                            .unwrap();
                    }
                    inflater
                        .inflate_capped(&[], true, &mut out, 1 << 20)
                        .unwrap();
                    assert_eq!(&out, m, "bits {bits}");
                }
                // ...and the stream never reaches back beyond the window.
                assert_eq!(
                    inflate_with_window(&compressed, bits),
                    Ok(messages.concat()),
                    "bits {bits}"
                );
                if bits == 8 {
                    // Level 0: stored blocks only, no compression at all.
                    assert!(compressed[1].len() >= messages[1].len());
                }
            }
        }
    }

    #[test]
    fn small_window_check_is_meaningful() {
        // A 15-bit stream of far repeats does not inflate with a 9-bit window.
        let mut deflater = Deflater::new(6, 15, false);
        let mut out = Vec::new();
        deflater.compress(&far_repeats(), &mut out).unwrap();
        assert!(out.len() < far_repeats().len() - 2000);
        assert_eq!(
            inflate_with_window(&[out.clone()], 9),
            Err("distance beyond the window")
        );
        assert_eq!(inflate_with_window(&[out], 15), Ok(far_repeats()));
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let message = sample_text(2000);
        for (no_context_takeover, expect_small) in [(false, true), (true, false)] {
            let mut deflater = Deflater::new(6, 15, no_context_takeover);
            let mut first = Vec::new();
            deflater.compress(&message, &mut first).unwrap();
            let mut second = Vec::new();
            deflater.compress(&message, &mut second).unwrap();
            assert_eq!(
                second.len() < first.len() / 4,
                expect_small,
                "{} vs {}",
                first.len(),
                second.len()
            );
        }
    }

    #[test]
    fn decompression_bomb_is_capped() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let mut deflater = Deflater::new(9, 15, true);
        let mut bomb = Vec::new();
        deflater.compress(&zeros, &mut bomb).unwrap();
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let cap = 1024 * 1024;

        // All at once.
        let mut inflater = Inflater::new(true);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate_capped(&bomb, true, &mut out, cap),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= cap + 64 * 1024, "{}", out.capacity());

        // In small pieces, as a socket would deliver it.
        let mut inflater = Inflater::new(true);
        let mut out = Vec::new();
        let mut result = Ok(());
        for piece in bomb.chunks(100) {
            let budget = cap - out.len();
            result = inflater.inflate_capped(piece, false, &mut out, budget);
            assert!(out.capacity() <= cap + 64 * 1024, "{}", out.capacity());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(InflateError::TooBig));

        // Streaming: bounded pieces, the whole thing inflates piece by piece.
        let mut inflater = Inflater::new(true);
        let mut total = 0;
        let mut input: &[u8] = &bomb;
        loop {
            let mut piece = Vec::new();
            let used = inflater
                .inflate(input, true, &mut piece, 64 * 1024)
                .unwrap();
            input = &input[used..];
            assert!(piece.len() <= 64 * 1024 && piece.capacity() <= 64 * 1024);
            assert!(piece.iter().all(|&b| b == 0));
            total += piece.len();
            if input.is_empty() && !inflater.has_pending_output() {
                break;
            }
        }
        assert_eq!(total, zeros.len());
    }

    #[test]
    fn exact_budget_is_not_too_big() {
        let message = sample_text(1000);
        let mut deflater = Deflater::new(6, 15, true);
        let mut c = Vec::new();
        deflater.compress(&message, &mut c).unwrap();
        let mut inflater = Inflater::new(true);
        let mut out = Vec::new();
        inflater.inflate_capped(&c, true, &mut out, 1000).unwrap();
        assert_eq!(out, message);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate_capped(&c, true, &mut out, 999),
            Err(InflateError::TooBig)
        );
    }

    #[test]
    fn corrupt_and_bfinal_streams() {
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        // BTYPE=11 is reserved.
        assert_eq!(
            inflater.inflate_capped(&[0xff, 0xff], true, &mut out, 100),
            Err(InflateError::Corrupt)
        );

        // A peer may end each message with a BFINAL block (RFC 7692 §7.2.3.3).
        let mut c = Compress::new(Compression::default(), false);
        let mut stream = Vec::with_capacity(100);
        c.compress_vec(b"Hello", &mut stream, FlushCompress::Finish)
            .unwrap();
        let mut inflater = Inflater::new(false);
        for _ in 0..2 {
            let mut out = Vec::new();
            inflater
                .inflate_capped(&stream, true, &mut out, 100)
                .unwrap();
            assert_eq!(out, b"Hello");
        }
        // Data after the final block is refused.
        let mut doubled = stream.clone();
        doubled.extend_from_slice(&stream);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate_capped(&doubled, true, &mut out, 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn rfc7692_examples() {
        // §7.2.3.1: "Hello" compressed is 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        inflater
            .inflate_capped(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same again with context takeover: 0xf2 0x00 0x11 0x00 0x00.
        out.clear();
        inflater
            .inflate_capped(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.4: stored block "Hello": 0x00 0x05 0x00 0xfa 0xff 'H' 'e' 'l' 'l' 'o' 0x00.
        out.clear();
        let mut fresh = Inflater::new(false);
        fresh
            .inflate_capped(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
                ],
                true,
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.6: an empty message is the single byte 0x00.
        out.clear();
        fresh.inflate_capped(&[0x00], true, &mut out, 100).unwrap();
        assert!(out.is_empty());
    }

    /// A minimal DEFLATE decoder (after Mark Adler's puff.c) that also
    /// reports the longest back-reference distance used. Test-only.
    mod puff {
        struct Bits<'a> {
            input: &'a [u8],
            pos: usize,
            buf: u64,
            cnt: u32,
        }

        impl Bits<'_> {
            fn bits(&mut self, n: u32) -> Option<u32> {
                while self.cnt < n {
                    let b = *self.input.get(self.pos)?;
                    self.pos += 1;
                    self.buf |= u64::from(b) << self.cnt;
                    self.cnt += 8;
                }
                let v = (self.buf & ((1u64 << n) - 1)) as u32;
                self.buf >>= n;
                self.cnt -= n;
                Some(v)
            }

            fn align(&mut self) {
                self.buf = 0;
                self.cnt = 0;
            }
        }

        struct Huffman {
            count: [i32; 16],
            symbol: Vec<u16>,
        }

        impl Huffman {
            fn new(lengths: &[u8]) -> Self {
                let mut count = [0i32; 16];
                for &l in lengths {
                    count[usize::from(l)] += 1;
                }
                count[0] = 0;
                let mut offs = [0usize; 16];
                for len in 1..15 {
                    offs[len + 1] = offs[len] + count[len] as usize;
                }
                let mut symbol = vec![0u16; lengths.len()];
                for (sym, &l) in lengths.iter().enumerate() {
                    if l != 0 {
                        symbol[offs[usize::from(l)]] = sym as u16;
                        offs[usize::from(l)] += 1;
                    }
                }
                Self { count, symbol }
            }

            fn decode(&self, bits: &mut Bits<'_>) -> Option<usize> {
                let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
                for len in 1..16 {
                    code |= bits.bits(1)? as i32;
                    let count = self.count[len];
                    if code - count < first {
                        return self
                            .symbol
                            .get((index + code - first) as usize)
                            .map(|&s| usize::from(s));
                    }
                    index += count;
                    first += count;
                    first <<= 1;
                    code <<= 1;
                }
                None
            }
        }

        const LBASE: [usize; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEXT: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DBASE: [usize; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DEXT: [u32; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];

        fn codes(
            bits: &mut Bits<'_>,
            out: &mut Vec<u8>,
            max: &mut usize,
            lit: &Huffman,
            dist: &Huffman,
        ) -> Option<()> {
            loop {
                let sym = lit.decode(bits)?;
                match sym {
                    0..=255 => out.push(sym as u8),
                    256 => return Some(()),
                    _ => {
                        let i = sym - 257;
                        let len = LBASE.get(i)? + bits.bits(*LEXT.get(i)?)? as usize;
                        let d = dist.decode(bits)?;
                        let distance = DBASE.get(d)? + bits.bits(*DEXT.get(d)?)? as usize;
                        if distance > out.len() {
                            return None;
                        }
                        *max = (*max).max(distance);
                        for _ in 0..len {
                            out.push(out[out.len() - distance]);
                        }
                    }
                }
            }
        }

        /// Decodes non-final blocks until the input is used up; returns the
        /// output and the longest distance seen.
        pub fn inflate(input: &[u8]) -> Option<(Vec<u8>, usize)> {
            let mut bits = Bits {
                input,
                pos: 0,
                buf: 0,
                cnt: 0,
            };
            let mut out = Vec::new();
            let mut max = 0;
            while bits.pos < input.len() {
                let last = bits.bits(1)?;
                match bits.bits(2)? {
                    0 => {
                        bits.align();
                        let len = bits.bits(16)?;
                        let nlen = bits.bits(16)?;
                        if len != !nlen & 0xffff {
                            return None;
                        }
                        let data = input.get(bits.pos..bits.pos + len as usize)?;
                        out.extend_from_slice(data);
                        bits.pos += len as usize;
                    }
                    1 => {
                        let mut lengths = [8u8; 288];
                        lengths[144..256].fill(9);
                        lengths[256..280].fill(7);
                        let lit = Huffman::new(&lengths);
                        let dist = Huffman::new(&[5u8; 30]);
                        codes(&mut bits, &mut out, &mut max, &lit, &dist)?;
                    }
                    2 => {
                        let nlen = bits.bits(5)? as usize + 257;
                        let ndist = bits.bits(5)? as usize + 1;
                        let ncode = bits.bits(4)? as usize + 4;
                        const ORDER: [usize; 19] = [
                            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                        ];
                        let mut cl = [0u8; 19];
                        for &o in &ORDER[..ncode] {
                            cl[o] = bits.bits(3)? as u8;
                        }
                        let lencode = Huffman::new(&cl);
                        let mut lengths = vec![0u8; nlen + ndist];
                        let mut i = 0;
                        while i < nlen + ndist {
                            let sym = lencode.decode(&mut bits)?;
                            let (value, repeat) = match sym {
                                0..=15 => (sym as u8, 1),
                                16 => {
                                    (*lengths.get(i.checked_sub(1)?)?, 3 + bits.bits(2)? as usize)
                                }
                                17 => (0, 3 + bits.bits(3)? as usize),
                                _ => (0, 11 + bits.bits(7)? as usize),
                            };
                            for _ in 0..repeat {
                                *lengths.get_mut(i)? = value;
                                i += 1;
                            }
                        }
                        let lit = Huffman::new(&lengths[..nlen]);
                        let dist = Huffman::new(&lengths[nlen..]);
                        codes(&mut bits, &mut out, &mut max, &lit, &dist)?;
                    }
                    _ => return None,
                }
                if last == 1 {
                    break;
                }
            }
            Some((out, max))
        }
    }
}
