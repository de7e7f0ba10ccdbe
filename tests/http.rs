//! HTTP/1.1 server behaviour over real sockets on 127.0.0.1.

mod common;

use common::*;
use std::ffi::CString;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use wsserver::ffi::event::{wss_event_kind::*, wss_str};
use wsserver::ffi::http::*;
use wsserver::ffi::result::wss_result::*;

fn s(v: wss_str) -> String {
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(v.ptr, v.len) }).into_owned()
}

/// Answers every request with a description of it.
fn describe(ctx: &mut Ctx, ev: &Ev) {
    if !ev.is(WSS_EV_HTTP_MSG) {
        return;
    }
    let mut r: wss_http_request = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { wss_http_request_get(ctx.mgr, ev.conn, &mut r) },
        OK
    );
    let mut ua = wss_str::empty();
    let name = CString::new("x-TEST").unwrap();
    let has = unsafe { wss_http_header(ctx.mgr, ev.conn, name.as_ptr(), &mut ua) } == OK;
    let mut names = Vec::new();
    for i in 0..r.header_count {
        let (mut n, mut v) = (wss_str::empty(), wss_str::empty());
        assert_eq!(
            unsafe { wss_http_header_at(ctx.mgr, ev.conn, i, &mut n, &mut v) },
            OK
        );
        names.push(format!("{}={}", s(n), s(v)));
    }
    let (mut n, mut v) = (wss_str::empty(), wss_str::empty());
    assert_eq!(
        unsafe { wss_http_header_at(ctx.mgr, ev.conn, r.header_count, &mut n, &mut v) },
        WSS_RESULT_NOT_FOUND
    );
    let body = format!(
        "{} {} {} {} target={} x-test={} body={} event-body={} headers={}",
        s(r.method),
        s(r.path),
        s(r.query),
        s(r.version),
        s(r.target),
        if has { s(ua) } else { "-".into() },
        s(r.body),
        ev.text(),
        names.join(","),
    );
    assert_eq!(
        reply(
            ctx,
            ev.conn,
            200,
            "Content-Type: text/plain\r\n",
            body.as_bytes()
        ),
        OK
    );
}

