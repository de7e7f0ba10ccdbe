//! loadgen: the WebSocket load generator of the libwsserver benchmark.
//!
//!   loadgen echo --port P [--conns 100] [--depth 1] [--size 16] [--text] [--deflate]
//!                [--warmup 1] [--duration 5] [--threads 1] [--pid PID[,PID..]]
//!                [--connect-concurrency 64] [--allow-masked] [--path /]
//!   loadgen idle --port P [--conns 10000] [--pid PID[,PID..]] [--hold 1]
//!                [--connect-concurrency 256] [--timeout 60]
//!
//! echo: N connections, D messages in flight on each, messages of S bytes (binary, or
//! ASCII text with --text). Every echoed message is checked: opcode, length, and content
//! (the first 8 bytes carry a per-connection sequence number, so a lost, repeated or
//! reordered echo is caught; the rest is compared byte for byte). With --deflate the
//! handshake offers permessage-deflate; when the server accepts, messages are sent
//! compressed and replies are decompressed (compressed or not) before the check.
//! Reports messages/s over the measured window (after the warm-up), round-trip times
//! (p50/p99/max), and the server's CPU time per message: utime+stime from
//! /proc/PID/stat of the given PIDs over the same window.
//!
//! idle: opens and upgrades N connections (at most --connect-concurrency handshakes
//! pending at once), reports the time to upgrade them all and the server's VmRSS growth
//! per connection (from /proc/PID/status, before and one second after), holds them for
//! --hold seconds, and closes them.
//!
//! Output: one JSON object on stdout; a human summary on stderr. Exit 0 only when every
//! connection was upgraded and every echo was valid. Every phase is bounded in time.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TAG: usize = 8;

// ------------------------------------------------------------------------------------
// Options

#[derive(Clone, Debug)]
struct Opts {
    mode: String,
    host: String,
    port: u16,
    path: String,
    conns: usize,
    depth: usize,
    size: usize,
    text: bool,
    deflate: bool,
    warmup: f64,
    duration: f64,
    threads: usize,
    pids: Vec<u32>,
    concurrency: usize,
    allow_masked: bool,
    hold: f64,
    timeout: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen echo --port P [--conns N] [--depth D] [--size S] [--text] [--deflate] \
         [--warmup SEC] [--duration SEC] [--threads T] [--pid PID[,PID]] [--connect-concurrency C] \
         [--allow-masked] [--host H] [--path /]\n       loadgen idle --port P [--conns N] [--pid PID] \
         [--hold SEC] [--connect-concurrency C] [--timeout SEC]"
    );
    std::process::exit(2)
}

fn parse_size(s: &str) -> usize {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("KiB").or(s.strip_suffix('K')).or(s.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix("MiB").or(s.strip_suffix('M')) {
        (n, 1024 * 1024)
    } else {
        (s.strip_suffix('B').unwrap_or(s), 1)
    };
    num.parse::<usize>().unwrap_or_else(|_| usage()) * mul
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    if mode != "echo" && mode != "idle" {
        usage()
    }
    let mut o = Opts {
        mode: mode.clone(),
        host: "127.0.0.1".into(),
        port: 0,
        path: "/".into(),
        conns: if mode == "idle" { 10_000 } else { 100 },
        depth: 1,
        size: 16,
        text: false,
        deflate: false,
        warmup: 1.0,
        duration: 5.0,
        threads: 1,
        pids: vec![],
        concurrency: if mode == "idle" { 256 } else { 64 },
        allow_masked: false,
        hold: 1.0,
        timeout: 60.0,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--host" => o.host = val(),
            "--port" => o.port = val().parse().unwrap_or_else(|_| usage()),
            "--path" => o.path = val(),
            "--conns" => o.conns = val().parse().unwrap_or_else(|_| usage()),
            "--depth" => o.depth = val().parse().unwrap_or_else(|_| usage()),
            "--size" => o.size = parse_size(&val()),
            "--text" => o.text = true,
            "--binary" => o.text = false,
            "--deflate" => o.deflate = true,
            "--warmup" => o.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => o.duration = val().parse().unwrap_or_else(|_| usage()),
            "--threads" => o.threads = val().parse().unwrap_or_else(|_| usage()),
            "--pid" => {
                o.pids = val().split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or_else(|_| usage())).collect()
            }
            "--connect-concurrency" => o.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--allow-masked" => o.allow_masked = true,
            "--hold" => o.hold = val().parse().unwrap_or_else(|_| usage()),
            "--timeout" => o.timeout = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if o.port == 0 || o.conns == 0 || o.depth == 0 || o.threads == 0 || o.concurrency == 0 {
        usage()
    }
    o.threads = o.threads.min(o.conns);
    o
}

// ------------------------------------------------------------------------------------
// /proc sampling

fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime of a process (all its threads), in seconds.
fn proc_cpu(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clk_tck())
}

