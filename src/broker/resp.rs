//! RESP, the Redis serialization protocol: an incremental, bounded parser for replies and
//! an encoder for commands.
//!
//! What is parsed: RESP2 (`+` simple string, `-` error, `:` integer, `$` bulk string and
//! its `$-1` null, `*` array and its `*-1` null) and, of RESP3, what pub/sub can meet:
//! `>` push frames (the form messages take on a RESP3 connection) and `_` null. Every
//! other RESP3 type (maps, sets, doubles, ...) is a protocol error: the broker session
//! never sends `HELLO 3`, so a server speaks RESP2 to it. Commands are encoded as arrays
//! of bulk strings, the only form Redis requires a client to send.
//!
//! **Incomplete input consumes nothing.** [`parse`] returns `Ok(None)` until a whole reply
//! is there, whatever the split, and the [`Decoder`] keeps the bytes for the next call.
//! The decoder remembers how many bytes the reply needs at least (known exactly once a
//! bulk string's header is read), so a 64 MiB payload arriving in 64 KiB reads is not
//! re-parsed for each read.
//!
//! **Bounded.** A malicious or broken server must not make us allocate without limit, nor
//! recurse without limit ([`Limits`]): a bulk string longer than `max_bulk_len` is refused
//! from its header alone, before any byte of it is buffered; an array longer than
//! `max_array_len` likewise (and element vectors grow as elements arrive, never from the
//! announced length); nesting deeper than `max_depth` is refused (parsing recurses once
//! per level, so the stack is bounded too); a line (simple string, error, integer,
//! length) longer than `max_line_len` is refused; and a reply whose bytes would exceed
//! `max_frame_len` is refused, which bounds what a [`Decoder`] buffers. Errors quote at
//! most 64 bytes of the offending input.
//!
//! **Why not a crate.** `redis-protocol` (6.0, the well-kept RESP crate: RESP2 and RESP3,
//! `decode` returning `Ok(None)` on incomplete input) was evaluated first. It recurses once
//! per array level with no limit: 50,000 nested `*1\r\n` (200 KB from a server) overflow
//! the stack of a main thread, which aborts the process (no `catch_unwind` can stop it),
//! and fewer on the smaller stacks of spawned threads. It has no limits on bulk or frame
//! length, re-parses a reply from its start on every call, and brings nom, a pinned
//! cookie-factory, crc16 and log. The `redis` crate is a full client with its own I/O,
//! not a sans-IO parser. The subset needed here is small (seven type bytes), so it is
//! written here, with a fuzz target (`fuzz/fuzz_targets/resp.rs`) that checks split
//! independence, the limits and the encoder's round trip.

use crate::error::excerpt;
use std::fmt;

/// Bounds on what one reply may make us buffer and allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes (refused from its `$` header alone).
    pub max_bulk_len: usize,
    /// Most elements in one array or push frame (refused from its header alone).
    pub max_array_len: usize,
    /// Deepest nesting of arrays: 1 allows a flat array, not an array inside it.
    pub max_depth: usize,
    /// Longest line: a simple string, an error, an integer or a length header, without
    /// its CRLF.
    pub max_line_len: usize,
    /// Most bytes one whole reply may take on the wire; bounds a [`Decoder`]'s buffer.
    pub max_frame_len: usize,
}

/// The library's default WebSocket message limit (64 MiB) plus room for a channel name
/// and the broker envelope.
const DEFAULT_MAX_BULK: usize = (64 << 20) + (64 << 10);

impl Default for Limits {
    /// Room for a pub/sub message of 64 MiB (the library's default message limit) with its
    /// channel and envelope; arrays of up to 64 Ki elements nested 8 deep; lines of 64 KiB.
    fn default() -> Self {
        Limits {
            max_bulk_len: DEFAULT_MAX_BULK,
            max_array_len: 1 << 16,
            max_depth: 8,
            max_line_len: 64 << 10,
            max_frame_len: DEFAULT_MAX_BULK + (64 << 10),
        }
    }
}

