//! Building rustls server and client configurations from user-facing options.
//!
//! All configs use the ring crypto provider explicitly rather than rustls's process-wide
//! default, so nothing depends on which other crate in the process installed a provider first.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

use super::pem::PemSource;
use super::sni::SniResolver;
use super::x509::CertInfo;

/// Which TLS protocol versions to offer or accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions {
    /// Allow TLS 1.2.
    pub tls12: bool,
    /// Allow TLS 1.3.
    pub tls13: bool,
}

impl Versions {
    /// TLS 1.2 and TLS 1.3: the default.
    pub const ALL: Versions = Versions {
        tls12: true,
        tls13: true,
    };
    /// TLS 1.2 only.
    pub const TLS12_ONLY: Versions = Versions {
        tls12: true,
        tls13: false,
    };
    /// TLS 1.3 only.
    pub const TLS13_ONLY: Versions = Versions {
        tls12: false,
        tls13: true,
    };

    fn protocol_versions(self) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
        let mut versions = Vec::with_capacity(2);
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if versions.is_empty() {
            return Err(ConfigError::new(
                "TLS versions",
                "none enabled (enable TLS 1.2, TLS 1.3 or both)",
            ));
        }
        Ok(versions)
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions::ALL
    }
}

/// Server-side TLS settings.
///
/// Each PEM setting is either a path to a PEM file or the PEM text itself: a value containing
/// "-----BEGIN" is taken as text.
#[derive(Clone, Copy, Default)]
pub struct ServerOptions<'a> {
    /// The certificate chain, leaf first; intermediates may follow (the root need not).
    pub cert: &'a str,
    /// The private key of the leaf: RSA (PKCS#1 or PKCS#8), ECDSA (SEC1 or PKCS#8) or Ed25519
    /// (PKCS#8). Encrypted keys are not supported.
    pub key: &'a str,
    /// Extra (certificate, key) pairs chosen by the name the client asks for (SNI), matched
    /// against each certificate's subjectAltName DNS names; wildcards such as
    /// `*.example.com` match exactly one label. An exact match beats a wildcard; when several
    /// certificates claim a name, the earliest wins (`cert` counts first). `cert`/`key` serve
    /// every unknown or absent name.
    pub sni: &'a [(&'a str, &'a str)],
    /// Mutual TLS: require client certificates and verify them against this CA bundle.
    pub client_ca: Option<&'a str>,
    /// With `client_ca`: also accept clients that send no certificate (a certificate that is
    /// sent must still verify). Without `client_ca` this is an error.
    pub client_cert_optional: bool,
    /// ALPN protocols in preference order, e.g. `[b"http/1.1"]`; empty disables ALPN. A client
    /// that offers ALPN but none of these is refused (RFC 7301 §3.2).
    pub alpn: &'a [&'a [u8]],
    /// Protocol versions to accept.
    pub versions: Versions,
}

/// Client-side TLS settings, for connections this library opens.
#[derive(Clone, Copy, Default)]
pub struct ClientOptions<'a> {
    /// CA bundle (path or PEM text) that server certificates must chain to; `None` uses the
    /// operating system's store (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub ca: Option<&'a str>,
    /// Accept any server certificate, without checking its chain or name. For tests only:
    /// the connection is then open to interception. `ca` is ignored when this is set.
    pub insecure_skip_verify: bool,
    /// Client certificate chain for mutual TLS; requires `key`.
    pub cert: Option<&'a str>,
    /// Private key for `cert`; same formats as [`ServerOptions::key`].
    pub key: Option<&'a str>,
    /// ALPN protocols to offer, in preference order; empty disables ALPN.
    pub alpn: &'a [&'a [u8]],
    /// Protocol versions to offer.
    pub versions: Versions,
}

/// Inline PEM could hold a private key; `Debug` output (logs!) must not.
fn redact(value: &str) -> &str {
    if value.contains("-----BEGIN") {
        "<inline PEM>"
    } else {
        value
    }
}

