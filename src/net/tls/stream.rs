//! [`TlsStream`]: one rustls connection driven over a non-blocking socket by an edge-triggered
//! event loop.
//!
//! The socket is passed to each call rather than owned, so the event loop keeps owning (and
//! registering) its sockets exactly as it does for plain connections.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, Connection, ProtocolVersion, ServerConfig, ServerConnection,
};

use super::x509::CertInfo;

/// Bound, in bytes, on each of the two outgoing buffers of a [`TlsStream`]: plaintext written
/// during the handshake, and encrypted records the socket has not yet taken. This is also
/// rustls's default; it is set explicitly because [`TlsStream::write`]'s contract relies on it.
/// Incoming data needs no such setting: rustls reads at most one record (~16 KiB) ahead of
/// what has been decrypted, and `read` drains decrypted data before reading more.
pub const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// How much of the peer's first transmission is kept to explain a failed handshake.
const FIRST_BYTES: usize = 8;

/// A TLS connection (server or client side) over a caller-owned non-blocking socket.
///
/// See the module documentation for how an edge-triggered loop drives it. A `TlsStream` is
/// `Send`, so a connection can move between threads with its socket.
pub struct TlsStream {
    /// Boxed: a rustls connection is over 1 KiB, and callers keep TlsStreams inside their
    /// per-connection structs (or in an enum beside plain sockets), which should stay small.
    conn: Box<Connection>,
    /// Once the connection has failed (bad peer data, alert, truncated handshake) every later
    /// `read`/`write` reports the same error, so that a caller that keeps going gets a
    /// consistent answer instead of rustls's bare "handshake not complete"-style follow-ups.
    failure: Option<Failure>,
    peer_end: PeerEnd,
    close_notify_sent: bool,
    /// The first bytes the peer ever sent, to tell "this is not TLS at all" (plain HTTP sent
    /// to a TLS port, the commonest mistake) apart from a genuine TLS-level problem.
    first_bytes: FirstBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnd {
    Open,
    /// close_notify received: the peer ended the stream properly.
    CloseNotify,
    /// TCP EOF without close_notify: the stream may have been truncated.
    TcpEof,
}

#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_io(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

impl TlsStream {
    /// Starts the server side of a connection accepted on a TLS listener.
    pub fn server(config: &Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let conn = ServerConnection::new(Arc::clone(config))?;
        Ok(Self::new(conn.into()))
    }

