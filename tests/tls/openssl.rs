//! A TLS client nobody here wrote: `openssl s_client` against a small echo server built on
//! TlsStream, on an ephemeral loopback port.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{certs, run_openssl, TempDir};
use crate::peer::*;
use wsserver::net::tls::{server_config, ServerOptions, Versions};

/// What the server saw of its one connection.
#[derive(Debug, Default)]
struct Report {
    protocol: Option<&'static str>,
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    identity: Option<String>,
    received: Vec<u8>,
    error: Option<String>,
    clean_close: bool,
}

/// Serves one connection on an ephemeral port in a thread: echoes everything, and after the
/// line "BYE" sends close_notify and closes.
fn serve_once(config: Arc<rustls::ServerConfig>) -> (u16, JoinHandle<Report>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let mut report = Report::default();
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    report.error = Some(format!("accept: {e}"));
                    return report;
                }
            }
        };
        sock.set_nonblocking(true).expect("nonblocking");
        let mut peer = Peer::server(sock, &config).echo();
        let result = drive(&mut [&mut peer], Duration::from_secs(30), |p| {
            p[0].error.is_some() || p[0].eof || p[0].received.ends_with(b"BYE\n")
        });
        if peer.error.is_none() && !peer.eof {
            peer.close();
            let _ = drive(&mut [&mut peer], Duration::from_secs(5), |p| {
                p[0].error.is_some() || !p[0].tls.wants_write()
            });
        }
        report.protocol = peer.tls.protocol_version();
        report.alpn = peer.tls.alpn_protocol().map(<[u8]>::to_vec);
        report.sni = peer.tls.sni_hostname().map(str::to_owned);
        report.identity = peer.tls.peer_identity();
        report.clean_close = peer.tls.received_close_notify();
        report.error = peer.error.map(|e| e.to_string()).or(result.err());
        report.received = peer.received;
        report
    });
    (port, handle)
}

/// Runs s_client against a fresh server; returns (s_client succeeded, its stdout, stderr, what
/// the server saw).
fn s_client(config: Arc<rustls::ServerConfig>, args: &[&str]) -> (bool, String, String, Report) {
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &certs().ca);
    let alice_cert = dir.write("alice.crt", &certs().alice.cert);
    let alice_key = dir.write("alice.key", &certs().alice.key);
    let (port, server) = serve_once(config);
    let connect = format!("127.0.0.1:{port}");
    let mut full = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        &ca,
        "-verify_return_error",
    ];
    // -ign_eof: keep reading after stdin ends, until the server closes.
    full.push("-ign_eof");
    for &arg in args {
        match arg {
            "ALICE_CERT" => full.push(&alice_cert),
            "ALICE_KEY" => full.push(&alice_key),
            _ => full.push(arg),
        }
    }
    let (ok, stdout, stderr) =
        run_openssl(&full, b"hello from openssl\nBYE\n", Duration::from_secs(30));
    let report = server.join().expect("server thread");
    (ok, stdout, stderr, report)
}

fn ecdsa_server(alpn: &'static [&'static [u8]], versions: Versions) -> Arc<rustls::ServerConfig> {
    let c = certs();
    server_config(&ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        alpn,
        versions,
        ..Default::default()
    })
    .unwrap()
}

