//! Choosing the server certificate from the name the client asked for (SNI).
//!
//! rustls ships `ResolvesServerCertUsingSni`, but it matches exact names only; we also want
//! wildcard certificates (`*.example.com`) and a default for unknown or absent names, so the
//! choice is made here from the DNS names in each certificate's subjectAltName.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Picks a certificate by SNI: an exact name match first, then a wildcard match, then the
/// default. Among certificates that claim the same name, the first one configured wins (the
/// default pair counts as configured first).
pub(crate) struct SniResolver {
    default: Arc<CertifiedKey>,
    /// Lower-case exact names.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// For `*.example.com`: the key is "example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        SniResolver {
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    /// Makes `key` the answer for the given certificate DNS names, unless an earlier
    /// certificate already claimed a name.
    pub fn add<'n>(&mut self, key: &Arc<CertifiedKey>, names: impl IntoIterator<Item = &'n str>) {
        for name in names {
            let name = normalize(name);
            // Only a whole leftmost label can be a wildcard (RFC 6125 §6.4.3 as browsers
            // apply it); "f*.example.com" is kept as a literal that no host name will equal.
            let (map, name) = match name.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() => (&mut self.wildcard, suffix.to_owned()),
                _ => (&mut self.exact, name),
            };
            map.entry(name).or_insert_with(|| Arc::clone(key));
        }
    }

    /// The certificate for a requested server name.
    fn lookup(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(requested) = server_name else {
            return &self.default;
        };
        let requested = normalize(requested);
        if let Some(key) = self.exact.get(&requested) {
            return key;
        }
        // "*.example.com" matches "www.example.com" but neither "example.com" nor
        // "a.b.example.com": strip exactly one non-empty label.
        match requested.split_once('.') {
            Some((label, parent)) if !label.is_empty() && !parent.is_empty() => {
                self.wildcard.get(parent).unwrap_or(&self.default)
            }
            _ => &self.default,
        }
    }
}

/// DNS names compare case-insensitively, and a trailing dot (absolute form) changes nothing.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.lookup(client_hello.server_name())))
    }
}

impl fmt::Debug for SniResolver {
    // Certificates and keys are noise (and keys must never be printed); the name tables say
    // everything useful.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<_> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<_> = self.wildcard.keys().map(|k| format!("*.{k}")).collect();
        wildcard.sort();
        f.debug_struct("SniResolver")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::sign::SigningKey;

    /// Stands in for a real key: lookup never touches it.
    #[derive(Debug)]
    struct NoKey;

    impl SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _offered: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    fn key(tag: u8) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![tag])],
            Arc::new(NoKey),
        ))
    }

    fn tag(k: &Arc<CertifiedKey>) -> u8 {
        k.cert[0].as_ref()[0]
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let default = key(0);
        let mut r = SniResolver::new(Arc::clone(&default));
        r.add(&default, ["localhost"]);
        let a = key(1);
        r.add(&a, ["a.test", "*.wild.test"]);
        let b = key(2);
        r.add(&b, ["exact.wild.test", "a.test", "*.B.test"]);
        assert_eq!(tag(r.lookup(None)), 0);
        assert_eq!(tag(r.lookup(Some("localhost"))), 0);
        assert_eq!(
            tag(r.lookup(Some("A.Test."))),
            1,
            "case and trailing dot ignored"
        );
        assert_eq!(tag(r.lookup(Some("x.wild.test"))), 1);
        assert_eq!(
            tag(r.lookup(Some("exact.wild.test"))),
            2,
            "exact beats wildcard"
        );
        assert_eq!(tag(r.lookup(Some("q.b.test"))), 2);
        assert_eq!(
            tag(r.lookup(Some("wild.test"))),
            0,
            "wildcard needs a label"
        );
        assert_eq!(tag(r.lookup(Some("x.y.wild.test"))), 0, "only one label");
        assert_eq!(tag(r.lookup(Some(".wild.test"))), 0);
        assert_eq!(tag(r.lookup(Some("unknown.test"))), 0);
        let debug = format!("{r:?}");
        assert!(
            debug.contains("*.wild.test") && debug.contains("\"a.test\""),
            "{debug}"
        );
    }
}
