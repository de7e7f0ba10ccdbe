//! The WebSocket C API over real sockets: handshake validation, explicit and automatic
//! upgrades, sending (whole, fragmented, control) and its misuse codes, the closing
//! handshake and its events, keepalive pings, idle timeout, streaming delivery,
//! broadcast, and the library's own client against its own server (ws:// and wss://),
//! against a raw server written here, and against Python `websockets` (ignored unless
//! WSS_PYTHON names an interpreter that has it: scripts/test-interop.sh).

mod common;

use common::*;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsserver::ffi::event::wss_event_kind::*;
use wsserver::ffi::event::wss_str;
use wsserver::ffi::http::wss_http_header;
use wsserver::ffi::opts::{wss_connect_opts, wss_listen_opts};
use wsserver::ffi::result::wss_result::{self, *};
use wsserver::ffi::ws::{wss_opcode::*, wss_upgrade_opts, wss_ws_broadcast, wss_ws_upgrade};

fn view(v: wss_str) -> String {
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(v.ptr, v.len) }).into_owned()
}

/// A request header of the request waiting on `conn`.
fn req_header(ctx: &Ctx, conn: u64, name: &str) -> Option<String> {
    let n = CString::new(name).unwrap();
    let mut v = wss_str::empty();
    (unsafe { wss_http_header(ctx.mgr, conn, n.as_ptr(), &mut v) } == OK).then(|| view(v))
}

/// A loop serving an echo on `url` (ws:// or wss://).
fn echo_loop(url: &str, opts: Option<wss_listen_opts>) -> (Loop, u64, u16) {
    let lp = Loop::start(echo);
    let (id, port) = lp.listen(url, opts);
    (lp, id, port)
}

/// Results of `wss_ws_upgrade` calls made by `upgrading_handler`, by connection.
type Results = Arc<Mutex<Vec<(u64, wss_result, String)>>>;

/// An http:// handler: requests to /ws* are upgraded explicitly (with the protocol from
/// the request's `X-Choose` header and the 101 headers from `X-Extra`, "|" for CRLF);
/// other requests get "plain"; WebSocket messages are echoed.
fn upgrading_handler(results: Results) -> impl FnMut(&mut Ctx, &Ev) + Send + 'static {
    move |ctx, ev| {
        if ev.is(WSS_EV_HTTP_MSG) {
            let mut r: wsserver::ffi::http::wss_http_request = unsafe { std::mem::zeroed() };
            unsafe { wsserver::ffi::http::wss_http_request_get(ctx.mgr, ev.conn, &mut r) };
            if !view(r.path).starts_with("/ws") {
                assert_eq!(reply(ctx, ev.conn, 200, "", b"plain"), OK);
                return;
            }
            let choose = req_header(ctx, ev.conn, "x-choose").map(|s| CString::new(s).unwrap());
            let extra = req_header(ctx, ev.conn, "x-extra")
                .map(|s| CString::new(s.replace('|', "\r\n")).unwrap());
            let mut o: wss_upgrade_opts = unsafe { std::mem::zeroed() };
            o.struct_size = std::mem::size_of::<wss_upgrade_opts>() as u32;
            o.protocol = choose.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            o.extra_headers = extra.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            let res = unsafe { wss_ws_upgrade(ctx.mgr, ev.conn, &o) };
            results
                .lock()
                .unwrap()
                .push((ev.conn, res, ctx.last_error()));
            if res == WSS_RESULT_INVALID_ARGUMENT {
                // The application's own refusal.
                assert_eq!(reply(ctx, ev.conn, 409, "", b"refused by the app"), OK);
            }
        } else {
            echo(ctx, ev);
        }
    }
}

fn http_loop(opts: Option<wss_listen_opts>) -> (Loop, u16, Results) {
    let results: Results = Arc::new(Mutex::new(Vec::new()));
    let lp = Loop::start(upgrading_handler(results.clone()));
    let (_, port) = lp.listen("http://127.0.0.1:0", opts);
    (lp, port, results)
}

/// Sends a raw request and reads the response head (and a Content-Length body; a 101
/// has none, and the connection stays open).
fn raw_request(port: u16, req: &str) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut response = read_head(&mut r).unwrap();
    if let Some(n) = response.header("content-length") {
        response.body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut response.body).unwrap();
    }
    response
}

