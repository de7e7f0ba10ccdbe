//! TLS listeners and clients through the manager: real clients (curl, openssl s_client),
//! certificate errors at listen time, bad peers that harm nobody else, mutual TLS, the
//! library's own tls:// client, and handshake timeouts.

mod common;

use common::*;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use wsserver::ffi::conn::{wss_conn_tls_info, wss_tls_info};
use wsserver::ffi::event::wss_event_kind::*;
use wsserver::ffi::mgr::*;
use wsserver::ffi::opts::{wss_connect_opts, wss_tls_cert};
use wsserver::ffi::result::wss_result::*;

fn s(v: wsserver::ffi::event::wss_str) -> String {
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(v.ptr, v.len) }).into_owned()
}

/// PEM strings kept alive for the options that point at them.
struct Keep(Vec<CString>);

impl Keep {
    fn c(&mut self, s: &str) -> *const std::ffi::c_char {
        self.0.push(CString::new(s).unwrap());
        self.0.last().unwrap().as_ptr()
    }
}

/// Replies with what TLS negotiated.
fn tls_echo(ctx: &mut Ctx, ev: &Ev) {
    if ev.is(WSS_EV_HTTP_MSG) {
        let mut i: wss_tls_info = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { wss_conn_tls_info(ctx.mgr, ev.conn, &mut i) }, OK);
        let body = format!(
            "version={} alpn={} sni={} peer={}",
            s(i.version),
            s(i.alpn),
            s(i.sni),
            s(i.peer_identity)
        );
        reply(ctx, ev.conn, 200, "", body.as_bytes());
    }
}

fn https_server(keep: &mut Keep, client_ca: bool) -> Loop {
    let c = certs();
    let mut o = listen_opts();
    o.tls_cert = keep.c(&c.ecdsa.cert);
    o.tls_key = keep.c(&c.ecdsa.key);
    let sni = Box::leak(Box::new([wss_tls_cert {
        cert: keep.c(&c.sni_a.cert),
        key: keep.c(&c.sni_a.key),
    }]));
    o.tls_sni = sni.as_ptr();
    o.tls_sni_count = 1;
    if client_ca {
        o.tls_client_ca = keep.c(&c.ca);
    }
    Loop::serve("https://127.0.0.1:0", Some(o), tls_echo)
}

#[test]
fn curl_over_https_with_keep_alive() {
    let mut keep = Keep(Vec::new());
    let srv = https_server(&mut keep, false);
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &certs().ca);
    let url = format!("https://localhost:{}/", srv.port);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "20",
            "--cacert",
            &ca,
            &url,
            &url,
            &format!("{url}again"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.matches("alpn=http/1.1 sni=localhost").count(),
        3,
        "{stdout}"
    );
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    assert_eq!(srv.events(WSS_EV_ACCEPT).len(), 1);
    assert_eq!(srv.events(WSS_EV_TLS_READY).len(), 1);
}

#[test]
fn openssl_s_client_versions_alpn_and_sni() {
    let mut keep = Keep(Vec::new());
    let srv = https_server(&mut keep, false);
    let addr = srv.addr();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (_, out, err) = run_openssl(
            &[
                "s_client",
                "-connect",
                &addr,
                version,
                "-alpn",
                "http/1.1",
                "-servername",
                "a.test",
                "-ign_eof",
            ],
            request,
            Duration::from_secs(20),
        );
        assert!(
            out.contains(&format!("version={name} alpn=http/1.1 sni=a.test")),
            "{out}\n{err}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
        assert!(
            out.contains("CN=a.test") || out.contains("CN = a.test"),
            "the SNI certificate: {out}"
        );
    }
}

