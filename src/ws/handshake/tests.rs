//! Handshake tests: the server side against RFC 6455 §4.2 and its refusals, the
//! client side against the responses it must accept or fail.

use super::*;

const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

fn request(extra: &[(&'static str, &'static [u8])]) -> Vec<(&'static str, &'static [u8])> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Host", b"server.example.com"),
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", b"13"),
    ];
    headers.extend_from_slice(extra);
    headers
}

fn without(
    headers: &[(&'static str, &'static [u8])],
    name: &str,
) -> Vec<(&'static str, &'static [u8])> {
    headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .copied()
        .collect()
}

#[test]
fn rfc6455_accept_vector() {
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn minimal_request_is_accepted() {
    let accepted = accept("GET", 1, &request(&[]), &ServerOptions::default()).unwrap();
    assert_eq!(accepted.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(accepted.protocol, None);
    assert_eq!(accepted.deflate, None);
    assert_eq!(
        accepted.response_head,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    );
}

#[test]
fn token_lists_and_case() {
    let headers: Vec<(&str, &[u8])> = vec![
        ("host", b"x"),
        ("UPGRADE", b"h2c, WebSocket"),
        ("connection", b"keep-alive"),
        ("Connection", b"foo,  upgrade "),
        ("sec-websocket-key", b" dGhlIHNhbXBsZSBub25jZQ== "),
        ("SEC-WEBSOCKET-VERSION", b"13"),
    ];
    assert!(accept("GET", 1, &headers, &ServerOptions::default()).is_ok());
}

#[test]
fn rejections() {
    let ok = request(&[]);
    let o = ServerOptions::default();
    let status = |r: Result<Accepted, Rejection>| r.unwrap_err().status;
    assert_eq!(status(accept("POST", 1, &ok, &o)), 400);
    assert_eq!(status(accept("GET", 0, &ok, &o)), 400);
    assert_eq!(status(accept("GET", 1, &without(&ok, "upgrade"), &o)), 400);
    assert_eq!(
        status(accept("GET", 1, &without(&ok, "connection"), &o)),
        400
    );
    assert_eq!(
        status(accept("GET", 1, &without(&ok, "sec-websocket-key"), &o)),
        400
    );
    let mut bad_conn = without(&ok, "connection");
    bad_conn.push(("Connection", b"upgraded"));
    assert_eq!(status(accept("GET", 1, &bad_conn, &o)), 400);
    for key in [
        &b"short"[..],
        b"dGhlIHNhbXBsZSBub25jZQ",
        b"dGhlIHNhbXBsZSBub25jZXg=",
        b"!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        let mut h = without(&ok, "sec-websocket-key");
        h.push(("Sec-WebSocket-Key", key));
        assert_eq!(status(accept("GET", 1, &h, &o)), 400, "{key:?}");
    }
    let mut two_keys = ok.clone();
    two_keys.push(("Sec-WebSocket-Key", KEY));
    assert_eq!(status(accept("GET", 1, &two_keys, &o)), 400);
    for version in [&b"8"[..], b"12", b"13, 8", b""] {
        let mut h = without(&ok, "sec-websocket-version");
        h.push(("Sec-WebSocket-Version", version));
        let r = accept("GET", 1, &h, &o).unwrap_err();
        assert_eq!(
            (r.status, r.headers.as_str()),
            (426, "Sec-WebSocket-Version: 13\r\n")
        );
    }
    let r = accept("GET", 1, &without(&ok, "sec-websocket-version"), &o).unwrap_err();
    assert_eq!(r.status, 426);
}

#[test]
fn origins() {
    let allowed: &[&str] = &["https://example.com", "http://localhost:8080"];
    let o = ServerOptions {
        allowed_origins: Some(allowed),
        ..ServerOptions::default()
    };
    assert!(
        accept("GET", 1, &request(&[]), &o).is_ok(),
        "no Origin: not a browser"
    );
    assert!(accept(
        "GET",
        1,
        &request(&[("Origin", b"https://example.com")]),
        &o
    )
    .is_ok());
    assert!(accept(
        "GET",
        1,
        &request(&[("origin", b"HTTPS://EXAMPLE.COM")]),
        &o
    )
    .is_ok());
    for bad in [
        &b"https://evil.com"[..],
        b"https://example.com.evil.com",
        b"null",
        b"http://localhost:8081",
    ] {
        assert_eq!(
            accept("GET", 1, &request(&[("Origin", bad)]), &o)
                .unwrap_err()
                .status,
            403
        );
    }
    let two = request(&[
        ("Origin", b"https://example.com"),
        ("Origin", b"https://evil.com"),
    ]);
    assert_eq!(accept("GET", 1, &two, &o).unwrap_err().status, 403);
    let any = ServerOptions {
        allowed_origins: Some(&["*"]),
        ..ServerOptions::default()
    };
    assert!(accept("GET", 1, &request(&[("Origin", b"https://evil.com")]), &any).is_ok());
}

#[test]
fn subprotocols() {
    let headers = request(&[
        ("Sec-WebSocket-Protocol", b"chat, superchat"),
        ("Sec-WebSocket-Protocol", b"v2.json"),
    ]);
    let pick = |protocols: &[&str], chosen: Option<&str>| {
        let o = ServerOptions {
            protocols,
            chosen_protocol: chosen,
            ..ServerOptions::default()
        };
        accept("GET", 1, &headers, &o).map(|a| (a.protocol, a.response_head))
    };
    let (p, head) = pick(&["v2.json", "chat"], None).unwrap();
    assert_eq!(p.as_deref(), Some("v2.json"));
    assert!(head.ends_with("Sec-WebSocket-Protocol: v2.json\r\n"));
    assert_eq!(
        pick(&["superchat", "chat"], None).unwrap().0.as_deref(),
        Some("superchat")
    );
    let (p, head) = pick(&["mqtt"], None).unwrap();
    assert_eq!(p, None);
    assert!(!head.contains("Sec-WebSocket-Protocol"));
    assert_eq!(pick(&[], Some("chat")).unwrap().0.as_deref(), Some("chat"));
    assert_eq!(pick(&["chat"], Some("mqtt")).unwrap_err().status, 400);
    // Case matters for subprotocol names.
    assert_eq!(pick(&["CHAT"], None).unwrap().0, None);
}

#[test]
fn deflate_negotiation_in_the_handshake() {
    let config = DeflateConfig::default();
    let o = ServerOptions {
        deflate: Some(&config),
        ..ServerOptions::default()
    };
    let headers = request(&[(
        "Sec-WebSocket-Extensions",
        b"permessage-deflate; client_max_window_bits; server_max_window_bits=10",
    )]);
    let a = accept("GET", 1, &headers, &o).unwrap();
    assert_eq!(a.deflate.unwrap().server_max_window_bits, 10);
    assert!(a
        .response_head
        .ends_with("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"));
    // An unacceptable offer: no compression, no header, no failure.
    let headers = request(&[("Sec-WebSocket-Extensions", b"permessage-deflate; bogus")]);
    let a = accept("GET", 1, &headers, &o).unwrap();
    assert_eq!(a.deflate, None);
    assert!(!a.response_head.contains("Extensions"));
    // Compression disabled on the server.
    let headers = request(&[("Sec-WebSocket-Extensions", b"permessage-deflate")]);
    assert_eq!(
        accept("GET", 1, &headers, &ServerOptions::default())
            .unwrap()
            .deflate,
        None
    );
}

fn header_lines(head: &str) -> Vec<(String, Vec<u8>)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().as_bytes().to_vec())
        })
        .collect()
}

