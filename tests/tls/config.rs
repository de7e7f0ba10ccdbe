//! Configuration loading: every key format, and an error naming the file and the reason for
//! every way a setting can be wrong.

use crate::common::{certs, TempDir};
use crate::peer::*;
use wsserver::net::tls::{
    client_config, server_config, ClientOptions, ConfigError, ServerOptions, Versions,
};

fn server_err(options: ServerOptions<'_>) -> ConfigError {
    server_config(&options).expect_err("config must be rejected")
}

fn client_err(options: ClientOptions<'_>) -> ConfigError {
    client_config(&options).expect_err("config must be rejected")
}

fn with_cert<'a>(cert: &'a str, key: &'a str) -> ServerOptions<'a> {
    ServerOptions {
        cert,
        key,
        ..Default::default()
    }
}

#[test]
fn every_key_format_loads_from_file_and_inline() {
    let c = certs();
    let dir = TempDir::new();
    for (label, cert, key) in [
        ("ecdsa-pkcs8", &c.ecdsa.cert, &c.ecdsa.key),
        ("ecdsa-sec1", &c.ecdsa.cert, &c.ecdsa_sec1_key),
        ("ed25519", &c.ed25519.cert, &c.ed25519.key),
        ("rsa-pkcs8", &c.rsa.cert, &c.rsa.key),
        ("rsa-pkcs1", &c.rsa.cert, &c.rsa_pkcs1_key),
    ] {
        server_config(&with_cert(cert, key)).unwrap_or_else(|e| panic!("{label} inline: {e}"));
        let cert_file = dir.write(&format!("{label}.crt"), cert);
        let key_file = dir.write(&format!("{label}.key"), key);
        server_config(&with_cert(&cert_file, &key_file))
            .unwrap_or_else(|e| panic!("{label} file: {e}"));
    }
    // Key first, certificate second, in one file used for both settings.
    let both = dir.write("both.pem", format!("{}{}", c.ecdsa.key, c.ecdsa.cert));
    server_config(&with_cert(&both, &both)).unwrap();
}

#[test]
fn missing_file() {
    let dir = TempDir::new();
    let missing = dir.file("nope.pem");
    let err = server_err(with_cert(&missing, &certs().ecdsa.key));
    assert_eq!(
        err.to_string(),
        format!("certificate file {missing}: No such file or directory")
    );
    assert_eq!(err.context(), format!("certificate file {missing}"));
    assert_eq!(err.reason(), "No such file or directory");
    let err = server_err(with_cert(&certs().ecdsa.cert, &missing));
    assert_eq!(
        err.to_string(),
        format!("key file {missing}: No such file or directory")
    );
}

#[test]
fn directory_instead_of_file() {
    let dir = TempDir::new();
    let path = dir.path().to_str().unwrap().to_owned();
    let err = server_err(with_cert(&path, &certs().ecdsa.key));
    assert_eq!(
        err.to_string(),
        format!("certificate file {path}: is a directory, not a regular file")
    );
}

