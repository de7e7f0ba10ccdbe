//! TLS streams driven without the manager: configs from the test certificates, loopback
//! socket pairs, and a small mio loop that drives `TlsStream`s the way the server's
//! edge-triggered loop does.

use crate::common::certs::certs;
use std::io;
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use wsserver::net::tls::{client_config, server_config, ClientOptions, ServerOptions, TlsStream};

// ---------------------------------------------------------------------------------------------
// Configs

pub const HTTP11: &[&[u8]] = &[b"http/1.1"];

/// A server config with the ECDSA certificate and otherwise default options.
pub fn default_server() -> Arc<rustls::ServerConfig> {
    let c = certs();
    server_config(&ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        ..Default::default()
    })
    .expect("server config")
}

/// A client config trusting the test CA.
pub fn default_client() -> Arc<rustls::ClientConfig> {
    client_with(ClientOptions {
        ca: Some(&certs().ca),
        ..Default::default()
    })
}

pub fn client_with(options: ClientOptions<'_>) -> Arc<rustls::ClientConfig> {
    client_config(&options).expect("client config")
}

// ---------------------------------------------------------------------------------------------
// Sockets

/// A connected pair of non-blocking loopback sockets: (server side, client side).
pub fn socket_pair() -> (StdTcpStream, StdTcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let client = StdTcpStream::connect(addr).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&server, &client] {
        s.set_nonblocking(true).expect("nonblocking");
        s.set_nodelay(true).expect("nodelay");
    }
    (server, client)
}

// ---------------------------------------------------------------------------------------------
// A peer in the event loop

/// One TLS endpoint driven the way the server's loop drives connections: on a readable edge
/// read until WouldBlock / EOF / error, then try pending writes (as a server writes responses
/// after handling input); on a writable edge flush, then write pending plaintext.
pub struct Peer {
    pub name: &'static str,
    pub sock: TcpStream,
    pub tls: TlsStream,
    /// Plaintext still to send, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Everything received.
    pub received: Vec<u8>,
    pub received_len: usize,
    /// Send back everything received.
    pub echo: bool,
    pub eof: bool,
    pub error: Option<io::Error>,
    pub read_calls: usize,
    buf: Vec<u8>,
}

impl Peer {
    pub fn new(name: &'static str, sock: StdTcpStream, tls: TlsStream) -> Self {
        Peer {
            name,
            sock: TcpStream::from_std(sock),
            tls,
            out: Vec::new(),
            out_pos: 0,
            received: Vec::new(),
            received_len: 0,
            echo: false,
            eof: false,
            error: None,
            read_calls: 0,
            buf: vec![0; 16 * 1024],
        }
    }

    pub fn server(sock: StdTcpStream, config: &Arc<rustls::ServerConfig>) -> Self {
        Peer::new(
            "server",
            sock,
            TlsStream::server(config).expect("server stream"),
        )
    }

    pub fn client(sock: StdTcpStream, config: &Arc<rustls::ClientConfig>, name: &str) -> Self {
        Peer::new(
            "client",
            sock,
            TlsStream::client(config, name).expect("client stream"),
        )
    }

    pub fn read_size(mut self, n: usize) -> Self {
        self.buf = vec![0; n];
        self
    }

    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Queues plaintext and tries to send it right away (during the handshake it is
    /// buffered by the TlsStream, up to its limit).
    pub fn send(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        self.write_pending();
    }

    pub fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    pub fn on_readable(&mut self) {
        loop {
            if self.error.is_some() || self.eof {
                break;
            }
            self.read_calls += 1;
            match self.tls.read(&mut self.sock, &mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.received_len += n;
                    self.received.extend_from_slice(&self.buf[..n]);
                    if self.echo {
                        self.out.extend_from_slice(&self.buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
        self.write_pending();
    }

    pub fn on_writable(&mut self) {
        if self.error.is_some() {
            return;
        }
        match self.tls.flush(&mut self.sock) {
            Ok(_) => self.write_pending(),
            Err(e) => self.error = Some(e),
        }
    }

    fn write_pending(&mut self) {
        while self.error.is_none() && self.out_pos < self.out.len() {
            match self.tls.write(&mut self.sock, &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
        // Keep the queue from growing without bound in long echo runs.
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > (1 << 20) {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Sends close_notify and flushes it as far as the socket takes it now.
    pub fn close(&mut self) {
        self.tls.send_close_notify();
        if let Err(e) = self.tls.flush(&mut self.sock) {
            self.error = Some(e);
        }
    }

    pub fn error_text(&self) -> String {
        self.error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }
}

/// Runs the event loop over `peers` (registered edge-triggered for READABLE | WRITABLE, as in
/// the server) until `done` says so; errors on timeout or after too many polls, with a
/// description of where each peer stands.
pub fn drive(
    peers: &mut [&mut Peer],
    timeout: Duration,
    mut done: impl FnMut(&[&mut Peer]) -> bool,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    for (i, peer) in peers.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut peer.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
    }
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + timeout;
    let mut polls = 0u64;
    let result = loop {
        if done(peers) {
            break Ok(());
        }
        polls += 1;
        if Instant::now() > deadline || polls > 10_000_000 {
            let state: Vec<String> = peers
                .iter()
                .map(|p| {
                    format!(
                        "{}: received {} pending {} eof {} error {:?} {:?}",
                        p.name,
                        p.received_len,
                        p.pending(),
                        p.eof,
                        p.error,
                        p.tls
                    )
                })
                .collect();
            break Err(format!(
                "event loop gave up after {polls} polls: {state:#?}"
            ));
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            let Some(peer) = peers.get_mut(event.token().0) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                peer.on_readable();
            }
            if event.is_writable() || event.is_write_closed() {
                peer.on_writable();
            }
        }
    };
    for peer in peers.iter_mut() {
        let _ = poll.registry().deregister(&mut peer.sock);
    }
    result
}

/// Drives a server and a client until both have finished the handshake, or one failed.
pub fn handshake(server: &mut Peer, client: &mut Peer) -> Result<(), String> {
    drive(&mut [server, client], Duration::from_secs(20), |p| {
        p.iter().any(|p| p.error.is_some())
            || p.iter()
                .all(|p| !p.tls.is_handshaking() && !p.tls.wants_write())
    })
}

/// Drives until both peers have failed or reached EOF (for tests where a handshake must
/// fail), giving up quietly after `timeout`.
pub fn drive_until_both_stop(server: &mut Peer, client: &mut Peer, timeout: Duration) {
    let _ = drive(&mut [server, client], timeout, |p| {
        p.iter().all(|p| p.error.is_some() || p.eof)
    });
}

/// A test pattern that is not periodic at any power of two, so that misplaced chunks show.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