/// A request head with `lines` (CRLF-separated, without the final empty line).
fn request(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// =============================================================================================
// Handshake validation

#[test]
fn handshake_accepts_tokens_case_insensitively_inside_lists() {
    let (_lp, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let addr = format!("127.0.0.1:{port}");
    for (upgrade, connection) in [
        ("Upgrade: websocket", "Connection: Upgrade"),
        ("Upgrade: WebSocket", "Connection: upgrade"),
        ("upgrade: WEBSOCKET", "connection: UPGRADE"),
        ("Upgrade: websocket", "Connection: keep-alive, Upgrade"),
        ("Upgrade: websocket", "Connection: Upgrade , keep-alive"),
        ("Upgrade: h2c, websocket", "Connection: keep-alive,upgrade"),
        (
            "Upgrade: websocket",
            "Connection: keep-alive\r\nConnection: Upgrade",
        ),
    ] {
        let req = request(&[
            "GET /chat HTTP/1.1",
            "Host: x",
            upgrade,
            connection,
            &format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 13",
        ]);
        let mut c = Ws::open_raw(&addr, &req, Some(KEY))
            .unwrap_or_else(|h| panic!("{upgrade} / {connection}: {h:?}"));
        // The accept value of RFC 6455's own example.
        assert_eq!(
            c.response.header("sec-websocket-accept").as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        c.roundtrip(OP_TEXT, b"in");
        c.close_handshake(1000);
    }
}

#[test]
fn handshake_refusals() {
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let base = |first: &str, drop: &str, add: &[&str]| {
        let mut lines = vec![
            first.to_string(),
            "Host: x".into(),
            "Upgrade: websocket".into(),
            "Connection: Upgrade".into(),
            key.clone(),
            "Sec-WebSocket-Version: 13".into(),
        ];
        lines.retain(|l| drop.is_empty() || !l.starts_with(drop));
        lines.extend(add.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        request(&refs)
    };
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "POST",
            base("POST / HTTP/1.1", "", &["Content-Length: 0"]),
            400,
        ),
        ("HTTP/1.0", base("GET / HTTP/1.0", "", &[]), 400),
        ("no Upgrade", base("GET / HTTP/1.1", "Upgrade:", &[]), 400),
        (
            "Upgrade: websocketx",
            base("GET / HTTP/1.1", "Upgrade:", &["Upgrade: websocketx"]),
            400,
        ),
        (
            "no Connection",
            base("GET / HTTP/1.1", "Connection:", &[]),
            400,
        ),
        (
            "Connection: keep-alive",
            base("GET / HTTP/1.1", "Connection:", &["Connection: keep-alive"]),
            400,
        ),
        (
            "no key",
            base("GET / HTTP/1.1", "Sec-WebSocket-Key", &[]),
            400,
        ),
        (
            "15-byte key",
            base(
                "GET / HTTP/1.1",
                "Sec-WebSocket-Key",
                &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"],
            ),
            400,
        ),
        (
            "17-byte key",
            base(
                "GET / HTTP/1.1",
                "Sec-WebSocket-Key",
                &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="],
            ),
            400,
        ),
        (
            "key not base64",
            base(
                "GET / HTTP/1.1",
                "Sec-WebSocket-Key",
                &["Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="],
            ),
            400,
        ),
        (
            "two keys",
            base(
                "GET / HTTP/1.1",
                "",
                &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="],
            ),
            400,
        ),
    ];
    for (what, req, status) in &cases {
        let res = raw_request(port, req);
        assert_eq!(res.status, *status, "{what}: {}", res.head);
    }
    // Another version: 426 naming the one supported.
    for v in ["8", "12", "14", "13, 8"] {
        let req = base(
            "GET / HTTP/1.1",
            "Sec-WebSocket-Version",
            &[&format!("Sec-WebSocket-Version: {v}")],
        );
        let res = raw_request(port, &req);
        assert_eq!(res.status, 426, "version {v}: {}", res.head);
        assert_eq!(res.header("sec-websocket-version").as_deref(), Some("13"));
    }
    // Without any version header.
    let res = raw_request(port, &base("GET / HTTP/1.1", "Sec-WebSocket-Version", &[]));
    assert!(matches!(res.status, 400 | 426), "{}", res.head);
    // A valid key with whitespace around it is fine.
    let ok = base(
        "GET / HTTP/1.1",
        "Sec-WebSocket-Key",
        &[&format!("Sec-WebSocket-Key:   {KEY}  ")],
    );
    assert_eq!(raw_request(port, &ok).status, 101);
    // The refusals were errors on those connections, never WebSockets.
    lp.wait_for("one open", |log| {
        log.iter().filter(|e| e.is(WSS_EV_WS_OPEN)).count() == 1
    });
    assert!(lp.events(WSS_EV_HTTP_MSG).is_empty());
}

#[test]
fn non_upgrade_request_on_a_ws_listener_is_refused() {
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let res = raw_request(
        port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        matches!(res.status, 400 | 426),
        "a plain request on ws://: {}",
        res.head
    );
    // The application never sees it.
    lp.wait_for("the close", |log| log.iter().any(|e| e.is(WSS_EV_CLOSE)));
    assert!(lp.events(WSS_EV_HTTP_MSG).is_empty());
}

#[test]
fn origin_allow_list() {
    let mut o = listen_opts();
    o.ws_origins = cs("https://good.example, https://also.example");
    let (_lp, _, port) = echo_loop("ws://127.0.0.1:0", Some(o));
    let addr = format!("127.0.0.1:{port}");
    for ok in ["https://good.example", "https://ALSO.example", ""] {
        let extra = if ok.is_empty() {
            String::new()
        } else {
            format!("Origin: {ok}\r\n")
        };
        let mut c = Ws::open(&addr, "/", &extra).unwrap_or_else(|h| panic!("{ok}: {h:?}"));
        c.roundtrip(OP_TEXT, b"allowed");
    }
    for bad in [
        "https://evil.example",
        "http://good.example",
        "https://good.example:8443",
        "null",
    ] {
        let h = Ws::open(&addr, "/", &format!("Origin: {bad}\r\n"))
            .err()
            .unwrap_or_else(|| panic!("{bad} was let in"));
        assert_eq!(h.status, 403, "{bad}");
    }
    // Two Origin headers: ambiguous, refused.
    let h = Ws::open(
        &addr,
        "/",
        "Origin: https://good.example\r\nOrigin: https://evil.example\r\n",
    )
    .err()
    .unwrap();
    assert_eq!(h.status, 403);
}

#[test]
fn subprotocol_by_the_listeners_preference() {
    let mut o = listen_opts();
    o.ws_protocols = cs("chat.v2, chat.v1");
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", Some(o));
    let addr = format!("127.0.0.1:{port}");
    for (offer, chosen) in [
        ("chat.v1, chat.v2", Some("chat.v2")),
        ("chat.v1", Some("chat.v1")),
        ("other, chat.v1", Some("chat.v1")),
        ("other", None),
        ("", None),
    ] {
        let extra = if offer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {offer}\r\n")
        };
        let c = Ws::open(&addr, "/room?id=7", &extra).unwrap();
        assert_eq!(
            c.response.header("sec-websocket-protocol").as_deref(),
            chosen,
            "offer {offer:?}"
        );
        assert!(c.response.headers("sec-websocket-protocol").len() <= 1);
    }
    // WS_OPEN carries the agreed protocol and the request target.
    lp.wait_for("five opens", |log| {
        log.iter().filter(|e| e.is(WSS_EV_WS_OPEN)).count() == 5
    });
    let opens: Vec<(String, String)> = lp
        .events(WSS_EV_WS_OPEN)
        .iter()
        .map(|e| (e.text(), String::from_utf8_lossy(&e.meta).into_owned()))
        .collect();
    let protocols: Vec<&str> = opens.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(protocols, ["chat.v2", "chat.v1", "chat.v1", "", ""]);
    assert!(opens.iter().all(|(_, t)| t == "/room?id=7"), "{opens:?}");
}

#[test]
fn explicit_upgrade_on_http_with_protocol_and_extra_headers() {
    let mut o = listen_opts();
    o.ws_protocols = cs("a");
    let (lp, port, results) = http_loop(Some(o));
    let addr = format!("127.0.0.1:{port}");
    // Plain HTTP on the same listener keeps working.
    let page = raw_request(port, "GET /page HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((page.status, page.body.as_slice()), (200, &b"plain"[..]));
    // The application chooses "b" although the listener prefers "a", and adds headers.
    let mut c = Ws::open(
        &addr,
        "/ws",
        "Sec-WebSocket-Protocol: a, b\r\nX-Choose: b\r\nX-Extra: Set-Cookie: s=1|X-Served-By: test\r\n",
    )
    .unwrap();
    assert_eq!(
        c.response.header("sec-websocket-protocol").as_deref(),
        Some("b")
    );
    assert_eq!(c.response.header("set-cookie").as_deref(), Some("s=1"));
    assert_eq!(c.response.header("x-served-by").as_deref(), Some("test"));
    c.roundtrip(OP_BINARY, &pattern(1000));
    // Without a choice the listener's list applies.
    let c2 = Ws::open(&addr, "/ws", "Sec-WebSocket-Protocol: b, a\r\n").unwrap();
    assert_eq!(
        c2.response.header("sec-websocket-protocol").as_deref(),
        Some("a")
    );
    // A choice the client did not offer: INVALID_ARGUMENT, and the request is still the
    // application's to answer (here with 409).
    let h = Ws::open(
        &addr,
        "/ws",
        "Sec-WebSocket-Protocol: a\r\nX-Choose: zzz\r\n",
    )
    .err()
    .unwrap();
    assert_eq!(h.status, 409, "{}", h.head);
    // Extra headers that would split the response: refused.
    let h = Ws::open(&addr, "/ws", "X-Extra: Bad Name: x\r\n").err();
    let r = results.lock().unwrap().clone();
    assert_eq!(r[0].1, OK);
    assert_eq!(r[1].1, OK);
    assert_eq!(r[2].1, WSS_RESULT_INVALID_ARGUMENT, "{}", r[2].2);
    assert_eq!(h.map(|h| h.status), Some(409), "{r:?}");
    assert_eq!(r[3].1, WSS_RESULT_INVALID_ARGUMENT, "{}", r[3].2);
    // An invalid upgrade request on http:// is answered by the library: PROTOCOL.
    let res = raw_request(
        port,
        &request(&[
            "GET /ws HTTP/1.1",
            "Host: x",
            "Upgrade: websocket",
            "Connection: Upgrade",
            &format!("Sec-WebSocket-Key: {KEY}"),
            "Sec-WebSocket-Version: 7",
        ]),
    );
    assert_eq!(res.status, 426);
    assert_eq!(res.header("sec-websocket-version").as_deref(), Some("13"));
    lp.wait_for("five upgrade attempts", |_| {
        results.lock().unwrap().len() == 5
    });
    let r = results.lock().unwrap().clone();
    assert_eq!(r[4].1, WSS_RESULT_PROTOCOL, "{}", r[4].2);
    assert!(r[4].2.contains("426"), "{}", r[4].2);
    // A plain request sent to /ws (no Upgrade header): PROTOCOL, answered 400.
    let res = raw_request(port, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(res.status, 400);
    lp.wait_for("six upgrade attempts", |_| {
        results.lock().unwrap().len() == 6
    });
    assert_eq!(results.lock().unwrap()[5].1, WSS_RESULT_PROTOCOL);
}

#[test]
fn upgrade_misuse() {
    let lp = Loop::start(|_, _| {});
    let (_, port) = lp.listen("http://127.0.0.1:0", None);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let ev = lp.wait_event("the request", |e| e.is(WSS_EV_HTTP_MSG));
    let conn = ev.conn;
    let (a, b) = lp.call(move |ctx| {
        let r1 = reply(ctx, conn, 200, "", b"ok");
        // Answered already: nothing to upgrade.
        let r2 = unsafe { wss_ws_upgrade(ctx.mgr, conn, std::ptr::null()) };
        (r1, r2)
    });
    assert_eq!(a, OK);
    assert_eq!(b, WSS_RESULT_INVALID_STATE);
    let r = lp.call(|ctx| unsafe { wss_ws_upgrade(ctx.mgr, 987_654_321, std::ptr::null()) });
    assert_eq!(r, WSS_RESULT_NOT_FOUND);
    let l = lp.call(|ctx| ctx.listener);
    let r = lp.call(move |ctx| unsafe { wss_ws_upgrade(ctx.mgr, l, std::ptr::null()) });
    assert!(
        matches!(r, WSS_RESULT_WRONG_KIND | WSS_RESULT_NOT_FOUND),
        "{r:?}"
    );
}

// =============================================================================================
// Sending

/// A ws:// loop whose handler does nothing, one raw client, and its connection id.
fn quiet_pair(opts: Option<wss_listen_opts>) -> (Loop, Ws, u64) {
    let lp = Loop::start(|_, _| {});
    let (_, port) = lp.listen("ws://127.0.0.1:0", opts);
    let c = Ws::connect(&format!("127.0.0.1:{port}"));
    let conn = lp.wait_event("the open", |e| e.is(WSS_EV_WS_OPEN)).conn;
    (lp, c, conn)
}

#[test]
fn send_text_binary_ping_pong_on_the_wire() {
    let (lp, mut c, conn) = quiet_pair(None);
    let rs = lp.call(move |ctx| {
        [
            ws_send(ctx, conn, "héllo".as_bytes(), WSS_OP_TEXT),
            ws_send(ctx, conn, &[0, 1, 2, 255], WSS_OP_BINARY),
            ws_send(ctx, conn, b"", WSS_OP_TEXT),
            ws_send(ctx, conn, &pattern(300), WSS_OP_BINARY),
            ws_send(ctx, conn, b"are you there", WSS_OP_PING),
            ws_send(ctx, conn, &[7; 125], WSS_OP_PONG),
        ]
    });
    assert!(rs.iter().all(|r| *r == OK), "{rs:?}");
    assert_eq!(
        c.recv().wire(),
        server_frame(true, 0, OP_TEXT, "héllo".as_bytes())
    );
    assert_eq!(c.recv().wire(), [0x82, 4, 0, 1, 2, 255]);
    assert_eq!(c.recv().wire(), [0x81, 0]);
    assert_eq!(
        c.recv().wire(),
        server_frame(true, 0, OP_BINARY, &pattern(300))
    );
    assert_eq!(
        c.recv().wire(),
        server_frame(true, 0, OP_PING, b"are you there")
    );
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, &[7; 125]));
    // Our pong to the server's ping shows up as a WS_CTL event.
    c.send(OP_PONG, b"are you there");
    let ev = lp.wait_event("the pong", |e| e.is(WSS_EV_WS_CTL));
    assert_eq!((ev.flags, ev.data.as_slice()), (10, &b"are you there"[..]));
}

#[test]
fn fragmented_sending_on_the_wire() {
    let (lp, mut c, conn) = quiet_pair(None);
    let rs = lp.call(move |ctx| {
        [
            ws_fragment(ctx, conn, "κό".as_bytes(), WSS_OP_TEXT, false),
            // A text piece may end inside a character...
            ws_fragment(
                ctx,
                conn,
                &"σμε".as_bytes()[..3],
                WSS_OP_CONTINUATION,
                false,
            ),
            // ...as long as the next piece completes it.
            ws_fragment(ctx, conn, &"σμε".as_bytes()[3..], WSS_OP_CONTINUATION, true),
            ws_fragment(ctx, conn, &[1, 2], WSS_OP_BINARY, false),
            ws_fragment(ctx, conn, &[], WSS_OP_CONTINUATION, false),
            ws_fragment(ctx, conn, &[3], WSS_OP_CONTINUATION, true),
            // A single piece with fin: a whole message.
            ws_fragment(ctx, conn, b"whole", WSS_OP_TEXT, true),
        ]
    });
    assert!(rs.iter().all(|r| *r == OK), "{rs:?}");
    let expected: Vec<Vec<u8>> = vec![
        server_frame(false, 0, OP_TEXT, "κό".as_bytes()),
        server_frame(false, 0, OP_CONT, &"σμε".as_bytes()[..3]),
        server_frame(true, 0, OP_CONT, &"σμε".as_bytes()[3..]),
        server_frame(false, 0, OP_BINARY, &[1, 2]),
        server_frame(false, 0, OP_CONT, &[]),
        server_frame(true, 0, OP_CONT, &[3]),
        server_frame(true, 0, OP_TEXT, b"whole"),
    ];
    for e in expected {
        assert_eq!(c.recv().wire(), e);
    }
    // Pings the library owes may come between the pieces of a message.
    assert_eq!(
        lp.call(move |ctx| ws_fragment(ctx, conn, b"first", WSS_OP_BINARY, false)),
        OK
    );
    assert_eq!(c.recv().wire(), server_frame(false, 0, OP_BINARY, b"first"));
    c.send(OP_PING, b"between");
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"between"));
    assert_eq!(
        lp.call(move |ctx| ws_fragment(ctx, conn, b"last", WSS_OP_CONTINUATION, true)),
        OK
    );
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_CONT, b"last"));
}