/// One RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a status line (never contains CR or LF).
    Simple(Vec<u8>),
    /// `-ERR message`: an error reply (never contains CR or LF).
    Error(Vec<u8>),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$3\r\nabc`: a binary-safe string.
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3): no value.
    Null,
    /// `*N`: an array.
    Array(Vec<Value>),
    /// `>N` (RESP3): an out-of-band push frame, such as a pub/sub message.
    Push(Vec<Value>),
}

impl Value {
    /// The bytes of a simple or bulk string; `None` for any other value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array or push frame; `None` for any other value.
    pub fn as_items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }
}

/// Why input is not RESP this parser accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The bytes are not RESP (unknown type byte, bad number, missing CRLF, ...).
    Syntax(String),
    /// The bytes are RESP, but over one of the [`Limits`].
    Limit(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Syntax(s) => write!(f, "malformed RESP: {s}"),
            RespError::Limit(s) => write!(f, "RESP over a limit: {s}"),
        }
    }
}

impl std::error::Error for RespError {}

impl From<RespError> for crate::error::Error {
    fn from(e: RespError) -> Self {
        match e {
            RespError::Syntax(s) => crate::error::Error::Protocol(format!("RESP: {s}")),
            RespError::Limit(s) => crate::error::Error::Limit(format!("RESP: {s}")),
        }
    }
}

/// Why a parse stopped short.
enum Stop {
    /// More input is needed: at least this many bytes in total, from the reply's start.
    Incomplete(usize),
    /// The input is bad.
    Bad(RespError),
}

type Step<T> = std::result::Result<T, Stop>;

fn syntax(what: &str, at: &[u8]) -> Stop {
    Stop::Bad(RespError::Syntax(format!("{what} at {}", excerpt(at))))
}

fn limit(what: String) -> Stop {
    Stop::Bad(RespError::Limit(what))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Cursor<'a> {
    /// A line without its CRLF. CR and LF may appear only as the terminating pair.
    fn line(&mut self) -> Step<&'a [u8]> {
        let max = self.limits.max_line_len;
        let rest = &self.buf[self.pos..];
        let scan = &rest[..rest.len().min(max.saturating_add(2))];
        match scan.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(i) if scan[i] == b'\n' => Err(syntax("LF without CR", &rest[..i + 1])),
            Some(i) if i > max => Err(limit(format!("a line longer than {max} bytes"))),
            Some(i) => match rest.get(i + 1) {
                None => Err(Stop::Incomplete(self.pos + i + 2)),
                Some(b'\n') => {
                    self.pos += i + 2;
                    Ok(&rest[..i])
                }
                Some(_) => Err(syntax("CR without LF", &rest[..i + 2])),
            },
            None if rest.len() > max => Err(limit(format!("a line longer than {max} bytes"))),
            None => Err(Stop::Incomplete(self.buf.len() + 1)),
        }
    }

    /// A length header: `-1` (null) or a decimal count.
    fn length(&mut self) -> Step<Option<usize>> {
        let line = self.line()?;
        if line == b"-1" {
            return Ok(None);
        }
        if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
            return Err(syntax("bad length", line));
        }
        // At most 19 digits: fits in a u64 and, on 64-bit targets, in usize.
        let n = line.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        usize::try_from(n)
            .map(Some)
            .map_err(|_| syntax("bad length", line))
    }

    fn value(&mut self, depth: usize) -> Step<Value> {
        let Some(&kind) = self.buf.get(self.pos) else {
            return Err(Stop::Incomplete(self.pos + 1));
        };
        self.pos += 1;
        match kind {
            b'+' => Ok(Value::Simple(self.line()?.to_vec())),
            b'-' => Ok(Value::Error(self.line()?.to_vec())),
            b':' => {
                let line = self.line()?;
                parse_i64(line)
                    .map(Value::Integer)
                    .ok_or_else(|| syntax("bad integer", line))
            }
            b'_' => {
                let line = self.line()?;
                if line.is_empty() {
                    Ok(Value::Null)
                } else {
                    Err(syntax("junk after '_'", line))
                }
            }
            b'$' => {
                let Some(len) = self.length()? else {
                    return Ok(Value::Null);
                };
                let max = self.limits.max_bulk_len;
                if len > max {
                    return Err(limit(format!("a bulk string of {len} bytes (limit {max})")));
                }
                let end = self.pos + len;
                if self.buf.len() < end + 2 {
                    return Err(Stop::Incomplete(end + 2));
                }
                if &self.buf[end..end + 2] != b"\r\n" {
                    return Err(syntax(
                        "bulk string not followed by CRLF",
                        &self.buf[end..end + 2],
                    ));
                }
                let data = self.buf[self.pos..end].to_vec();
                self.pos = end + 2;
                Ok(Value::Bulk(data))
            }
            b'*' | b'>' => {
                let at = self.pos;
                let len = match self.length()? {
                    Some(len) => len,
                    None if kind == b'*' => return Ok(Value::Null),
                    None => return Err(syntax("a push frame of length -1", &self.buf[at..])),
                };
                let max = self.limits.max_array_len;
                if len > max {
                    return Err(limit(format!("an array of {len} elements (limit {max})")));
                }
                let max_depth = self.limits.max_depth;
                if depth >= max_depth {
                    return Err(limit(format!("arrays nested deeper than {max_depth}")));
                }
                // Grown as elements arrive: the announced length costs nothing up front.
                let mut items = Vec::with_capacity(len.min(16));
                for _ in 0..len {
                    items.push(self.value(depth + 1)?);
                }
                Ok(if kind == b'*' {
                    Value::Array(items)
                } else {
                    Value::Push(items)
                })
            }
            _ => Err(syntax(
                "unknown type byte",
                &self.buf[self.pos - 1..(self.pos + 15).min(self.buf.len())],
            )),
        }
    }
}

/// `-?[0-9]+` as an i64, refusing overflow, `+`, spaces and empty input.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Accumulated with the sign, so that i64::MIN (which has no positive twin) parses.
    digits.iter().try_fold(0i64, |n, &d| {
        let d = i64::from(d - b'0');
        let n = n.checked_mul(10)?;
        if neg {
            n.checked_sub(d)
        } else {
            n.checked_add(d)
        }
    })
}

/// Parses at most one reply from the start of `input`.
///
/// `Ok(Some((value, consumed)))` for a whole reply; `Ok(None)` when `input` is a proper
/// prefix of a reply (nothing is consumed: call again with more bytes); `Err` when
/// `input` cannot begin a reply this parser accepts, or breaks one of the `limits`.
pub fn parse(input: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    match parse_step(input, limits) {
        Ok(done) => Ok(Some(done)),
        Err(Stop::Incomplete(_)) => Ok(None),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse_step(input: &[u8], limits: &Limits) -> Step<(Value, usize)> {
    let mut c = Cursor {
        buf: input,
        pos: 0,
        limits,
    };
    let too_long = |n: usize| {
        limit(format!(
            "a reply of {n} bytes or more (limit {})",
            limits.max_frame_len
        ))
    };
    match c.value(0) {
        Ok(_) if c.pos > limits.max_frame_len => Err(too_long(c.pos)),
        Ok(v) => Ok((v, c.pos)),
        Err(Stop::Incomplete(need)) if need > limits.max_frame_len => Err(too_long(need)),
        Err(e) => Err(e),
    }
}

/// Replies parsed from a byte stream received in pieces of any size.
///
/// ```
/// use wsserver::broker::resp::{Decoder, Limits, Value};
/// let mut d = Decoder::new(Limits::default());
/// d.feed(b"+OK\r\n:4");
/// assert_eq!(d.next_value().unwrap(), Some(Value::Simple(b"OK".to_vec())));
/// assert_eq!(d.next_value().unwrap(), None); // ":4" waits for its CRLF
/// d.feed(b"2\r\n");
/// assert_eq!(d.next_value().unwrap(), Some(Value::Integer(42)));
/// ```
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed.
    start: usize,
    /// The unparsed bytes must reach this length before a parse can succeed.
    need: usize,
    limits: Limits,
}

