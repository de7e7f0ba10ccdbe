//! Peers that do not speak TLS, or speak it wrongly: every case must end in a clear error
//! from read(), never a panic or a hang.

use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::Duration;

use crate::peer::*;
use wsserver::net::tls::TlsStream;

/// Sends `bytes` from a raw client to a TLS server peer (closing the sending side afterwards
/// when `then_close`), drives the server until it fails or sees EOF, and returns the server.
fn feed_server(bytes: &[u8], then_close: bool) -> Peer {
    let (s, mut raw) = socket_pair();
    raw.set_nonblocking(false).unwrap();
    raw.write_all(bytes).unwrap();
    if then_close {
        raw.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut server = Peer::server(s, &default_server());
    drive(&mut [&mut server], Duration::from_secs(10), |p| {
        p[0].error.is_some() || p[0].eof
    })
    .unwrap();
    // The raw client must not be left hanging either: the server sent an alert or nothing.
    raw.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = raw.read(&mut [0u8; 64]);
    server
}

fn server_error(bytes: &[u8], then_close: bool) -> io::Error {
    let mut server = feed_server(bytes, then_close);
    let err = server.error.take().expect("server read must fail");
    assert_eq!(server.received_len, 0);
    // Sticky: the same error again, on both read and write.
    let again = server
        .tls
        .read(&mut server.sock, &mut [0u8; 8])
        .unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(again.kind(), err.kind());
    let write = server.tls.write(&mut server.sock, b"x").unwrap_err();
    assert_eq!(write.to_string(), err.to_string());
    err
}

#[test]
fn plain_http_request() {
    let err = server_error(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", false);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer is not speaking TLS (received a plain HTTP request)"
    );
}

#[test]
fn plain_http_request_then_close() {
    // Shorter than a TLS record header, then EOF: still recognised.
    let err = server_error(b"GET /", true);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer is not speaking TLS (received a plain HTTP request)"
    );
}

#[test]
fn random_garbage() {
    let junk = pattern(1 << 20);
    let err = server_error(&junk, false);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(
        text.starts_with("TLS handshake failed: peer is not speaking TLS (received"),
        "{text}"
    );
}

#[test]
fn short_text_line() {
    let err = server_error(b"hi\r\n", true);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer is not speaking TLS (received plain text \"hi\\r\\n\")"
    );
}

#[test]
fn text_garbage() {
    let err = server_error(b"SSH-2.0-OpenSSH_9.2\r\n", false);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer is not speaking TLS (received plain text \"SSH-2.0-\")"
    );
}

#[test]
fn tls_record_header_with_junk() {
    // A handshake record header that promises a ClientHello, followed by nonsense.
    let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    bytes.extend_from_slice(&[0xee; 0x40]);
    let err = server_error(&bytes, false);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(text.starts_with("TLS handshake failed: "), "{text}");
    assert!(!text.contains("not speaking TLS"), "{text}");
    eprintln!("junk ClientHello: {text}");
}

#[test]
fn oversized_record() {
    // Record length far beyond the TLS maximum.
    let err = server_error(&[0x16, 0x03, 0x03, 0xff, 0xff, 0x01, 0x02], false);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(text.starts_with("TLS handshake failed: "), "{text}");
    eprintln!("oversized record: {text}");
}

#[test]
fn sslv2_hello() {
    let err = server_error(&[0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15], false);
    let text = err.to_string();
    assert!(text.contains("SSLv2-format hello"), "{text}");
}

#[test]
fn truncated_client_hello() {
    // The first half of a genuine ClientHello, then EOF.
    let mut client = TlsStream::client(&default_client(), "localhost").unwrap();
    let mut hello = Vec::new();
    client.flush(&mut hello).unwrap();
    let err = server_error(&hello[..hello.len() / 2], true);
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer closed the connection"
    );
}

#[test]
fn garbage_after_handshake() {
    let (s, c) = socket_pair();
    let mut server = Peer::server(s, &default_server());
    let mut client = Peer::client(c, &default_client(), "localhost");
    handshake(&mut server, &mut client).unwrap();
    // Bypass the client's TLS: raw bytes into the encrypted stream.
    let mut raw: StdTcpStream = client.sock.try_clone_std();
    raw.write_all(&pattern(100)).unwrap();
    drive(&mut [&mut server], Duration::from_secs(10), |p| {
        p[0].error.is_some() || p[0].eof
    })
    .unwrap();
    let err = server.error.expect("server must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(text.starts_with("TLS error: "), "{text}");
}

#[test]
fn client_talking_to_plain_http_server() {
    let (mut raw_server, c) = socket_pair();
    let mut client = Peer::client(c, &default_client(), "localhost");
    client.send(b"GET / HTTP/1.1\r\n\r\n");
    raw_server.set_nonblocking(false).unwrap();
    // The plain server answers whatever it got with an HTTP error, as real ones do.
    raw_server
        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    drive(&mut [&mut client], Duration::from_secs(10), |p| {
        p[0].error.is_some() || p[0].eof
    })
    .unwrap();
    let err = client.error.expect("client must fail");
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: peer is not speaking TLS (received a plain HTTP response)"
    );
}

/// mio's TcpStream has no try_clone; go through the raw fd to get a second handle.
trait TryCloneStd {
    fn try_clone_std(&self) -> StdTcpStream;
}

impl TryCloneStd for mio::net::TcpStream {
    fn try_clone_std(&self) -> StdTcpStream {
        use std::os::fd::{AsFd, OwnedFd};
        let fd: OwnedFd = self.as_fd().try_clone_to_owned().expect("dup");
        let stream = StdTcpStream::from(fd);
        stream.set_nonblocking(false).expect("blocking");
        stream
    }
}