impl fmt::Debug for ServerOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sni: Vec<_> = self
            .sni
            .iter()
            .map(|&(c, k)| (redact(c), redact(k)))
            .collect();
        f.debug_struct("ServerOptions")
            .field("cert", &redact(self.cert))
            .field("key", &redact(self.key))
            .field("sni", &sni)
            .field("client_ca", &self.client_ca.map(redact))
            .field("client_cert_optional", &self.client_cert_optional)
            .field("alpn", &AlpnDebug(self.alpn))
            .field("versions", &self.versions)
            .finish()
    }
}

impl fmt::Debug for ClientOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ca", &self.ca.map(redact))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("cert", &self.cert.map(redact))
            .field("key", &self.key.map(redact))
            .field("alpn", &AlpnDebug(self.alpn))
            .field("versions", &self.versions)
            .finish()
    }
}

/// Shows ALPN names as text rather than byte arrays.
struct AlpnDebug<'a>(&'a [&'a [u8]]);

impl fmt::Debug for AlpnDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| String::from_utf8_lossy(p)))
            .finish()
    }
}

/// A TLS setting that cannot be used. `Display` gives "{context}: {reason}", where the
/// context names the setting and its file, e.g. "key file k.pem: no private key found" or
/// "certificate file c.pem and key file k.pem: certificate and private key do not match".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    context: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(context: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            context: context.into(),
            reason: reason.into(),
        }
    }

    /// Which setting (and file) the error is about, e.g. "certificate file /x/y.pem" or
    /// "key (inline PEM)".
    pub fn context(&self) -> &str {
        &self.context
    }

    /// What is wrong, e.g. "No such file or directory" or "no private key found".
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.context, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a server config. Everything is loaded and checked now — files, key/certificate
/// agreement, CA bundle — so that mistakes surface when the listener is opened rather than
/// at the first handshake.
pub fn server_config(o: &ServerOptions<'_>) -> Result<Arc<ServerConfig>, ConfigError> {
    let versions = o.versions.protocol_versions()?;
    let alpn = alpn_list(o.alpn)?;
    let provider = provider();

    let default = load_pair(
        PemSource::new("certificate", o.cert),
        PemSource::new("key", o.key),
        &provider,
    )?;
    let mut resolver = SniResolver::new(Arc::clone(&default.key));
    resolver.add(&default.key, default.info.dns_names());
    for &(cert, key) in o.sni {
        let cert = PemSource::new("SNI certificate", cert);
        let pair = load_pair(cert, PemSource::new("SNI key", key), &provider)?;
        if pair.info.dns_names().next().is_none() {
            // It could never be selected: say so now instead of silently serving the default.
            return Err(cert.error("has no DNS names (subjectAltName) for SNI to match"));
        }
        resolver.add(&pair.key, pair.info.dns_names());
    }

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::new("TLS versions", e.to_string()))?;
    let builder = match o.client_ca {
        Some(ca) => {
            let ca = PemSource::new("client CA", ca);
            let roots = load_roots(ca)?;
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            if o.client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| ca.error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if o.client_cert_optional => {
            return Err(ConfigError::new(
                "client_cert_optional",
                "needs client_ca (there is nothing to verify client certificates against)",
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Builds a client config. Build it once and share it: with `ca: None` this reads the system
/// certificate store, and sharing also lets connections resume sessions.
pub fn client_config(o: &ClientOptions<'_>) -> Result<Arc<ClientConfig>, ConfigError> {
    let versions = o.versions.protocol_versions()?;
    let alpn = alpn_list(o.alpn)?;
    let provider = provider();

    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| ConfigError::new("TLS versions", e.to_string()))?;
    let builder = if o.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        let roots = match o.ca {
            Some(ca) => load_roots(PemSource::new("CA", ca))?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (o.cert, o.key) {
        (Some(cert), Some(key)) => {
            let pair = load_pair(
                PemSource::new("client certificate", cert),
                PemSource::new("client key", key),
                &provider,
            )?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(pair.key)))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(ConfigError::new(
                "client certificate",
                "given without a key",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "client key",
                "given without a certificate",
            ));
        }
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A certificate chain with its key, checked to belong together.
struct Pair {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

fn load_pair(
    cert: PemSource<'_>,
    key: PemSource<'_>,
    provider: &CryptoProvider,
) -> Result<Pair, ConfigError> {
    let chain = cert.certificates()?;
    let leaf = chain
        .first()
        .ok_or_else(|| cert.error("no certificates found"))?;
    let info = CertInfo::parse(leaf.as_ref())
        .map_err(|e| cert.error(format!("first certificate is not valid X.509 ({e})")))?;
    let key_der = key.private_key()?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| key.error(format!("unsupported or invalid private key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // ring reports the public key of every key type it loads, so this does not happen
        // today; should a provider be unable to tell, accept the pair as rustls itself does
        // (CertifiedKey::from_der) rather than reject a possibly valid configuration.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(ConfigError::new(
                format!("{} and {}", cert.describe(), key.describe()),
                "certificate and private key do not match",
            ));
        }
        Err(e) => return Err(cert.error(format!("invalid certificate ({e})"))),
    }
    Ok(Pair {
        key: Arc::new(certified),
        info,
    })
}

/// Trust anchors from an explicit bundle. Strict: a certificate that cannot be a trust anchor
/// is an error, because an explicitly configured CA that is silently dropped would only show
/// up later as mysterious verification failures.
fn load_roots(source: PemSource<'_>) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in source.certificates()?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            source.error(format!(
                "certificate #{} is not a usable CA certificate ({e})",
                i + 1
            ))
        })?;
    }
    Ok(roots)
}