/// A buffer this large is released once emptied, so that an idle link does not keep the
/// memory of its largest message.
const KEEP_CAPACITY: usize = 64 << 10;

impl Decoder {
    /// An empty decoder.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            need: 0,
            limits,
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends received bytes. Call [`Decoder::next_value`] until it returns `Ok(None)` after
    /// each feed: then at most one incomplete reply (bounded by `max_frame_len`) plus one
    /// feed's bytes are buffered.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole reply, `Ok(None)` when more bytes are needed. After an error the
    /// stream cannot be resynchronised: [`Decoder::clear`] it with its connection.
    pub fn next_value(&mut self) -> Result<Option<Value>, RespError> {
        let avail = self.buf.len() - self.start;
        if avail == 0 || avail < self.need {
            return Ok(None);
        }
        match parse_step(&self.buf[self.start..], &self.limits) {
            Ok((v, n)) => {
                self.start += n;
                self.need = 0;
                if self.start == self.buf.len() {
                    self.start = 0;
                    if self.buf.capacity() > KEEP_CAPACITY {
                        self.buf = Vec::new();
                    } else {
                        self.buf.clear();
                    }
                }
                Ok(Some(v))
            }
            Err(Stop::Incomplete(need)) => {
                self.need = need;
                Ok(None)
            }
            Err(Stop::Bad(e)) => Err(e),
        }
    }