    /// Starts the client side of a connection to `server_name`, a DNS name or an IP literal
    /// (IPv6 with or without brackets). The name is what the server certificate is checked
    /// against, and a DNS name is also sent as SNI. The ClientHello is queued at once: it goes
    /// out on the first [`flush`](Self::flush), `write` or `read`.
    pub fn client(config: &Arc<ClientConfig>, server_name: &str) -> Result<Self, rustls::Error> {
        let bare = server_name
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(server_name);
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
            rustls::Error::General(format!(
                "invalid server name {}: {e}",
                crate::error::excerpt(server_name.as_bytes())
            ))
        })?;
        let conn = ClientConnection::new(Arc::clone(config), name)?;
        Ok(Self::new(conn.into()))
    }

    fn new(mut conn: Connection) -> Self {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsStream {
            conn: Box::new(conn),
            failure: None,
            peer_end: PeerEnd::Open,
            close_notify_sent: false,
            first_bytes: FirstBytes::default(),
        }
    }

    /// Reads decrypted application data into `buf`.
    ///
    /// Pulls TLS records from `sock` as needed and sends whatever rustls has to answer
    /// (handshake messages, session tickets, alerts) back on `sock` as it goes; errors while
    /// sending are left for the next `write`/`flush` to report, so received data is never
    /// lost to them.
    ///
    /// * `Ok(n)`, n > 0: plaintext.
    /// * `Ok(0)`: the peer is done: it sent close_notify ([`received_close_notify`] is then
    ///   true), or the TCP connection ended after the handshake without one (a possible
    ///   truncation; `received_close_notify` is false), or it ended before the peer sent
    ///   anything at all (a port probe). Also `Ok(0)` when `buf` is empty.
    /// * `Err(WouldBlock)`: only when no decrypted data is left *and* the socket returned
    ///   `WouldBlock`, so a caller that reads until `WouldBlock` can wait for the next
    ///   readable edge without stranding data.
    /// * `Err(InvalidData)`: the peer sent something that is not valid TLS or failed
    ///   verification; the message says what, e.g. "TLS handshake failed: peer is not
    ///   speaking TLS (received a plain HTTP request)" or "TLS handshake failed: invalid peer
    ///   certificate: UnknownIssuer".
    /// * `Err(ConnectionAborted)`: the peer sent a fatal alert ("TLS handshake failed:
    ///   received fatal alert: BadCertificate").
    /// * `Err(UnexpectedEof)`: the connection closed in the middle of the handshake.
    /// * other errors: from the socket itself.
    ///
    /// TLS failures are sticky: later calls return the same error.
    ///
    /// [`received_close_notify`]: Self::received_close_notify
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(failure) = &self.failure {
            return Err(failure.to_io());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Decrypted data first: it must be handed out before the socket is consulted, or
            // it could sit here after the socket's last readable edge.
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    if n == 0 {
                        self.peer_end = PeerEnd::CloseNotify;
                    }
                    self.flush_quietly(sock);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.on_tcp_eof(),
                Err(e) => return Err(e),
            }

            let mut tap = Tap {
                sock: &mut *sock,
                first: &mut self.first_bytes,
            };
            match self.conn.read_tls(&mut tap) {
                // Ok(0) is TCP EOF: rustls records it, and the reader reports it (after any
                // data still buffered) on the next turn of the loop.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The handshake may be waiting on messages that an earlier flush could not
                    // finish; try again before going idle.
                    self.flush_quietly(sock);
                    return Err(e);
                }
                // rustls's own InvalidData: a record too large to buffer.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let failure = self.describe_failure(io::ErrorKind::InvalidData, &e);
                    return Err(self.fail(sock, failure));
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                let failure = match e {
                    rustls::Error::AlertReceived(_) => {
                        self.describe_failure(io::ErrorKind::ConnectionAborted, &e)
                    }
                    // rustls says "peer doesn't support any known protocol", which reads like
                    // a TLS version problem.
                    rustls::Error::NoApplicationProtocol => self.describe_failure(
                        io::ErrorKind::InvalidData,
                        &"no ALPN protocol in common with the peer",
                    ),
                    _ => self.describe_failure(io::ErrorKind::InvalidData, &e),
                };
                return Err(self.fail(sock, failure));
            }
        }
    }

    /// The peer's TCP stream ended without close_notify, and all decrypted data is consumed.
    fn on_tcp_eof(&mut self) -> io::Result<usize> {
        if self.conn.is_handshaking() && !self.first_bytes.is_empty() {
            // It started a handshake and walked away: worth an error (often the peer
            // rejected us without a proper alert, or it is not a TLS client at all).
            let reason = match self.first_bytes.not_tls() {
                Some(what) => format!("peer is not speaking TLS ({what})"),
                None => "peer closed the connection".to_owned(),
            };
            let failure = Failure {
                kind: io::ErrorKind::UnexpectedEof,
                message: format!("TLS handshake failed: {reason}"),
            };
            let err = failure.to_io();
            self.failure = Some(failure);
            return Err(err);
        }
        // After the handshake (or before the peer sent a single byte): a normal end of stream
        // as far as the caller is concerned; received_close_notify() tells it apart.
        self.peer_end = PeerEnd::TcpEof;
        Ok(0)
    }

    /// Records a fatal failure and makes a last attempt to send the alert rustls queued
    /// for it, so the peer learns why it is being dropped.
    fn fail<S: Write>(&mut self, sock: &mut S, failure: Failure) -> io::Error {
        let err = failure.to_io();
        self.failure = Some(failure);
        self.flush_quietly(sock);
        err
    }

    fn describe_failure(&self, kind: io::ErrorKind, err: &dyn fmt::Display) -> Failure {
        let stage = if self.conn.is_handshaking() {
            "TLS handshake failed"
        } else {
            "TLS error"
        };
        match self.first_bytes.not_tls() {
            Some(what) if self.conn.is_handshaking() => Failure {
                kind: io::ErrorKind::InvalidData,
                message: format!("{stage}: peer is not speaking TLS ({what})"),
            },
            _ => Failure {
                kind,
                message: format!("{stage}: {err}"),
            },
        }
    }

    /// Encrypts `data` and sends as much as the socket takes.
    ///
    /// Returns how many bytes of `data` were accepted; accepted bytes are the stream's
    /// responsibility from then on (kept until the socket takes them — see [`flush`]).
    /// rustls buffers at most [`SEND_BUFFER_LIMIT`] bytes, so a large `data` may be
    /// accepted in part.
    ///
    /// `Err(WouldBlock)` (nothing accepted) means the buffer is full. After the handshake
    /// that only happens once the socket has returned `WouldBlock`, so a writable edge will
    /// follow. During the handshake plaintext is held until the handshake completes (inside
    /// [`read`]); a full buffer then is not backed by a socket edge: retry after `read`.
    ///
    /// Fails with the connection's sticky TLS error if it has failed, with `BrokenPipe` after
    /// [`send_close_notify`], or with a socket error while making room. A socket error after
    /// `data` was accepted is left for the next call, so the returned count stays truthful.
    ///
    /// [`flush`]: Self::flush
    /// [`read`]: Self::read
    /// [`send_close_notify`]: Self::send_close_notify
    pub fn write<S: Write>(&mut self, sock: &mut S, data: &[u8]) -> io::Result<usize> {
        if let Some(failure) = &self.failure {
            return Err(failure.to_io());
        }
        if self.close_notify_sent {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS write after close_notify was sent",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        // Make room first: rustls accepts only what fits under the buffer limit.
        self.flush(sock)?;
        let accepted = self.conn.writer().write(data)?;
        if accepted == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush_quietly(sock);
        Ok(accepted)
    }

    /// Writes pending TLS data (handshake messages, encrypted application data, alerts) to
    /// `sock`. `Ok(true)`: nothing is pending any more; `Ok(false)`: the socket returned
    /// `WouldBlock` with data still pending (a writable edge will follow).
    ///
    /// Works after a TLS failure too, so the alert describing it can still go out.
    pub fn flush<S: Write>(&mut self, sock: &mut S) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no TLS data",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Flushes what the socket takes now. Errors are dropped on purpose: this runs on the
    /// read path, where handing out received data matters more, and a broken socket keeps
    /// failing, so the next `write`/`flush` reports it.
    fn flush_quietly<S: Write>(&mut self, sock: &mut S) {
        let _ = self.flush(sock);
    }

    /// True when TLS data is waiting to be written to the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// True until the handshake has completed (on this side).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues a close_notify alert, the TLS "end of stream". Send it with [`flush`] before
    /// closing the socket so the peer can tell a deliberate close from a truncation. Further
    /// writes fail; reads still work. Idempotent.
    ///
    /// [`flush`]: Self::flush
    pub fn send_close_notify(&mut self) {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.conn.send_close_notify();
        }
    }

    /// True once the peer's close_notify was received: an `Ok(0)` from [`read`] was then a
    /// proper end of stream. False after an `Ok(0)` means the TCP connection simply ended.
    ///
    /// [`read`]: Self::read
    pub fn received_close_notify(&self) -> bool {
        self.peer_end == PeerEnd::CloseNotify
    }

    /// The ALPN protocol agreed in the handshake, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Server side: the host name the client asked for (SNI), lower-case; `None` on the
    /// client side, before the ClientHello, or when the client sent none (e.g. it connected
    /// by IP address).
    pub fn sni_hostname(&self) -> Option<&str> {
        match &*self.conn {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The negotiated protocol version, "TLSv1.2" or "TLSv1.3" (OpenSSL's spelling, which
    /// log readers know); `None` until the peer's hello has been processed.
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            _ => None,
        }
    }

    /// The negotiated cipher suite's IANA name, e.g. "TLS13_AES_128_GCM_SHA256", for logs.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.conn.negotiated_cipher_suite()?.suite().as_str()
    }

    /// Who the peer is, once the handshake has completed: the subject of its certificate in
    /// RFC 4514 form (e.g. "CN=alice,O=Example"), or when the subject is empty its first
    /// subjectAltName ("DNS:host", "email:a@b", "URI:...", "IP:addr").
    ///
    /// On a server with `client_ca` this is a verified client identity; `None` when the
    /// client sent no certificate (allowed with `client_cert_optional`). On a client it is the
    /// server's certificate, verified unless `insecure_skip_verify` was set.
    pub fn peer_identity(&self) -> Option<String> {
        CertInfo::parse(self.peer_certificate()?).ok()?.identity()
    }

    /// The DER of the peer's (leaf) certificate once the handshake has completed, for
    /// applications that need more than [`peer_identity`](Self::peer_identity).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        // Before completion a certificate may have been received but not yet verified.
        if self.conn.is_handshaking() {
            return None;
        }
        self.conn
            .peer_certificates()?
            .first()
            .map(|cert| cert.as_ref())
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match *self.conn {
            Connection::Server(_) => "server",
            Connection::Client(_) => "client",
        };
        f.debug_struct("TlsStream")
            .field("side", &side)
            .field("handshaking", &self.is_handshaking())
            .field("version", &self.protocol_version())
            .field("sni", &self.sni_hostname())
            .field("failure", &self.failure.as_ref().map(|f| &f.message))
            .field("peer_end", &self.peer_end)
            .field("close_notify_sent", &self.close_notify_sent)
            .finish_non_exhaustive()
    }
}