#[test]
fn send_misuse_codes() {
    let (lp, mut c, conn) = quiet_pair(None);
    let rs = lp.call(move |ctx| {
        vec![
            (
                "continuation without a start",
                ws_fragment(ctx, conn, b"x", WSS_OP_CONTINUATION, true),
            ),
            (
                "text not UTF-8",
                ws_send(ctx, conn, b"\xff\xfe", WSS_OP_TEXT),
            ),
            (
                "text ending inside a character",
                ws_send(ctx, conn, b"\xce", WSS_OP_TEXT),
            ),
            (
                "fragment not UTF-8",
                ws_fragment(ctx, conn, b"\xed\xa0\x80", WSS_OP_TEXT, false),
            ),
            (
                "fin fragment ending inside a character",
                ws_fragment(ctx, conn, b"a\xce", WSS_OP_TEXT, true),
            ),
            ("ping of 126", ws_send(ctx, conn, &[0; 126], WSS_OP_PING)),
            ("pong of 126", ws_send(ctx, conn, &[0; 126], WSS_OP_PONG)),
            ("close opcode", unsafe {
                wsserver::ffi::ws::wss_ws_send(ctx.mgr, conn, std::ptr::null(), 0, 8)
            }),
            ("reserved opcode", unsafe {
                wsserver::ffi::ws::wss_ws_send(ctx.mgr, conn, b"x".as_ptr(), 1, 3)
            }),
            (
                "continuation via wss_ws_send",
                ws_send(ctx, conn, b"x", WSS_OP_CONTINUATION),
            ),
            ("NULL data with a length", unsafe {
                wsserver::ffi::ws::wss_ws_send(ctx.mgr, conn, std::ptr::null(), 5, 2)
            }),
            ("stale id", ws_send(ctx, 999_999_999, b"x", WSS_OP_TEXT)),
        ]
    });
    let expect = [
        WSS_RESULT_INVALID_STATE,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_INVALID_ARGUMENT,
        WSS_RESULT_NULL_PARAMETER,
        WSS_RESULT_NOT_FOUND,
    ];
    for ((what, got), want) in rs.iter().zip(expect) {
        assert_eq!(*got, want, "{what}");
    }
    // While a fragmented message is open, another message must wait.
    let rs = lp.call(move |ctx| {
        [
            ws_fragment(ctx, conn, b"open", WSS_OP_TEXT, false),
            ws_send(ctx, conn, b"other", WSS_OP_TEXT),
            ws_fragment(ctx, conn, b"other", WSS_OP_BINARY, false),
            // A refused piece leaves the message as it was.
            ws_fragment(ctx, conn, b"\xff", WSS_OP_CONTINUATION, false),
            ws_fragment(ctx, conn, b" end", WSS_OP_CONTINUATION, true),
        ]
    });
    assert_eq!(
        rs,
        [
            OK,
            WSS_RESULT_INVALID_STATE,
            WSS_RESULT_INVALID_STATE,
            WSS_RESULT_INVALID_ARGUMENT,
            OK
        ]
    );
    // Nothing refused reached the wire.
    assert_eq!(c.recv().wire(), server_frame(false, 0, OP_TEXT, b"open"));
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_CONT, b" end"));
    // Close misuse: bad codes and reasons.
    let rs = lp.call(move |ctx| {
        [
            ws_close(ctx, conn, 1005, None),
            ws_close(ctx, conn, 1006, None),
            ws_close(ctx, conn, 999, None),
            ws_close(ctx, conn, 1004, None),
            ws_close(ctx, conn, 5000, None),
            ws_close(ctx, conn, 1000, Some(&"r".repeat(124))),
            ws_close(ctx, 999_999_999, 1000, None),
        ]
    });
    assert_eq!(
        rs,
        [
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_INVALID_ARGUMENT,
            WSS_RESULT_NOT_FOUND,
        ]
    );
    let bad_reason = lp.call(move |ctx| unsafe {
        wsserver::ffi::ws::wss_ws_close(ctx.mgr, conn, 1000, c"\xff\xfe".as_ptr())
    });
    assert_eq!(bad_reason, WSS_RESULT_INVALID_ARGUMENT);
    // After a close: CLOSED for every send.
    let rs = lp.call(move |ctx| {
        [
            ws_close(ctx, conn, 1000, Some("done")),
            ws_send(ctx, conn, b"late", WSS_OP_TEXT),
            ws_send(ctx, conn, b"late", WSS_OP_PING),
            ws_fragment(ctx, conn, b"late", WSS_OP_TEXT, true),
            ws_close(ctx, conn, 1000, None),
        ]
    });
    assert_eq!(
        rs,
        [
            OK,
            WSS_RESULT_CLOSED,
            WSS_RESULT_CLOSED,
            WSS_RESULT_CLOSED,
            WSS_RESULT_CLOSED
        ]
    );
    let f = c.recv();
    assert_eq!(f.close_code(), Some(1000));
    assert_eq!(&f.payload[2..], b"done");
}

