//! Certificates made at test time (a CA, server leaves of each key type, SNI and
//! chained leaves, client certificates), the `openssl` command line for what rcgen does
//! not make, and a scratch directory for the files options point at.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
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
