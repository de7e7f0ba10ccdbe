//! Shared test support: certificates made at test time, temporary files, loopback socket
//! pairs and a small mio event loop that drives TlsStreams the way the server's edge-triggered
//! loop does.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use wsserver::net::tls::{
    client_config, server_config, ClientOptions, ServerOptions, TlsStream, Versions,
};

// ---------------------------------------------------------------------------------------------
// Temporary files

/// A scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Cargo's per-target scratch directory keeps test files inside the build tree.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("wsserver-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `name` in the directory and returns the path as a string.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write temp file");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    pub fn file(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// openssl command line

/// Runs `openssl` with `args` and `stdin`, bounded by `timeout`; returns (success, stdout,
/// stderr).
pub fn run_openssl(args: &[&str], stdin: &[u8], timeout: Duration) -> (bool, String, String) {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command line tool must be installed (Debian package openssl)");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
        // Dropping `input` closes the pipe: openssl sees EOF on stdin.
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for openssl") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) => (status.success(), stdout, stderr),
        None => (
            false,
            stdout,
            format!("{stderr}\n[openssl killed after {timeout:?}]"),
        ),
    }
}

/// openssl for key generation/conversion, which must succeed.
fn openssl_ok(args: &[&str], stdin: &str) -> String {
    let (ok, out, err) = run_openssl(args, stdin.as_bytes(), Duration::from_secs(60));
    assert!(ok, "openssl {args:?} failed: {err}");
    out
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate (PEM, possibly a chain) and its key (PEM).
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Everything the tests need, made once per test binary.
pub struct Certs {
    /// The root CA everything below is signed by (directly or through `intermediate`).
    pub ca: String,
    /// Another CA that signed nothing we use: "unknown CA".
    pub other_ca: String,
    /// Server certificates for localhost, 127.0.0.1 and ::1.
    pub ecdsa: Pem,
    pub ed25519: Pem,
    /// RSA, key as PKCS#8.
    pub rsa: Pem,
    /// The RSA key as PKCS#1 ("BEGIN RSA PRIVATE KEY").
    pub rsa_pkcs1_key: String,
    /// The ECDSA key as SEC1 ("BEGIN EC PRIVATE KEY").
    pub ecdsa_sec1_key: String,
    /// The ECDSA key encrypted with a passphrase.
    pub ecdsa_encrypted_key: String,
    /// SNI certificates: "a.test" (CN=a.test) and "*.wild.test" (CN=wild).
    pub sni_a: Pem,
    pub sni_wild: Pem,
    /// A certificate with no DNS names at all (IP only).
    pub ip_only: Pem,
    /// "chain.test" signed by an intermediate; `cert` holds leaf then intermediate.
    pub chained: Pem,
    /// Client certificate CN=alice, O=Test Org.
    pub alice: Pem,
    /// Client certificate signed by `other_ca`.
    pub mallory: Pem,
    /// Keys that belong to no certificate here, one per algorithm.
    pub stray_ecdsa_key: String,
    pub stray_ed25519_key: String,
    pub stray_rsa_key: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf(
    names: &[&str],
    dn: &[(DnType, &str)],
    eku: ExtendedKeyUsagePurpose,
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
) -> String {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.extended_key_usages = vec![eku];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.signed_by(key, issuer).expect("sign leaf").pem()
}

fn rsa_key_pkcs8() -> String {
    openssl_ok(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        "",
    )
}

fn make_certs() -> Certs {
    let ca = CertifiedIssuer::self_signed(ca_params("Test Root CA"), KeyPair::generate().unwrap())
        .expect("root CA");
    let other_ca =
        CertifiedIssuer::self_signed(ca_params("Other CA"), KeyPair::generate().unwrap())
            .expect("other CA");
    let server_names = ["localhost", "127.0.0.1", "::1"];
    let server = |key: KeyPair, cn: &str| Pem {
        cert: leaf(
            &server_names,
            &[(DnType::CommonName, cn)],
            ExtendedKeyUsagePurpose::ServerAuth,
            &key,
            &ca,
        ),
        key: key.serialize_pem(),
    };

    let ecdsa_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ecdsa_pem = ecdsa_key.serialize_pem();
    let ecdsa = server(ecdsa_key, "localhost");
    let ed25519 = server(
        KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        "localhost-ed25519",
    );
    let rsa_pkcs8 = rsa_key_pkcs8();
    let rsa = server(
        KeyPair::from_pem(&rsa_pkcs8).expect("load RSA key"),
        "localhost-rsa",
    );
    let rsa_pkcs1_key = openssl_ok(&["rsa", "-traditional"], &rsa_pkcs8);
    let ecdsa_sec1_key = openssl_ok(&["ec"], &ecdsa_pem);
    let ecdsa_encrypted_key = openssl_ok(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
        ],
        &ecdsa_pem,
    );

    let named = |names: &[&str], cn: &str| {
        let key = KeyPair::generate().unwrap();
        Pem {
            cert: leaf(
                names,
                &[(DnType::CommonName, cn)],
                ExtendedKeyUsagePurpose::ServerAuth,
                &key,
                &ca,
            ),
            key: key.serialize_pem(),
        }
    };
    let sni_a = named(&["a.test"], "a.test");
    let sni_wild = named(&["*.wild.test"], "wild");
    let ip_only = named(&["127.0.0.2"], "ip-only");

    let intermediate_key = KeyPair::generate().unwrap();
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("Test Intermediate CA"), intermediate_key, &ca)
            .expect("intermediate");
    let chained_key = KeyPair::generate().unwrap();
    let chained = Pem {
        cert: leaf(
            &["chain.test"],
            &[(DnType::CommonName, "chain.test")],
            ExtendedKeyUsagePurpose::ServerAuth,
            &chained_key,
            &intermediate,
        ) + &intermediate.pem(),
        key: chained_key.serialize_pem(),
    };

    let client = |issuer: &Issuer<'_, KeyPair>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        Pem {
            cert: leaf(
                &[],
                // Most significant first, as CAs write it; RFC 4514 prints it reversed.
                &[
                    (DnType::OrganizationName, "Test Org"),
                    (DnType::CommonName, cn),
                ],
                ExtendedKeyUsagePurpose::ClientAuth,
                &key,
                issuer,
            ),
            key: key.serialize_pem(),
        }
    };
    let alice = client(&ca, "alice");
    let mallory = client(&other_ca, "mallory");

    Certs {
        ca: ca.pem(),
        other_ca: other_ca.pem(),
        ecdsa,
        ed25519,
        rsa,
        rsa_pkcs1_key,
        ecdsa_sec1_key,
        ecdsa_encrypted_key,
        sni_a,
        sni_wild,
        ip_only,
        chained,
        alice,
        mallory,
        stray_ecdsa_key: KeyPair::generate().unwrap().serialize_pem(),
        stray_ed25519_key: KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .serialize_pem(),
        stray_rsa_key: rsa_key_pkcs8(),
    }
}

pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(make_certs)
}

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

pub fn versions(tls12: bool, tls13: bool) -> Versions {
    Versions { tls12, tls13 }
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