#[test]
fn send_on_http_and_tcp_connections_is_wrong_kind() {
    let lp = Loop::start(|_, _| {});
    let (_, http_port) = lp.listen("http://127.0.0.1:0", None);
    let (tcp_listener, tcp_port) = lp.listen("tcp://127.0.0.1:0", None);
    let mut h = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    h.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let http_conn = lp.wait_event("the request", |e| e.is(WSS_EV_HTTP_MSG)).conn;
    let _t = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    let tcp_conn = lp
        .wait_event("the tcp accept", |e| {
            e.is(WSS_EV_ACCEPT) && e.parent == tcp_listener
        })
        .conn;
    let rs = lp.call(move |ctx| {
        let mut v = Vec::new();
        for conn in [http_conn, tcp_conn] {
            v.push(ws_send(ctx, conn, b"x", WSS_OP_TEXT));
            v.push(ws_fragment(ctx, conn, b"x", WSS_OP_BINARY, true));
            v.push(ws_close(ctx, conn, 1000, None));
        }
        v
    });
    assert!(rs.iter().all(|r| *r == WSS_RESULT_WRONG_KIND), "{rs:?}");
    // The HTTP connection still works.
    let r = lp.call(move |ctx| reply(ctx, http_conn, 200, "", b"fine"));
    assert_eq!(r, OK);
    assert_eq!(read_head(&mut h).unwrap().status, 200);
}

// =============================================================================================
// Closing

#[test]
fn server_close_with_code_and_reason() {
    let (lp, mut c, conn) = quiet_pair(None);
    assert_eq!(
        lp.call(move |ctx| ws_close(ctx, conn, 4001, Some("going"))),
        OK
    );
    let f = c.recv();
    assert_eq!(
        f.wire(),
        [0x88, 7, 0x0f, 0xa1, b'g', b'o', b'i', b'n', b'g']
    );
    // The server waits for our close: a message sent meanwhile is dropped, the
    // connection stays open.
    c.send(OP_TEXT, b"dropped");
    c.send(OP_CLOSE, &close_payload(4001, b""));
    c.expect_eof();
    let ev = lp.wait_event("the close", |e| e.is(WSS_EV_CLOSE));
    assert_eq!(ev.code, 4001);
    assert_eq!(ev.data, b"going");
    assert_eq!(ev.flags & FLAG_BY_PEER, 0);
    assert!(lp.events(WSS_EV_WS_MSG).is_empty());
    assert!(lp.events(WSS_EV_ERROR).is_empty());
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let mut o = listen_opts();
    o.close_timeout_ms = 300;
    let (lp, mut c, conn) = quiet_pair(Some(o));
    let t0 = Instant::now();
    assert_eq!(lp.call(move |ctx| ws_close(ctx, conn, 1001, None)), OK);
    assert_eq!(c.recv().close_code(), Some(1001));
    // We never answer; TCP closes after the close timeout.
    c.expect_eof();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let ev = lp.wait_event("the close", |e| e.is(WSS_EV_CLOSE));
    assert_eq!(ev.code, 1001);
}

#[test]
fn close_events_peer_initiated_and_abnormal() {
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let addr = format!("127.0.0.1:{port}");
    // Peer-initiated, with a reason.
    let mut c = Ws::connect(&addr);
    let a = lp.wait_event("open", |e| e.is(WSS_EV_WS_OPEN)).conn;
    c.send(OP_CLOSE, &close_payload(3001, "fin ✓".as_bytes()));
    c.expect_close(Some(3001));
    let ev = lp.wait_event("close a", |e| e.is(WSS_EV_CLOSE) && e.conn == a);
    assert_eq!((ev.code, ev.text().as_str()), (3001, "fin ✓"));
    // Abnormal: TCP dropped without a close frame.
    let c = Ws::connect(&addr);
    let b = lp
        .wait_event("open b", |e| e.is(WSS_EV_WS_OPEN) && e.conn != a)
        .conn;
    drop(c);
    let ev = lp.wait_event("close b", |e| e.is(WSS_EV_CLOSE) && e.conn == b);
    assert_eq!(ev.code, 1006);
    assert!(ev.data.is_empty());
    assert_ne!(ev.flags & FLAG_BY_PEER, 0);
    // A protocol failure: ERROR with the close code, then CLOSE with it.
    let mut c = Ws::connect(&addr);
    let d = lp
        .wait_event("open d", |e| {
            e.is(WSS_EV_WS_OPEN) && e.conn != a && e.conn != b
        })
        .conn;
    c.send_frame(true, 0, 3, b"");
    c.expect_close(Some(1002));
    let err = lp.wait_event("error d", |e| e.is(WSS_EV_ERROR) && e.conn == d);
    assert_eq!(err.code, 1002);
    let ev = lp.wait_event("close d", |e| e.is(WSS_EV_CLOSE) && e.conn == d);
    assert_eq!(ev.code, 1002);
    // CLOSE is the last event of each connection.
    for conn in [a, b, d] {
        let evs = lp.events_of(conn);
        assert!(evs.last().unwrap().is(WSS_EV_CLOSE), "{evs:?}");
    }
}

// =============================================================================================
// Keepalive and idle timeout

#[test]
fn keepalive_pings_keep_an_answering_client_and_drop_a_silent_one() {
    let mut o = listen_opts();
    o.ping_interval_ms = 200;
    o.pong_timeout_ms = 1000;
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", Some(o));
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    // The answering one, on its own thread: it answers every ping for 2.5 s.
    let mut alive = Ws::connect(&addr);
    let answering = std::thread::spawn(move || {
        let mut pings = 0;
        while t0.elapsed() < Duration::from_millis(2500) {
            let f = alive.recv();
            assert_eq!(f.opcode, OP_PING, "{f:?}");
            assert!(!f.masked && f.fin);
            pings += 1;
            alive.send(OP_PONG, &f.payload);
        }
        (alive, pings)
    });
    // The silent one gets a ping and, unanswered, a TCP close after the pong timeout.
    let mut silent = Ws::connect(&addr);
    let ping = silent.recv();
    assert_eq!(ping.opcode, OP_PING, "{ping:?}");
    let pinged = t0.elapsed();
    silent.expect_eof();
    let gone = t0.elapsed();
    assert!(
        gone >= pinged + Duration::from_millis(250),
        "{pinged:?} {gone:?}"
    );
    lp.wait_event("the timeout error", |e| {
        e.is(WSS_EV_ERROR) && e.code == WSS_RESULT_TIMEOUT as i32
    });
    let (mut alive, pings) = answering.join().unwrap();
    assert!(pings >= 4, "{pings} pings");
    alive.roundtrip(OP_TEXT, b"still here");
    alive.close_handshake(1000);
    lp.wait_for("two closes", |log| {
        log.iter().filter(|e| e.is(WSS_EV_CLOSE)).count() == 2
    });
    let closes = lp.events(WSS_EV_CLOSE);
    assert_eq!(closes[0].code, 1006, "the silent one ended abnormally");
    assert_eq!(closes[1].code, 1000);
}

