//! The raw WebSocket client (RFC 6455): it writes exactly the bytes it is told to, with
//! client frames masked by the helpers here, and reads frames one at a time, so that
//! tests can assert the server's exact bytes. Plus the test data the WebSocket tests send.

use super::client::{read_head, Response};
use super::server::WAIT;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Opcodes as they appear on the wire (RFC 6455 §5.2).
pub const OP_CONT: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Fresh random bytes (masking keys, payloads).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).unwrap();
    v
}

/// A deterministic pattern of `n` bytes covering every byte value.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// `n` bytes of valid UTF-8 text with one-, two-, three- and four-byte characters.
pub fn utf8_text(n: usize) -> Vec<u8> {
    let unit = "aκόσμε€𝄞z ".as_bytes();
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(unit);
    }
    // Cut on a character boundary, then pad with ASCII to the exact length.
    let mut cut = n;
    while cut > 0 && cut < v.len() && (v[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    v.truncate(cut);
    v.resize(n, b'.');
    v
}

// ---------------------------------------------------------------------------------------------
// Frames

/// The header of a frame: FIN, RSV (3 bits: RSV1 = 4), opcode, length in the shortest
/// form, optional mask key.
pub fn header(fin: bool, rsv: u8, opcode: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 15)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        h.push(m | len as u8);
    } else if len <= 0xFFFF {
        h.push(m | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(m | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = mask {
        h.extend_from_slice(&k);
    }
    h
}

/// XORs `data` with `key`, starting at key byte `phase`.
pub fn mask_in_place(data: &mut [u8], key: [u8; 4], phase: usize) {
    let k = [
        key[phase & 3],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ];
    let word = u32::from_ne_bytes(k);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i];
    }
}

/// A whole client frame (masked with a random key).
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key: [u8; 4] = random_bytes(4).try_into().unwrap();
    let mut f = header(fin, rsv, opcode, payload.len() as u64, Some(key));
    let start = f.len();
    f.extend_from_slice(payload);
    mask_in_place(&mut f[start..], key, 0);
    f
}

/// A whole unfragmented client message frame.
pub fn msg(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload)
}

/// A close frame payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// What a server frame should look like on the wire: unmasked, shortest length.
pub fn server_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(fin, rsv, opcode, payload.len() as u64, None);
    f.extend_from_slice(payload);
    f
}

/// A frame as read from the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1 = 4, RSV2 = 2, RSV3 = 1.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// The header bytes exactly as received.
    pub head: Vec<u8>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.payload[..self.payload.len().min(64)];
        write!(
            f,
            "Frame{{fin:{} rsv:{} op:{} masked:{} len:{} head:{:02x?} payload:{:?}{}}}",
            self.fin,
            self.rsv,
            self.opcode,
            self.masked,
            self.payload.len(),
            self.head,
            String::from_utf8_lossy(shown),
            if self.payload.len() > 64 { "..." } else { "" }
        )
    }
}

impl Frame {
    /// The frame's bytes as they came (header + payload; payload unmasked if it was).
    pub fn wire(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend_from_slice(&self.payload);
        v
    }
    /// The close code of a close frame (None when the payload is empty).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one frame; `Ok(None)` on a clean EOF before its first byte.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut b2 = [0u8; 2];
    match r.read(&mut b2[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut b2[1..])?,
    }
    let mut head = b2.to_vec();
    let masked = b2[1] & 0x80 != 0;
    let len = match b2[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l)?;
            head.extend_from_slice(&l);
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l)?;
            head.extend_from_slice(&l);
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
        head.extend_from_slice(&key);
    }
    assert!(len <= 1 << 30, "absurd frame length {len}");
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if masked {
        mask_in_place(&mut payload, key, 0);
    }
    Ok(Some(Frame {
        fin: b2[0] & 0x80 != 0,
        rsv: (b2[0] >> 4) & 7,
        opcode: b2[0] & 15,
        masked,
        head,
        payload,
    }))
}

// ---------------------------------------------------------------------------------------------
// The raw client

/// A handshake request for `path` with `extra` header lines ("Name: value\r\n").
pub fn upgrade_request(path: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(h.finalize())
}

pub fn new_key() -> String {
    BASE64.encode(random_bytes(16))
}

/// A raw WebSocket client on a TCP socket: it sends exactly the bytes it is told to
/// (frames masked by the helpers) and reads frames one at a time.
pub struct Ws {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
    /// The server's 101 response.
    pub response: Response,
}

impl Ws {
    /// Connects to `addr` and upgrades `/` with no extra headers.
    pub fn connect(addr: &str) -> Ws {
        Self::open(addr, "/", "").unwrap_or_else(|h| panic!("upgrade refused: {h:?}"))
    }

