//! Hostile peers over real sockets: each attack gets the protocol's answer, memory stays
//! bounded, and a healthy client is served while it goes on.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsserver::ffi::event::wss_event_kind::*;

fn echo_http(ctx: &mut Ctx, ev: &Ev) {
    if ev.is(WSS_EV_HTTP_MSG) {
        reply(ctx, ev.conn, 200, "", b"fine");
    }
}

fn echo_ws(ctx: &mut Ctx, ev: &Ev) {
    if ev.is(WSS_EV_WS_MSG) {
        unsafe {
            wsserver::ffi::ws::wss_ws_send(
                ctx.mgr,
                ev.conn,
                ev.data.as_ptr(),
                ev.data.len(),
                ev.flags & 3,
            )
        };
    }
}

/// A healthy client is answered at once while an attack is under way.
fn healthy(srv: &Loop) {
    let t0 = Instant::now();
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET /healthy HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "a healthy client waited {:?}",
        t0.elapsed()
    );
}

/// This process's resident memory in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn slowloris_heads_and_slow_bodies_get_408_while_others_are_served() {
    let mut o = listen_opts();
    o.header_timeout_ms = 600;
    o.body_timeout_ms = 600;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), echo_http);
    let addr = srv.addr();
    let trickle = std::thread::spawn(move || {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for &b in head.iter() {
            if c.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        read_response(&mut c, false).status
    });
    let addr = srv.addr();
    let slow_body = std::thread::spawn(move || {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        for _ in 0..50 {
            if c.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        read_response(&mut c, false).status
    });
    std::thread::sleep(Duration::from_millis(100));
    healthy(&srv);
    assert_eq!(trickle.join().unwrap(), 408);
    assert_eq!(slow_body.join().unwrap(), 408);
    healthy(&srv);
}

#[test]
fn huge_heads_bodies_and_chunk_sizes_are_refused_without_allocating() {
    let srv = Loop::serve("http://127.0.0.1:0", None, echo_http);
    let before = rss_kib();
    // A 1 MiB header section: 431 as soon as the limit (16 KiB) is passed.
    let mut c = srv.tcp();
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n").unwrap();
    let line = format!("X-Filler: {}\r\n", "f".repeat(1000));
    let mut sent = 0;
    while sent < (1 << 20) {
        if c.write_all(line.as_bytes()).is_err() {
            break; // the server answered and closed: fine
        }
        sent += line.len();
    }
    assert_eq!(read_response(&mut c, false).status, 431);
    // Content-Length 10^15: 413 without reading or reserving it.
    let mut c = srv.tcp();
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000\r\n\r\nabc")
        .unwrap();
    assert_eq!(read_response(&mut c, false).status, 413);
    // A chunk size that overflows 64 bits: 400.
    let mut c = srv.tcp();
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000000000\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).status, 400);
    assert!(
        rss_kib() < before + 32 * 1024,
        "memory grew by {} KiB",
        rss_kib() - before
    );
    healthy(&srv);
}

/// Upgrades a raw socket to WebSocket on `srv`.
fn ws_connect(srv: &Loop) -> TcpStream {
    let mut c = srv.tcp();
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").unwrap();
    let r = read_response(&mut c, true);
    assert_eq!(r.status, 101);
    c
}

/// Reads frames until a close frame; returns its code (or None at EOF without one).
fn close_code(c: &mut TcpStream) -> Option<u16> {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // Scan the frames received so far (server frames are unmasked).
        let mut p = 0;
        while p + 2 <= all.len() {
            let op = all[p] & 15;
            let mut len = usize::from(all[p + 1] & 127);
            let mut h = 2;
            if len == 126 {
                if p + 4 > all.len() {
                    break;
                }
                len = usize::from(u16::from_be_bytes([all[p + 2], all[p + 3]]));
                h = 4;
            } else if len == 127 {
                if p + 10 > all.len() {
                    break;
                }
                len = u64::from_be_bytes(all[p + 2..p + 10].try_into().unwrap()) as usize;
                h = 10;
            }
            if p + h + len > all.len() {
                break;
            }
            if op == 8 {
                return Some(u16::from_be_bytes([all[p + h], all[p + h + 1]]));
            }
            p += h + len;
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn websocket_frames_announcing_2_63_bytes_and_deflate_bombs_get_1009() {
    let mut o = listen_opts();
    o.ws_deflate = true;
    o.max_message_bytes = 1 << 20;
    let srv = Loop::serve("ws://127.0.0.1:0", Some(o), echo_ws);
    let before = rss_kib();
    // 2^63 and 2^63 - 1 announced: answered from the header alone.
    for len in [1u64 << 63, (1u64 << 63) - 1] {
        let mut c = ws_connect(&srv);
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        c.write_all(&f).unwrap();
        assert_eq!(close_code(&mut c), Some(1009));
    }
    // A deflate bomb: 64 MiB of zeros in a few dozen KiB.
    let mut comp = flate2::Compress::new(flate2::Compression::best(), false);
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::with_capacity(1 << 20);
    for i in 0..64 {
        let flush = if i == 63 {
            flate2::FlushCompress::Sync
        } else {
            flate2::FlushCompress::None
        };
        comp.compress_vec(&zeros, &mut bomb, flush).unwrap();
        bomb.reserve(1 << 16);
    }
    let bomb = &bomb[..bomb.len() - 4]; // strip 00 00 ff ff (RFC 7692 §7.2.1)
    let mut c = ws_connect(&srv);
    let mut f = vec![0xc2, 0x80 | 127];
    f.extend_from_slice(&(bomb.len() as u64).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]); // zero mask: the payload goes as is
    f.extend_from_slice(bomb);
    let _ = c.write_all(&f);
    assert_eq!(close_code(&mut c), Some(1009));
    assert!(
        rss_kib() < before + 48 * 1024,
        "memory grew by {} KiB",
        rss_kib() - before
    );
    healthy_ws(&srv);
}

fn healthy_ws(srv: &Loop) {
    let mut c = ws_connect(srv);
    c.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'o', b'k']).unwrap();
    let mut b = [0u8; 4];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, &[0x81, 2, b'o', b'k']);
}