#[test]
fn idle_timeout_closes_a_silent_websocket() {
    let mut o = listen_opts();
    o.idle_timeout_ms = 1000;
    let (lp, _, port) = echo_loop("ws://127.0.0.1:0", Some(o));
    let addr = format!("127.0.0.1:{port}");
    let mut idle = Ws::connect(&addr);
    let mut busy = Ws::connect(&addr);
    let t0 = Instant::now();
    // The busy one talks every 100 ms and stays.
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        busy.roundtrip(OP_TEXT, format!("tick {n}").as_bytes());
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The idle one was closed (no close frame promised: just TCP).
    loop {
        match idle.try_recv() {
            None => break,
            Some(f) => assert_eq!(f.opcode, OP_CLOSE, "{f:?}"),
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(8));
    lp.wait_event("the timeout error", |e| {
        e.is(WSS_EV_ERROR) && e.code == WSS_RESULT_TIMEOUT as i32
    });
    busy.roundtrip(OP_TEXT, b"still here");
    busy.close_handshake(1000);
}

#[test]
fn default_keepalive_is_60_s_and_no_timeout_turns_it_off() {
    // The next deadline of an open WebSocket with default options is its keepalive
    // ping (60 s, as documented), before the idle timeout (120 s).
    let (lp, _c, _) = quiet_pair(None);
    let next = lp.call(|ctx| unsafe { wsserver::ffi::mgr::wss_mgr_next_timeout_ms(ctx.mgr) });
    assert!(
        (55_000..=60_000).contains(&next),
        "next deadline in {next} ms"
    );
    // WSS_NO_TIMEOUT: no pings, so the idle timeout is next.
    let mut o = listen_opts();
    o.ping_interval_ms = u32::MAX;
    let (lp, _c, _) = quiet_pair(Some(o));
    let next = lp.call(|ctx| unsafe { wsserver::ffi::mgr::wss_mgr_next_timeout_ms(ctx.mgr) });
    assert!(next > 110_000, "next deadline in {next} ms");
}

// =============================================================================================
// Streaming mode

/// The WS_FRAGMENT events of a connection as (flags, data).
fn fragments(lp: &Loop, conn: u64) -> Vec<(u32, Vec<u8>)> {
    lp.events_of(conn)
        .into_iter()
        .filter(|e| e.is(WSS_EV_WS_FRAGMENT))
        .map(|e| (e.flags, e.data))
        .collect()
}

/// Waits for the fragments of `count` messages and returns them per message.
fn stream_messages(lp: &Loop, conn: u64, count: usize) -> Vec<Vec<(u32, Vec<u8>)>> {
    lp.wait_for("the message ends", |log| {
        log.iter()
            .filter(|e| e.conn == conn && e.is(WSS_EV_WS_FRAGMENT) && e.flags & FLAG_FIN != 0)
            .count()
            >= count
    });
    let mut out: Vec<Vec<(u32, Vec<u8>)>> = Vec::new();
    for (flags, data) in fragments(lp, conn) {
        if flags & FLAG_FIRST != 0 {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("FIRST before others")
            .push((flags, data));
    }
    out
}

#[test]
fn streaming_mode_delivers_fragments_with_first_and_fin() {
    let mut o = listen_opts();
    o.ws_stream = true;
    let (lp, mut c, conn) = quiet_pair(Some(o));
    let t = "κόσμε".as_bytes();
    // A text message split inside a character over three frames.
    c.send_frame(false, 0, OP_TEXT, &t[..1]);
    c.send_frame(false, 0, OP_CONT, &t[1..4]);
    c.send_frame(true, 0, OP_CONT, &t[4..]);
    // A whole binary message, an empty text message.
    c.send(OP_BINARY, &[1, 2, 3]);
    c.send(OP_TEXT, b"");
    let msgs = stream_messages(&lp, conn, 3);
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let first = &msgs[0];
    assert_eq!(
        first[0].0 & (FLAG_TEXT | FLAG_FIRST),
        FLAG_TEXT | FLAG_FIRST
    );
    assert!(first.iter().all(|(f, _)| f & FLAG_TEXT != 0));
    assert!(first[..first.len() - 1]
        .iter()
        .all(|(f, _)| f & FLAG_FIN == 0));
    assert_ne!(first.last().unwrap().0 & FLAG_FIN, 0);
    assert!(first[1..].iter().all(|(f, _)| f & FLAG_FIRST == 0));
    let joined: Vec<u8> = first.iter().flat_map(|(_, d)| d.clone()).collect();
    assert_eq!(joined, t);
    assert_eq!(
        msgs[1],
        vec![(FLAG_BINARY | FLAG_FIRST | FLAG_FIN, vec![1, 2, 3])]
    );
    assert_eq!(msgs[2], vec![(FLAG_TEXT | FLAG_FIRST | FLAG_FIN, vec![])]);
    assert!(lp.events(WSS_EV_WS_MSG).is_empty());
}

#[test]
fn streaming_mode_still_limits_the_message_size() {
    let mut o = listen_opts();
    o.ws_stream = true;
    o.max_message_bytes = 1000;
    let (lp, mut c, conn) = quiet_pair(Some(o));
    c.send_frame(false, 0, OP_BINARY, &pattern(600));
    c.send_frame(true, 0, OP_CONT, &pattern(400));
    stream_messages(&lp, conn, 1);
    c.send_frame(false, 0, OP_BINARY, &pattern(600));
    c.send_raw(&header(true, 0, OP_CONT, 401, Some([1, 2, 3, 4])));
    c.expect_close(Some(1009));
}

#[test]
fn streaming_mode_delivers_a_big_frame_as_it_arrives() {
    let mut o = listen_opts();
    o.ws_stream = true;
    let (lp, mut c, conn) = quiet_pair(Some(o));
    let data = utf8_text(1 << 20);
    let bytes = msg(OP_TEXT, &data);
    // Half of the frame: something is delivered before the rest is sent.
    c.send_raw(&bytes[..bytes.len() / 2]);
    lp.wait_event("a first piece", |e| {
        e.is(WSS_EV_WS_FRAGMENT) && e.conn == conn
    });
    c.send_raw(&bytes[bytes.len() / 2..]);
    let msgs = stream_messages(&lp, conn, 1);
    assert!(msgs[0].len() >= 2, "{} pieces", msgs[0].len());
    let joined: Vec<u8> = msgs[0].iter().flat_map(|(_, d)| d.clone()).collect();
    assert!(joined == data);
}

// =============================================================================================
// Broadcast

#[test]
fn broadcast_reaches_every_websocket_of_a_listener_once() {
    let mut o = listen_opts();
    o.ws_deflate = true;
    let (lp, port, _results) = http_loop(Some(o));
    let http_listener = lp.call(|ctx| ctx.listener);
    let (_, ws_port) = lp.listen("ws://127.0.0.1:0", None);
    let addr = format!("127.0.0.1:{port}");
    let opened = |n: usize| {
        lp.wait_for("opens", |log| {
            log.iter().filter(|e| e.is(WSS_EV_WS_OPEN)).count() == n
        })
    };
    let mut a = Ws::open(&addr, "/ws", "").unwrap();
    opened(1);
    let mut b = Ws::open(
        &addr,
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .unwrap();
    assert!(b.response.header("sec-websocket-extensions").is_some());
    opened(2);
    let mut closed = Ws::open(&addr, "/ws", "").unwrap();
    opened(3);
    closed.close_handshake(1000);
    lp.wait_event("the close", |e| e.is(WSS_EV_CLOSE));
    // A plain HTTP keep-alive connection on the same listener.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut plain_r = BufReader::new(plain.try_clone().unwrap());
    let h = read_head(&mut plain_r).unwrap();
    assert_eq!(h.status, 200);
    let mut body = vec![0; h.header("content-length").unwrap().parse().unwrap()];
    plain_r.read_exact(&mut body).unwrap();
    // A WebSocket of another listener.
    let mut other = Ws::connect(&format!("127.0.0.1:{ws_port}"));
    opened(4);

    let text = "broadcast ".repeat(20);
    let t2 = text.clone();
    let (r, sent) = lp.call(move |ctx| {
        let mut sent = 0usize;
        let r = unsafe {
            wss_ws_broadcast(ctx.mgr, http_listener, t2.as_ptr(), t2.len(), 1, &mut sent)
        };
        (r, sent)
    });
    assert_eq!((r, sent), (OK, 2));
    // The same uncompressed frame for both, deflate or not.
    let expected = server_frame(true, 0, OP_TEXT, text.as_bytes());
    assert_eq!(a.recv().wire(), expected);
    assert_eq!(b.recv().wire(), expected);
    // Every WebSocket of the manager with listener 0; a binary and a ping.
    let (r, sent) = lp.call(move |ctx| {
        let mut sent = 0usize;
        let r = unsafe { wss_ws_broadcast(ctx.mgr, 0, [1u8, 2].as_ptr(), 2, 2, &mut sent) };
        let mut sent2 = 0usize;
        let r2 = unsafe { wss_ws_broadcast(ctx.mgr, 0, b"hb".as_ptr(), 2, 9, &mut sent2) };
        assert_eq!(r2, OK);
        assert_eq!(sent2, 3);
        (r, sent)
    });
    assert_eq!((r, sent), (OK, 3));
    for c in [&mut a, &mut b, &mut other] {
        assert_eq!(c.recv().wire(), [0x82, 2, 1, 2]);
        assert_eq!(c.recv().wire(), [0x89, 2, b'h', b'b']);
    }
    // A connection in the middle of a fragmented send is skipped for data, not pings.
    let a_conn = lp.events(WSS_EV_WS_OPEN)[0].conn;
    let (r1, data_sent, ping_sent) = lp.call(move |ctx| {
        let r1 = ws_fragment(ctx, a_conn, b"piece", WSS_OP_BINARY, false);
        let mut s1 = 0usize;
        unsafe { wss_ws_broadcast(ctx.mgr, http_listener, b"data".as_ptr(), 4, 2, &mut s1) };
        let mut s2 = 0usize;
        unsafe { wss_ws_broadcast(ctx.mgr, http_listener, b"p".as_ptr(), 1, 9, &mut s2) };
        ws_fragment(ctx, a_conn, b"end", WSS_OP_CONTINUATION, true);
        (r1, s1, s2)
    });
    assert_eq!((r1, data_sent, ping_sent), (OK, 1, 2));
    assert_eq!(a.recv().wire(), server_frame(false, 0, OP_BINARY, b"piece"));
    assert_eq!(a.recv().wire(), [0x89, 1, b'p']);
    assert_eq!(a.recv().wire(), server_frame(true, 0, OP_CONT, b"end"));
    assert_eq!(b.recv().wire(), [0x82, 4, b'd', b'a', b't', b'a']);
    assert_eq!(b.recv().wire(), [0x89, 1, b'p']);
    // The plain HTTP connection got nothing and still works.
    plain
        .write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let h = read_head(&mut plain_r).unwrap();
    assert_eq!(h.status, 200);
    // Misuse.
    let rs = lp.call(move |ctx| {
        let mut sent = 99usize;
        let b = |l: u64, d: &[u8], op: u32, s: &mut usize| unsafe {
            wss_ws_broadcast(ctx.mgr, l, d.as_ptr(), d.len(), op, s)
        };
        [
            b(http_listener, b"\xff", 1, &mut sent),
            b(http_listener, b"x", 8, &mut sent),
            b(http_listener, b"x", 0, &mut sent),
            b(http_listener, &[0; 126], 9, &mut sent),
            b(a_conn, b"x", 1, &mut sent),
            b(999_999_999, b"x", 1, &mut sent),
        ]
    });
    assert_eq!(rs[..4], [WSS_RESULT_INVALID_ARGUMENT; 4]);
    assert!(
        matches!(rs[4], WSS_RESULT_WRONG_KIND | WSS_RESULT_NOT_FOUND),
        "{rs:?}"
    );
    assert_eq!(rs[5], WSS_RESULT_NOT_FOUND);
}

// =============================================================================================
// The library's own client

/// A loop for clients (its handler does nothing).
fn client_loop() -> Loop {
    Loop::start(|_, _| {})
}

/// Waits for the client's WS_OPEN (panics on ERROR/CLOSE first); returns the protocol.
fn client_open(lp: &Loop, id: u64) -> String {
    let ev = lp.wait_event("the client open", |e| {
        e.conn == id && (e.is(WSS_EV_WS_OPEN) || e.is(WSS_EV_CLOSE))
    });
    assert!(ev.is(WSS_EV_WS_OPEN), "{:?}", lp.events_of(id));
    ev.text()
}

/// Sends from the client and waits for the echo (WS_MSG number `n` of the client).
fn client_roundtrip(lp: &Loop, id: u64, data: &[u8], op: wsserver::ffi::ws::wss_opcode, n: usize) {
    let d = data.to_vec();
    assert_eq!(lp.call(move |ctx| ws_send(ctx, id, &d, op)), OK);
    lp.wait_for("the echo", |log| {
        log.iter()
            .filter(|e| e.conn == id && e.is(WSS_EV_WS_MSG))
            .count()
            > n
    });
    let got = lp
        .events_of(id)
        .into_iter()
        .filter(|e| e.is(WSS_EV_WS_MSG))
        .nth(n)
        .unwrap();
    let flag = if op == WSS_OP_TEXT {
        FLAG_TEXT
    } else {
        FLAG_BINARY
    };
    assert_eq!(got.flags, flag);
    assert!(got.data == data, "echo of {} bytes differs", data.len());
}

fn own_client_session(
    url: &str,
    server_opts: wss_listen_opts,
    client: wss_connect_opts,
    sizes: &[usize],
) {
    let (srv, _, port) = echo_loop(url, Some(server_opts));
    let lp = client_loop();
    let scheme = url.split(':').next().unwrap();
    let (r, id) = lp.connect(
        &format!("{scheme}://127.0.0.1:{port}/chat?x=1"),
        Some(client),
    );
    assert_eq!(r, OK);
    let proto = client_open(&lp, id);
    assert_eq!(proto, "v2");
    let kinds: Vec<u32> = lp.events_of(id).iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], WSS_EV_CONNECT as u32, "{kinds:?}");
    let sopen = srv.wait_event("the server open", |e| e.is(WSS_EV_WS_OPEN));
    assert_eq!(
        (sopen.text().as_str(), sopen.meta.as_slice()),
        ("v2", &b"/chat?x=1"[..])
    );
    let mut n = 0;
    for &size in sizes {
        client_roundtrip(&lp, id, &utf8_text(size), WSS_OP_TEXT, n);
        client_roundtrip(&lp, id, &pattern(size), WSS_OP_BINARY, n + 1);
        n += 2;
    }
    // The client closes with a code and a reason; both ends see them.
    assert_eq!(
        lp.call(move |ctx| ws_close(ctx, id, 4000, Some("client done"))),
        OK
    );
    let ev = lp.wait_event("client close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    assert_eq!(ev.code, 4000);
    assert_eq!(ev.flags & FLAG_BY_PEER, 0, "the client started it: {ev:?}");
    let sev = srv.wait_event("server close", |e| e.is(WSS_EV_CLOSE));
    assert_eq!((sev.code, sev.text().as_str()), (4000, "client done"));
    assert_ne!(sev.flags & FLAG_BY_PEER, 0, "{sev:?}");
    assert!(
        lp.events_of(id).iter().all(|e| !e.is(WSS_EV_ERROR)),
        "{:?}",
        lp.events_of(id)
    );
}

fn ws_server_opts(deflate: bool) -> wss_listen_opts {
    let mut o = listen_opts();
    o.ws_deflate = deflate;
    o.ws_protocols = cs("v2, v1");
    o
}

fn ws_client_opts(deflate: bool) -> wss_connect_opts {
    let mut c = connect_opts();
    c.ws_deflate = deflate;
    c.ws_protocols = cs("v1, v2");
    c
}

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 4 << 20];

#[test]
fn own_client_against_own_server_ws() {
    own_client_session(
        "ws://127.0.0.1:0",
        ws_server_opts(false),
        ws_client_opts(false),
        &SIZES,
    );
}

#[test]
fn own_client_against_own_server_ws_deflate() {
    own_client_session(
        "ws://127.0.0.1:0",
        ws_server_opts(true),
        ws_client_opts(true),
        &SIZES,
    );
}

fn tls_opts(deflate: bool) -> (wss_listen_opts, wss_connect_opts) {
    let c = certs();
    let mut o = ws_server_opts(deflate);
    o.tls_cert = cs(&c.ecdsa.cert);
    o.tls_key = cs(&c.ecdsa.key);
    let mut co = ws_client_opts(deflate);
    co.tls_ca = cs(&c.ca);
    (o, co)
}

#[test]
fn own_client_against_own_server_wss() {
    let (o, co) = tls_opts(false);
    // Messages over rustls's 64 KiB send buffer, one after another on one connection,
    // once stalled waiting for a writable edge that could not come.
    own_client_session("wss://127.0.0.1:0", o, co, &SIZES);
}

#[test]
fn own_client_against_own_server_wss_deflate() {
    let (o, co) = tls_opts(true);
    own_client_session("wss://127.0.0.1:0", o, co, &SIZES);
}

#[test]
fn own_client_sees_the_servers_close_code() {
    let (srv, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let lp = client_loop();
    let (r, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), None);
    assert_eq!(r, OK);
    client_open(&lp, id);
    let sconn = srv.wait_event("server open", |e| e.is(WSS_EV_WS_OPEN)).conn;
    assert_eq!(
        srv.call(move |ctx| ws_close(ctx, sconn, 4321, Some("server says bye"))),
        OK
    );
    let ev = lp.wait_event("client close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    assert_eq!((ev.code, ev.text().as_str()), (4321, "server says bye"));
    let sev = srv.wait_event("server close", |e| e.is(WSS_EV_CLOSE));
    assert_eq!((sev.code, sev.text().as_str()), (4321, "server says bye"));
    // The server started the closing handshake: not BY_PEER; the client's side is.
    assert_eq!(sev.flags & FLAG_BY_PEER, 0, "{sev:?}");
    assert_ne!(ev.flags & FLAG_BY_PEER, 0, "{ev:?}");
}

#[test]
fn own_client_streaming_mode() {
    let (_srv, _, port) = echo_loop("ws://127.0.0.1:0", None);
    let lp = client_loop();
    let mut co = connect_opts();
    co.ws_stream = true;
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), Some(co));
    client_open(&lp, id);
    let data = pattern(3 << 20);
    let d = data.clone();
    assert_eq!(lp.call(move |ctx| ws_send(ctx, id, &d, WSS_OP_BINARY)), OK);
    let msgs = stream_messages(&lp, id, 1);
    let joined: Vec<u8> = msgs[0].iter().flat_map(|(_, d)| d.clone()).collect();
    assert!(joined == data);
    assert!(msgs[0].iter().all(|(f, _)| f & FLAG_BINARY != 0));
}