fn assert_echoed(ok: bool, stdout: &str, stderr: &str, report: &Report) {
    assert!(ok, "s_client failed:\n{stdout}\n{stderr}\n{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.received, b"hello from openssl\nBYE\n");
    assert!(stdout.contains("hello from openssl\nBYE\n"), "{stdout}");
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
}

#[test]
fn tls13_with_alpn_and_sni() {
    let (ok, stdout, stderr, report) = s_client(
        ecdsa_server(HTTP11, Versions::ALL),
        &[
            "-tls1_3",
            "-alpn",
            "http/1.1",
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
        ],
    );
    assert_echoed(ok, &stdout, &stderr, &report);
    assert!(stdout.contains("New, TLSv1.3, Cipher is TLS_"), "{stdout}");
    assert!(stdout.contains("ALPN protocol: http/1.1"), "{stdout}");
    assert_eq!(report.protocol, Some("TLSv1.3"));
    assert_eq!(report.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(report.sni.as_deref(), Some("localhost"));
}

#[test]
fn tls12_with_alpn() {
    let (ok, stdout, stderr, report) = s_client(
        ecdsa_server(HTTP11, Versions::ALL),
        &["-tls1_2", "-alpn", "http/1.1", "-servername", "localhost"],
    );
    assert_echoed(ok, &stdout, &stderr, &report);
    assert!(
        stdout.contains("New, TLSv1.2, Cipher is ECDHE-ECDSA-"),
        "{stdout}"
    );
    assert!(stdout.contains("ALPN protocol: http/1.1"), "{stdout}");
    assert_eq!(report.protocol, Some("TLSv1.2"));
}

#[test]
fn tls12_with_rsa_certificate() {
    let c = certs();
    let config = server_config(&ServerOptions {
        cert: &c.rsa.cert,
        key: &c.rsa_pkcs1_key,
        ..Default::default()
    })
    .unwrap();
    let (ok, stdout, stderr, report) = s_client(config, &["-tls1_2", "-servername", "localhost"]);
    assert_echoed(ok, &stdout, &stderr, &report);
    assert!(
        stdout.contains("New, TLSv1.2, Cipher is ECDHE-RSA-"),
        "{stdout}"
    );
    assert!(stdout.contains("No ALPN negotiated"), "{stdout}");
}

#[test]
fn tls13_only_server_refuses_tls12_client() {
    let (ok, stdout, _, report) = s_client(
        ecdsa_server(&[], Versions::TLS13_ONLY),
        &["-tls1_2", "-servername", "localhost"],
    );
    assert!(!ok || !stdout.contains("hello from openssl"), "{stdout}");
    let error = report.error.unwrap_or_default();
    assert!(
        error.starts_with("TLS handshake failed: peer is incompatible"),
        "{error}"
    );
}

#[test]
fn sni_certificate_selection() {
    let c = certs();
    let extra = [
        (c.sni_a.cert.as_str(), c.sni_a.key.as_str()),
        (c.sni_wild.cert.as_str(), c.sni_wild.key.as_str()),
    ];
    let config = server_config(&ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        sni: &extra,
        ..Default::default()
    })
    .unwrap();
    for (name, subject) in [("a.test", "CN = a.test"), ("www.wild.test", "CN = wild")] {
        let (ok, stdout, stderr, report) = s_client(
            Arc::clone(&config),
            &["-servername", name, "-verify_hostname", name],
        );
        assert_echoed(ok, &stdout, &stderr, &report);
        assert!(
            stdout.contains(&format!("subject={subject}")),
            "{name}: {stdout}"
        );
        assert_eq!(report.sni.as_deref(), Some(name));
    }
}

fn mtls_config() -> Arc<rustls::ServerConfig> {
    let c = certs();
    server_config(&ServerOptions {
        cert: &c.ecdsa.cert,
        key: &c.ecdsa.key,
        client_ca: Some(&c.ca),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn mutual_tls_with_client_certificate() {
    for version in ["-tls1_2", "-tls1_3"] {
        let (ok, stdout, stderr, report) = s_client(
            mtls_config(),
            &[
                version,
                "-servername",
                "localhost",
                "-cert",
                "ALICE_CERT",
                "-key",
                "ALICE_KEY",
            ],
        );
        assert_echoed(ok, &stdout, &stderr, &report);
        assert_eq!(
            report.identity.as_deref(),
            Some("CN=alice,O=Test Org"),
            "{version}"
        );
    }
}

#[test]
fn mutual_tls_without_client_certificate() {
    let (_, stdout, _, report) = s_client(mtls_config(), &["-servername", "localhost"]);
    let error = report.error.unwrap_or_default();
    assert!(error.contains("certificate"), "{error}");
    assert!(report.received.is_empty());
    assert!(!stdout.contains("hello from openssl\nBYE"), "{stdout}");
}

/// An `openssl s_server` child process, killed when dropped.
struct SServer {
    child: std::process::Child,
    port: u16,
    output: std::sync::mpsc::Receiver<String>,
}

impl SServer {
    /// Starts `openssl s_server -rev` (answers each line reversed) on an ephemeral port with
    /// the ECDSA localhost certificate, plus `args`.
    fn start(dir: &TempDir, args: &[&str]) -> SServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let c = certs();
        let cert = dir.write("server.crt", &c.ecdsa.cert);
        let key = dir.write("server.key", &c.ecdsa.key);
        let ca = dir.write("ca.pem", &c.ca);
        let mut full = vec![
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "1",
            "-rev",
            "-cert",
            &cert,
            "-key",
            &key,
            "-CAfile",
            &ca,
        ];
        full.extend_from_slice(args);
        let mut child = Command::new("openssl")
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the openssl command line tool must be installed");
        let (tx, output) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match output.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line
                        .strip_prefix("ACCEPT ")
                        .and_then(|addr| addr.rsplit(':').next())
                        .and_then(|p| p.parse().ok())
                    {
                        break port;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("s_server did not report its port: {seen:?}");
                }
            }
        };
        SServer {
            child,
            port,
            output,
        }
    }

    fn log(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects a TlsStream client to an s_server, sends a line and waits for its reversal (or a
/// failure). Returns the client and what s_server printed.
fn client_against_s_server(
    server_args: &[&str],
    options: wsserver::net::tls::ClientOptions<'_>,
) -> (Peer, Vec<String>) {
    let dir = TempDir::new();
    let server = SServer::start(&dir, server_args);
    let sock = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    sock.set_nonblocking(true).expect("nonblocking");
    let config = client_with(options);
    let mut client = Peer::client(sock, &config, "localhost");
    client.send(b"hello world\n");
    let _ = drive(&mut [&mut client], Duration::from_secs(20), |p| {
        p[0].error.is_some() || p[0].eof || p[0].received.ends_with(b"\n")
    });
    let log = server.log();
    (client, log)
}

#[test]
fn tls_stream_client_against_s_server() {
    use wsserver::net::tls::ClientOptions;
    let c = certs();
    for (server_version, expected) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (client, log) = client_against_s_server(
            &[server_version, "-alpn", "http/1.1"],
            ClientOptions {
                ca: Some(&c.ca),
                alpn: HTTP11,
                ..Default::default()
            },
        );
        assert_eq!(
            client.received, b"dlrow olleh\n",
            "{:?} {log:#?}",
            client.error
        );
        assert_eq!(client.tls.protocol_version(), Some(expected));
        assert_eq!(client.tls.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(client.tls.peer_identity().as_deref(), Some("CN=localhost"));
    }
}

#[test]
fn tls_stream_client_certificate_against_s_server() {
    use wsserver::net::tls::ClientOptions;
    let c = certs();
    // -Verify: the server requires a client certificate, checked against -CAfile.
    let options = ClientOptions {
        ca: Some(&c.ca),
        cert: Some(&c.alice.cert),
        key: Some(&c.alice.key),
        ..Default::default()
    };
    let (client, log) = client_against_s_server(&["-Verify", "1", "-verify_return_error"], options);
    assert_eq!(
        client.received, b"dlrow olleh\n",
        "{:?} {log:#?}",
        client.error
    );

    // Without a certificate the server refuses, and the client says why.
    let options = ClientOptions {
        ca: Some(&c.ca),
        versions: Versions::TLS12_ONLY,
        ..Default::default()
    };
    let (client, log) = client_against_s_server(&["-Verify", "1", "-verify_return_error"], options);
    assert!(client.received.is_empty(), "accepted without certificate");
    let text = client.error_text();
    assert!(text.contains("alert"), "{text} {log:#?}");
}