fn pids_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut t = 0.0;
    for p in pids {
        t += proc_cpu(&p.to_string())?;
    }
    Some(t)
}

/// VmRSS of the processes, in KiB.
fn pids_rss(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut t = 0.0;
    for p in pids {
        let s = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        t += line.split_whitespace().nth(1)?.parse::<f64>().ok()?;
    }
    Some(t)
}

fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            return r.rlim_cur as u64;
        }
    }
    0
}

// ------------------------------------------------------------------------------------
// Payloads and frames

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A text-like payload (ASCII words): valid UTF-8 and compressible about as much as
/// chat or JSON traffic, so that permessage-deflate does real work.
fn make_pattern(size: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "socket", "frame", "server", "\"id\":",
        "{\"type\":", "\"msg\"", "echo", "message", "connection", "1234", "9876", "bench", "alpha", "omega", ",",
    ];
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(size + 16);
    while v.len() < size {
        let r = rng.next();
        if r % 5 == 0 {
            // some noise so that the text is not trivially compressible
            let n = (r >> 8) % 8 + 1;
            for i in 0..n {
                v.push(b'a' + ((r >> (16 + 3 * i)) % 26) as u8);
            }
        } else {
            v.extend_from_slice(WORDS[((r >> 8) % WORDS.len() as u64) as usize].as_bytes());
        }
        v.push(b' ');
    }
    v.truncate(size);
    v
}

fn tag_of(seq: u32) -> [u8; TAG] {
    let mut t = [0u8; TAG];
    for (i, b) in t.iter_mut().enumerate() {
        *b = b'a' + ((seq >> (4 * i)) & 15) as u8;
    }
    t
}

fn mask_in_place(data: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask) as u64;
    let m64 = m32 | (m32 << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    for (i, b) in rem.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn frame_header(out: &mut Vec<u8>, b0: u8, len: usize, mask: [u8; 4]) {
    out.push(b0);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
}

// ------------------------------------------------------------------------------------
// Connections

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum St {
    Connecting,
    Handshake,
    Open,
    Closing,
    Done,
}

struct Deflate {
    c: Compress,
    d: Decompress,
    reset_each: bool,
}

struct Conn {
    sock: TcpStream,
    st: St,
    rbuf: Vec<u8>,
    rlen: usize,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    sent: VecDeque<Instant>,
    send_seq: u32,
    recv_seq: u32,
    accept: String,
    deflate: Option<Deflate>,
    frag: Vec<u8>,
    frag_op: u8,
    frag_rsv1: bool,
    in_frag: bool,
}

struct Shared {
    pattern: Vec<u8>,
    template: Vec<u8>, // a whole masked frame for the uncompressed path
    hdr_len: usize,
    mask: [u8; 4],
    opcode: u8,
}

#[derive(Default)]
struct Stats {
    measured: u64,
    total: u64,
    errors: u64,
    first_errors: Vec<String>,
    upgraded: usize,
    failed_conns: usize,
    deflate_negotiated: usize,
    compressed_replies: u64,
    undrained: usize,
    hist: Option<Histogram<u64>>,
}

impl Stats {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }
}

fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn find_crlf2(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

struct Worker {
    o: Opts,
    sh: Shared,
    conns: Vec<Conn>,
    poll: Poll,
    st: Stats,
    scratch: Vec<u8>,
    dscratch: Vec<u8>,
    sending: bool,
    meas: Option<(Instant, Instant)>,
    pending: usize,   // handshakes in progress
    next_conn: usize, // next connection to start
    nconns: usize,
    addr: SocketAddr,
    rng: Rng,
}

impl Worker {
    fn new(o: &Opts, nconns: usize, seed: u64) -> io::Result<Worker> {
        let addr: SocketAddr = format!("{}:{}", o.host, o.port).parse().map_err(|_| io::Error::other("bad host"))?;
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let r = rng.next();
        let mask = [(r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8, (r >> 32) as u8];
        let pattern = make_pattern(o.size, 0xC0FFEE);
        let opcode = if o.text { 1 } else { 2 };
        let mut template = Vec::with_capacity(o.size + 14);
        frame_header(&mut template, 0x80 | opcode, o.size, mask);
        let hdr_len = template.len();
        template.extend_from_slice(&pattern);
        mask_in_place(&mut template[hdr_len..], mask);
        Ok(Worker {
            o: o.clone(),
            sh: Shared { pattern, template, hdr_len, mask, opcode },
            conns: Vec::with_capacity(nconns),
            poll: Poll::new()?,
            st: Stats { hist: Some(Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()), ..Default::default() },
            scratch: Vec::new(),
            dscratch: Vec::new(),
            sending: false,
            meas: None,
            pending: 0,
            next_conn: 0,
            nconns,
            addr,
            rng,
        })
    }

    fn start_connects(&mut self) {
        while self.next_conn < self.nconns && self.pending < self.o.concurrency {
            self.next_conn += 1;
            let i = self.conns.len(); // tokens index `conns`; a failed connect takes none
            match TcpStream::connect(self.addr) {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    if let Err(e) = self.poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                    {
                        self.st.failed_conns += 1;
                        self.st.error(format!("register: {e}"));
                        continue;
                    }
                    let mut kb = [0u8; 16];
                    for c in kb.chunks_mut(8) {
                        c.copy_from_slice(&self.rng.next().to_ne_bytes());
                    }
                    let key = base64::engine::general_purpose::STANDARD.encode(kb);
                    let ext = if self.o.deflate { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" };
                    let req = format!(
                        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
                        self.o.path, self.o.host, self.o.port, key, ext
                    );
                    let rcap = if self.o.mode == "idle" { 512 } else { (2 * self.o.size + 64).max(64 * 1024) };
                    self.conns.push(Conn {
                        sock: s,
                        st: St::Connecting,
                        rbuf: vec![0u8; rcap],
                        rlen: 0,
                        rpos: 0,
                        wbuf: req.into_bytes(),
                        wpos: 0,
                        sent: VecDeque::with_capacity(self.o.depth),
                        send_seq: 0,
                        recv_seq: 0,
                        accept: accept_key(&key),
                        deflate: None,
                        frag: Vec::new(),
                        frag_op: 0,
                        frag_rsv1: false,
                        in_frag: false,
                    });
                    self.pending += 1;
                }
                Err(e) => {
                    self.st.failed_conns += 1;
                    self.st.error(format!("connect: {e}"));
                }
            }
        }
    }

    fn all_settled(&self) -> bool {
        self.next_conn >= self.nconns && self.pending == 0
    }

    /// Runs the event loop until `until` returns true or the deadline passes.
    fn run(&mut self, deadline: Instant, until: &dyn Fn(&Worker) -> bool) {
        let mut events = Events::with_capacity(1024);
        loop {
            if until(self) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let mut timeout = deadline - now;
            if let Some((a, b)) = self.meas {
                for t in [a, b] {
                    if t > now && t - now < timeout {
                        timeout = t - now;
                    }
                }
            }
            timeout = timeout.min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.st.error(format!("poll: {e}"));
                return;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                self.service(i);
            }
            if self.o.mode == "idle" || self.next_conn < self.nconns {
                self.start_connects();
            }
        }
    }

    fn fail_conn(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.st == St::Done {
            return;
        }
        let was = c.st;
        c.st = St::Done;
        let _ = self.poll.registry().deregister(&mut c.sock);
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
        if matches!(was, St::Connecting | St::Handshake) {
            self.pending -= 1;
            self.st.failed_conns += 1;
        }
        if was != St::Closing {
            self.st.error(format!("conn {i}: {why}"));
        }
    }

    fn service(&mut self, i: usize) {
        if i >= self.conns.len() || self.conns[i].st == St::Done {
            return;
        }
        if self.conns[i].st == St::Connecting {
            let c = &mut self.conns[i];
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail_conn(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match c.sock.peer_addr() {
                Ok(_) => c.st = St::Handshake,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail_conn(i, format!("connect: {e}")),
            }
        }
        if let Err(e) = self.flush(i) {
            return self.fail_conn(i, format!("write: {e}"));
        }
        // read until WouldBlock
        loop {
            let c = &mut self.conns[i];
            if c.st == St::Done {
                return;
            }
            if c.rlen == c.rbuf.len() {
                if c.rpos > 0 {
                    c.rbuf.copy_within(c.rpos..c.rlen, 0);
                    c.rlen -= c.rpos;
                    c.rpos = 0;
                } else {
                    let n = c.rbuf.len() * 2;
                    c.rbuf.resize(n, 0);
                }
            }
            let r = c.sock.read(&mut c.rbuf[c.rlen..]);
            match r {
                Ok(0) => {
                    let st = c.st;
                    if st == St::Closing {
                        c.st = St::Done;
                        let _ = self.poll.registry().deregister(&mut self.conns[i].sock);
                        return;
                    }
                    return self.fail_conn(i, "closed by the server".into());
                }
                Ok(n) => {
                    let space = c.rbuf.len() - c.rlen;
                    c.rlen += n;
                    let now = Instant::now();
                    if let Err(e) = self.process(i, now) {
                        return self.fail_conn(i, e);
                    }
                    // A short read drained the socket: with edge-triggered readiness, data
                    // that arrives later raises a new event, so the read that would only
                    // say EAGAIN is saved (one syscall per message at depth 1).
                    if n < space {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.conns[i].st == St::Closing {
                        self.conns[i].st = St::Done;
                        let _ = self.poll.registry().deregister(&mut self.conns[i].sock);
                        return;
                    }
                    return self.fail_conn(i, format!("read: {e}"));
                }
            }
        }
        if let Err(e) = self.flush(i) {
            self.fail_conn(i, format!("write: {e}"));
        }
    }

    fn flush(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        if c.st == St::Connecting || c.st == St::Done {
            return Ok(());
        }
        while c.wpos < c.wbuf.len() {
            match c.sock.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        } else if c.wpos > (1 << 20) && c.wpos * 2 > c.wbuf.len() {
            c.wbuf.drain(..c.wpos);
            c.wpos = 0;
        }
        Ok(())
    }

    /// Parses what was read: the handshake response, then frames.
    fn process(&mut self, i: usize, now: Instant) -> Result<(), String> {
        if self.conns[i].st == St::Handshake {
            let c = &mut self.conns[i];
            let Some(end) = find_crlf2(&c.rbuf[c.rpos..c.rlen]) else {
                if c.rlen > 16 * 1024 {
                    return Err("handshake response too long".into());
                }
                return Ok(());
            };
            let head = String::from_utf8_lossy(&c.rbuf[c.rpos..c.rpos + end]).into_owned();
            c.rpos += end + 4;
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap_or("");
            if !status.starts_with("HTTP/1.1 101") {
                return Err(format!("handshake: {status}"));
            }
            let mut accept_ok = false;
            let mut pmd = None;
            for l in lines {
                let Some((k, v)) = l.split_once(':') else { continue };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "sec-websocket-accept" && v == c.accept {
                    accept_ok = true;
                }
                if k == "sec-websocket-extensions" && v.to_ascii_lowercase().contains("permessage-deflate") {
                    pmd = Some(v.to_ascii_lowercase());
                }
            }
            if !accept_ok {
                return Err("handshake: bad Sec-WebSocket-Accept".into());
            }
            if let Some(p) = pmd {
                if !self.o.deflate {
                    return Err("server negotiated permessage-deflate that was not offered".into());
                }
                c.deflate = Some(Deflate {
                    c: Compress::new(Compression::fast(), false),
                    d: Decompress::new(false),
                    reset_each: p.contains("client_no_context_takeover"),
                });
                self.st.deflate_negotiated += 1;
            }
            c.st = St::Open;
            self.pending -= 1;
            self.st.upgraded += 1;
            if self.sending {
                self.fill(i, now);
            }
        }
        // frames
        loop {
            let c = &mut self.conns[i];
            let avail = &c.rbuf[c.rpos..c.rlen];
            if avail.len() < 2 {
                break;
            }
            let b0 = avail[0];
            let b1 = avail[1];
            let masked = b1 & 0x80 != 0;
            let mut hl = 2usize;
            let mut len = (b1 & 0x7f) as usize;
            if len == 126 {
                if avail.len() < 4 {
                    break;
                }
                len = u16::from_be_bytes([avail[2], avail[3]]) as usize;
                hl = 4;
            } else if len == 127 {
                if avail.len() < 10 {
                    break;
                }
                len = u64::from_be_bytes(avail[2..10].try_into().unwrap()) as usize;
                hl = 10;
            }
            let mut mkey = [0u8; 4];
            if masked {
                if !self.o.allow_masked {
                    return Err("masked frame from the server".into());
                }
                if avail.len() < hl + 4 {
                    break;
                }
                mkey.copy_from_slice(&avail[hl..hl + 4]);
                hl += 4;
            }
            if len > (1usize << 30) {
                return Err(format!("frame too long: {len}"));
            }
            if avail.len() < hl + len {
                // make room for the whole frame
                let need = hl + len;
                if c.rbuf.len() - c.rpos < need {
                    c.rbuf.copy_within(c.rpos..c.rlen, 0);
                    c.rlen -= c.rpos;
                    c.rpos = 0;
                    if c.rbuf.len() < need {
                        c.rbuf.resize(need.next_power_of_two(), 0);
                    }
                }
                break;
            }
            let start = c.rpos + hl;
            let end = start + len;
            c.rpos = end;
            if masked {
                mask_in_place(&mut c.rbuf[start..end], mkey);
            }
            let fin = b0 & 0x80 != 0;
            let rsv1 = b0 & 0x40 != 0;
            let op = b0 & 0x0f;
            if b0 & 0x30 != 0 || (rsv1 && c.deflate.is_none()) {
                return Err(format!("unexpected RSV bits: {b0:#x}"));
            }
            match op {
                0x8 => {
                    // close: answer if we did not start it
                    if c.st != St::Closing {
                        return Err(format!("close frame from the server ({len} bytes)"));
                    }
                    c.st = St::Done;
                    let _ = self.poll.registry().deregister(&mut c.sock);
                    return Ok(());
                }
                0x9 => {
                    let payload = c.rbuf[start..end].to_vec();
                    let mut f = Vec::new();
                    frame_header(&mut f, 0x8A, payload.len(), self.sh.mask);
                    let p0 = f.len();
                    f.extend_from_slice(&payload);
                    mask_in_place(&mut f[p0..], self.sh.mask);
                    c.wbuf.extend_from_slice(&f);
                }
                0xA => {}
                0x0 | 0x1 | 0x2 => {
                    if op == 0 {
                        if !c.in_frag {
                            return Err("continuation without a start".into());
                        }
                        let (s, e) = (start, end);
                        let piece = c.rbuf[s..e].to_vec();
                        c.frag.extend_from_slice(&piece);
                        if fin {
                            c.in_frag = false;
                            let data = std::mem::take(&mut c.frag);
                            let (fop, frsv) = (c.frag_op, c.frag_rsv1);
                            self.message(i, fop, frsv, None, Some(&data), now)?;
                        }
                    } else if c.in_frag {
                        return Err("new message inside a fragmented one".into());
                    } else if !fin {
                        c.in_frag = true;
                        c.frag_op = op;
                        c.frag_rsv1 = rsv1;
                        c.frag.clear();
                        let piece = c.rbuf[start..end].to_vec();
                        c.frag.extend_from_slice(&piece);
                    } else {
                        self.message(i, op, rsv1, Some((start, end)), None, now)?;
                    }
                }
                _ => return Err(format!("unknown opcode {op}")),
            }
        }
        let c = &mut self.conns[i];
        if c.rpos == c.rlen {
            c.rpos = 0;
            c.rlen = 0;
        }
        Ok(())
    }

    /// One whole message: check it, record it, and send the next one.
    fn message(
        &mut self,
        i: usize,
        op: u8,
        compressed: bool,
        range: Option<(usize, usize)>,
        owned: Option<&[u8]>,
        now: Instant,
    ) -> Result<(), String> {
        let c = &mut self.conns[i];
        if c.st != St::Open && c.st != St::Closing {
            return Ok(());
        }
        let raw: &[u8] = match (range, owned) {
            (Some((s, e)), _) => &c.rbuf[s..e],
            (None, Some(d)) => d,
            _ => unreachable!(),
        };
        let data: &[u8] = if compressed {
            let d = c.deflate.as_mut().ok_or("compressed reply without permessage-deflate")?;
            self.dscratch.clear();
            self.dscratch.reserve(self.o.size + 64);
            let mut input = Vec::with_capacity(raw.len() + 4);
            input.extend_from_slice(raw);
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut pos = 0usize;
            loop {
                if self.dscratch.capacity() - self.dscratch.len() < 1024 {
                    self.dscratch.reserve(self.dscratch.capacity().max(4096));
                }
                let before_in = d.d.total_in();
                let before_out = self.dscratch.len();
                d.d.decompress_vec(&input[pos..], &mut self.dscratch, FlushDecompress::Sync)
                    .map_err(|e| format!("inflate: {e}"))?;
                pos += (d.d.total_in() - before_in) as usize;
                if d.d.total_in() == before_in && self.dscratch.len() == before_out && pos < input.len() {
                    return Err("inflate: no progress (truncated or corrupt compressed reply)".into());
                }
                if pos >= input.len() && self.dscratch.len() < self.dscratch.capacity() {
                    break;
                }
                if self.dscratch.len() > self.o.size + 1024 {
                    return Err("inflated reply longer than sent".into());
                }
            }
            self.st.compressed_replies += 1;
            &self.dscratch
        } else {
            raw
        };
        // check
        let expect_seq = c.recv_seq;
        if op != self.sh.opcode {
            return Err(format!("opcode {op}, expected {}", self.sh.opcode));
        }
        if data.len() != self.o.size {
            return Err(format!("length {}, expected {}", data.len(), self.o.size));
        }
        let tl = TAG.min(data.len());
        let tag = tag_of(expect_seq);
        if data[..tl] != tag[..tl] {
            return Err(format!("sequence tag mismatch at message {expect_seq}"));
        }
        if data[tl..] != self.sh.pattern[tl..] {
            return Err(format!("content mismatch at message {expect_seq}"));
        }
        c.recv_seq = c.recv_seq.wrapping_add(1);
        let Some(t0) = c.sent.pop_front() else {
            return Err("echo of a message never sent".into());
        };
        self.st.total += 1;
        if let Some((a, b)) = self.meas {
            if now >= a && now < b {
                self.st.measured += 1;
                let ns = now.saturating_duration_since(t0).as_nanos() as u64;
                let _ = self.st.hist.as_mut().unwrap().record(ns.max(1));
            }
        }
        if self.sending {
            self.fill(i, now);
        }
        Ok(())
    }

    /// Tops the connection up to `depth` messages in flight.
    fn fill(&mut self, i: usize, now: Instant) {
        let depth = self.o.depth;
        let c = &mut self.conns[i];
        if c.st != St::Open {
            return;
        }
        while c.sent.len() < depth {
            let seq = c.send_seq;
            c.send_seq = seq.wrapping_add(1);
            let tag = tag_of(seq);
            let tl = TAG.min(self.o.size);
            if let Some(d) = c.deflate.as_mut() {
                // compress a fresh copy of the message
                let mut msg = self.sh.pattern.clone();
                msg[..tl].copy_from_slice(&tag[..tl]);
                if d.reset_each {
                    d.c.reset();
                }
                self.scratch.clear();
                self.scratch.reserve(msg.len() + 64);
                let mut pos = 0usize;
                loop {
                    if self.scratch.capacity() - self.scratch.len() < 64 {
                        self.scratch.reserve(self.scratch.capacity().max(1024));
                    }
                    let bi = d.c.total_in();
                    d.c.compress_vec(&msg[pos..], &mut self.scratch, FlushCompress::Sync).expect("deflate");
                    pos += (d.c.total_in() - bi) as usize;
                    if pos >= msg.len() && self.scratch.len() < self.scratch.capacity() {
                        break;
                    }
                }
                if self.scratch.ends_with(&[0, 0, 0xff, 0xff]) {
                    let n = self.scratch.len() - 4;
                    self.scratch.truncate(n);
                }
                let start = c.wbuf.len();
                frame_header(&mut c.wbuf, 0xC0 | self.sh.opcode, self.scratch.len(), self.sh.mask);
                let p0 = c.wbuf.len();
                c.wbuf.extend_from_slice(&self.scratch);
                mask_in_place(&mut c.wbuf[p0..], self.sh.mask);
                let _ = start;
            } else {
                let p = c.wbuf.len() + self.sh.hdr_len;
                c.wbuf.extend_from_slice(&self.sh.template);
                for k in 0..tl {
                    c.wbuf[p + k] = tag[k] ^ self.sh.mask[k & 3];
                }
            }
            c.sent.push_back(now);
        }
    }

    fn start_sending(&mut self) {
        self.sending = true;
        let now = Instant::now();
        for i in 0..self.conns.len() {
            self.fill(i, now);
            if let Err(e) = self.flush(i) {
                self.fail_conn(i, format!("write: {e}"));
            }
        }
    }

    fn inflight(&self) -> usize {
        self.conns.iter().filter(|c| c.st == St::Open).map(|c| c.sent.len()).sum()
    }

    fn close_all(&mut self, wait: Duration) {
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.st == St::Open {
                c.st = St::Closing;
                let mut f = Vec::new();
                frame_header(&mut f, 0x88, 2, self.sh.mask);
                let p0 = f.len();
                f.extend_from_slice(&1000u16.to_be_bytes());
                mask_in_place(&mut f[p0..], self.sh.mask);
                c.wbuf.extend_from_slice(&f);
                let _ = self.flush(i);
            }
        }
        let deadline = Instant::now() + wait;
        self.run(deadline, &|w| w.conns.iter().all(|c| c.st != St::Closing));
        for c in self.conns.iter_mut() {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
    }
}

// ------------------------------------------------------------------------------------
// Modes

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn self_cpu() -> f64 {
    proc_cpu("self").unwrap_or(0.0)
}

fn echo(o: Opts) -> i32 {
    let n = o.threads;
    let start_barrier = Arc::new(Barrier::new(n + 1));
    let go_barrier = Arc::new(Barrier::new(n + 1));
    let times: Arc<Mutex<Option<(Instant, Instant, Instant)>>> = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    let connect_deadline = Instant::now() + Duration::from_secs_f64(o.timeout.min(30.0));
    for t in 0..n {
        let o = o.clone();
        let nc = o.conns / n + usize::from(t < o.conns % n);
        let (sb, gb, times) = (start_barrier.clone(), go_barrier.clone(), times.clone());
        handles.push(std::thread::spawn(move || {
            let mut w = Worker::new(&o, nc, 1 + t as u64).expect("worker");
            w.start_connects();
            w.run(connect_deadline, &|w| w.all_settled());
            sb.wait();
            gb.wait();
            let (t0, ma, mb) = times.lock().unwrap().unwrap();
            let _ = t0;
            w.meas = Some((ma, mb));
            if w.st.failed_conns == 0 {
                w.start_sending();
                w.run(mb, &|_| false);
                w.sending = false;
                // let in-flight messages come back (bounded)
                // (a slow server may still owe replies then: counted as undrained, not as errors)
                let drain = Instant::now() + Duration::from_secs(5);
                w.run(drain, &|w| w.inflight() == 0);
                w.st.undrained = w.inflight();
            }
            w.close_all(Duration::from_secs(1));
            w.st
        }));
    }
    start_barrier.wait();
    let t0 = Instant::now();
    let ma = t0 + Duration::from_secs_f64(o.warmup);
    let mb = ma + Duration::from_secs_f64(o.duration);
    *times.lock().unwrap() = Some((t0, ma, mb));
    go_barrier.wait();
    std::thread::sleep(ma.saturating_duration_since(Instant::now()));
    let cpu_a = pids_cpu(&o.pids);
    let each_a: Vec<Option<f64>> = o.pids.iter().map(|p| proc_cpu(&p.to_string())).collect();
    let self_a = self_cpu();
    let wall_a = Instant::now();
    std::thread::sleep(mb.saturating_duration_since(Instant::now()));
    let cpu_b = pids_cpu(&o.pids);
    let each_b: Vec<Option<f64>> = o.pids.iter().map(|p| proc_cpu(&p.to_string())).collect();
    let self_b = self_cpu();
    let wall = wall_a.elapsed().as_secs_f64();
    let rss = pids_rss(&o.pids);

    let mut total = Stats { hist: Some(Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()), ..Default::default() };
    for h in handles {
        let s = h.join().expect("thread");
        total.measured += s.measured;
        total.total += s.total;
        total.errors += s.errors;
        total.upgraded += s.upgraded;
        total.failed_conns += s.failed_conns;
        total.deflate_negotiated += s.deflate_negotiated;
        total.compressed_replies += s.compressed_replies;
        total.undrained += s.undrained;
        for e in s.first_errors {
            if total.first_errors.len() < 5 {
                total.first_errors.push(e);
            }
        }
        total.hist.as_mut().unwrap().add(s.hist.as_ref().unwrap()).unwrap();
    }
    let h = total.hist.as_ref().unwrap();
    let rate = total.measured as f64 / o.duration;
    let us = |ns: u64| ns as f64 / 1000.0;
    let (p50, p99, max) = if h.len() > 0 {
        (us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99)), us(h.max()))
    } else {
        (0.0, 0.0, 0.0)
    };
    let server_cpu = match (cpu_a, cpu_b) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let cpu_per_msg_us = server_cpu.filter(|_| total.measured > 0).map(|c| c / total.measured as f64 * 1e6);
    let server_util = server_cpu.map(|c| c / wall);
    let self_util = (self_b - self_a) / wall;
    let each_util: Vec<String> = each_a
        .iter()
        .zip(&each_b)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => format!("{:.3}", (b - a) / wall),
            _ => "null".into(),
        })
        .collect();
    let ok = total.errors == 0 && total.failed_conns == 0 && total.upgraded == o.conns && total.measured > 0;
    let deflate_state = if !o.deflate {
        "off"
    } else if total.deflate_negotiated == total.upgraded && total.upgraded > 0 {
        "on"
    } else if total.deflate_negotiated == 0 {
        "refused"
    } else {
        "partial"
    };
    let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "null".into());
    println!(
        "{{\"mode\":\"echo\",\"ok\":{ok},\"conns\":{},\"depth\":{},\"size\":{},\"text\":{},\"deflate\":\"{deflate_state}\",\
         \"warmup_s\":{},\"duration_s\":{},\"threads\":{},\"msgs\":{},\"msgs_per_s\":{rate:.1},\
         \"rtt_p50_us\":{p50:.1},\"rtt_p99_us\":{p99:.1},\"rtt_max_us\":{max:.1},\
         \"server_cpu_s\":{},\"server_cpu_per_msg_us\":{},\"server_cpu_util\":{},\"server_rss_kib\":{},\
         \"server_cpu_util_each\":[{}],\"loadgen_cpu_util\":{self_util:.3},\"undrained\":{},\"compressed_replies\":{},\"upgraded\":{},\"failed_conns\":{},\"errors\":{},\
         \"first_errors\":[{}]}}",
        o.conns,
        o.depth,
        o.size,
        o.text,
        o.warmup,
        o.duration,
        o.threads,
        total.measured,
        opt(server_cpu, 3),
        opt(cpu_per_msg_us, 3),
        opt(server_util, 3),
        opt(rss, 0),
        each_util.join(","),
        total.undrained,
        total.compressed_replies,
        total.upgraded,
        total.failed_conns,
        total.errors,
        total.first_errors.iter().map(|e| json_str(e)).collect::<Vec<_>>().join(",")
    );
    eprintln!(
        "echo {}x{}B depth {} deflate {}: {:.0} msgs/s, rtt p50 {:.0} us p99 {:.0} us max {:.0} us, server cpu {} us/msg \
         (util {}), loadgen util {:.2}{}",
        o.conns,
        o.size,
        o.depth,
        deflate_state,
        rate,
        p50,
        p99,
        max,
        opt(cpu_per_msg_us, 2),
        opt(server_util, 2),
        self_util,
        if ok { String::new() } else { format!(", FAILED: {:?}", total.first_errors) }
    );
    if ok {
        0
    } else {
        1
    }
}