#[test]
fn own_client_connection_refused_and_handshake_refused() {
    let lp = client_loop();
    // Nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (r, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), None);
    assert_eq!(r, OK);
    let ev = lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    let evs = lp.events_of(id);
    assert!(evs.iter().any(|e| e.is(WSS_EV_ERROR)), "{evs:?}");
    assert!(
        evs.iter()
            .all(|e| !e.is(WSS_EV_WS_OPEN) && !e.is(WSS_EV_CONNECT)),
        "{evs:?}"
    );
    // Never a WebSocket: no close code (0), or 1006.
    assert!(matches!(ev.code, 0 | 1006), "{ev:?}");
    // A server that refuses the upgrade (origin not allowed): error, close, no open.
    let mut o = listen_opts();
    o.ws_origins = cs("https://only.example");
    let (_srv, _, sport) = echo_loop("ws://127.0.0.1:0", Some(o));
    let mut co = connect_opts();
    co.ws_origin = cs("https://other.example");
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{sport}/"), Some(co));
    lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    let evs = lp.events_of(id);
    let err = evs
        .iter()
        .find(|e| e.is(WSS_EV_ERROR))
        .expect("an error event");
    assert!(err.text().contains("403"), "{err:?}");
    assert!(evs.iter().all(|e| !e.is(WSS_EV_WS_OPEN)), "{evs:?}");
    // A wss:// server whose certificate the client does not trust.
    let (o, _) = tls_opts(false);
    let (_tls, _, tport) = echo_loop("wss://127.0.0.1:0", Some(o));
    let mut co = connect_opts();
    co.tls_ca = cs(&certs().other_ca);
    let (_, id) = lp.connect(&format!("wss://127.0.0.1:{tport}/"), Some(co));
    lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    let evs = lp.events_of(id);
    assert!(evs.iter().any(|e| e.is(WSS_EV_ERROR)), "{evs:?}");
    assert!(evs.iter().all(|e| !e.is(WSS_EV_WS_OPEN)), "{evs:?}");
}

