//! TlsStream server against TlsStream client over loopback sockets, driven by an
//! edge-triggered mio loop as in the server.

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{certs, Pem};
use crate::peer::*;
use wsserver::net::tls::{server_config, ClientOptions, ServerOptions, TlsStream, Versions};

/// Sends `data` from a client to an echo server and checks it comes back intact; then closes
/// both directions with close_notify. Returns the peers for further checks.
fn echo(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
    server_name: &str,
    data: &[u8],
    read_size: usize,
) -> (Peer, Peer) {
    let (s, c) = socket_pair();
    let mut server = Peer::server(s, server).echo().read_size(read_size);
    let mut client = Peer::client(c, client, server_name).read_size(read_size);
    // Written before the handshake has even started: the stream must hold on to it.
    client.send(data);
    let timeout = Duration::from_secs(120);
    drive(&mut [&mut server, &mut client], timeout, |p| {
        p.iter().any(|p| p.error.is_some()) || p[1].received_len == data.len()
    })
    .unwrap();
    assert!(server.error.is_none(), "server: {:?}", server.error);
    assert!(client.error.is_none(), "client: {:?}", client.error);
    assert!(client.received == data, "echoed data differs");

    // Client closes: the server must see a clean EOF.
    client.close();
    drive(&mut [&mut server, &mut client], timeout, |p| {
        p[0].eof || p[0].error.is_some()
    })
    .unwrap();
    assert!(server.error.is_none(), "server: {:?}", server.error);
    assert!(server.tls.received_close_notify());
    // And the other way round.
    server.close();
    drive(&mut [&mut server, &mut client], timeout, |p| {
        p[1].eof || p[1].error.is_some()
    })
    .unwrap();
    assert!(client.error.is_none(), "client: {:?}", client.error);
    assert!(client.tls.received_close_notify());
    (server, client)
}

fn server_with(options: ServerOptions<'_>) -> Arc<rustls::ServerConfig> {
    server_config(&options).expect("server config")
}

#[test]
fn echo_one_byte() {
    let (server, client) = echo(
        &default_server(),
        &default_client(),
        "localhost",
        b"x",
        4096,
    );
    assert_eq!(server.tls.protocol_version(), Some("TLSv1.3"));
    assert_eq!(client.tls.protocol_version(), Some("TLSv1.3"));
    assert!(server.tls.cipher_suite().unwrap().starts_with("TLS13_"));
    assert_eq!(server.tls.alpn_protocol(), None);
    assert_eq!(server.tls.sni_hostname(), Some("localhost"));
    assert_eq!(client.tls.sni_hostname(), None);
    // No client certificate was requested.
    assert_eq!(server.tls.peer_identity(), None);
    // The client sees the server's certificate.
    assert_eq!(client.tls.peer_identity().as_deref(), Some("CN=localhost"));
    assert!(client.tls.peer_certificate().is_some());
}

#[test]
fn echo_64k_with_tiny_read_buffers() {
    // 7-byte reads: almost every record leaves decrypted data behind in rustls, which must be
    // handed out before read() reports WouldBlock (edge-triggered loop, no second chance).
    let data = pattern(64 * 1024);
    let (server, client) = echo(&default_server(), &default_client(), "localhost", &data, 7);
    assert!(server.read_calls > data.len() / 7);
    assert!(client.read_calls > data.len() / 7);
}

#[test]
fn echo_16_mib() {
    let data = pattern(16 * 1024 * 1024);
    let started = Instant::now();
    echo(
        &default_server(),
        &default_client(),
        "localhost",
        &data,
        16 * 1024,
    );
    eprintln!("16 MiB echoed in {:?}", started.elapsed());
}

#[test]
fn server_writes_16_mib_during_handshake() {
    // The server queues its data before the handshake completes; the stream buffers a
    // bounded amount, returns WouldBlock for the rest, and the loop retries after reads.
    let data = pattern(16 * 1024 * 1024);
    let (s, c) = socket_pair();
    let mut server = Peer::server(s, &default_server());
    let mut client = Peer::client(c, &default_client(), "localhost");
    server.send(&data);
    assert!(server.tls.is_handshaking());
    assert_eq!(
        server.pending(),
        data.len() - wsserver::net::tls::SEND_BUFFER_LIMIT
    );
    drive(
        &mut [&mut server, &mut client],
        Duration::from_secs(120),
        |p| p.iter().any(|p| p.error.is_some()) || p[1].received_len == data.len(),
    )
    .unwrap();
    assert!(client.received == data);
}

