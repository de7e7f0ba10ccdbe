//! The opening handshake (RFC 6455 §4): validating a client's upgrade
//! request on the server, and building a request and checking the response on
//! the client.
//!
//! Both sides work on an already-parsed HTTP head: a method, a version and a
//! header list of `(name, value)` pairs, with names compared
//! case-insensitively and repeated headers allowed, exactly as an HTTP/1.1
//! parser such as `httparse` hands them out.

use crate::ws::deflate::{DeflateConfig, DeflateParams, ExtensionError};
use crate::ws::header;
use crate::ws::random;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::fmt;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this implementation speaks (RFC 6455 §4.1).
pub const VERSION: &str = "13";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: "the base64-
/// encoded SHA-1 of the concatenation of the |Sec-WebSocket-Key| (as a
/// string, not base64-decoded) with the string
/// "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"" (RFC 6455 §1.3, §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Whether a request asks for a WebSocket upgrade at all (an `Upgrade`
/// header listing `websocket`), so a server can route it to [`accept`] and
/// serve everything else as plain HTTP.
pub fn is_upgrade_request(headers: &[(&str, &[u8])]) -> bool {
    header::has_token(headers, "upgrade", "websocket")
}

/// What the server accepts, for [`accept`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions<'a> {
    /// Origins allowed to connect, compared exactly (ASCII case-insensitive,
    /// as origins are); `"*"` allows any. `None` allows any. A request
    /// without an `Origin` header is always allowed: only browsers send it,
    /// and the check exists to stop foreign web pages, not other programs.
    pub allowed_origins: Option<&'a [&'a str]>,
    /// Subprotocols the server speaks, most preferred first. The first one
    /// the client also offered is selected.
    pub protocols: &'a [&'a str],
    /// A subprotocol the application already chose; it must be among the
    /// client's offers, otherwise the handshake is refused. Takes precedence
    /// over `protocols`.
    pub chosen_protocol: Option<&'a str>,
    /// permessage-deflate preferences; `None` disables compression.
    pub deflate: Option<&'a DeflateConfig>,
}

/// A valid upgrade request, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The selected subprotocol, if any.
    pub protocol: Option<String>,
    /// The agreed permessage-deflate parameters, if compression is on.
    pub deflate: Option<DeflateParams>,
    /// The response head: status line, `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept` and, when negotiated, `Sec-WebSocket-Protocol`
    /// and `Sec-WebSocket-Extensions`, each line ending in CRLF. The final
    /// empty line is NOT included, so the caller can add headers (e.g.
    /// `Date`, `Server`) and must then append `"\r\n"`.
    pub response_head: String,
}

/// A request the server must refuse, and the HTTP error to refuse it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400 (malformed request), 403 (origin not allowed) or 426 (unsupported
    /// `Sec-WebSocket-Version`).
    pub status: u16,
    /// Extra response header lines, each ending in CRLF (for 426:
    /// `Sec-WebSocket-Version: 13`); empty otherwise.
    pub headers: String,
    /// A short human-readable reason, e.g. for a log or the response body.
    pub reason: &'static str,
}