/// A raw server for one client: reads the upgrade request, answers with `response`
/// (built from the request's key), then hands the socket to `then`.
fn raw_server(
    response: impl FnOnce(&str) -> String + Send + 'static,
    then: impl FnOnce(BufReader<TcpStream>, TcpStream, String) + Send + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut req = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "EOF in the request");
            req.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let key = req
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_string())
            })
            .expect("a key");
        w.write_all(response(&key).as_bytes()).unwrap();
        then(r, w, req);
    });
    (port, t)
}

fn ok_101(key: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_for(key)
    )
}

#[test]
fn own_client_masks_with_fresh_keys_and_sends_its_headers() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (port, t) = raw_server(
        |key| ok_101(key, ""),
        move |mut r, mut w, req| {
            let mut frames = Vec::new();
            for _ in 0..3 {
                frames.push(read_frame(&mut r).unwrap().unwrap());
            }
            w.write_all(&server_frame(true, 0, OP_TEXT, b"from the server"))
                .unwrap();
            w.write_all(&server_frame(true, 0, OP_CLOSE, &close_payload(1000, b"")))
                .unwrap();
            let close = read_frame(&mut r).unwrap().unwrap();
            tx.send((req, frames, close)).unwrap();
        },
    );
    let lp = client_loop();
    let mut co = connect_opts();
    co.ws_origin = cs("https://me.example");
    co.ws_protocols = cs("p1, p2");
    co.ws_headers = cs("Authorization: Bearer t0k3n\r\nX-Custom: yes\r\n");
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/path?q=1"), Some(co));
    client_open(&lp, id);
    for i in 0..3 {
        let m = format!("same message {i}");
        assert_eq!(
            lp.call(move |ctx| ws_send(ctx, id, m.as_bytes(), WSS_OP_TEXT)),
            OK
        );
    }
    let ev = lp.wait_event("the server's message", |e| {
        e.conn == id && e.is(WSS_EV_WS_MSG)
    });
    assert_eq!(ev.text(), "from the server");
    let (req, frames, close) = rx.recv_timeout(WAIT).unwrap();
    t.join().unwrap();
    assert!(req.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{req}");
    for needle in [
        "Origin: https://me.example",
        "Authorization: Bearer t0k3n",
        "X-Custom: yes",
        "Sec-WebSocket-Version: 13",
    ] {
        assert!(req.contains(needle), "{needle} in {req}");
    }
    assert!(
        req.to_ascii_lowercase()
            .contains("sec-websocket-protocol: p1, p2"),
        "{req}"
    );
    let keys: Vec<Vec<u8>> = frames.iter().map(|f| f.head[2..6].to_vec()).collect();
    for (i, f) in frames.iter().enumerate() {
        assert!(f.masked && f.fin && f.opcode == OP_TEXT, "{f:?}");
        assert_eq!(f.payload, format!("same message {i}").as_bytes());
    }
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2],
        "masking keys repeat: {keys:?}"
    );
    // The client answered the server's close, masked, echoing the code.
    assert!(close.masked);
    assert_eq!(close.close_code(), Some(1000));
    let ev = lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    assert_eq!(ev.code, 1000);
}

