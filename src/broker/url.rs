//! Broker URLs: `redis://[user[:password]@]host[:port][/db]`, and `rediss://` for TLS.
//!
//! - `host` is a name, an IPv4 address or a bracketed IPv6 address (`[::1]`); the port
//!   defaults to 6379 for both schemes. `valkey://` and `valkeys://` are accepted as
//!   synonyms (Valkey speaks the same protocol).
//! - `user` and `password` are percent-decoded (`%40` for `@`, `%3A` for `:`, `%2F` for
//!   `/`...) and may be any bytes after decoding. With a user, the session sends
//!   `AUTH user password` (Redis 6+ ACL); with only a password (`redis://:secret@host`),
//!   the legacy `AUTH password`. A user without a password is refused: ACL users always
//!   authenticate with a password (a `nopass` user accepts any).
//! - `/db` selects a logical database by number (`SELECT db`); an empty path is no
//!   `SELECT`. Pub/sub channels are not per database (a publish reaches the subscribers of
//!   every database), so to namespace channels use the session's `prefix` option, which
//!   the caller gives beside the URL, not in it.
//! - Query strings and fragments are refused rather than ignored: an option that looks set
//!   and is not would be worse than an error.
//!
//! Error messages quote at most 64 bytes of the URL, with its password replaced by `***`,
//! and the `Debug`/`Display` forms of a parsed URL hide the password too: a URL is
//! configuration that ends up in logs.

use crate::error::{excerpt, Error, Result};
use std::fmt;

/// The default Redis port.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed broker URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://` (or `valkeys://`): the connection runs over TLS, with `host` as the
    /// name the server's certificate must carry.
    pub tls: bool,
    /// Host as written, without IPv6 brackets.
    pub host: String,
    /// Port, explicit or 6379.
    pub port: u16,
    /// ACL user name, percent-decoded.
    pub username: Option<Vec<u8>>,
    /// Password, percent-decoded.
    pub password: Option<Vec<u8>>,
    /// Logical database to `SELECT`, when the URL has a path.
    pub db: Option<u32>,
}