    /// Connects and sends an upgrade for `path` with `extra` headers. Ok: a checked 101
    /// (right accept key); Err: the refusal's head.
    pub fn open(addr: &str, path: &str, extra: &str) -> Result<Ws, Response> {
        let key = new_key();
        Self::open_raw(addr, &upgrade_request(path, &key, extra), Some(&key))
    }

    /// Sends `request` as is; checks the accept key when `key` is given.
    pub fn open_raw(addr: &str, request: &str, key: Option<&str>) -> Result<Ws, Response> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT * 3)).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(request.as_bytes()).unwrap();
        let mut r = BufReader::with_capacity(1 << 16, s);
        let response = read_head(&mut r).unwrap();
        if response.status != 101 {
            return Err(response);
        }
        if let Some(key) = key {
            assert_eq!(
                response.header("sec-websocket-accept").as_deref(),
                Some(accept_for(key).as_str()),
                "{}",
                response.head
            );
        }
        assert!(
            response
                .header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "{}",
            response.head
        );
        Ok(Ws { r, w, response })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Writes, ignoring errors (for bytes the server may refuse to read).
    pub fn send_raw_lossy(&mut self, bytes: &[u8]) {
        let _ = self.w.write_all(bytes);
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) {
        self.send_raw(&frame(fin, rsv, opcode, payload));
    }

    /// Sends a whole message (one frame).
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(true, 0, opcode, payload);
    }

    /// The next frame; panics on EOF, error or timeout.
    pub fn recv(&mut self) -> Frame {
        match read_frame(&mut self.r) {
            Ok(Some(f)) => f,
            Ok(None) => panic!("EOF while a frame was expected"),
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// The next frame, or None on EOF / reset.
    pub fn try_recv(&mut self) -> Option<Frame> {
        match read_frame(&mut self.r) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// Reads the next frame and checks it is a whole message of `opcode` with `payload`,
    /// sent as the server should: FIN, no RSV, unmasked, shortest length form.
    pub fn expect_echo(&mut self, opcode: u8, payload: &[u8]) {
        let f = self.recv();
        assert!(
            f.opcode == opcode && f.payload == payload,
            "expected op {opcode} with {} bytes ({:?}), got {f:?}",
            payload.len(),
            String::from_utf8_lossy(&payload[..payload.len().min(40)])
        );
        let expected = header(true, 0, opcode, payload.len() as u64, None);
        assert_eq!(f.head, expected, "frame header");
    }

    /// Sends a message and expects it echoed.
    pub fn roundtrip(&mut self, opcode: u8, payload: &[u8]) {
        self.send(opcode, payload);
        self.expect_echo(opcode, payload);
    }

    /// Expects a close frame with `code` (None: an empty close), then the server closing TCP.
    /// Returns the close frame.
    pub fn expect_close(&mut self, code: Option<u16>) -> Frame {
        let f = self.recv();
        assert_eq!(f.opcode, OP_CLOSE, "expected a close frame, got {f:?}");
        assert!(!f.masked && f.fin && f.rsv == 0, "{f:?}");
        assert_eq!(f.close_code(), code, "close code of {f:?}");
        if f.payload.len() > 2 {
            assert!(
                std::str::from_utf8(&f.payload[2..]).is_ok(),
                "close reason not UTF-8"
            );
        }
        self.expect_eof();
        f
    }

    /// Expects the server to close TCP (EOF or reset) with nothing more sent.
    pub fn expect_eof(&mut self) {
        let mut b = [0u8; 4096];
        let t0 = Instant::now();
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the server to close TCP, got {n} more bytes: {:02x?}",
                    &b[..n.min(32)]
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "expected the server to close TCP within {:?}: {e}",
                    t0.elapsed()
                ),
            }
        }
    }

    /// Closes with `code` and checks the echo (code only) and the TCP close.
    pub fn close_handshake(&mut self, code: u16) {
        self.send(OP_CLOSE, &close_payload(code, b""));
        let f = self.expect_close(Some(code));
        assert_eq!(f.payload, code.to_be_bytes());
    }

    /// Whether nothing arrives within `d` (only to check that something does NOT happen,
    /// always followed by a positive check).
    pub fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.r.buffer().is_empty() {
            return false;
        }
        self.r.get_ref().set_read_timeout(Some(d)).unwrap();
        let mut b = [0u8; 1];
        let r = self.r.get_ref().peek(&mut b);
        self.r.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        match r {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.w.shutdown(Shutdown::Write);
    }
}
