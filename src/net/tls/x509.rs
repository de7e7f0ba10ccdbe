//! Just enough X.509 reading for the TLS layer: a certificate's subject (as an RFC 4514 string)
//! and its subjectAltName entries.
//!
//! Why hand-written: the two fields are all we need (SNI selection by DNS name, the peer's
//! identity for mutual TLS), and a full X.509 parser would pull in a sizeable dependency tree.
//! This reader verifies nothing — rustls/webpki do all validation — it only has to be
//! bounds-checked so that any byte string yields a value or an error, never a panic.

use std::fmt::Write as _;
use std::net::IpAddr;

/// What the TLS layer wants to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The subject distinguished name in RFC 4514 form ("CN=alice,O=Example"); empty when the
    /// certificate has an empty subject, as some SAN-only certificates do.
    pub subject: String,
    /// subjectAltName entries of the kinds we understand, in certificate order.
    pub san: Vec<SanEntry>,
}

/// One subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SanEntry {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError(pub &'static str);

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_TELETEX_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_VISIBLE_STRING: u8 = 0x1a;
const TAG_UNIVERSAL_STRING: u8 = 0x1c;
const TAG_BMP_STRING: u8 = 0x1e;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` in TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;
/// GeneralName choices (context-specific, primitive).
const GN_RFC822: u8 = 0x81;
const GN_DNS: u8 = 0x82;
const GN_URI: u8 = 0x86;
const GN_IP: u8 = 0x87;

/// id-ce-subjectAltName, 2.5.29.17, content octets.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// A cursor over DER bytes.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Der { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one tag-length-value, returning the tag and the contents.
    fn tlv(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, after_tag) = self.rest.split_first().ok_or(DerError("truncated DER"))?;
        if tag & 0x1f == 0x1f {
            // High tag numbers never occur in the parts of a certificate we read.
            return Err(DerError("unsupported DER tag"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError("truncated DER"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length, never valid in DER; more than 4 length bytes
            // would describe a certificate larger than anything we accept.
            if count == 0 || count > 4 {
                return Err(DerError("invalid DER length"));
            }
            let (bytes, rest) = split_at_checked(after_len, count)?;
            after_len = rest;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (value, rest) = split_at_checked(after_len, len)?;
        self.rest = rest;
        Ok((tag, value))
    }

    /// Reads one element, which must have tag `tag`.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.tlv()? {
            (t, value) if t == tag => Ok(value),
            _ => Err(DerError("unexpected DER structure")),
        }
    }

    /// Skips an element with tag `tag` if it is next.
    fn skip_optional(&mut self, tag: u8) -> Result<(), DerError> {
        if self.peek_tag() == Some(tag) {
            self.tlv()?;
        }
        Ok(())
    }
}

fn split_at_checked(data: &[u8], at: usize) -> Result<(&[u8], &[u8]), DerError> {
    if at <= data.len() {
        Ok(data.split_at(at))
    } else {
        Err(DerError("truncated DER"))
    }
}

impl CertInfo {
    /// Reads the subject and subjectAltName of a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, DerError> {
        let mut outer = Der::new(der);
        let cert = outer.expect(TAG_SEQUENCE)?;
        if !outer.is_empty() {
            return Err(DerError("trailing data after certificate"));
        }
        let mut cert = Der::new(cert);
        let mut tbs = Der::new(cert.expect(TAG_SEQUENCE)?);
        tbs.skip_optional(TAG_VERSION)?;
        tbs.expect(TAG_INTEGER)?; // serialNumber
        tbs.expect(TAG_SEQUENCE)?; // signature algorithm
        tbs.expect(TAG_SEQUENCE)?; // issuer
        tbs.expect(TAG_SEQUENCE)?; // validity
        let subject = name_to_string(tbs.expect(TAG_SEQUENCE)?)?;
        tbs.expect(TAG_SEQUENCE)?; // subjectPublicKeyInfo
        let mut san = Vec::new();
        // What follows is issuerUniqueID [1], subjectUniqueID [2], extensions [3].
        while !tbs.is_empty() {
            let (tag, value) = tbs.tlv()?;
            if tag == TAG_EXTENSIONS {
                parse_extensions(value, &mut san)?;
            }
        }
        Ok(CertInfo { subject, san })
    }

    /// The DNS names in subjectAltName, as written (possibly wildcards like "*.example.com").
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.san.iter().filter_map(|entry| match entry {
            SanEntry::Dns(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// A one-line identity for logs and applications: the subject DN, or when that is empty
    /// the first subjectAltName in OpenSSL's notation ("DNS:host", "email:a@b", "URI:...",
    /// "IP:1.2.3.4").
    pub fn identity(&self) -> Option<String> {
        if !self.subject.is_empty() {
            return Some(self.subject.clone());
        }
        self.san.first().map(|entry| match entry {
            SanEntry::Dns(v) => format!("DNS:{v}"),
            SanEntry::Ip(v) => format!("IP:{v}"),
            SanEntry::Email(v) => format!("email:{v}"),
            SanEntry::Uri(v) => format!("URI:{v}"),
        })
    }
}

fn parse_extensions(explicit: &[u8], san: &mut Vec<SanEntry>) -> Result<(), DerError> {
    let mut list = Der::new(Der::new(explicit).expect(TAG_SEQUENCE)?);
    while !list.is_empty() {
        let mut ext = Der::new(list.expect(TAG_SEQUENCE)?);
        let oid = ext.expect(TAG_OID)?;
        ext.skip_optional(TAG_BOOLEAN)?; // critical
        let value = ext.expect(TAG_OCTET_STRING)?;
        if oid == OID_SAN {
            parse_general_names(value, san)?;
        }
    }
    Ok(())
}

fn parse_general_names(value: &[u8], san: &mut Vec<SanEntry>) -> Result<(), DerError> {
    let mut names = Der::new(Der::new(value).expect(TAG_SEQUENCE)?);
    while !names.is_empty() {
        let (tag, value) = names.tlv()?;
        // IA5String content must be ASCII; anything else cannot match a host name, so such
        // entries are skipped rather than failing the whole certificate.
        let ascii = || {
            std::str::from_utf8(value)
                .ok()
                .filter(|s| s.is_ascii())
                .map(str::to_owned)
        };
        let entry = match tag {
            GN_DNS => ascii().map(SanEntry::Dns),
            GN_RFC822 => ascii().map(SanEntry::Email),
            GN_URI => ascii().map(SanEntry::Uri),
            GN_IP => match value.len() {
                4 => <[u8; 4]>::try_from(value)
                    .ok()
                    .map(|a| SanEntry::Ip(IpAddr::from(a))),
                16 => <[u8; 16]>::try_from(value)
                    .ok()
                    .map(|a| SanEntry::Ip(IpAddr::from(a))),
                _ => None,
            },
            // otherName, x400Address, directoryName, ediPartyName, registeredID: not needed.
            _ => None,
        };
        san.extend(entry);
    }
    Ok(())
}

/// Formats a Name as RFC 4514 does: RDNs in reverse order separated by ',', the attributes of
/// a multi-valued RDN joined by '+', values escaped, unknown types as dotted OIDs with the
/// value as '#' followed by the hex of its DER encoding.
fn name_to_string(name: &[u8]) -> Result<String, DerError> {
    let mut rdns = Vec::new();
    let mut seq = Der::new(name);
    while !seq.is_empty() {
        let mut set = Der::new(seq.expect(TAG_SET)?);
        let mut attrs = Vec::new();
        while !set.is_empty() {
            let mut atv = Der::new(set.expect(TAG_SEQUENCE)?);
            let oid = atv.expect(TAG_OID)?;
            let before_value = atv.rest;
            let (tag, value) = atv.tlv()?;
            let encoded = &before_value[..before_value.len() - atv.rest.len()];
            let mut attr = match attribute_name(oid) {
                Some(short) => short.to_owned(),
                None => oid_to_dotted(oid).ok_or(DerError("invalid OID"))?,
            };
            attr.push('=');
            match decode_string(tag, value) {
                Some(text) => escape_value(&text, &mut attr),
                None => {
                    attr.push('#');
                    for b in encoded {
                        let _ = write!(attr, "{b:02x}");
                    }
                }
            }
            attrs.push(attr);
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// Short names for the attribute types that appear in real certificates (RFC 4514 §3 plus
/// the widely used registered descriptors).
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "title",
        [0x55, 0x04, 0x2a] => "GN",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// Decodes the content octets of an OBJECT IDENTIFIER to dotted-decimal form.
fn oid_to_dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut current: u64 = 0;
    let mut in_arc = false;
    for &b in oid {
        // Reject arcs beyond 63 bits instead of silently wrapping.
        if current > (u64::MAX >> 7) {
            return None;
        }
        current = (current << 7) | u64::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(current);
            current = 0;
        }
    }
    if in_arc {
        return None;
    }
    // The first encoded arc packs the first two: 40 * X + Y, with X at most 2.
    let (&first, rest) = arcs.split_first()?;
    let (x, y) = if first < 80 {
        (first / 40, first % 40)
    } else {
        (2, first - 80)
    };
    let mut out = format!("{x}.{y}");
    for arc in rest {
        let _ = write!(out, ".{arc}");
    }
    Some(out)
}

/// Decodes the directory string types; `None` for types that are not text.
fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING | TAG_VISIBLE_STRING => {
            String::from_utf8(value.to_vec()).ok()
        }
        // T.61 in theory; in practice certificates put Latin-1 there.
        TAG_TELETEX_STRING => Some(value.iter().map(|&b| char::from(b)).collect()),
        TAG_BMP_STRING => {
            if value.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        TAG_UNIVERSAL_STRING => {
            if value.len() % 4 != 0 {
                return None;
            }
            value
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Appends `value` escaped per RFC 4514 §2.4, so the result can be split back unambiguously.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a DER element; test inputs stay short, so single-byte lengths suffice unless
    /// the content is longer, in which case the two-byte long form is used.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(
            TAG_SET,
            &tlv(TAG_SEQUENCE, &[tlv(TAG_OID, oid), tlv(tag, value)].concat()),
        )
    }

    fn cert(subject: &[u8], extensions: Option<&[u8]>) -> Vec<u8> {
        let mut tbs = Vec::new();
        tbs.extend(tlv(TAG_VERSION, &tlv(TAG_INTEGER, &[2])));
        tbs.extend(tlv(TAG_INTEGER, &[1]));
        tbs.extend(tlv(TAG_SEQUENCE, &[]));
        tbs.extend(tlv(TAG_SEQUENCE, &[]));
        tbs.extend(tlv(TAG_SEQUENCE, &[]));
        tbs.extend(tlv(TAG_SEQUENCE, subject));
        tbs.extend(tlv(TAG_SEQUENCE, &[]));
        if let Some(ext) = extensions {
            tbs.extend(tlv(TAG_EXTENSIONS, &tlv(TAG_SEQUENCE, ext)));
        }
        let body = [
            tlv(TAG_SEQUENCE, &tbs),
            tlv(TAG_SEQUENCE, &[]),
            tlv(0x03, &[0]),
        ]
        .concat();
        tlv(TAG_SEQUENCE, &body)
    }

    fn san_ext(names: &[u8]) -> Vec<u8> {
        tlv(
            TAG_SEQUENCE,
            &[
                tlv(TAG_OID, OID_SAN),
                tlv(TAG_BOOLEAN, &[0xff]),
                tlv(TAG_OCTET_STRING, &tlv(TAG_SEQUENCE, names)),
            ]
            .concat(),
        )
    }

    #[test]
    fn subject_is_reversed_and_escaped() {
        let subject = [
            atv(&[0x55, 0x04, 0x06], TAG_PRINTABLE_STRING, b"US"),
            atv(&[0x55, 0x04, 0x0a], TAG_UTF8_STRING, b"Acme, Inc."),
            atv(&[0x55, 0x04, 0x03], TAG_UTF8_STRING, b" #alice+bob "),
        ]
        .concat();
        let info = CertInfo::parse(&cert(&subject, None)).unwrap();
        assert_eq!(info.subject, r"CN=\ #alice\+bob\ ,O=Acme\, Inc.,C=US");
        assert!(info.san.is_empty());
        assert_eq!(info.identity().as_deref(), Some(info.subject.as_str()));
    }

    #[test]
    fn multi_valued_rdn_and_unknown_types() {
        let rdn = tlv(
            TAG_SET,
            &[
                tlv(
                    TAG_SEQUENCE,
                    &[
                        tlv(TAG_OID, &[0x55, 0x04, 0x0b]),
                        tlv(TAG_UTF8_STRING, b"a"),
                    ]
                    .concat(),
                ),
                tlv(
                    TAG_SEQUENCE,
                    &[tlv(TAG_OID, &[0x2a, 0x03, 0x04]), tlv(TAG_INTEGER, &[5])].concat(),
                ),
            ]
            .concat(),
        );
        let bmp = atv(
            &[0x55, 0x04, 0x03],
            TAG_BMP_STRING,
            &[0x00, 0x62, 0x00, 0xe9],
        );
        let info = CertInfo::parse(&cert(&[rdn, bmp].concat(), None)).unwrap();
        assert_eq!(info.subject, "CN=bé,OU=a+1.2.3.4=#020105");
    }

    #[test]
    fn san_entries_and_identity_fallback() {
        let names = [
            tlv(GN_DNS, b"*.example.com"),
            tlv(GN_IP, &[127, 0, 0, 1]),
            tlv(GN_RFC822, b"a@example.com"),
            tlv(GN_URI, b"spiffe://x/y"),
            tlv(0xa4, &[]),                // directoryName: skipped
            tlv(GN_DNS, "ü.x".as_bytes()), // not ASCII: skipped
        ]
        .concat();
        let info = CertInfo::parse(&cert(&[], Some(&san_ext(&names)))).unwrap();
        assert_eq!(info.subject, "");
        assert_eq!(info.dns_names().collect::<Vec<_>>(), ["*.example.com"]);
        assert_eq!(
            info.san,
            [
                SanEntry::Dns("*.example.com".into()),
                SanEntry::Ip([127, 0, 0, 1].into()),
                SanEntry::Email("a@example.com".into()),
                SanEntry::Uri("spiffe://x/y".into()),
            ]
        );
        assert_eq!(info.identity().as_deref(), Some("DNS:*.example.com"));
    }

    #[test]
    fn garbage_never_panics() {
        let good = cert(
            &atv(&[0x55, 0x04, 0x03], TAG_UTF8_STRING, b"x"),
            Some(&san_ext(&tlv(GN_DNS, b"a.b"))),
        );
        assert!(CertInfo::parse(&good).is_ok());
        // Every truncation and every single-byte corruption must give Ok or Err, not a panic.
        for len in 0..good.len() {
            assert!(CertInfo::parse(&good[..len]).is_err());
        }
        for i in 0..good.len() {
            for v in [0x00, 0x1f, 0x7f, 0x80, 0x84, 0x85, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = CertInfo::parse(&bad);
            }
        }
        assert!(CertInfo::parse(b"").is_err());
        assert!(CertInfo::parse(&[0x30, 0x80, 0, 0]).is_err());
        assert!(CertInfo::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn oid_decoding() {
        assert_eq!(
            oid_to_dotted(&[0x2a, 0x86, 0x48]).as_deref(),
            Some("1.2.840")
        );
        assert_eq!(oid_to_dotted(&[0x88, 0x37]).as_deref(), Some("2.999"));
        assert_eq!(oid_to_dotted(&[0x2a, 0x86]), None);
        assert_eq!(oid_to_dotted(&[]), None);
        assert_eq!(oid_to_dotted(&[0xff; 12]), None);
    }
}