impl Rejection {
    fn bad_request(reason: &'static str) -> Self {
        Self {
            status: 400,
            headers: String::new(),
            reason,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Server side: validates an upgrade request (RFC 6455 §4.2.1) and builds
/// the 101 response (§4.2.2).
///
/// `version` is the HTTP minor version (1 for HTTP/1.1). The checks, in
/// order: GET; HTTP/1.1 or later; `Upgrade` lists `websocket`; `Connection`
/// lists `Upgrade`; `Sec-WebSocket-Version` is 13 (else 426 with
/// `Sec-WebSocket-Version: 13`, as §4.2.2 asks); exactly one
/// `Sec-WebSocket-Key` that base64-decodes to 16 bytes; the origin is
/// allowed (else 403); the chosen subprotocol, if any, was offered. Then the
/// subprotocol and permessage-deflate are negotiated; neither can fail the
/// handshake.
pub fn accept(
    method: &str,
    version: u8,
    headers: &[(&str, &[u8])],
    options: &ServerOptions<'_>,
) -> Result<Accepted, Rejection> {
    // §4.1: "The method of the request MUST be GET, and the HTTP version MUST
    // be at least 1.1."
    if method != "GET" {
        return Err(Rejection::bad_request("WebSocket upgrade requires GET"));
    }
    if version < 1 {
        return Err(Rejection::bad_request(
            "WebSocket upgrade requires HTTP/1.1",
        ));
    }
    if !is_upgrade_request(headers) {
        return Err(Rejection::bad_request("missing Upgrade: websocket"));
    }
    if !header::has_token(headers, "connection", "upgrade") {
        return Err(Rejection::bad_request("missing Connection: Upgrade"));
    }
    if header::single(headers, "sec-websocket-version").map(header::trim_ows)
        != Some(VERSION.as_bytes())
    {
        return Err(Rejection {
            status: 426,
            headers: format!("Sec-WebSocket-Version: {VERSION}\r\n"),
            reason: "unsupported Sec-WebSocket-Version",
        });
    }
    // §4.2.1: "A |Sec-WebSocket-Key| header field with a base64-encoded ...
    // value that, when decoded, is 16 bytes in length."
    let key = header::single(headers, "sec-websocket-key")
        .map(header::trim_ows)
        .filter(|k| BASE64.decode(k).is_ok_and(|raw| raw.len() == 16))
        .ok_or(Rejection::bad_request(
            "missing or invalid Sec-WebSocket-Key",
        ))?;
    if let Some(allowed) = options.allowed_origins {
        check_origin(headers, allowed)?;
    }
    let protocol = select_protocol(headers, options)?;
    let deflate = options
        .deflate
        .and_then(|config| config.negotiate(header::values(headers, "sec-websocket-extensions")));

    let accept = accept_key(key);
    let mut response_head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(protocol) = &protocol {
        response_head.push_str("Sec-WebSocket-Protocol: ");
        response_head.push_str(protocol);
        response_head.push_str("\r\n");
    }
    if let Some(deflate) = &deflate {
        response_head.push_str("Sec-WebSocket-Extensions: ");
        response_head.push_str(&deflate.header_value);
        response_head.push_str("\r\n");
    }
    Ok(Accepted {
        accept,
        protocol,
        deflate: deflate.map(|d| d.params),
        response_head,
    })
}

/// §4.2.2: "If the server does not wish to accept this connection, it MUST
/// return an appropriate HTTP error code (e.g., 403 Forbidden)".
fn check_origin(headers: &[(&str, &[u8])], allowed: &[&str]) -> Result<(), Rejection> {
    let forbidden = Rejection {
        status: 403,
        headers: String::new(),
        reason: "origin not allowed",
    };
    let mut origins = header::values(headers, "origin");
    let Some(origin) = origins.next() else {
        return Ok(());
    };
    if origins.next().is_some() {
        // Two Origin headers: ambiguous, so trust neither.
        return Err(forbidden);
    }
    let origin = header::trim_ows(origin);
    if allowed
        .iter()
        .any(|a| *a == "*" || a.as_bytes().eq_ignore_ascii_case(origin))
    {
        Ok(())
    } else {
        Err(forbidden)
    }
}

/// §4.2.2: the server selects "one or none of the acceptable protocols" the
/// client listed. Only offers that are valid tokens are considered, so the
/// value echoed into the response can never inject header syntax.
fn select_protocol(
    headers: &[(&str, &[u8])],
    options: &ServerOptions<'_>,
) -> Result<Option<String>, Rejection> {
    let offered =
        || header::list_elements(headers, "sec-websocket-protocol").filter(|p| header::is_token(p));
    if let Some(chosen) = options.chosen_protocol {
        return if offered().any(|p| p == chosen.as_bytes()) {
            Ok(Some(chosen.to_owned()))
        } else {
            Err(Rejection::bad_request(
                "chosen subprotocol was not offered by the client",
            ))
        };
    }
    Ok(options
        .protocols
        .iter()
        .find(|ours| offered().any(|p| p == ours.as_bytes()))
        .map(|p| (*p).to_owned()))
}

/// Why a client handshake could not be built or its response was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// A request field contains bytes that cannot go into an HTTP head
    /// (control characters, a non-token subprotocol or header name, ...).
    InvalidRequestField(&'static str),
    /// The server answered with this status instead of 101.
    Status(u16),
    /// The response lacks `Upgrade: websocket`.
    MissingUpgrade,
    /// The response lacks `Connection: Upgrade`.
    MissingConnection,
    /// `Sec-WebSocket-Accept` is missing, repeated or wrong.
    BadAccept,
    /// The server selected a subprotocol we did not offer (or several).
    UnexpectedProtocol,
    /// The server answered with an extension although we offered none.
    UnexpectedExtension,
    /// The server's permessage-deflate response is invalid.
    Extension(ExtensionError),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequestField(field) => {
                write!(f, "invalid characters in the request's {field}")
            }
            Self::Status(status) => write!(f, "server answered {status} instead of 101"),
            Self::MissingUpgrade => f.write_str("response lacks Upgrade: websocket"),
            Self::MissingConnection => f.write_str("response lacks Connection: Upgrade"),
            Self::BadAccept => f.write_str("missing or wrong Sec-WebSocket-Accept"),
            Self::UnexpectedProtocol => {
                f.write_str("server selected a subprotocol that was not offered")
            }
            Self::UnexpectedExtension => {
                f.write_str("server selected an extension that was not offered")
            }
            Self::Extension(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What a successful client handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
    /// The agreed permessage-deflate parameters, if compression is on.
    pub deflate: Option<DeflateParams>,
}

/// The client side of the opening handshake: a request to send, and the
/// check of the server's answer.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    request: Vec<u8>,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

/// Whether `s` may be placed in a header value or request target: no
/// control characters (so no CR/LF injection), except HTAB where allowed.
fn is_field_text(s: &str, allow_space: bool) -> bool {
    s.bytes()
        .all(|b| (b >= 0x21 && b != 0x7f) || (allow_space && (b == b' ' || b == b'\t')))
}

impl ClientHandshake {
    /// Builds the upgrade request (RFC 6455 §4.1) for `host` (the `Host`
    /// header, with port if not the default) and `path_and_query` (the
    /// request target, starting with `/`), with a fresh random 16-byte key.
    ///
    /// `extra_headers` are appended as given (e.g. `Authorization`,
    /// `Cookie`). Every field is checked for bytes that would break or inject
    /// into the HTTP head.
    pub fn new(
        host: &str,
        path_and_query: &str,
        origin: Option<&str>,
        protocols: &[&str],
        deflate: Option<DeflateConfig>,
        extra_headers: &[(&str, &str)],
    ) -> Result<Self, HandshakeError> {
        if host.is_empty() || !is_field_text(host, false) {
            return Err(HandshakeError::InvalidRequestField("host"));
        }
        if !path_and_query.starts_with('/') || !is_field_text(path_and_query, false) {
            return Err(HandshakeError::InvalidRequestField("path"));
        }
        if origin.is_some_and(|o| !is_field_text(o, true)) {
            return Err(HandshakeError::InvalidRequestField("origin"));
        }
        if protocols.iter().any(|p| !header::is_token(p.as_bytes())) {
            return Err(HandshakeError::InvalidRequestField("subprotocol"));
        }
        if extra_headers
            .iter()
            .any(|(n, v)| !header::is_token(n.as_bytes()) || !is_field_text(v, true))
        {
            return Err(HandshakeError::InvalidRequestField("extra header"));
        }

        // §4.1: "a nonce consisting of a randomly selected 16-byte value that
        // has been base64-encoded".
        let mut nonce = [0u8; 16];
        random::fill(&mut nonce);
        let key = BASE64.encode(nonce);

        let mut request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {VERSION}\r\n"
        );
        if let Some(origin) = origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        if !protocols.is_empty() {
            request.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                protocols.join(", ")
            ));
        }
        if let Some(config) = &deflate {
            request.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                config.client_offer()
            ));
        }
        for (name, value) in extra_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok(Self {
            key,
            request: request.into_bytes(),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            deflate,
        })
    }

    /// The complete request head to send, final empty line included.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Checks the server's response head (RFC 6455 §4.1, "the client MUST
    /// validate the server's response as follows"): status 101, `Upgrade:
    /// websocket`, `Connection: Upgrade`, the right `Sec-WebSocket-Accept`, a
    /// subprotocol we offered (if any), an extension we offered (if any).
    pub fn check_response(
        &self,
        status: u16,
        headers: &[(&str, &[u8])],
    ) -> Result<Negotiated, HandshakeError> {
        if status != 101 {
            return Err(HandshakeError::Status(status));
        }
        if !header::has_token(headers, "upgrade", "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !header::has_token(headers, "connection", "upgrade") {
            return Err(HandshakeError::MissingConnection);
        }
        let expected = accept_key(self.key.as_bytes());
        if header::single(headers, "sec-websocket-accept").map(header::trim_ows)
            != Some(expected.as_bytes())
        {
            return Err(HandshakeError::BadAccept);
        }

        let mut selected = header::list_elements(headers, "sec-websocket-protocol");
        let protocol = match (selected.next(), selected.next()) {
            (None, _) => None,
            (Some(p), None) => Some(
                self.protocols
                    .iter()
                    .find(|ours| ours.as_bytes() == p)
                    .cloned()
                    .ok_or(HandshakeError::UnexpectedProtocol)?,
            ),
            (Some(_), Some(_)) => return Err(HandshakeError::UnexpectedProtocol),
        };

        let extension_values = || header::values(headers, "sec-websocket-extensions");
        let any_extension =
            extension_values().any(|v| v.iter().any(|&b| b != b',' && b != b' ' && b != b'\t'));
        let deflate = match (&self.deflate, any_extension) {
            (_, false) => None,
            (None, true) => return Err(HandshakeError::UnexpectedExtension),
            (Some(config), true) => Some(
                config
                    .accept_response(extension_values())
                    .map_err(HandshakeError::Extension)?,
            ),
        };
        Ok(Negotiated { protocol, deflate })
    }
}

#[cfg(test)]
mod tests;
