//! Soak: many WebSocket connections exchanging messages with `build/examples/ws_echo`
//! for a while, sampling the server's memory and descriptors; after warm-up neither may
//! grow. Ignored by default (it needs the release build and takes minutes):
//!
//!   make && SOAK_SECS=600 SOAK_CONNS=1000 cargo test --release --test soak -- --ignored --nocapture
//!
//! The test command runs it for 60 s.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

struct Client {
    sock: TcpStream,
    inbox: Vec<u8>,
    upgraded: bool,
    waiting: usize,
    seq: u64,
    messages: u64,
}

/// A masked (zero key) binary frame carrying `seq`, padded to `size` bytes.
fn frame(seq: u64, size: usize) -> Vec<u8> {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.resize(size.max(8), (seq % 251) as u8);
    let mut f = vec![0x82];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&payload);
    f
}

#[test]
#[ignore = "soak: run by the test command with SOAK_SECS, or by hand"]
fn memory_and_descriptors_stay_flat() {
    let secs = env_or("SOAK_SECS", 60);
    let conns = env_or("SOAK_CONNS", 1000) as usize;
    let size = env_or("SOAK_SIZE", 64) as usize;
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/build/examples/ws_echo");
    assert!(
        std::path::Path::new(bin).exists(),
        "run `make` first: {bin} is missing"
    );
    // Each side holds `conns` sockets: raise the soft limit (the child inherits it).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = lim.rlim_max;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert!(
        lim.rlim_cur as usize > conns + 100,
        "descriptor limit {} too low for {conns} connections",
        lim.rlim_cur
    );

    let mut server = Command::new(bin)
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let mut line = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
    }
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let result = std::panic::catch_unwind(|| run(port, pid, conns, size, secs));
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(port: u16, pid: u32, conns: usize, size: usize, secs: u64) {
    let mut poll = Poll::new().unwrap();
    let mut clients = Vec::with_capacity(conns);
    let request = b"GET /soak HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for i in 0..conns {
        let std_sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std_sock.set_nodelay(true).unwrap();
        (&std_sock).write_all(request).unwrap();
        std_sock.set_nonblocking(true).unwrap();
        let mut sock = TcpStream::from_std(std_sock);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)
            .unwrap();
        clients.push(Client {
            sock,
            inbox: Vec::new(),
            upgraded: false,
            waiting: 0,
            seq: 0,
            messages: 0,
        });
    }
    let start = Instant::now();
    let warm = Duration::from_secs((secs / 5).max(5));
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut next_sample = start;
    let mut total = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut clients[ev.token().0];
            loop {
                match c.sock.read(&mut buf) {
                    Ok(0) => panic!("the server closed connection {}", ev.token().0),
                    Ok(n) => c.inbox.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            if !c.upgraded {
                let Some(end) = c.inbox.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                assert!(
                    c.inbox.starts_with(b"HTTP/1.1 101"),
                    "{}",
                    String::from_utf8_lossy(&c.inbox)
                );
                c.inbox.drain(..end + 4);
                c.upgraded = true;
            }
            // Whole echoed frames: check and answer with the next message.
            loop {
                if c.inbox.len() < 2 {
                    break;
                }
                let (len, h) = match c.inbox[1] {
                    126 if c.inbox.len() >= 4 => {
                        (usize::from(u16::from_be_bytes([c.inbox[2], c.inbox[3]])), 4)
                    }
                    126 => break,
                    n => (usize::from(n), 2),
                };
                if c.inbox.len() < h + len {
                    break;
                }
                assert_eq!(c.inbox[0], 0x82);
                let got = u64::from_be_bytes(c.inbox[h..h + 8].try_into().unwrap());
                assert_eq!(got, c.seq, "echo out of order");
                c.inbox.drain(..h + len);
                c.waiting -= 1;
                c.messages += 1;
                total += 1;
            }
            if c.upgraded && c.waiting == 0 {
                c.seq += 1;
                c.sock.write_all(&frame(c.seq, size)).unwrap();
                c.waiting = 1;
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(2);
            samples.push((
                start.elapsed().as_secs_f64(),
                proc_status(pid, "VmRSS:"),
                fd_count(pid),
            ));
        }
    }
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= warm.as_secs_f64())
        .collect();
    let base = after.first().expect("samples after warm-up");
    let max_rss = after.iter().map(|s| s.1).max().unwrap();
    let fds: Vec<usize> = after.iter().map(|s| s.2).collect();
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!(
        "soak: {conns} connections, {secs} s, {total} messages ({rate:.0}/s); server RSS after warm-up {} KiB -> max {} KiB; fds {:?}",
        base.1,
        max_rss,
        (fds.iter().min(), fds.iter().max())
    );
    assert!(
        clients.iter().all(|c| c.messages > 0),
        "every connection exchanged messages"
    );
    // Allocator noise is allowed; growth with time is not.
    assert!(
        max_rss <= base.1 + base.1 / 10 + 2048,
        "server RSS grew from {} to {} KiB",
        base.1,
        max_rss
    );
    assert!(
        fds.iter().all(|&f| f == fds[0]),
        "server descriptors changed: {fds:?}"
    );
}