#[test]
fn certificate_problems_fail_listen_with_a_clear_message() {
    let m = unsafe { wss_mgr_new(std::ptr::null()) };
    let mut keep = Keep(Vec::new());
    let url = CString::new("https://127.0.0.1:0").unwrap();
    let mut id = 0;
    let listen = |o: &wsserver::ffi::opts::wss_listen_opts, id: &mut u64| unsafe {
        wss_mgr_listen(m, url.as_ptr(), o, id)
    };
    let err = || {
        unsafe { std::ffi::CStr::from_ptr(wss_mgr_last_error(m)) }
            .to_string_lossy()
            .into_owned()
    };
    let c = certs();
    let mut o = listen_opts();
    o.tls_cert = keep.c("/nonexistent/cert.pem");
    o.tls_key = keep.c(&c.ecdsa.key);
    assert_eq!(listen(&o, &mut id), WSS_RESULT_TLS_CONFIG);
    assert!(
        err().contains("/nonexistent/cert.pem") && err().contains("No such file"),
        "{}",
        err()
    );
    o.tls_cert = keep.c(&c.ecdsa.cert);
    o.tls_key = keep.c(&c.stray_ecdsa_key);
    assert_eq!(listen(&o, &mut id), WSS_RESULT_TLS_CONFIG);
    assert!(err().contains("do not match"), "{}", err());
    o.tls_key = keep.c("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n");
    assert_eq!(listen(&o, &mut id), WSS_RESULT_TLS_CONFIG);
    let plain = listen_opts();
    assert_eq!(
        listen(&plain, &mut id),
        WSS_RESULT_INVALID_ARGUMENT,
        "https without certificates"
    );
    assert!(err().contains("need tls_cert"), "{}", err());
    let http = CString::new("http://127.0.0.1:0").unwrap();
    o.tls_key = keep.c(&c.ecdsa.key);
    assert_eq!(
        unsafe { wss_mgr_listen(m, http.as_ptr(), &o, &mut id) },
        WSS_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(listen(&o, &mut id), OK);
    unsafe { wss_mgr_free(m) };
}

/// Reads one response over TLS with openssl (used as a healthy client).
fn healthy_request(addr: &str, ca: &str) -> String {
    let (_, out, _) = run_openssl(
        &[
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            ca,
            "-servername",
            "localhost",
            "-ign_eof",
            "-quiet",
        ],
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(20),
    );
    out
}

#[test]
fn bad_peers_on_a_tls_port_harm_nobody_else() {
    let mut keep = Keep(Vec::new());
    let srv = https_server(&mut keep, false);
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &certs().ca);
    // A healthy client in the middle of its session while the bad ones arrive.
    let mut bads = Vec::new();
    let mut plain = TcpStream::connect(srv.addr()).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    bads.push(plain);
    let mut garbage = TcpStream::connect(srv.addr()).unwrap();
    garbage
        .write_all(&[
            0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02,
        ])
        .unwrap();
    bads.push(garbage);
    let mut truncated = TcpStream::connect(srv.addr()).unwrap();
    truncated
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    drop(truncated);
    for _ in 0..3 {
        assert!(healthy_request(&srv.addr(), &ca).contains("version=TLSv1.3"));
    }
    for mut b in bads {
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let _ = b.read_to_end(&mut buf);
        assert!(
            !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
            "a bad peer was served"
        );
    }
    srv.wait_for("three TLS errors", |l| {
        l.iter()
            .filter(|e| e.is(WSS_EV_ERROR) && e.code == 1015)
            .count()
            >= 3
    });
    let errors: Vec<String> = srv.events(WSS_EV_ERROR).iter().map(|e| e.text()).collect();
    assert!(
        errors.iter().any(|e| e.contains("not speaking TLS")),
        "{errors:?}"
    );
    assert_eq!(
        srv.events(WSS_EV_HTTP_MSG).len(),
        3,
        "only the healthy requests got through"
    );
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate() {
    let mut keep = Keep(Vec::new());
    let srv = https_server(&mut keep, true);
    let c = certs();
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &c.ca);
    let cert = dir.write("alice.pem", &c.alice.cert);
    let key = dir.write("alice.key", &c.alice.key);
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (_, out, _) = run_openssl(
        &[
            "s_client",
            "-connect",
            &srv.addr(),
            "-CAfile",
            &ca,
            "-ign_eof",
            "-quiet",
        ],
        req,
        Duration::from_secs(20),
    );
    assert!(
        !out.contains("HTTP/1.1 200"),
        "served without a certificate: {out}"
    );
    let (_, out, err) = run_openssl(
        &[
            "s_client",
            "-connect",
            &srv.addr(),
            "-CAfile",
            &ca,
            "-cert",
            &cert,
            "-key",
            &key,
            "-ign_eof",
            "-quiet",
        ],
        req,
        Duration::from_secs(20),
    );
    assert!(out.contains("peer=CN=alice,O=Test Org"), "{out}\n{err}");
}

