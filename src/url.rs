//! The URLs accepted by `wss_mgr_listen` and `wss_mgr_connect`:
//! `scheme://host[:port][/path?query]`, host being a name, an IPv4 address or a
//! bracketed IPv6 address.

use crate::error::{excerpt, Error, Result};
use std::net::{SocketAddr, ToSocketAddrs};

/// What a listener or client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP/1.1 (WebSocket upgrades on request).
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// WebSocket: every request must be an upgrade.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// Raw TCP bytes.
    Tcp,
    /// Raw bytes over TLS.
    Tls,
    /// UDP datagrams.
    Udp,
}

impl Scheme {
    /// Whether the transport is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Wss | Scheme::Tls)
    }

    /// Whether the protocol on top is HTTP (and maybe WebSocket after it).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Scheme::Http | Scheme::Https | Scheme::Ws | Scheme::Wss
        )
    }

    /// Whether the protocol is WebSocket from the start.
    pub fn is_ws(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http | Scheme::Ws => Some(80),
            Scheme::Https | Scheme::Wss => Some(443),
            Scheme::Tcp | Scheme::Tls | Scheme::Udp => None,
        }
    }
}

/// A parsed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// Host as written, without IPv6 brackets.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// Path and query, "/" when absent.
    pub path: String,
}

impl Url {
    /// Parses `scheme://host[:port][/path]`.
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| Error::BadUrl(format!("{}: {why}", excerpt(s.as_bytes())));
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("missing scheme://"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "tcp" => Scheme::Tcp,
            "tls" | "ssl" => Scheme::Tls,
            "udp" => Scheme::Udp,
            _ => {
                return Err(bad(
                    "unsupported scheme (http, https, ws, wss, tcp, tls, udp)",
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                // "::1:0" would read as host "::1", port 0 and "::1:8080" as host "::1"
                // port 8080, but "1::1" is an address and no port: only brackets decide.
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("an IPv6 address needs brackets, e.g. [::1]:8080"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if host.bytes().any(|b| b.is_ascii_whitespace() || b == b'@') {
            return Err(bad("invalid host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => scheme
                .default_port()
                .ok_or_else(|| bad("a port is required"))?,
        };
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Resolves host and port to socket addresses (numeric hosts without a lookup).
    pub fn socket_addrs(&self) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::BadUrl(format!(
                    "cannot resolve {}: {e}",
                    excerpt(self.host.as_bytes())
                ))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::BadUrl(format!(
                "{:?} resolves to no address",
                self.host
            )));
        }
        Ok(addrs)
    }

    /// `host[:port]` for a Host header (port omitted when it is the default).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if Some(self.port) == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u = Url::parse("http://0.0.0.0:8000").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "0.0.0.0", 8000, "/")
        );
        let u = Url::parse("ws://[::1]:0/chat?x=1").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Ws, "::1", 0, "/chat?x=1")
        );
        let u = Url::parse("WSS://example.com").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Wss, 443));
        assert_eq!(u.host_header(), "example.com");
        let u = Url::parse("udp://127.0.0.1:9?").unwrap();
        assert_eq!(u.path, "/?");
        assert_eq!(
            Url::parse("ws://[::1]:81").unwrap().host_header(),
            "[::1]:81"
        );
    }

    #[test]
    fn messages_quote_a_long_url_in_part() {
        let long = format!("gopher://{}", "a".repeat(1 << 20));
        let e = Url::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes", e.len());
    }

    #[test]
    fn rejects_bad_urls() {
        for s in [
            "",
            "http:/x",
            "gopher://a:1",
            "tcp://127.0.0.1",
            "http://:80",
            "http://h:99999",
            "http://[::1",
            "http://[::1]x",
            "http://a b:1",
            "http://h:-1",
            "tcp://::1:0",
            "http://::1",
            "ws://fe80::1:80/x",
        ] {
            assert!(matches!(Url::parse(s), Err(Error::BadUrl(_))), "{s:?}");
        }
    }

    #[test]
    fn numeric_hosts_resolve_without_lookup() {
        let u = Url::parse("tcp://[::1]:5").unwrap();
        assert_eq!(u.socket_addrs().unwrap(), vec!["[::1]:5".parse().unwrap()]);
    }
}