    /// Bytes received and not yet returned as replies.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Forgets everything buffered (for a new connection) and releases the memory.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.need = 0;
    }
}

/// Appends a decimal number.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends an array header, `*n\r\n`: a command of `n` arguments follows.
pub fn push_array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string made of the concatenation of `parts` (so that a channel
/// `prefix + topic` or an `envelope + payload` is written without a temporary).
pub fn push_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + 24);
    out.push(b'$');
    push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a command: an array of bulk strings, the form Redis expects from clients.
///
/// ```
/// let mut out = Vec::new();
/// wsserver::broker::resp::encode_command(&mut out, &[b"PING"]);
/// assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
/// ```
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_array_header(out, args.len());
    for a in args {
        push_bulk(out, &[a]);
    }
}

/// The bytes a command takes once encoded (to check a buffer limit before encoding).
pub fn command_len(args: &[usize]) -> usize {
    fn digits(mut n: usize) -> usize {
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    }
    3 + digits(args.len()) + args.iter().map(|&a| a + digits(a) + 5).sum::<usize>()
}

/// Appends any value (tests, fuzzing, a fake server). Simple strings and errors must not
/// contain CR or LF: the encoding would not parse back.
pub fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Simple(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Value::Error(s) => {
            out.push(b'-');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Value::Integer(n) => {
            out.push(b':');
            if *n < 0 {
                out.push(b'-');
            }
            push_decimal(out, n.unsigned_abs());
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(b) => push_bulk(out, &[b]),
        Value::Null => out.extend_from_slice(b"$-1\r\n"),
        Value::Array(items) | Value::Push(items) => {
            out.push(if matches!(v, Value::Array(_)) {
                b'*'
            } else {
                b'>'
            });
            push_decimal(out, items.len() as u64);
            out.extend_from_slice(b"\r\n");
            for i in items {
                encode(out, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn one(input: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
        parse(input, &lim())
    }

    fn bulk(s: &[u8]) -> Value {
        Value::Bulk(s.to_vec())
    }

    /// Replies of every kind, as a server sends them.
    fn samples() -> Vec<(&'static [u8], Value)> {
        vec![
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (b"+\r\n", Value::Simple(Vec::new())),
            (
                b"-WRONGPASS invalid username-password pair\r\n",
                Value::Error(b"WRONGPASS invalid username-password pair".to_vec()),
            ),
            (b":0\r\n", Value::Integer(0)),
            (b":-42\r\n", Value::Integer(-42)),
            (b":9223372036854775807\r\n", Value::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Value::Integer(i64::MIN)),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$5\r\na\r\nb\0\r\n", bulk(b"a\r\nb\0")),
            (b"$-1\r\n", Value::Null),
            (b"*-1\r\n", Value::Null),
            (b"_\r\n", Value::Null),
            (b"*0\r\n", Value::Array(vec![])),
            (
                b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$2\r\nhi\r\n",
                Value::Array(vec![bulk(b"message"), bulk(b"room"), bulk(b"hi")]),
            ),
            (
                b">3\r\n$9\r\nsubscribe\r\n$1\r\nt\r\n:1\r\n",
                Value::Push(vec![bulk(b"subscribe"), bulk(b"t"), Value::Integer(1)]),
            ),
            (
                b"*2\r\n*1\r\n:1\r\n*2\r\n$-1\r\n+x\r\n",
                Value::Array(vec![
                    Value::Array(vec![Value::Integer(1)]),
                    Value::Array(vec![Value::Null, Value::Simple(b"x".to_vec())]),
                ]),
            ),
        ]
    }

    #[test]
    fn parses_every_kind() {
        for (wire, want) in samples() {
            assert_eq!(one(wire).unwrap(), Some((want, wire.len())), "{wire:?}");
        }
    }

    #[test]
    fn incomplete_input_consumes_nothing_at_every_split_point() {
        for (wire, want) in samples() {
            for cut in 0..wire.len() {
                assert_eq!(one(&wire[..cut]).unwrap(), None, "{wire:?} cut at {cut}");
            }
            // A decoder fed in two pieces, split anywhere, yields the same reply once.
            for cut in 0..=wire.len() {
                let mut d = Decoder::new(lim());
                d.feed(&wire[..cut]);
                let mut got = Vec::new();
                while let Some(v) = d.next_value().unwrap() {
                    got.push(v);
                }
                d.feed(&wire[cut..]);
                while let Some(v) = d.next_value().unwrap() {
                    got.push(v);
                }
                assert_eq!(got, vec![want.clone()], "{wire:?} split at {cut}");
                assert_eq!(d.buffered(), 0);
            }
        }
    }

    #[test]
    fn a_stream_of_replies_parses_the_same_fed_a_byte_at_a_time() {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (w, v) in samples() {
            wire.extend_from_slice(w);
            want.push(v);
        }
        for step in [1, 2, 3, 7, 64, wire.len()] {
            let mut d = Decoder::new(lim());
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                d.feed(chunk);
                while let Some(v) = d.next_value().unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got, want, "chunks of {step}");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"?\r\n"[..],
            b"+OK\n",
            b"+O\rK\r\n",
            b"+OK\r\r\n",
            b":\r\n",
            b":+1\r\n",
            b":1 \r\n",
            b":9223372036854775808\r\n",
            b":-9223372036854775809\r\n",
            b":12345678901234567890\r\n",
            b"$-2\r\n",
            b"$x\r\n",
            b"$\r\n",
            b"$3\r\nabcd\r\n",
            b"$3\r\nabc\n\n",
            b"*-2\r\n",
            b"*1x\r\n",
            b">-1\r\n",
            b"_x\r\n",
            b"%1\r\n+a\r\n+b\r\n",
            b"*2\r\n:1\r\n?\r\n",
        ] {
            assert!(
                matches!(one(bad), Err(RespError::Syntax(_))),
                "{bad:?}: {:?}",
                one(bad)
            );
        }
    }

    #[test]
    fn errors_quote_a_short_excerpt() {
        let mut bad = b"*1\r\n".to_vec();
        bad.push(b'?');
        bad.extend(std::iter::repeat_n(b'x', 100_000));
        let e = one(&bad).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn a_huge_bulk_is_refused_from_its_header_alone() {
        let l = Limits {
            max_bulk_len: 100,
            ..lim()
        };
        assert!(parse(b"$100\r\n", &l).unwrap().is_none());
        assert!(matches!(parse(b"$101\r\n", &l), Err(RespError::Limit(_))));
        assert!(matches!(
            one(b"$9999999999999999999\r\n"),
            Err(RespError::Limit(_))
        ));
        // Twenty digits do not even fit a u64: malformed.
        assert!(one(b"$99999999999999999999\r\n").is_err());
    }

    #[test]
    fn long_and_deep_arrays_are_refused() {
        let l = Limits {
            max_array_len: 3,
            max_depth: 2,
            ..lim()
        };
        assert!(parse(b"*3\r\n", &l).unwrap().is_none());
        assert!(matches!(parse(b"*4\r\n", &l), Err(RespError::Limit(_))));
        assert!(matches!(parse(b">4\r\n", &l), Err(RespError::Limit(_))));
        assert!(parse(b"*1\r\n*1\r\n:1\r\n", &l).unwrap().is_some());
        assert!(matches!(
            parse(b"*1\r\n*1\r\n*1\r\n:1\r\n", &l),
            Err(RespError::Limit(_))
        ));
        // A server sending a million nested arrays gets an error, not our stack.
        let deep = b"*1\r\n".repeat(1_000_000);
        assert!(matches!(one(&deep), Err(RespError::Limit(_))));
        // An announced 2^31 elements allocate nothing up front.
        let l = Limits {
            max_array_len: usize::MAX,
            ..lim()
        };
        assert!(parse(b"*2147483648\r\n:1\r\n", &l).unwrap().is_none());
    }

    #[test]
    fn long_lines_are_refused_without_their_end() {
        let l = Limits {
            max_line_len: 8,
            ..lim()
        };
        assert!(parse(b"+12345678\r\n", &l).unwrap().is_some());
        assert!(parse(b"+12345678", &l).unwrap().is_none());
        assert!(parse(b"+12345678\r", &l).unwrap().is_none());
        assert!(matches!(parse(b"+123456789", &l), Err(RespError::Limit(_))));
        assert!(matches!(
            parse(b"+123456789\r\n", &l),
            Err(RespError::Limit(_))
        ));
        assert!(matches!(
            parse(&[b'-'; 1 << 20], &l),
            Err(RespError::Limit(_))
        ));
    }

    #[test]
    fn a_decoder_buffers_at_most_one_frame() {
        let l = Limits {
            max_frame_len: 64,
            ..lim()
        };
        let mut d = Decoder::new(l);
        // Many small bulks in one array: each fits, the whole does not (6 + 8 * 7 bytes
        // still may be followed by a 64th; a ninth bulk makes 69).
        d.feed(b"*100\r\n");
        assert_eq!(d.next_value().unwrap(), None);
        for _ in 0..8 {
            d.feed(b"$1\r\nx\r\n");
            assert_eq!(d.next_value().unwrap(), None);
        }
        d.feed(b"$1\r\nx\r\n");
        assert!(matches!(d.next_value(), Err(RespError::Limit(_))));
        // A bulk announcing more than the frame limit fails from its header.
        let mut d = Decoder::new(l);
        d.feed(b"$100\r\n");
        assert!(matches!(d.next_value(), Err(RespError::Limit(_))));
        // A complete frame over the limit too, even when it arrives in one piece.
        let mut d = Decoder::new(l);
        d.feed(&[b"$60\r\n".as_slice(), &[b'a'; 60], b"\r\n"].concat());
        assert!(matches!(d.next_value(), Err(RespError::Limit(_))));
    }

    #[test]
    fn a_big_bulk_in_small_pieces_is_parsed_once() {
        let mut d = Decoder::new(lim());
        let payload = vec![7u8; 1 << 20];
        let mut wire = Vec::new();
        push_bulk(&mut wire, &[&payload]);
        for chunk in wire.chunks(1000) {
            d.feed(chunk);
            if let Some(v) = d.next_value().unwrap() {
                assert_eq!(v, Value::Bulk(payload.clone()));
                assert_eq!(d.buffered(), 0);
                return;
            }
            // After the header, the decoder knows the size it waits for.
            assert!(d.need == 0 || d.need == wire.len(), "{}", d.need);
        }
        panic!("never complete");
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"AUTH", b"al ice", b"p\r\nw"]);
        assert_eq!(
            out,
            b"*3\r\n$4\r\nAUTH\r\n$6\r\nal ice\r\n$4\r\np\r\nw\r\n".as_slice()
        );
        assert_eq!(command_len(&[4, 6, 4]), out.len());
        let mut out = Vec::new();
        push_array_header(&mut out, 1);
        push_bulk(&mut out, &[b"pre:", b"", b"topic"]);
        assert_eq!(out, b"*1\r\n$9\r\npre:topic\r\n".as_slice());
        for n in [0usize, 9, 10, 99, 100, 12345] {
            let arg = vec![b'a'; n];
            let args: Vec<&[u8]> = vec![&arg; n % 13];
            let mut out = Vec::new();
            encode_command(&mut out, &args);
            let lens: Vec<usize> = args.iter().map(|a| a.len()).collect();
            assert_eq!(command_len(&lens), out.len());
        }
    }

    #[test]
    fn values_round_trip_through_the_encoder() {
        for (wire, v) in samples() {
            let mut out = Vec::new();
            encode(&mut out, &v);
            let (back, n) = one(&out).unwrap().unwrap();
            assert_eq!(n, out.len());
            // `*-1` and `_` come back as the `$-1` null: the same value.
            assert_eq!(back, v, "{wire:?}");
        }
    }
}