#[test]
fn own_client_checks_the_accept_key_and_refuses_masked_frames() {
    let lp = client_loop();
    // A wrong Sec-WebSocket-Accept.
    let (port, t) = raw_server(
        |_| ok_101("AAAAAAAAAAAAAAAAAAAAAA==", ""),
        |mut r, _w, _| {
            let mut b = [0u8; 64];
            let _ = r.read(&mut b);
        },
    );
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), None);
    lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    let evs = lp.events_of(id);
    assert!(evs.iter().any(|e| e.is(WSS_EV_ERROR)), "{evs:?}");
    assert!(evs.iter().all(|e| !e.is(WSS_EV_WS_OPEN)), "{evs:?}");
    t.join().unwrap();
    // A subprotocol that was not offered.
    let (port, t) = raw_server(
        |key| ok_101(key, "Sec-WebSocket-Protocol: other\r\n"),
        |mut r, _w, _| {
            let mut b = [0u8; 64];
            let _ = r.read(&mut b);
        },
    );
    let mut co = connect_opts();
    co.ws_protocols = cs("mine");
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), Some(co));
    lp.wait_event("the close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
    assert!(lp.events_of(id).iter().all(|e| !e.is(WSS_EV_WS_OPEN)));
    t.join().unwrap();
    // A masked frame from the server: the client fails the connection with 1002.
    let (tx, rx) = std::sync::mpsc::channel();
    let (port, t) = raw_server(
        |key| ok_101(key, ""),
        move |mut r, mut w, _| {
            w.write_all(&frame(true, 0, OP_TEXT, b"masked")).unwrap();
            tx.send(read_frame(&mut r).unwrap().unwrap()).unwrap();
        },
    );
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), None);
    let close = rx.recv_timeout(WAIT).unwrap();
    t.join().unwrap();
    assert_eq!(close.close_code(), Some(1002));
    assert!(close.masked);
    let err = lp.wait_event("the error", |e| e.conn == id && e.is(WSS_EV_ERROR));
    assert_eq!(err.code, 1002);
    assert!(lp.events_of(id).iter().all(|e| !e.is(WSS_EV_WS_MSG)));
}

#[test]
fn own_client_permessage_deflate_on_the_wire() {
    let (tx, rx) = std::sync::mpsc::channel();
    let data = utf8_text(50_000);
    let d2 = data.clone();
    let (port, t) = raw_server(
        |key| {
            ok_101(
                key,
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            )
        },
        move |mut r, mut w, req| {
            let f = read_frame(&mut r).unwrap().unwrap();
            // And a compressed message to the client.
            let z = Deflate::new(15, false).message(&d2);
            w.write_all(&server_frame(true, 4, OP_TEXT, &z)).unwrap();
            // Fragmented, RSV1 on the first frame only.
            let z = Deflate::new(15, false)
                .message(b"fragmented and compressed, fragmented and compressed");
            w.write_all(&server_frame(false, 4, OP_BINARY, &z[..5]))
                .unwrap();
            w.write_all(&server_frame(true, 0, OP_CONT, &z[5..]))
                .unwrap();
            tx.send((req, f)).unwrap();
            let mut b = [0u8; 256];
            let _ = r.read(&mut b);
        },
    );
    let lp = client_loop();
    let mut co = connect_opts();
    co.ws_deflate = true;
    let (_, id) = lp.connect(&format!("ws://127.0.0.1:{port}/"), Some(co));
    client_open(&lp, id);
    let d = data.clone();
    assert_eq!(lp.call(move |ctx| ws_send(ctx, id, &d, WSS_OP_TEXT)), OK);
    let (req, f) = rx.recv_timeout(WAIT).unwrap();
    assert!(req.contains("permessage-deflate"), "{req}");
    assert!(f.masked);
    assert_eq!(
        (f.opcode, f.rsv),
        (OP_TEXT, 4),
        "the client compressed: {f:?}"
    );
    assert!(f.payload.len() < data.len() / 2);
    assert!(Inflate::new(15, false).message(&f.payload).unwrap() == data);
    lp.wait_for("two messages", |log| {
        log.iter()
            .filter(|e| e.conn == id && e.is(WSS_EV_WS_MSG))
            .count()
            == 2
    });
    let msgs: Vec<Ev> = lp
        .events_of(id)
        .into_iter()
        .filter(|e| e.is(WSS_EV_WS_MSG))
        .collect();
    assert!(msgs[0].data == data);
    assert_eq!(msgs[0].flags, FLAG_TEXT);
    assert_eq!(
        msgs[1].data,
        b"fragmented and compressed, fragmented and compressed"
    );
    assert_eq!(msgs[1].flags, FLAG_BINARY);
    drop(lp);
    t.join().unwrap();
}

// =============================================================================================
// Against Python `websockets` (run by scripts/test-interop.sh)

/// Starts tests/py/ws_echo_server.py with $WSS_PYTHON; returns the child and its two
/// ports (deflate, plain).
fn python_server() -> (std::process::Child, u16, u16) {
    let python = std::env::var("WSS_PYTHON")
        .expect("set WSS_PYTHON to a Python with `websockets` (scripts/test-interop.sh does)");
    let mut child = std::process::Command::new(python)
        .args(["-m", "ws_echo_server"])
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ports ") {
                let p: Vec<u16> = rest
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
                let _ = tx.send(p);
            }
        }
    });
    let Ok(p) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the Python server did not start");
    };
    (child, p[0], p[1])
}

#[test]
#[ignore = "needs WSS_PYTHON (scripts/test-interop.sh)"]
fn python_websockets_server_with_own_client() {
    let (mut child, deflate_port, plain_port) = python_server();
    let result = std::panic::catch_unwind(|| {
        for (port, deflate) in [
            (deflate_port, true),
            (plain_port, false),
            (deflate_port, false),
        ] {
            let lp = client_loop();
            let mut co = connect_opts();
            co.ws_deflate = deflate;
            co.ws_protocols = cs("x, v1");
            let (r, id) = lp.connect(&format!("ws://127.0.0.1:{port}/py"), Some(co));
            assert_eq!(r, OK);
            assert_eq!(client_open(&lp, id), "v1");
            // The server reports what was agreed.
            assert_eq!(
                lp.call(move |ctx| ws_send(ctx, id, b"?extensions", WSS_OP_TEXT)),
                OK
            );
            let ev = lp.wait_event("the report", |e| e.conn == id && e.is(WSS_EV_WS_MSG));
            let agreed = ev.text();
            assert_eq!(
                agreed.contains("permessage-deflate"),
                deflate && port == deflate_port,
                "port {port} deflate {deflate}: {agreed}"
            );
            let mut n = 1;
            for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20, 4 << 20] {
                client_roundtrip(&lp, id, &utf8_text(size), WSS_OP_TEXT, n);
                client_roundtrip(&lp, id, &pattern(size), WSS_OP_BINARY, n + 1);
                n += 2;
            }
            // A fragmented message from our side.
            let rs = lp.call(move |ctx| {
                [
                    ws_fragment(ctx, id, "frag".as_bytes(), WSS_OP_TEXT, false),
                    ws_fragment(ctx, id, "mént".as_bytes(), WSS_OP_CONTINUATION, true),
                ]
            });
            assert_eq!(rs, [OK, OK]);
            lp.wait_for("the fragmented echo", |log| {
                log.iter()
                    .filter(|e| e.conn == id && e.is(WSS_EV_WS_MSG))
                    .count()
                    > n
            });
            let last = lp
                .events_of(id)
                .into_iter()
                .filter(|e| e.is(WSS_EV_WS_MSG))
                .nth(n)
                .unwrap();
            assert_eq!(last.text(), "fragmént");
            // Close from our side with a code; then one where the server closes.
            assert_eq!(lp.call(move |ctx| ws_close(ctx, id, 4000, Some("bye"))), OK);
            let ev = lp.wait_event("close", |e| e.conn == id && e.is(WSS_EV_CLOSE));
            assert_eq!(ev.code, 4000, "{:?}", lp.events_of(id));
            assert!(
                lp.events_of(id).iter().all(|e| !e.is(WSS_EV_ERROR)),
                "{:?}",
                lp.events_of(id)
            );
            let (_, id2) = lp.connect(&format!("ws://127.0.0.1:{port}/py"), Some(co));
            client_open(&lp, id2);
            assert_eq!(
                lp.call(move |ctx| ws_send(ctx, id2, b"?close 4001", WSS_OP_TEXT)),
                OK
            );
            let ev = lp.wait_event("close 2", |e| e.conn == id2 && e.is(WSS_EV_CLOSE));
            assert_eq!((ev.code, ev.text().as_str()), (4001, "closing as asked"));
        }
    });
    drop(child.stdin.take());
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
