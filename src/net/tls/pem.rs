//! Loading certificates and keys from the user's PEM settings, each of which is either a file
//! path or the PEM text itself, with errors that say which file and what is wrong with it.

use std::borrow::Cow;
use std::io::{self, Read};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;

/// Upper bound on a PEM file we read. Real bundles are well under 1 MiB (the whole Mozilla root
/// store is ~200 KiB); the cap keeps a mistaken path such as /dev/zero from eating memory.
const MAX_PEM_FILE: u64 = 16 * 1024 * 1024;

/// One PEM setting: a path, or PEM text given inline.
#[derive(Clone, Copy)]
pub(crate) struct PemSource<'a> {
    /// What the setting holds, for messages: "certificate", "key", "CA", ...
    role: &'static str,
    value: &'a str,
}

impl<'a> PemSource<'a> {
    pub fn new(role: &'static str, value: &'a str) -> Self {
        PemSource { role, value }
    }

    /// Text is inline PEM when it contains a PEM header; anything else is a path. (A path can
    /// not reasonably contain "-----BEGIN", and PEM text always does.)
    fn is_inline(&self) -> bool {
        self.value.contains("-----BEGIN")
    }

    /// How messages refer to this setting: "certificate file /x/y.pem" or
    /// "certificate (inline PEM)".
    pub fn describe(&self) -> String {
        if self.is_inline() {
            format!("{} (inline PEM)", self.role)
        } else {
            format!("{} file {}", self.role, self.value)
        }
    }

    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.describe(), reason)
    }

    /// The PEM bytes: the file's contents, or the inline text.
    fn bytes(&self) -> Result<Cow<'a, [u8]>, ConfigError> {
        if self.is_inline() {
            return Ok(Cow::Borrowed(self.value.as_bytes()));
        }
        if self.value.is_empty() {
            return Err(ConfigError::new(self.role, "not set (empty path)"));
        }
        let mut data = Vec::new();
        // Never a plain open: a FIFO named as a certificate would block the thread
        // that opens the listener (crate::files).
        crate::files::open_regular(std::path::Path::new(self.value))
            .and_then(|(f, _)| f.take(MAX_PEM_FILE + 1).read_to_end(&mut data))
            .map_err(|e| self.error(io_reason(&e)))?;
        if data.len() as u64 > MAX_PEM_FILE {
            return Err(self.error(format!(
                "file is larger than {} MiB; not a PEM file",
                MAX_PEM_FILE >> 20
            )));
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(self.error("file is empty"));
        }
        Ok(Cow::Owned(data))
    }

    /// All certificates in the source, in order; at least one.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let bytes = self.bytes()?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(pem_reason(&e)))?;
        if certs.is_empty() {
            return Err(self.error("no certificates found (expected a BEGIN CERTIFICATE block)"));
        }
        Ok(certs)
    }

    /// The first private key in the source (PKCS#1, SEC1 or PKCS#8).
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, ConfigError> {
        let bytes = self.bytes()?;
        match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(key) => Ok(key),
            Err(pem::Error::NoItemsFound) => {
                // Encrypted keys parse as "no key" in rustls; say what is actually wrong.
                let text = String::from_utf8_lossy(&bytes);
                if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED")
                {
                    Err(self.error("encrypted private keys are not supported; decrypt it first"))
                } else {
                    Err(self.error("no private key found"))
                }
            }
            Err(e) => Err(self.error(pem_reason(&e))),
        }
    }
}

/// An I/O error's text without the "(os error N)" suffix, which only repeats the reason.
pub(crate) fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if e.raw_os_error().is_some() => text[..at].to_owned(),
        _ => text,
    }
}

fn pem_reason(e: &pem::Error) -> String {
    match e {
        // `end_marker` holds the label only, e.g. "CERTIFICATE".
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "invalid PEM: missing end line \"-----END {}-----\"",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "invalid PEM: malformed BEGIN line \"{}\"",
            String::from_utf8_lossy(line)
        ),
        pem::Error::Base64Decode(why) => format!("invalid PEM: bad base64 ({why})"),
        pem::Error::Io(e) => io_reason(e),
        pem::Error::NoItemsFound => "nothing found".to_owned(),
        other => format!("invalid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_or_inline() {
        let file = PemSource::new("certificate", "/etc/x.pem");
        assert_eq!(file.describe(), "certificate file /etc/x.pem");
        let inline = PemSource::new("key", "-----BEGIN PRIVATE KEY-----\n...");
        assert_eq!(inline.describe(), "key (inline PEM)");
    }

    #[test]
    fn io_reason_drops_os_error_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
        let e = io::Error::other("custom (os error 5)");
        assert_eq!(io_reason(&e), "custom (os error 5)");
    }

    #[test]
    fn inline_errors() {
        let src = PemSource::new(
            "certificate",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = src.certificates().unwrap_err().to_string();
        assert!(
            err.starts_with("certificate (inline PEM): invalid PEM"),
            "{err}"
        );
        let src = PemSource::new(
            "key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = src.private_key().unwrap_err().to_string();
        assert!(
            err.contains("encrypted private keys are not supported"),
            "{err}"
        );
        let src = PemSource::new("key", "");
        assert_eq!(
            src.private_key().unwrap_err().to_string(),
            "key: not set (empty path)"
        );
    }
}