#[test]
fn a_websocket_peer_that_never_reads_is_cut_off_at_the_send_limit() {
    let mut o = listen_opts();
    o.max_send_buffer = 1 << 20;
    let mut flooded = false;
    let srv = Loop::serve("ws://127.0.0.1:0", Some(o), move |ctx, ev| {
        echo_ws(ctx, ev);
        if ev.is(WSS_EV_WS_OPEN) && !flooded {
            flooded = true;
            // Flood this connection; the peer never reads.
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..10_000 {
                let r = unsafe {
                    wsserver::ffi::ws::wss_ws_send(ctx.mgr, ev.conn, chunk.as_ptr(), chunk.len(), 2)
                };
                if r != OK {
                    assert!(matches!(r as u32, 1009 | 1010), "{r:?}");
                    break;
                }
                let mut b = 0;
                unsafe { wsserver::ffi::conn::wss_conn_buffered(ctx.mgr, ev.conn, &mut b) };
                assert!(b <= (1 << 20) + (64 << 10) + 16, "buffered {b}");
            }
        }
    });
    let _sleeper = ws_connect(&srv);
    srv.wait_for("the flooded connection closed", |l| {
        l.iter().any(|e| e.is(WSS_EV_ERROR) && e.code == 1009)
            && l.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    healthy_ws(&srv);
}

#[test]
fn half_open_connections_are_reclaimed() {
    let mut o = listen_opts();
    o.idle_timeout_ms = 300;
    o.ping_interval_ms = 200;
    o.pong_timeout_ms = 200;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), echo_http);
    // A TCP peer that went silent (as if the network vanished) and a WebSocket that
    // stops answering pings are both closed.
    let _silent = srv.tcp();
    srv.wait_for("idle close", |l| l.iter().any(|e| e.is(WSS_EV_CLOSE)));
    let o2 = {
        let mut o = listen_opts();
        o.ping_interval_ms = 200;
        o.pong_timeout_ms = 200;
        o.idle_timeout_ms = wsserver::ffi::opts::WSS_NO_TIMEOUT;
        o
    };
    let ws = Loop::serve("ws://127.0.0.1:0", Some(o2), echo_ws);
    let mut c = ws_connect(&ws);
    // Read (and ignore) the pings without answering: closed after ping + pong timeout.
    let t0 = Instant::now();
    let _ = close_code(&mut c);
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    ws.wait_for("no-pong close", |l| {
        l.iter()
            .any(|e| e.is(WSS_EV_ERROR) && e.text().contains("keepalive"))
    });
}

#[test]
fn the_connection_limit_refuses_newcomers_and_keeps_the_others() {
    let mut o = listen_opts();
    o.max_connections = 5;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), echo_http);
    let mut kept: Vec<TcpStream> = (0..5).map(|_| srv.tcp()).collect();
    for c in kept.iter_mut() {
        assert_eq!(
            roundtrip(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
            200
        );
    }
    for _ in 0..3 {
        let mut extra = srv.tcp();
        let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(closed_by_peer(&mut extra), "a sixth connection was served");
    }
    for c in kept.iter_mut() {
        assert_eq!(
            roundtrip(c, "GET /again HTTP/1.1\r\nHost: h\r\n\r\n").status,
            200,
            "existing ones keep working"
        );
    }
    drop(kept);
    srv.wait_for("closes", |l| {
        l.iter().filter(|e| e.is(WSS_EV_CLOSE)).count() >= 5
    });
    healthy(&srv);
}
