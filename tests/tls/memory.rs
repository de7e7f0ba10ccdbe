//! Deterministic tests over an in-memory transport, where the test decides exactly which
//! bytes are readable when: proves that read() hands out everything decrypted before it
//! reports WouldBlock, whatever the record and buffer boundaries.

use std::io::{self, Read, Write};

use crate::common::certs;
use crate::peer::*;
use wsserver::net::tls::{ClientOptions, TlsStream, Versions};

/// One end of an in-memory connection: `rx` is what the peer sent and we have not read;
/// `tx` is what we wrote. Reading an empty `rx` gives WouldBlock, like a drained socket.
#[derive(Default)]
struct MemSock {
    rx: Vec<u8>,
    tx: Vec<u8>,
    eof: bool,
}

impl Read for MemSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rx.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.rx.len());
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx.drain(..n);
        Ok(n)
    }
}

impl Write for MemSock {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads until WouldBlock (panicking on anything else), returning the plaintext.
fn drain(tls: &mut TlsStream, sock: &mut MemSock, buf_size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; buf_size];
    let mut out = Vec::new();
    for _ in 0..10_000_000 {
        match tls.read(sock, &mut buf) {
            Ok(0) => panic!("unexpected EOF"),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    panic!("read never blocked");
}

/// A completed handshake over memory.
fn connected(versions: Versions) -> (TlsStream, MemSock, TlsStream, MemSock) {
    let client_config = client_with(ClientOptions {
        ca: Some(&certs().ca),
        versions,
        ..Default::default()
    });
    let mut server = TlsStream::server(&default_server()).unwrap();
    let mut client = TlsStream::client(&client_config, "localhost").unwrap();
    let (mut s, mut c) = (MemSock::default(), MemSock::default());
    for _ in 0..10 {
        client.flush(&mut c).unwrap();
        s.rx.append(&mut c.tx);
        assert!(drain(&mut server, &mut s, 100).is_empty());
        c.rx.append(&mut s.tx);
        assert!(drain(&mut client, &mut c, 100).is_empty());
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    // TLS 1.3 session tickets, sent by the server after the handshake.
    c.rx.append(&mut s.tx);
    assert!(drain(&mut client, &mut c, 100).is_empty());
    (server, s, client, c)
}

#[test]
fn everything_decrypted_is_returned_before_would_block() {
    for versions in [Versions::TLS12_ONLY, Versions::TLS13_ONLY] {
        let (mut server, mut s, mut client, mut c) = connected(versions);
        // Several full records plus a short one, delivered in one go; read with buffers
        // smaller than, between and larger than the records.
        let data = pattern(3 * 16 * 1024 + 100);
        for buf_size in [1, 1000, 20_000] {
            assert_eq!(client.write(&mut c, &data).unwrap(), data.len());
            s.rx.append(&mut c.tx);
            let got = drain(&mut server, &mut s, buf_size);
            assert!(
                s.rx.is_empty(),
                "WouldBlock only once the transport is empty"
            );
            assert_eq!(got.len(), data.len(), "{versions:?} {buf_size}");
            assert!(got == data);
        }
    }
}

#[test]
fn byte_by_byte_delivery() {
    // Every record boundary and every split of a record header.
    let (mut server, mut s, mut client, mut c) = connected(Versions::ALL);
    let data = pattern(40_000);
    assert_eq!(client.write(&mut c, &data).unwrap(), data.len());
    let wire = std::mem::take(&mut c.tx);
    let mut got = Vec::new();
    for byte in wire {
        s.rx.push(byte);
        got.extend(drain(&mut server, &mut s, 7));
    }
    assert!(got == data);
}

#[test]
fn close_notify_after_data_in_one_delivery() {
    let (mut server, mut s, mut client, mut c) = connected(Versions::ALL);
    client.write(&mut c, b"last").unwrap();
    client.send_close_notify();
    client.flush(&mut c).unwrap();
    s.rx.append(&mut c.tx);
    // And the TCP FIN right behind it.
    s.eof = true;
    let mut buf = [0u8; 2];
    assert_eq!(server.read(&mut s, &mut buf).unwrap(), 2);
    assert_eq!(server.read(&mut s, &mut buf).unwrap(), 2);
    assert_eq!(server.read(&mut s, &mut buf).unwrap(), 0);
    assert!(server.received_close_notify());
    assert_eq!(
        server.read(&mut s, &mut buf).unwrap(),
        0,
        "EOF is repeatable"
    );
}

#[test]
fn write_is_bounded_and_resumes() {
    // A transport that takes nothing: write() accepts up to the limit, then WouldBlock.
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (_server, _s, mut client, _c) = connected(Versions::ALL);
    let data = pattern(1 << 20);
    let mut accepted = 0;
    loop {
        match client.write(&mut Stuck, &data[accepted..]) {
            Ok(n) => accepted += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, wsserver::net::tls::SEND_BUFFER_LIMIT);
    assert!(client.wants_write());
    assert!(!client.flush(&mut Stuck).unwrap());
    // Once the transport takes data again, everything goes out.
    let mut sink = MemSock::default();
    assert!(client.flush(&mut sink).unwrap());
    assert!(sink.tx.len() > accepted);
}