fn idle(o: Opts) -> i32 {
    let rss_before = pids_rss(&o.pids);
    let mut w = match Worker::new(&o, o.conns, 7) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("idle: {e}");
            return 1;
        }
    };
    let t0 = Instant::now();
    w.start_connects();
    w.run(t0 + Duration::from_secs_f64(o.timeout), &|w| w.all_settled());
    let upgrade_s = t0.elapsed().as_secs_f64();
    // settle, keep serving pings
    w.run(Instant::now() + Duration::from_secs(1), &|_| false);
    let rss_after = pids_rss(&o.pids);
    let hold_until = Instant::now() + Duration::from_secs_f64(o.hold);
    w.run(hold_until, &|_| false);
    let open = w.conns.iter().filter(|c| c.st == St::Open).count();
    let upgraded = w.st.upgraded;
    // plain TCP close; the close handshake of 10,000 connections is not what is measured
    for c in w.conns.iter_mut() {
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
    }
    let per_conn = match (rss_before, rss_after) {
        (Some(a), Some(b)) if upgraded > 0 => Some((b - a) / upgraded as f64),
        _ => None,
    };
    let ok = upgraded == o.conns && open == o.conns;
    let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "null".into());
    println!(
        "{{\"mode\":\"idle\",\"ok\":{ok},\"conns\":{},\"upgraded\":{upgraded},\"open_after_hold\":{open},\
         \"upgrade_s\":{upgrade_s:.3},\"rss_before_kib\":{},\"rss_after_kib\":{},\"rss_per_conn_kib\":{},\
         \"connect_concurrency\":{},\"failed_conns\":{},\"errors\":{},\"first_errors\":[{}]}}",
        o.conns,
        opt(rss_before, 0),
        opt(rss_after, 0),
        opt(per_conn, 3),
        o.concurrency,
        w.st.failed_conns,
        w.st.errors,
        w.st.first_errors.iter().map(|e| json_str(e)).collect::<Vec<_>>().join(",")
    );
    eprintln!(
        "idle {}: {} upgraded in {:.3} s, {} open after hold, rss per conn {} KiB",
        o.conns,
        upgraded,
        upgrade_s,
        open,
        opt(per_conn, 2)
    );
    if ok {
        0
    } else {
        1
    }
}

fn main() {
    let o = parse_opts();
    let lim = raise_nofile();
    if (lim as usize) < o.conns + 64 {
        eprintln!("loadgen: RLIMIT_NOFILE is {lim}, fewer than {} connections need", o.conns);
    }
    let code = if o.mode == "echo" { echo(o) } else { idle(o) };
    std::process::exit(code);
}