/// Trust anchors from the operating system. Lenient: system stores carry some certificates
/// webpki cannot parse, and skipping those is what every other TLS client does too.
fn system_roots() -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = match found.errors.first() {
            Some(e) => format!("none found ({e})"),
            None => "none found".to_owned(),
        };
        return Err(ConfigError::new("system CA certificates", reason));
    }
    Ok(roots)
}

fn alpn_list(alpn: &[&[u8]]) -> Result<Vec<Vec<u8>>, ConfigError> {
    alpn.iter()
        .enumerate()
        .map(|(i, p)| {
            // The wire format has a one-byte length and forbids empty names (RFC 7301 §3.1).
            if p.is_empty() || p.len() > 255 {
                Err(ConfigError::new(
                    "ALPN",
                    format!("protocol #{} must be 1 to 255 bytes long", i + 1),
                ))
            } else {
                Ok(p.to_vec())
            }
        })
        .collect()
}

/// Accepts any server certificate (`insecure_skip_verify`). Handshake signatures are still
/// checked against the presented certificate, so the peer must at least hold the key of the
/// certificate it shows; what is skipped is deciding whether that certificate is trusted.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_alpn_are_validated() {
        let none = Versions {
            tls12: false,
            tls13: false,
        };
        let err = none.protocol_versions().unwrap_err();
        assert!(
            err.to_string().starts_with("TLS versions: none enabled"),
            "{err}"
        );
        assert_eq!(Versions::default(), Versions::ALL);
        assert_eq!(alpn_list(&[b"h2", b"http/1.1"]).unwrap().len(), 2);
        let long = [b'x'; 256];
        let err = alpn_list(&[b"h2", &long]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ALPN: protocol #2 must be 1 to 255 bytes long"
        );
        assert!(alpn_list(&[b""]).is_err());
    }

    #[test]
    fn debug_redacts_inline_pem() {
        let o = ServerOptions {
            cert: "/etc/c.pem",
            key: "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
            alpn: &[b"http/1.1"],
            ..Default::default()
        };
        let text = format!("{o:?}");
        assert!(
            text.contains("/etc/c.pem") && text.contains("<inline PEM>"),
            "{text}"
        );
        assert!(
            !text.contains("secret") && text.contains("\"http/1.1\""),
            "{text}"
        );
    }
}