#[test]
fn request_fields_reach_the_application() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    let r = roundtrip(
        &mut c,
        "GET /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "GET /a%20b/c x=1&y=2 HTTP/1.1 target=/a%20b/c?x=1&y=2 x-test=yes body= event-body= headers=Host=h,X-Test=yes"
    );
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    assert!(r.header("date").is_some_and(|d| d.ends_with("GMT")));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string()));
    assert_eq!(
        r.header("connection"),
        None,
        "HTTP/1.1 keep-alive is implicit"
    );
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    for i in 0..5 {
        let r = roundtrip(&mut c, &format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(r.text().starts_with(&format!("GET /{i} ")));
    }
    assert_eq!(srv.events(WSS_EV_ACCEPT).len(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    let mut all = String::new();
    for i in 0..20 {
        all += &format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    all += "POST /last HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    c.write_all(all.as_bytes()).unwrap();
    for i in 0..20 {
        let r = read_response(&mut c, false);
        assert!(
            r.text().starts_with(&format!("GET /{i} ")),
            "{i}: {}",
            r.text()
        );
    }
    assert!(read_response(&mut c, false)
        .text()
        .contains("body=abc event-body=abc"));
}

#[test]
fn bodies_by_length_and_chunked() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    let r = roundtrip(
        &mut c,
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert!(r.text().contains("body=hello world event-body=hello world"));
    let r = roundtrip(
        &mut c,
        "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=y\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n",
    );
    assert!(r.text().contains("body=hello world"), "{}", r.text());
    // A large body arriving in many reads.
    let big = "x".repeat(3 << 20);
    c.write_all(
        format!(
            "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for piece in big.as_bytes().chunks(100_000) {
        c.write_all(piece).unwrap();
    }
    let r = read_response(&mut c, false);
    assert!(r.text().contains(&format!("body={big} ")));
}

#[test]
fn expect_100_continue() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    c.write_all(
        b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    let interim = read_response(&mut c, false);
    assert_eq!(interim.status, 100);
    c.write_all(b"data").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("body=data"));
    // Too large: 413 at once instead of 100.
    let mut c = srv.tcp();
    c.write_all(b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).status, 413);
}

#[test]
fn head_requests_get_headers_only() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    let get = roundtrip(&mut c, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = roundtrip(&mut c, "HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.body.is_empty());
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert_eq!(
        len,
        get.body.len() + 1,
        "HEAD describes the GET body ('HEAD' is one letter longer)"
    );
    // The connection is still in sync after the bodiless reply.
    assert_eq!(
        roundtrip(&mut c, "GET /y HTTP/1.1\r\nHost: h\r\n\r\n").status,
        200
    );
}

#[test]
fn http_1_0_with_and_without_keep_alive() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(r.text().contains("HTTP/1.0"));
    assert!(closed_by_peer(&mut c));
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    let r = roundtrip(
        &mut c,
        "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(r.text().starts_with("GET /ka2"));
    // HTTP/1.1 with Connection: close
    let mut c = srv.tcp();
    let r = roundtrip(
        &mut c,
        "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(closed_by_peer(&mut c));
}

fn refused(srv: &Loop, request: &[u8]) -> (u16, bool) {
    let mut c = srv.tcp();
    let _ = c.write_all(request);
    let r = read_response(&mut c, false);
    (r.status, closed_by_peer(&mut c))
}

#[test]
fn limits_get_their_status_then_close() {
    let mut o = listen_opts();
    o.max_header_bytes = 4096;
    o.max_uri_bytes = 512;
    o.max_body_bytes = 1000;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), describe);
    assert_eq!(refused(&srv, b"GARBAGE\r\n\r\n"), (400, true));
    assert_eq!(
        refused(&srv, b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n"),
        (400, true)
    );
    assert_eq!(
        refused(
            &srv,
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        ),
        (400, true)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(5000)
    );
    assert_eq!(refused(&srv, big_head.as_bytes()), (431, true));
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "u".repeat(600));
    assert_eq!(refused(&srv, long_uri.as_bytes()), (414, true));
    assert_eq!(
        refused(
            &srv,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000\r\n\r\n"
        ),
        (413, true)
    );
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}",
        "z".repeat(2048)
    );
    assert_eq!(refused(&srv, chunked.as_bytes()), (413, true));
    assert_eq!(refused(&srv, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n"), (400, true));
    assert_eq!(
        refused(&srv, b"GET / HTTP/1.1\r\nHost: h\r\nExpect: tea\r\n\r\n"),
        (417, true)
    );
    // Each refusal is reported to the application with its status.
    let errs: Vec<i32> = srv.events(WSS_EV_ERROR).iter().map(|e| e.code).collect();
    for code in [400, 431, 414, 413, 417] {
        assert!(errs.contains(&code), "{code} not in {errs:?}");
    }
    // The server still works.
    let mut c = srv.tcp();
    assert_eq!(
        roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        200
    );
}

#[test]
fn slow_heads_and_bodies_get_408() {
    let mut o = listen_opts();
    o.header_timeout_ms = 300;
    o.body_timeout_ms = 300;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), describe);
    let t0 = Instant::now();
    let mut c = srv.tcp();
    c.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 408);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(closed_by_peer(&mut c));
    let mut c = srv.tcp();
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    assert_eq!(read_response(&mut c, false).status, 408);
    // A connection that sent nothing is not answered, just closed at the idle timeout.
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let mut o = listen_opts();
    o.idle_timeout_ms = 200;
    let srv = Loop::serve("http://127.0.0.1:0", Some(o), describe);
    let mut c = srv.tcp();
    assert_eq!(
        roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        200
    );
    let t0 = Instant::now();
    assert!(closed_by_peer(&mut c));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    srv.wait_for("close event", |l| l.iter().any(|e| e.is(WSS_EV_CLOSE)));
}