#[test]
fn versions_with_each_key_type() {
    let c = certs();
    let pairs: [(&str, &str, &str); 5] = [
        ("ECDSA P-256 (PKCS#8)", &c.ecdsa.cert, &c.ecdsa.key),
        ("ECDSA P-256 (SEC1)", &c.ecdsa.cert, &c.ecdsa_sec1_key),
        ("Ed25519", &c.ed25519.cert, &c.ed25519.key),
        ("RSA (PKCS#8)", &c.rsa.cert, &c.rsa.key),
        ("RSA (PKCS#1)", &c.rsa.cert, &c.rsa_pkcs1_key),
    ];
    for (label, cert, key) in pairs {
        // TLS 1.2 chosen by the client, TLS 1.3 chosen by the server.
        for (server_versions, client_versions, expected) in [
            (Versions::ALL, Versions::TLS12_ONLY, "TLSv1.2"),
            (Versions::TLS13_ONLY, Versions::ALL, "TLSv1.3"),
        ] {
            let server = server_with(ServerOptions {
                cert,
                key,
                versions: server_versions,
                ..Default::default()
            });
            let client = client_with(ClientOptions {
                ca: Some(&c.ca),
                versions: client_versions,
                ..Default::default()
            });
            let (server, client) = echo(&server, &client, "localhost", b"hello", 4096);
            assert_eq!(server.tls.protocol_version(), Some(expected), "{label}");
            assert_eq!(client.tls.protocol_version(), Some(expected), "{label}");
        }
    }
}

#[test]
fn no_common_version_fails() {
    let c = certs();
    let server = server_with(ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        versions: Versions::TLS12_ONLY,
        ..Default::default()
    });
    let client = client_with(ClientOptions {
        ca: Some(&c.ca),
        versions: Versions::TLS13_ONLY,
        ..Default::default()
    });
    let (s, k) = socket_pair();
    let mut server = Peer::server(s, &server);
    let mut client = Peer::client(k, &client, "localhost");
    drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
    let text = server.error_text();
    assert!(
        text.starts_with("TLS handshake failed: peer is incompatible"),
        "{text}"
    );
    assert!(client.error.is_some());
}

