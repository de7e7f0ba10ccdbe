//! The small part of HTTP header syntax the handshake needs (RFC 7230 §3.2.6
//! tokens and quoted strings, §7 comma-separated lists), over raw header
//! bytes as a server's request parser hands them out.

/// RFC 7230 §3.2.6: ``tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
/// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA``.
pub(super) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Whether `s` is a non-empty `token`.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Strips optional whitespace (`OWS = *( SP / HTAB )`) from both ends.
pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The values of every header called `name` (compared case-insensitively,
/// RFC 7230 §3.2), in order.
pub(super) fn values<'a, 'h: 'a>(
    headers: &'a [(&'h str, &'h [u8])],
    name: &'a str,
) -> impl Iterator<Item = &'h [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The single value of header `name`: `None` when absent or repeated (a
/// repeated singleton header is ambiguous, so it is treated as unusable).
pub(super) fn single<'h>(headers: &[(&'h str, &'h [u8])], name: &str) -> Option<&'h [u8]> {
    let mut it = values(headers, name);
    let first = it.next()?;
    match it.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// The non-empty, OWS-trimmed elements of every `name` header's comma list
/// (RFC 7230 §7: "a recipient MUST accept empty list elements", which are
/// skipped). For headers whose elements are plain tokens (`Connection`,
/// `Upgrade`, `Sec-WebSocket-Protocol`), never quoted strings.
pub(super) fn list_elements<'a, 'h: 'a>(
    headers: &'a [(&'h str, &'h [u8])],
    name: &'a str,
) -> impl Iterator<Item = &'h [u8]> + 'a {
    values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether any `name` header lists `token` (ASCII case-insensitive, as for
/// `Connection: keep-alive, Upgrade` and `Upgrade: WebSocket`).
pub(super) fn has_token(headers: &[(&str, &[u8])], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// One element of a `Sec-WebSocket-Extensions` list (RFC 6455 §9.1):
/// `extension = extension-token *( ";" extension-param )`,
/// `extension-param = token [ "=" (token | quoted-string) ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Extension {
    /// The extension name, ASCII-lowercased.
    pub name: String,
    /// Parameters in order: ASCII-lowercased name and unquoted value.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses every `Sec-WebSocket-Extensions` value in `values` into its list
/// elements, in order. A syntactically broken element yields `None` in its
/// place, so a server can skip just that offer while a client can refuse a
/// broken response.
pub(super) fn parse_extensions<'v>(
    values: impl IntoIterator<Item = &'v [u8]>,
) -> Vec<Option<Extension>> {
    let mut out = Vec::new();
    for value in values {
        let mut cur = Cursor { s: value, i: 0 };
        loop {
            // Skip OWS and empty elements (", ,").
            while matches!(cur.peek(), Some(b' ' | b'\t' | b',')) {
                cur.i += 1;
            }
            if cur.peek().is_none() {
                break;
            }
            let element = cur.extension();
            cur.skip_ows();
            match (element, cur.peek()) {
                (Some(e), None | Some(b',')) => out.push(Some(e)),
                _ => {
                    out.push(None);
                    cur.skip_to_next_element();
                }
            }
        }
    }
    out
}

/// A position in one header value.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let token = self.s.get(start..self.i).filter(|t| !t.is_empty())?;
        // tchar is ASCII, so this never fails.
        std::str::from_utf8(token).ok().map(str::to_owned)
    }

    /// RFC 7230 §3.2.6: `quoted-string = DQUOTE *( qdtext / quoted-pair )
    /// DQUOTE`, returned unescaped.
    fn quoted_string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let mut value = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(value).ok(),
                b'\\' => {
                    let escaped = self
                        .peek()
                        .filter(|&e| e == b'\t' || e >= 0x20 && e != 0x7f)?;
                    self.i += 1;
                    value.push(escaped);
                }
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => value.push(b),
                _ => return None,
            }
        }
    }

    fn extension(&mut self) -> Option<Extension> {
        let name = self.token()?.to_ascii_lowercase();
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            if self.peek() != Some(b';') {
                break;
            }
            self.i += 1;
            self.skip_ows();
            let param = self.token()?.to_ascii_lowercase();
            // BWS around "=" is tolerated.
            let before_eq = self.i;
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.skip_ows();
                Some(match self.peek() {
                    Some(b'"') => self.quoted_string()?,
                    _ => self.token()?,
                })
            } else {
                self.i = before_eq;
                None
            };
            params.push((param, value));
        }
        Some(Extension { name, params })
    }

    /// Moves past the next top-level comma (or to the end), skipping over
    /// quoted strings so a comma inside quotes does not end the element.
    fn skip_to_next_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.i += 1,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Option<Extension> {
        Some(Extension {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_owned)))
                .collect(),
        })
    }

    #[test]
    fn tokens_and_trimming() {
        assert!(is_token(b"permessage-deflate"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a,b"));
        assert_eq!(trim_ows(b" \t x y \t"), b"x y");
        assert_eq!(trim_ows(b"   "), b"");
    }

    #[test]
    fn lists_across_repeated_headers() {
        let headers: &[(&str, &[u8])] = &[
            ("connection", b"keep-alive, Upgrade"),
            ("Sec-WebSocket-Protocol", b"chat, , superchat"),
            ("sec-websocket-protocol", b"v2"),
        ];
        assert!(has_token(headers, "Connection", "upgrade"));
        assert!(!has_token(headers, "Connection", "close"));
        let protocols: Vec<&[u8]> = list_elements(headers, "sec-websocket-protocol").collect();
        assert_eq!(protocols, [&b"chat"[..], b"superchat", b"v2"]);
        assert_eq!(
            single(headers, "connection"),
            Some(&b"keep-alive, Upgrade"[..])
        );
        assert_eq!(single(headers, "sec-websocket-protocol"), None);
        assert_eq!(single(headers, "origin"), None);
    }

    #[test]
    fn extension_lists() {
        let parsed = parse_extensions([
            &b"permessage-deflate; client_max_window_bits, Permessage-Deflate ;Server_Max_Window_Bits = \"10\" ; x"[..],
            b"foo, ,bar;a=\"q,\\\"uoted\";b",
        ]);
        assert_eq!(
            parsed,
            vec![
                ext("permessage-deflate", &[("client_max_window_bits", None)]),
                ext(
                    "permessage-deflate",
                    &[("server_max_window_bits", Some("10")), ("x", None)]
                ),
                ext("foo", &[]),
                ext("bar", &[("a", Some("q,\"uoted")), ("b", None)]),
            ]
        );
    }

    #[test]
    fn broken_elements_are_isolated() {
        let parsed = parse_extensions([&b"a;=1, b; p=\"x,y\" junk, c; q=\"unterminated, d"[..]]);
        assert_eq!(parsed, vec![None, None, None]);
        let parsed = parse_extensions([&b"a;=1, b; p=\"x,y\", ;, c"[..]]);
        assert_eq!(
            parsed,
            vec![None, ext("b", &[("p", Some("x,y"))]), None, ext("c", &[])]
        );
        assert_eq!(parse_extensions([&b""[..], b" , "]), vec![]);
    }
}