impl RedisUrl {
    /// Parses a broker URL (see the module documentation for the accepted form).
    pub fn parse(s: &str) -> Result<RedisUrl> {
        let bad = |why: &str| Error::BadUrl(format!("{}: {why}", excerpt(redact(s).as_bytes())));
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("missing scheme:// (redis:// or rediss://)"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => false,
            "rediss" | "valkeys" => true,
            _ => return Err(bad("unsupported scheme (redis://, rediss://)")),
        };
        // The last '@' ends the user information: a password with an unencoded '@', '/'
        // or '?' still parses, and neither a host nor a database number contains one.
        let (userinfo, after) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        if after.contains(['?', '#']) {
            return Err(bad(
                "query strings and fragments are not supported (options go beside the URL)",
            ));
        }
        let (hostport, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
                let pass = match pass {
                    Some(p) => {
                        Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
                    }
                    None => None,
                };
                match (user.is_empty(), pass) {
                    (true, None) => return Err(bad("empty user information before '@'")),
                    (false, None) => {
                        return Err(bad("a user needs a password (redis://user:password@host)"))
                    }
                    (true, Some(p)) => (None, Some(p)),
                    (false, Some(p)) => (Some(user), Some(p)),
                }
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 address in brackets"));
            }
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("an IPv6 address needs brackets, e.g. [::1]:6379"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"@%[]\\".contains(&b))
        {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(bad("invalid port (1-65535)")),
            },
        };
        let db = match path {
            "" | "/" => None,
            p => {
                let digits = &p[1..];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the path must be a database number, e.g. /0"));
                }
                Some(
                    digits
                        .parse::<u32>()
                        .map_err(|_| bad("database number too large"))?,
                )
            }
        };
        Ok(RedisUrl {
            tls,
            host: host.to_string(),
            port,
            username,
            password,
            db,
        })
    }

    /// `host:port`, with brackets around an IPv6 address: ready for `ToSocketAddrs`.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Shows the URL with the password as `***`.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{}:***@", percent_encode(u))?,
            (None, Some(_)) => f.write_str(":***@")?,
            _ => {}
        }
        f.write_str(&self.host_port())?;
        if let Some(db) = self.db {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

/// The password never appears: the same text as `Display`.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `%XX` escapes decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A user name as a URL carries it: unreserved bytes as they are, others `%XX`.
fn percent_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

/// The URL with what lies between the user's ':' and the last '@' replaced by `***`.
fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let Some(at) = rest.rfind('@') else {
        return s.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> RedisUrl {
        RedisUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match RedisUrl::parse(s) {
            Ok(u) => panic!("{s} parsed as {u}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_and_tls_with_defaults() {
        let u = ok("redis://127.0.0.1");
        assert!(!u.tls);
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6379, None));
        assert_eq!((u.username, u.password), (None, None));
        let u = ok("REDISS://cache.example.com:6380/");
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.db),
            ("cache.example.com", 6380, None)
        );
        assert!(ok("valkeys://h").tls);
        assert!(!ok("valkey://h").tls);
    }

    #[test]
    fn database_numbers() {
        assert_eq!(ok("redis://h/0").db, Some(0));
        assert_eq!(ok("redis://h:1/15").db, Some(15));
        assert_eq!(ok("redis://h/4294967295").db, Some(u32::MAX));
        assert!(err("redis://h/4294967296").contains("too large"));
        assert!(err("redis://h/x").contains("database number"));
        assert!(err("redis://h/1/2").contains("database number"));
        assert!(err("redis://h/-1").contains("database number"));
    }

    #[test]
    fn credentials_acl_and_legacy() {
        let u = ok("redis://alice:s3cret@h:7000/2");
        assert_eq!(u.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(u.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!((u.port, u.db), (7000, Some(2)));
        let u = ok("redis://:s3cret@h");
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_deref(), Some(&b"s3cret"[..]));
        // An empty password is a password (a nopass user accepts anything).
        let u = ok("redis://bob:@h");
        assert_eq!(u.password.as_deref(), Some(&b""[..]));
        assert!(err("redis://alice@h").contains("needs a password"));
        assert!(err("redis://@h").contains("empty user"));
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let u = ok("redis://al%69ce:p%40ss%3Aw%2Frd%00%FF@h");
        assert_eq!(u.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(u.password.as_deref(), Some(&b"p@ss:w/rd\0\xff"[..]));
        // An unencoded '@' in the password: the last '@' ends the user information.
        let u = ok("redis://:p@ss@h");
        assert_eq!(u.password.as_deref(), Some(&b"p@ss"[..]));
        let u = ok("redis://u:a/b?c#d@h/1");
        assert_eq!(u.password.as_deref(), Some(&b"a/b?c#d"[..]));
        assert_eq!(u.db, Some(1));
        assert!(err("redis://:p%4@h").contains("%-escape in the password"));
        assert!(err("redis://:p%zz@h").contains("%-escape"));
        assert!(err("redis://a%2:p@h").contains("%-escape in the user"));
    }

    #[test]
    fn ipv6_hosts_need_brackets() {
        let u = ok("redis://[::1]:6390/1");
        assert_eq!((u.host.as_str(), u.port), ("::1", 6390));
        assert_eq!(u.host_port(), "[::1]:6390");
        assert_eq!(ok("redis://[fe80::1]").port, 6379);
        assert!(err("redis://::1:6379").contains("brackets"));
        assert!(err("redis://[::1").contains("unclosed"));
        assert!(err("redis://[::1]x").contains("junk"));
        assert!(err("redis://[nothost]:1").contains("IPv6"));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(err("127.0.0.1:6379").contains("missing scheme"));
        assert!(err("http://h").contains("unsupported scheme"));
        assert!(err("redis://").contains("missing host"));
        assert!(err("redis://:p@").contains("missing host"));
        assert!(err("redis://h:0").contains("invalid port"));
        assert!(err("redis://h:65536").contains("invalid port"));
        assert!(err("redis://h:+1").contains("invalid port"));
        assert!(err("redis://h:").contains("invalid port"));
        assert!(err("redis://h?db=1").contains("query"));
        assert!(err("redis://h/1#x").contains("query"));
        assert!(err("redis://h st").contains("invalid host"));
    }

    #[test]
    fn passwords_never_show() {
        let e = err("redis://alice:hunter2@h:99999");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("alice:***@h:99999"), "{e}");
        let e = err("redis://:p%zz@h");
        assert!(!e.contains("p%zz"), "{e}");
        let e = err("redis://:pa/ss@h/x");
        assert!(!e.contains("pa/ss"), "{e}");
        let u = ok("redis://al%20ice:hunter2@h/3");
        assert_eq!(u.to_string(), "redis://al%20ice:***@h:6379/3");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(
            ok("rediss://:x@[::1]").to_string(),
            "rediss://:***@[::1]:6379"
        );
    }

    #[test]
    fn long_urls_are_quoted_short() {
        let long = format!("redis://{}:0", "h".repeat(10_000));
        let e = err(&long);
        assert!(e.len() < 200, "{e}");
    }
}