#[test]
fn alpn() {
    let c = certs();
    let case = |server_alpn: &[&[u8]], client_alpn: &[&[u8]]| {
        let server = server_with(ServerOptions {
            cert: &c.ecdsa.cert,
            key: &c.ecdsa.key,
            alpn: server_alpn,
            ..Default::default()
        });
        let client = client_with(ClientOptions {
            ca: Some(&c.ca),
            alpn: client_alpn,
            ..Default::default()
        });
        let (s, k) = socket_pair();
        let mut server = Peer::server(s, &server);
        let mut client = Peer::client(k, &client, "localhost");
        handshake(&mut server, &mut client).unwrap();
        (server, client)
    };

    let (server, client) = case(HTTP11, HTTP11);
    assert_eq!(server.tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(client.tls.alpn_protocol(), Some(&b"http/1.1"[..]));

    // The server's preference wins among what the client offers.
    let (server, client) = case(&[b"h2", b"http/1.1"], &[b"http/1.1", b"h2"]);
    assert_eq!(server.tls.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(client.tls.alpn_protocol(), Some(&b"h2"[..]));

    // A client that does not use ALPN is still served.
    let (server, client) = case(HTTP11, &[]);
    assert!(server.error.is_none() && client.error.is_none());
    assert_eq!(server.tls.alpn_protocol(), None);

    // No overlap: refused, as RFC 7301 requires.
    let (mut server, mut client) = case(HTTP11, &[b"h2"]);
    drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
    let text = server.error_text();
    assert_eq!(
        text,
        "TLS handshake failed: no ALPN protocol in common with the peer"
    );
    let text = client.error_text();
    assert!(text.contains("NoApplicationProtocol"), "{text}");
}

fn sni_server() -> Arc<rustls::ServerConfig> {
    let c = certs();
    let extra = [
        (c.sni_a.cert.as_str(), c.sni_a.key.as_str()),
        (c.sni_wild.cert.as_str(), c.sni_wild.key.as_str()),
    ];
    server_with(ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        sni: &extra,
        ..Default::default()
    })
}

#[test]
fn sni_selects_certificate() {
    let server = sni_server();
    let client = default_client();
    // The client verifies the certificate against the name, so a completed handshake proves
    // the right certificate was chosen; the identity double-checks it.
    for (name, expected_sni, identity) in [
        ("a.test", Some("a.test"), "CN=a.test"),
        ("A.TEST", Some("a.test"), "CN=a.test"),
        ("x.wild.test", Some("x.wild.test"), "CN=wild"),
        ("localhost", Some("localhost"), "CN=localhost"),
        ("127.0.0.1", None, "CN=localhost"),
    ] {
        let (s, c) = echo(&server, &client, name, b"sni", 4096);
        assert_eq!(s.tls.sni_hostname(), expected_sni, "{name}");
        assert_eq!(c.tls.peer_identity().as_deref(), Some(identity), "{name}");
    }
}

#[test]
fn sni_unknown_name_gets_default_certificate() {
    let server = sni_server();
    let (s, k) = socket_pair();
    let mut server = Peer::server(s, &server);
    let mut client = Peer::client(k, &default_client(), "other.test");
    drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
    // The default certificate (localhost) does not cover other.test.
    let text = client.error_text();
    assert!(
        text.contains("invalid peer certificate: certificate not valid for name \"other.test\""),
        "{text}"
    );
    assert_eq!(server.tls.sni_hostname(), Some("other.test"));
    assert!(
        server.error_text().contains("alert"),
        "{}",
        server.error_text()
    );
}

#[test]
fn certificate_chain_with_intermediate() {
    let c = certs();
    let server = server_with(ServerOptions {
        cert: &c.chained.cert,
        key: &c.chained.key,
        ..Default::default()
    });
    let (_, client) = echo(&server, &default_client(), "chain.test", b"chain", 4096);
    assert_eq!(client.tls.peer_identity().as_deref(), Some("CN=chain.test"));
}

#[test]
fn unknown_ca_is_rejected_by_client() {
    let c = certs();
    let client = client_with(ClientOptions {
        ca: Some(&c.other_ca),
        ..Default::default()
    });
    let (s, k) = socket_pair();
    let mut server = Peer::server(s, &default_server());
    let mut client = Peer::client(k, &client, "localhost");
    client.send(b"never delivered");
    drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
    let err = client.error.as_ref().expect("client must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(
        text.starts_with("TLS handshake failed: invalid peer certificate"),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");
    // The server learns why from the client's alert.
    let err = server.error.as_ref().expect("server must fail");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    assert!(err.to_string().contains("UnknownCA"), "{err}");
    assert_eq!(server.received_len, 0);
}

#[test]
fn insecure_skip_verify_accepts_anything() {
    let c = certs();
    let client = client_with(ClientOptions {
        ca: Some(&c.other_ca), // ignored
        insecure_skip_verify: true,
        ..Default::default()
    });
    // Wrong name and untrusted issuer: both accepted.
    let (_, client) = echo(&default_server(), &client, "wrong.example", b"ok", 4096);
    assert_eq!(client.tls.peer_identity().as_deref(), Some("CN=localhost"));
}

fn mtls_server(optional: bool) -> Arc<rustls::ServerConfig> {
    let c = certs();
    server_with(ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        client_ca: Some(&c.ca),
        client_cert_optional: optional,
        ..Default::default()
    })
}

fn mtls_client(pem: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    client_with(ClientOptions {
        ca: Some(&certs().ca),
        cert: pem.map(|p| p.cert.as_str()),
        key: pem.map(|p| p.key.as_str()),
        ..Default::default()
    })
}

#[test]
fn mtls_good_certificate_gives_identity() {
    for versions in [Versions::TLS12_ONLY, Versions::TLS13_ONLY] {
        let c = certs();
        let client = client_with(ClientOptions {
            ca: Some(&c.ca),
            cert: Some(&c.alice.cert),
            key: Some(&c.alice.key),
            versions,
            ..Default::default()
        });
        let (server, _) = echo(&mtls_server(false), &client, "localhost", b"hi", 4096);
        assert_eq!(
            server.tls.peer_identity().as_deref(),
            Some("CN=alice,O=Test Org")
        );
        assert!(server.tls.peer_certificate().is_some());
    }
}

#[test]
fn mtls_missing_certificate_refused_when_required() {
    for versions in [Versions::TLS12_ONLY, Versions::TLS13_ONLY] {
        let client = client_with(ClientOptions {
            ca: Some(&certs().ca),
            versions,
            ..Default::default()
        });
        let (s, k) = socket_pair();
        let mut server = Peer::server(s, &mtls_server(false));
        let mut client = Peer::client(k, &client, "localhost");
        client.send(b"request");
        drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
        let text = server.error_text();
        assert!(text.contains("certificate"), "{versions:?}: {text}");
        assert_eq!(
            server.received_len, 0,
            "no data from an unauthenticated client"
        );
        // TLS 1.3 clients finish before the server judges them; either way they learn it.
        let text = client.error_text();
        assert!(text.contains("alert"), "{versions:?}: {text}");
    }
}

#[test]
fn mtls_missing_certificate_allowed_when_optional() {
    let (server, _) = echo(
        &mtls_server(true),
        &mtls_client(None),
        "localhost",
        b"hi",
        4096,
    );
    assert_eq!(server.tls.peer_identity(), None);
    // A certificate that is sent must still verify.
    let (server, _) = echo(
        &mtls_server(true),
        &mtls_client(Some(&certs().alice)),
        "localhost",
        b"hi",
        4096,
    );
    assert_eq!(
        server.tls.peer_identity().as_deref(),
        Some("CN=alice,O=Test Org")
    );
}

#[test]
fn mtls_certificate_from_unknown_ca_refused() {
    for optional in [false, true] {
        let (s, k) = socket_pair();
        let mut server = Peer::server(s, &mtls_server(optional));
        let mut client = Peer::client(k, &mtls_client(Some(&certs().mallory)), "localhost");
        client.send(b"request");
        drive_until_both_stop(&mut server, &mut client, Duration::from_secs(10));
        let text = server.error_text();
        assert!(
            text.contains("invalid peer certificate") && text.contains("UnknownIssuer"),
            "{text}"
        );
        assert_eq!(server.received_len, 0);
    }
}

/// Polls `step` every millisecond until it returns true; panics after 5 seconds.
fn wait_until(what: &str, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !step() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn expect_would_block(result: io::Result<usize>) {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("expected WouldBlock, got {other:?}"),
    }
}

#[test]
fn data_in_same_flight_as_client_finished() {
    // Step by step with plain non-blocking sockets, so the client's Finished and its first
    // application data provably arrive together and are consumed by a single server read.
    let (mut s, mut c) = socket_pair();
    let client_config = client_with(ClientOptions {
        ca: Some(&certs().ca),
        versions: Versions::TLS13_ONLY,
        ..Default::default()
    });
    let mut server = TlsStream::server(&default_server()).unwrap();
    let mut client = TlsStream::client(&client_config, "localhost").unwrap();
    let mut buf = [0u8; 64];

    assert!(client.flush(&mut c).unwrap(), "ClientHello sent");
    wait_until("the server's flight", || {
        expect_would_block(server.read(&mut s, &mut buf));
        server.protocol_version().is_some() && !server.wants_write()
    });
    assert!(client.is_handshaking());
    assert_eq!(
        client.write(&mut c, b"ping").unwrap(),
        4,
        "buffered during handshake"
    );
    wait_until("the client to finish", || {
        expect_would_block(client.read(&mut c, &mut buf));
        !client.is_handshaking() && !client.wants_write()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(server.is_handshaking());
    let n = server
        .read(&mut s, &mut buf)
        .expect("one read completes handshake and returns data");
    assert_eq!(&buf[..n], b"ping");
    assert!(!server.is_handshaking());
    expect_would_block(server.read(&mut s, &mut buf));
}

#[test]
fn tcp_eof_without_close_notify() {
    let (s, c) = socket_pair();
    let mut server = Peer::server(s, &default_server());
    let mut client = Peer::client(c, &default_client(), "localhost");
    handshake(&mut server, &mut client).unwrap();
    client.send(b"last words");
    client.sock.shutdown(Shutdown::Write).unwrap();
    drive(&mut [&mut server], Duration::from_secs(10), |p| {
        p[0].eof || p[0].error.is_some()
    })
    .unwrap();
    assert!(server.error.is_none(), "{:?}", server.error);
    assert_eq!(server.received, b"last words");
    assert!(
        !server.tls.received_close_notify(),
        "EOF was not a clean TLS close"
    );
}

#[test]
fn eof_during_handshake_is_an_error() {
    let (mut s, mut c) = socket_pair();
    let mut server = TlsStream::server(&default_server()).unwrap();
    let mut client = TlsStream::client(&default_client(), "localhost").unwrap();
    client.flush(&mut c).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut buf = [0u8; 16];
    let mut result = None;
    wait_until("the server to see EOF", || {
        match server.read(&mut s, &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            other => {
                result = Some(other);
                true
            }
        }
    });
    let err = result.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer closed the connection"
    );
    // Sticky.
    let again = server.read(&mut s, &mut buf).unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(
        server.write(&mut s, b"x").unwrap_err().to_string(),
        err.to_string()
    );
}

#[test]
fn connection_closed_before_any_byte_is_plain_eof() {
    // Port probes and health checks connect and leave: not worth an error.
    let (mut s, c) = socket_pair();
    drop(c);
    let mut server = TlsStream::server(&default_server()).unwrap();
    let mut buf = [0u8; 16];
    let mut result = None;
    wait_until("EOF", || match server.read(&mut s, &mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        other => {
            result = Some(other);
            true
        }
    });
    assert_eq!(result.unwrap().unwrap(), 0);
    assert!(!server.received_close_notify());
}

#[test]
fn write_after_close_notify_fails() {
    let (s, c) = socket_pair();
    let mut server = Peer::server(s, &default_server());
    let mut client = Peer::client(c, &default_client(), "localhost");
    handshake(&mut server, &mut client).unwrap();
    client.tls.send_close_notify();
    client.tls.send_close_notify(); // idempotent
    let err = client.tls.write(&mut client.sock, b"late").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert!(client.tls.flush(&mut client.sock).unwrap());
    // Reading still works: the server can answer before closing its side.
    server.send(b"goodbye");
    server.close();
    drive(
        &mut [&mut server, &mut client],
        Duration::from_secs(10),
        |p| p[1].eof || p[1].error.is_some(),
    )
    .unwrap();
    assert_eq!(client.received, b"goodbye");
    assert!(client.tls.received_close_notify());
}

#[test]
fn client_server_names() {
    let config = default_client();
    assert!(TlsStream::client(&config, "localhost").is_ok());
    assert!(TlsStream::client(&config, "127.0.0.1").is_ok());
    assert!(TlsStream::client(&config, "::1").is_ok());
    assert!(TlsStream::client(&config, "[::1]").is_ok());
    let err = TlsStream::client(&config, "not a host name").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid server name \"not a host name\""),
        "{err}"
    );
    // IPv6 literal verified against the certificate's IP SAN.
    let (_, client) = echo(&default_server(), &config, "[::1]", b"v6", 4096);
    assert_eq!(client.tls.protocol_version(), Some("TLSv1.3"));
}

#[test]
fn empty_buffers() {
    let (mut s, _c) = socket_pair();
    let mut server = TlsStream::server(&default_server()).unwrap();
    assert_eq!(server.read(&mut s, &mut []).unwrap(), 0);
    assert_eq!(server.write(&mut s, b"").unwrap(), 0);
    assert!(server.flush(&mut s).unwrap());
    assert!(!server.wants_write());
    let text = format!("{server:?}");
    assert!(
        text.contains("server") && text.contains("handshaking: true"),
        "{text}"
    );
}

/// A socket whose writes always fail, to check errors surface without losing track.
struct BrokenWriter;

impl io::Read for BrokenWriter {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for BrokenWriter {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn socket_write_errors_are_reported() {
    let mut client = TlsStream::client(&default_client(), "localhost").unwrap();
    let err = client.flush(&mut BrokenWriter).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    // write() must make room first, and that fails the same way.
    let err = client.write(&mut BrokenWriter, b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    // read() keeps going (nothing to read here) and leaves the error to the writers.
    expect_would_block(client.read(&mut BrokenWriter, &mut [0u8; 8]));
    assert!(client.wants_write());
}