/// A FIFO named as a certificate or key is refused at once: opening it the usual way
/// would wait for a writer forever, on the thread that opens the listener.
#[test]
fn fifo_or_device_instead_of_file() {
    let dir = TempDir::new();
    let fifo = format!("{}/fifo.pem", dir.path().to_str().unwrap());
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let t0 = std::time::Instant::now();
    let err = server_err(with_cert(&fifo, &certs().ecdsa.key));
    assert_eq!(
        err.to_string(),
        format!("certificate file {fifo}: is a FIFO, not a regular file")
    );
    let err = server_err(with_cert(&certs().ecdsa.cert, &fifo));
    assert_eq!(
        err.to_string(),
        format!("key file {fifo}: is a FIFO, not a regular file")
    );
    let err = server_err(with_cert("/dev/zero", &certs().ecdsa.key));
    assert_eq!(
        err.to_string(),
        "certificate file /dev/zero: is a device, not a regular file"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn empty_file() {
    let dir = TempDir::new();
    let empty = dir.write("empty.pem", "");
    let err = server_err(with_cert(&empty, &certs().ecdsa.key));
    assert_eq!(
        err.to_string(),
        format!("certificate file {empty}: file is empty")
    );
    let blank = dir.write("blank.pem", "\n  \n");
    let err = server_err(with_cert(&certs().ecdsa.cert, &blank));
    assert_eq!(err.to_string(), format!("key file {blank}: file is empty"));
}

#[test]
fn pem_without_key() {
    let dir = TempDir::new();
    let cert = dir.write("cert.pem", &certs().ecdsa.cert);
    // The certificate file given as the key too.
    let err = server_err(with_cert(&cert, &cert));
    assert_eq!(
        err.to_string(),
        format!("key file {cert}: no private key found")
    );
}

#[test]
fn pem_without_certificate() {
    let dir = TempDir::new();
    let key = dir.write("key.pem", &certs().ecdsa.key);
    let err = server_err(with_cert(&key, &key));
    assert_eq!(
        err.to_string(),
        format!(
            "certificate file {key}: no certificates found (expected a BEGIN CERTIFICATE block)"
        )
    );
}

#[test]
fn garbage_pem() {
    let dir = TempDir::new();
    let key = &certs().ecdsa.key;
    // Text that is not PEM at all.
    let text = dir.write("text.pem", "this is not a certificate\n");
    let err = server_err(with_cert(&text, key));
    assert!(err
        .to_string()
        .starts_with(&format!("certificate file {text}: no certificates found")));
    // Binary junk.
    let junk = dir.write("junk.pem", pattern(4096));
    let err = server_err(with_cert(&junk, key));
    assert!(
        err.to_string()
            .starts_with(&format!("certificate file {junk}: ")),
        "{err}"
    );
    // A PEM block whose body is not base64.
    let bad64 = dir.write(
        "bad64.pem",
        "-----BEGIN CERTIFICATE-----\nnot*base64*at*all\n-----END CERTIFICATE-----\n",
    );
    let err = server_err(with_cert(&bad64, key));
    assert!(
        err.to_string().starts_with(&format!(
            "certificate file {bad64}: invalid PEM: bad base64"
        )),
        "{err}"
    );
    // A block that never ends.
    let open = dir.write("open.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let err = server_err(with_cert(&open, key));
    assert_eq!(
        err.to_string(),
        format!(
            "certificate file {open}: invalid PEM: missing end line \"-----END CERTIFICATE-----\""
        )
    );
    // Valid base64, but not a certificate inside.
    let notder = dir.write(
        "notder.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let err = server_err(with_cert(&notder, key));
    assert!(
        err.to_string().starts_with(&format!(
            "certificate file {notder}: first certificate is not valid X.509"
        )),
        "{err}"
    );
    // A key block with junk inside.
    let badkey = dir.write(
        "badkey.pem",
        "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
    );
    let err = server_err(with_cert(&certs().ecdsa.cert, &badkey));
    assert!(
        err.to_string().starts_with(&format!(
            "key file {badkey}: unsupported or invalid private key"
        )),
        "{err}"
    );
}

#[test]
fn inline_pem_errors_say_inline() {
    let err = server_err(with_cert(
        "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
        &certs().ecdsa.key,
    ));
    assert!(
        err.to_string()
            .starts_with("certificate (inline PEM): invalid PEM"),
        "{err}"
    );
}

#[test]
fn encrypted_key() {
    let err = server_err(with_cert(&certs().ecdsa.cert, &certs().ecdsa_encrypted_key));
    assert_eq!(
        err.to_string(),
        "key (inline PEM): encrypted private keys are not supported; decrypt it first"
    );
}

#[test]
fn mismatched_key_is_detected_for_every_key_type() {
    let c = certs();
    let dir = TempDir::new();
    for (label, cert, key) in [
        ("ecdsa", &c.ecdsa.cert, &c.stray_ecdsa_key),
        ("ed25519", &c.ed25519.cert, &c.stray_ed25519_key),
        ("rsa", &c.rsa.cert, &c.stray_rsa_key),
        ("ecdsa cert, rsa key", &c.ecdsa.cert, &c.rsa.key),
        ("rsa cert, ed25519 key", &c.rsa.cert, &c.ed25519.key),
    ] {
        let cert_file = dir.write("cert.pem", cert);
        let key_file = dir.write("key.pem", key);
        let err = server_err(with_cert(&cert_file, &key_file));
        assert_eq!(
            err.to_string(),
            format!(
                "certificate file {cert_file} and key file {key_file}: \
                 certificate and private key do not match"
            ),
            "{label}"
        );
    }
}

#[test]
fn mismatched_sni_and_client_keys() {
    let c = certs();
    let sni = [(c.sni_a.cert.as_str(), c.stray_ecdsa_key.as_str())];
    let err = server_err(ServerOptions {
        sni: &sni,
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert_eq!(
        err.to_string(),
        "SNI certificate (inline PEM) and SNI key (inline PEM): \
         certificate and private key do not match"
    );
    let err = client_err(ClientOptions {
        ca: Some(&c.ca),
        cert: Some(&c.alice.cert),
        key: Some(&c.stray_ecdsa_key),
        ..Default::default()
    });
    assert!(
        err.reason() == "certificate and private key do not match",
        "{err}"
    );
    assert!(err.context().starts_with("client certificate"), "{err}");
}

#[test]
fn sni_certificate_without_dns_names() {
    let c = certs();
    let dir = TempDir::new();
    let cert = dir.write("ip.pem", &c.ip_only.cert);
    let sni = [(cert.as_str(), c.ip_only.key.as_str())];
    let err = server_err(ServerOptions {
        sni: &sni,
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert_eq!(
        err.to_string(),
        format!("SNI certificate file {cert}: has no DNS names (subjectAltName) for SNI to match")
    );
}

#[test]
fn bad_ca_files() {
    let c = certs();
    let dir = TempDir::new();
    let key_only = dir.write("ca.pem", &c.ecdsa.key);
    let missing = dir.file("missing-ca.pem");

    let err = client_err(ClientOptions {
        ca: Some(&key_only),
        ..Default::default()
    });
    assert_eq!(
        err.to_string(),
        format!("CA file {key_only}: no certificates found (expected a BEGIN CERTIFICATE block)")
    );
    let err = client_err(ClientOptions {
        ca: Some(&missing),
        ..Default::default()
    });
    assert_eq!(
        err.to_string(),
        format!("CA file {missing}: No such file or directory")
    );

    let err = server_err(ServerOptions {
        client_ca: Some(&key_only),
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert!(err
        .to_string()
        .starts_with(&format!("client CA file {key_only}: no certificates")));

    // A bundle with one good and one broken certificate is refused as a whole.
    let mixed = dir.write(
        "mixed.pem",
        format!(
            "{}-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            c.ca
        ),
    );
    let err = client_err(ClientOptions {
        ca: Some(&mixed),
        ..Default::default()
    });
    assert!(
        err.to_string().starts_with(&format!(
            "CA file {mixed}: certificate #2 is not a usable CA certificate"
        )),
        "{err}"
    );
}

#[test]
fn option_combinations() {
    let c = certs();
    let err = server_err(ServerOptions {
        client_cert_optional: true,
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert!(
        err.to_string()
            .starts_with("client_cert_optional: needs client_ca"),
        "{err}"
    );

    let err = client_err(ClientOptions {
        ca: Some(&c.ca),
        cert: Some(&c.alice.cert),
        ..Default::default()
    });
    assert_eq!(err.to_string(), "client certificate: given without a key");
    let err = client_err(ClientOptions {
        ca: Some(&c.ca),
        key: Some(&c.alice.key),
        ..Default::default()
    });
    assert_eq!(err.to_string(), "client key: given without a certificate");

    let none = Versions {
        tls12: false,
        tls13: false,
    };
    let err = server_err(ServerOptions {
        versions: none,
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert!(
        err.to_string().starts_with("TLS versions: none enabled"),
        "{err}"
    );
    let err = server_err(ServerOptions {
        alpn: &[b""],
        ..with_cert(&c.ecdsa.cert, &c.ecdsa.key)
    });
    assert_eq!(
        err.to_string(),
        "ALPN: protocol #1 must be 1 to 255 bytes long"
    );

    let err = server_err(ServerOptions::default());
    assert_eq!(err.to_string(), "certificate: not set (empty path)");
}

#[test]
fn system_roots() {
    // Depends on the machine's store; either it loads, or the error says what happened.
    match client_config(&ClientOptions::default()) {
        Ok(_) => {}
        Err(e) => assert!(e.to_string().starts_with("system CA certificates: "), "{e}"),
    }
}

#[test]
fn configs_are_shareable() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let server = default_server();
    assert_send_sync(&server);
    assert_send_sync(&default_client());
    assert_send_sync(&server_err(ServerOptions::default()));
    // The server config resolves certificates through our SNI resolver.
    let text = format!("{server:?}");
    assert!(text.contains("SniResolver"), "{text}");
}