/// Reads through to the socket, noting the first bytes ever received.
struct Tap<'a, S> {
    sock: &'a mut S,
    first: &'a mut FirstBytes,
}

impl<S: Read> Read for Tap<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.first.record(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[derive(Debug, Default)]
struct FirstBytes {
    bytes: [u8; FIRST_BYTES],
    len: usize,
}

impl FirstBytes {
    fn record(&mut self, data: &[u8]) {
        let take = (FIRST_BYTES - self.len).min(data.len());
        if take > 0 {
            self.bytes[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// If the peer's first bytes cannot start a TLS stream, a description of what they look
    /// like instead.
    fn not_tls(&self) -> Option<String> {
        let data = self.get();
        match data.first()? {
            // Handshake and alert records are the only legitimate openings.
            0x16 | 0x15 => return None,
            // SSL 2.0-format ClientHello: a two-byte length with the top bit set, then type 1.
            b if b & 0x80 != 0 && data.get(2) == Some(&0x01) => {
                return Some("received an SSLv2-format hello, which is not supported".to_owned());
            }
            _ => {}
        }
        const METHODS: [&[u8]; 9] = [
            b"GET ",
            b"HEAD ",
            b"POST ",
            b"PUT ",
            b"DELETE ",
            b"OPTIONS ",
            b"PATCH ",
            b"CONNECT ",
            b"PRI * ",
        ];
        let starts =
            |p: &[u8]| data.starts_with(p) || (data.len() < p.len() && p.starts_with(data));
        if METHODS.iter().any(|m| starts(m)) {
            return Some("received a plain HTTP request".to_owned());
        }
        if starts(b"HTTP/") {
            return Some("received a plain HTTP response".to_owned());
        }
        if data
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            return Some(format!(
                "received plain text {:?}",
                String::from_utf8_lossy(data)
            ));
        }
        let hex: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("received bytes {}", hex.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(data: &[u8]) -> Option<String> {
        let mut first = FirstBytes::default();
        // Arrives in pieces, as it may from a socket.
        for chunk in data.chunks(3) {
            first.record(chunk);
        }
        first.not_tls()
    }

    #[test]
    fn first_bytes_diagnosis() {
        assert_eq!(describe(b""), None);
        assert_eq!(describe(&[0x16, 0x03, 0x01, 0x02, 0x00]), None);
        assert_eq!(describe(&[0x15, 0x03, 0x03]), None);
        assert_eq!(
            describe(b"GET / HTTP/1.1\r\n").unwrap(),
            "received a plain HTTP request"
        );
        assert_eq!(describe(b"OPT").unwrap(), "received a plain HTTP request");
        assert_eq!(
            describe(b"HTTP/1.1 400").unwrap(),
            "received a plain HTTP response"
        );
        assert_eq!(
            describe(b"hello world").unwrap(),
            "received plain text \"hello wo\""
        );
        assert_eq!(
            describe(&[0, 1, 2, 0xff]).unwrap(),
            "received bytes 00 01 02 ff"
        );
        assert!(describe(&[0x80, 0x2e, 0x01, 0x00, 0x02])
            .unwrap()
            .contains("SSLv2"));
    }

    #[test]
    fn is_send_and_small() {
        fn assert_send<T: Send>() {}
        assert_send::<TlsStream>();
        assert!(std::mem::size_of::<TlsStream>() <= 128);
    }
}