#[test]
fn chunked_replies_stream() {
    let srv = Loop::serve("http://127.0.0.1:0", None, |ctx, ev| {
        if ev.is(WSS_EV_HTTP_MSG) {
            let h = CString::new("Content-Type: text/plain").unwrap();
            assert_eq!(
                unsafe { wss_http_chunked_begin(ctx.mgr, ev.conn, 200, h.as_ptr()) },
                OK
            );
            assert_eq!(
                unsafe { wss_http_chunked_begin(ctx.mgr, ev.conn, 200, std::ptr::null()) },
                WSS_RESULT_INVALID_STATE,
                "one reply per request"
            );
            for part in ["one ", "two ", "three"] {
                assert_eq!(
                    unsafe { wss_http_chunk(ctx.mgr, ev.conn, part.as_ptr(), part.len()) },
                    OK
                );
            }
            assert_eq!(
                unsafe { wss_http_chunk(ctx.mgr, ev.conn, std::ptr::null(), 0) },
                OK
            );
            let after = unsafe { wss_http_chunk(ctx.mgr, ev.conn, b"x".as_ptr(), 1) };
            // Over: no reply under way (keep-alive), or the connection is closing (HTTP/1.0).
            assert!(
                matches!(after, WSS_RESULT_INVALID_STATE | WSS_RESULT_CLOSED),
                "{after:?}"
            );
        }
    });
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.text(), "one two three");
    let r = roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        r.text(),
        "one two three",
        "keep-alive after a chunked reply"
    );
    // HTTP/1.0: no chunked encoding, the body ends with the connection.
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.text(), "one two three");
}

#[test]
fn reply_misuse_gives_codes_not_crashes() {
    let srv = Loop::serve("http://127.0.0.1:0", None, |ctx, ev| {
        if ev.is(WSS_EV_HTTP_MSG) {
            assert_eq!(
                reply(ctx, ev.conn, 99, "", b""),
                WSS_RESULT_INVALID_ARGUMENT
            );
            assert_eq!(
                reply(ctx, ev.conn, 101, "", b""),
                WSS_RESULT_INVALID_ARGUMENT
            );
            assert_eq!(
                reply(ctx, ev.conn, 200, "Bad Header: x", b""),
                WSS_RESULT_INVALID_ARGUMENT
            );
            assert!(
                ctx.last_error().contains("invalid header name"),
                "{}",
                ctx.last_error()
            );
            assert_eq!(
                reply(ctx, ev.conn, 200, "X: a\rInjected: y", b""),
                WSS_RESULT_INVALID_ARGUMENT
            );
            assert_eq!(
                reply(ctx, ctx.listener, 200, "", b""),
                WSS_RESULT_WRONG_KIND
            );
            assert_eq!(
                reply(ctx, ev.conn + (1 << 24), 200, "", b""),
                WSS_RESULT_NOT_FOUND,
                "stale generation"
            );
            assert_eq!(reply(ctx, 0, 200, "", b""), WSS_RESULT_NOT_FOUND);
            assert_eq!(reply(ctx, ev.conn, 204, "X-Ok: 1\n", b"ignored"), OK);
            assert_eq!(
                reply(ctx, ev.conn, 200, "", b""),
                WSS_RESULT_INVALID_STATE,
                "already answered"
            );
            let r = unsafe {
                wss_http_reply(ctx.mgr, ev.conn, 200, std::ptr::null(), std::ptr::null(), 5)
            };
            assert_eq!(r, WSS_RESULT_NULL_PARAMETER);
        }
        if ev.is(WSS_EV_CLOSE) {
            // Still answerable with CLOSED until this event is drained: now it is stale.
            assert_eq!(reply(ctx, ev.conn, 200, "", b""), WSS_RESULT_NOT_FOUND);
        }
    });
    let mut c = srv.tcp();
    let r = roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-ok").as_deref(), Some("1"));
    assert_eq!(r.header("content-length"), None);
    drop(c);
    srv.wait_for("close", |l| l.iter().any(|e| e.is(WSS_EV_CLOSE)));
}

#[test]
fn half_closed_client_still_gets_its_answer() {
    let srv = Loop::serve("http://127.0.0.1:0", None, describe);
    let mut c = srv.tcp();
    c.write_all(b"GET /half HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // read_to_end returned: the server closed after answering. (Whether the reply says
    // "Connection: close" depends on whether the FIN was read before the application
    // answered; both are correct.)
}