#[test]
fn own_tls_client_against_own_tls_server() {
    let c = certs();
    let mut keep = Keep(Vec::new());
    let mut o = listen_opts();
    o.tls_cert = keep.c(&c.ecdsa.cert);
    o.tls_key = keep.c(&c.ecdsa.key);
    let srv = Loop::serve("tls://127.0.0.1:0", Some(o), |ctx, ev| {
        if ev.is(WSS_EV_READ) {
            let mut back = b"echo:".to_vec();
            back.extend_from_slice(&ev.data);
            unsafe {
                wsserver::ffi::conn::wss_conn_send(ctx.mgr, ev.conn, back.as_ptr(), back.len())
            };
        }
    });
    let m = unsafe { wss_mgr_new(std::ptr::null()) };
    let url = CString::new(format!("tls://localhost:{}", srv.port)).unwrap();
    let mut co: wss_connect_opts = unsafe { std::mem::zeroed() };
    co.struct_size = std::mem::size_of::<wss_connect_opts>() as u32;
    co.tls_ca = keep.c(&c.ca);
    let mut id = 0;
    assert_eq!(
        unsafe { wss_mgr_connect(m, url.as_ptr(), &co, &mut id) },
        OK
    );
    // Sent before the handshake: buffered, then delivered.
    assert_eq!(
        unsafe { wsserver::ffi::conn::wss_conn_send(m, id, b"early".as_ptr(), 5) },
        OK
    );
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    let t0 = Instant::now();
    while !got.ends_with(b"echo:early") && t0.elapsed() < Duration::from_secs(10) {
        unsafe { wss_mgr_poll(m, 10, std::ptr::null_mut()) };
        let mut ev: wsserver::ffi::event::wss_event = unsafe { std::mem::zeroed() };
        while unsafe { wsserver::ffi::event::wss_mgr_next_event(m, &mut ev) } {
            kinds.push(ev.kind);
            if ev.kind == WSS_EV_READ as u32 {
                got.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(ev.data.ptr, ev.data.len)
                });
            }
        }
    }
    assert_eq!(got, b"echo:early");
    assert!(kinds.contains(&(WSS_EV_CONNECT as u32)) && kinds.contains(&(WSS_EV_TLS_READY as u32)));
    // A client that does not trust the server's CA fails with an error event.
    co.tls_ca = keep.c(&c.other_ca);
    let mut bad = 0;
    assert_eq!(
        unsafe { wss_mgr_connect(m, url.as_ptr(), &co, &mut bad) },
        OK
    );
    let mut error = String::new();
    let t0 = Instant::now();
    while error.is_empty() && t0.elapsed() < Duration::from_secs(10) {
        unsafe { wss_mgr_poll(m, 10, std::ptr::null_mut()) };
        let mut ev: wsserver::ffi::event::wss_event = unsafe { std::mem::zeroed() };
        while unsafe { wsserver::ffi::event::wss_mgr_next_event(m, &mut ev) } {
            if ev.kind == WSS_EV_ERROR as u32 && ev.conn == bad {
                assert_eq!(ev.code, 1015);
                error = s(ev.data);
            }
        }
    }
    assert!(error.contains("certificate"), "{error}");
    unsafe { wss_mgr_free(m) };
}

#[test]
fn a_stalled_handshake_times_out() {
    let c = certs();
    let mut keep = Keep(Vec::new());
    let mut o = listen_opts();
    o.tls_cert = keep.c(&c.ecdsa.cert);
    o.tls_key = keep.c(&c.ecdsa.key);
    o.tls_handshake_timeout_ms = 300;
    let srv = Loop::serve("https://127.0.0.1:0", Some(o), tls_echo);
    let mut stalled = TcpStream::connect(srv.addr()).unwrap();
    assert!(closed_by_peer(&mut stalled));
    srv.wait_for("timeout error", |l| {
        l.iter()
            .any(|e| e.is(WSS_EV_ERROR) && e.text().contains("handshake timeout"))
    });
}
