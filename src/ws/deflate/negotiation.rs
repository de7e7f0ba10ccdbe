//! Negotiating permessage-deflate (RFC 7692 §5, §7.1): the parameters a
//! client offers, the answer a server gives, and the checks a client makes on
//! that answer. Nothing here compresses; the result is a [`DeflateParams`].

use super::window::{clamp_bits, MAX_WINDOW_BITS};
use crate::ws::header::{self, Extension};
use std::fmt;
use std::fmt::Write as _;

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

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