fn parse_head(head: &str) -> (u16, Vec<(String, Vec<u8>)>) {
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, header_lines(head))
}

fn borrow(headers: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect()
}

#[test]
fn client_and_server_agree() {
    let client_config = DeflateConfig {
        client_no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let client = ClientHandshake::new(
        "example.com:8080",
        "/chat?room=1",
        Some("https://example.com"),
        &["v1", "v2"],
        Some(client_config),
        &[("Authorization", "Bearer abc")],
    )
    .unwrap();
    let request = std::str::from_utf8(client.request()).unwrap();
    assert!(request.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
    assert!(request.ends_with("Authorization: Bearer abc\r\n\r\n"));
    assert_eq!(BASE64.decode(client.key()).unwrap().len(), 16);

    let req_headers = header_lines(request);
    let server_config = DeflateConfig::default();
    let o = ServerOptions {
        protocols: &["v2"],
        deflate: Some(&server_config),
        allowed_origins: Some(&["https://example.com"]),
        ..ServerOptions::default()
    };
    let accepted = accept("GET", 1, &borrow(&req_headers), &o).unwrap();
    let (status, resp_headers) = parse_head(&accepted.response_head);
    let negotiated = client
        .check_response(status, &borrow(&resp_headers))
        .unwrap();
    assert_eq!(negotiated.protocol.as_deref(), Some("v2"));
    assert_eq!(negotiated.deflate, accepted.deflate);
    assert!(negotiated.deflate.unwrap().client_no_context_takeover);
}

#[test]
fn client_rejects_bad_responses() {
    let client = ClientHandshake::new("h", "/", None, &["v1"], None, &[]).unwrap();
    let accept_value = accept_key(client.key().as_bytes());
    let good: Vec<(&str, &[u8])> = vec![
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Accept", accept_value.as_bytes()),
    ];
    assert_eq!(
        client.check_response(101, &good),
        Ok(Negotiated {
            protocol: None,
            deflate: None
        })
    );
    assert_eq!(
        client.check_response(200, &good),
        Err(HandshakeError::Status(200))
    );
    let drop = |name: &str| -> Vec<(&str, &[u8])> {
        good.iter().filter(|(n, _)| *n != name).copied().collect()
    };
    assert_eq!(
        client.check_response(101, &drop("Upgrade")),
        Err(HandshakeError::MissingUpgrade)
    );
    assert_eq!(
        client.check_response(101, &drop("Connection")),
        Err(HandshakeError::MissingConnection)
    );
    assert_eq!(
        client.check_response(101, &drop("Sec-WebSocket-Accept")),
        Err(HandshakeError::BadAccept)
    );
    let mut wrong = drop("Sec-WebSocket-Accept");
    wrong.push(("Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(
        client.check_response(101, &wrong),
        Err(HandshakeError::BadAccept)
    );
    let mut with = good.clone();
    with.push(("Sec-WebSocket-Protocol", b"v1"));
    assert_eq!(
        client
            .check_response(101, &with)
            .unwrap()
            .protocol
            .as_deref(),
        Some("v1")
    );
    let mut with = good.clone();
    with.push(("Sec-WebSocket-Protocol", b"v3"));
    assert_eq!(
        client.check_response(101, &with),
        Err(HandshakeError::UnexpectedProtocol)
    );
    let mut with = good.clone();
    with.push(("Sec-WebSocket-Protocol", b"v1, v1"));
    assert_eq!(
        client.check_response(101, &with),
        Err(HandshakeError::UnexpectedProtocol)
    );
    let mut with = good.clone();
    with.push(("Sec-WebSocket-Extensions", b"permessage-deflate"));
    assert_eq!(
        client.check_response(101, &with),
        Err(HandshakeError::UnexpectedExtension)
    );
    let mut with = good.clone();
    with.push(("Sec-WebSocket-Extensions", b" "));
    assert!(client.check_response(101, &with).is_ok());

    let deflating =
        ClientHandshake::new("h", "/", None, &[], Some(DeflateConfig::default()), &[]).unwrap();
    let accept_value = accept_key(deflating.key().as_bytes());
    let mut with: Vec<(&str, &[u8])> = vec![
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Accept", accept_value.as_bytes()),
    ];
    assert_eq!(deflating.check_response(101, &with).unwrap().deflate, None);
    with.push(("Sec-WebSocket-Extensions", b"permessage-deflate; mystery"));
    assert_eq!(
        deflating.check_response(101, &with),
        Err(HandshakeError::Extension(ExtensionError::InvalidParameter))
    );
}

#[test]
fn client_refuses_header_injection() {
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
    );
    let cases: [Case<'_>; 6] = [
        ("h\r\nX: y", "/", None, &[], &[]),
        ("h", "/a b", None, &[], &[]),
        ("h", "nopath", None, &[], &[]),
        ("h", "/", Some("o\r\n"), &[], &[]),
        ("h", "/", None, &["a b"], &[]),
        ("h", "/", None, &[], &[("X", "v\nInjected: 1")]),
    ];
    for (host, path, origin, protocols, extra) in cases {
        assert!(matches!(
            ClientHandshake::new(host, path, origin, protocols, None, extra),
            Err(HandshakeError::InvalidRequestField(_))
        ));
    }
}
