//! Static files, sans-IO: mapping a request path to a file under a root without ever
//! leaving it, and planning the reply (conditional requests, single ranges, types).

use crate::http::response::Status;
use percent_encoding::percent_decode;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A regular file (canonical path, inside the root).
    File(PathBuf),
    /// A directory asked for without its trailing slash: redirect here.
    Redirect(String),
}

/// Maps a percent-encoded request path to a file under `root`.
///
/// Refused with 403: `..` segments, an encoded `/` (`%2f`), backslashes, NUL bytes,
/// hidden segments (`.name`, except `.well-known`), and anything whose real path
/// (after symlinks) is outside the root. 404 when nothing is there. A directory is
/// served through its `index` file; without a trailing slash it is a redirect.
pub fn resolve(root: &Path, raw_path: &[u8], index: &str) -> Result<Target, Status> {
    if !raw_path.starts_with(b"/") {
        return Err(Status::BAD_REQUEST);
    }
    let root = root.canonicalize().map_err(|_| Status::NOT_FOUND)?;
    let mut path = root.clone();
    for raw in raw_path.split(|&b| b == b'/') {
        if raw.contains(&b'\\') || raw.contains(&0) {
            return Err(Status::FORBIDDEN);
        }
        let seg: Vec<u8> = percent_decode(raw).collect();
        if seg.contains(&b'/') || seg.contains(&b'\\') || seg.contains(&0) {
            return Err(Status::FORBIDDEN);
        }
        match seg.as_slice() {
            b"" | b"." => continue,
            b".." => return Err(Status::FORBIDDEN),
            s if s.starts_with(b".") && s != b".well-known" => return Err(Status::FORBIDDEN),
            s => path.push(OsStr::from_bytes(s)),
        }
    }
    let real = canonical_inside(&root, &path)?;
    if real.is_dir() {
        if !raw_path.ends_with(b"/") {
            let mut to = String::from_utf8_lossy(raw_path).into_owned();
            to.push('/');
            return Ok(Target::Redirect(to));
        }
        let idx = canonical_inside(&root, &real.join(index))?;
        if !idx.is_file() {
            return Err(Status::NOT_FOUND);
        }
        return Ok(Target::File(idx));
    }
    if !real.is_file() {
        return Err(Status::NOT_FOUND);
    }
    Ok(Target::File(real))
}

fn canonical_inside(root: &Path, p: &Path) -> Result<PathBuf, Status> {
    let real = p.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Status::FORBIDDEN,
        _ => Status::NOT_FOUND,
    })?;
    if !real.starts_with(root) {
        // A symlink that points outside the root.
        return Err(Status::FORBIDDEN);
    }
    Ok(real)
}

/// What the request asked about the file.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    /// `If-None-Match`.
    pub if_none_match: Option<&'a [u8]>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a [u8]>,
    /// `Range`.
    pub range: Option<&'a [u8]>,
    /// `If-Range`.
    pub if_range: Option<&'a [u8]>,
}

/// The reply to send for a file.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// 200, 206, 304 or 416.
    pub status: Status,
    /// First byte to send.
    pub start: u64,
    /// Bytes to send (0 for 304 and 416).
    pub len: u64,
    /// Header lines, each ending in CRLF (Content-Type, ETag, Last-Modified,
    /// Accept-Ranges, Content-Range).
    pub headers: String,
}

/// The entity tag of a file: its mtime and size, as nginx forms it.
pub fn etag(size: u64, mtime: SystemTime) -> String {
    let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("\"{secs:x}-{size:x}\"")
}

/// Plans the reply for a file of `size` bytes modified at `mtime`.
pub fn plan(size: u64, mtime: SystemTime, content_type: &str, cond: &Conditions<'_>) -> Plan {
    let tag = etag(size, mtime);
    // HTTP dates have one-second resolution: compare whole seconds.
    let mtime_s = UNIX_EPOCH
        + Duration::from_secs(mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let last_modified = httpdate::fmt_http_date(mtime_s);
    let mut headers =
        format!("ETag: {tag}\r\nLast-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\n");

    let not_modified = match (cond.if_none_match, cond.if_modified_since) {
        (Some(inm), _) => etag_list_matches(inm, &tag),
        (None, Some(ims)) => parse_date(ims).is_some_and(|since| mtime_s <= since),
        (None, None) => false,
    };
    if not_modified {
        return Plan {
            status: Status::NOT_MODIFIED,
            start: 0,
            len: 0,
            headers,
        };
    }
    headers.push_str(&format!("Content-Type: {content_type}\r\n"));
    let range_applies = match cond.if_range {
        None => true,
        Some(v) => {
            let v = v.trim_ascii();
            if v.starts_with(b"\"") {
                v == tag.as_bytes()
            } else {
                parse_date(v).is_some_and(|d| d == mtime_s)
            }
        }
    };
    if let (Some(r), true) = (cond.range, range_applies) {
        match parse_range(r, size) {
            RangeSpec::Ignore => {}
            RangeSpec::Unsatisfiable => {
                headers.push_str(&format!("Content-Range: bytes */{size}\r\n"));
                return Plan {
                    status: Status::RANGE_NOT_SATISFIABLE,
                    start: 0,
                    len: 0,
                    headers,
                };
            }
            RangeSpec::Bytes(start, end) => {
                headers.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
                return Plan {
                    status: Status::PARTIAL_CONTENT,
                    start,
                    len: end - start + 1,
                    headers,
                };
            }
        }
    }
    Plan {
        status: Status::OK,
        start: 0,
        len: size,
        headers,
    }
}

fn parse_date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()
}

/// Weak comparison (RFC 9110 §13.1.2): `W/` prefixes are ignored; `*` matches.
fn etag_list_matches(list: &[u8], tag: &str) -> bool {
    list.split(|&b| b == b',').map(<[u8]>::trim_ascii).any(|t| {
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        t == b"*" || t == tag.as_bytes()
    })
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Not a single byte range we understand: serve the whole file.
    Ignore,
    /// No byte of the range exists: 416.
    Unsatisfiable,
    /// Inclusive first and last byte.
    Bytes(u64, u64),
}

/// A single `bytes=` range (RFC 9110 §14.1.2). Several ranges are served whole, which
/// the RFC allows and which spares multipart replies.
fn parse_range(v: &[u8], size: u64) -> RangeSpec {
    let Some(spec) = v.trim_ascii().strip_prefix(b"bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    let (a, b) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    let num = |s: &[u8]| crate::http::request::parse_decimal(s);
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSpec::Ignore,
        (true, false) => match num(b) {
            // The last n bytes.
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(size.saturating_sub(n), size - 1),
            None => RangeSpec::Ignore,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeSpec::Ignore;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return RangeSpec::Ignore,
                }
            };
            if start >= size {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes(start, end.min(size - 1))
            }
        }
    }
}

/// The content type of a file: overrides first ("ext=type,ext=type"), then the
/// mime_guess table; text types get `charset=utf-8`.
pub fn content_type(path: &Path, overrides: &str) -> String {
    let ext = path.extension().and_then(OsStr::to_str).unwrap_or("");
    for pair in overrides.split(',') {
        if let Some((e, t)) = pair.split_once('=') {
            if e.trim().trim_start_matches('.').eq_ignore_ascii_case(ext) && !ext.is_empty() {
                return t.trim().to_string();
            }
        }
    }
    let mime = mime_guess::from_ext(ext).first_or_octet_stream();
    let t = mime.essence_str();
    if t.starts_with("text/")
        || t == "application/javascript"
        || t == "application/json"
        || t == "image/svg+xml"
    {
        format!("{t}; charset=utf-8")
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let root = d.path.join("root");
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::create_dir_all(root.join(".well-known")).unwrap();
        fs::create_dir_all(root.join("noindex")).unwrap();
        fs::write(root.join("index.html"), "home").unwrap();
        fs::write(root.join("a b.txt"), "spaced").unwrap();
        fs::write(root.join("sub/index.html"), "sub home").unwrap();
        fs::write(root.join(".git/config"), "secret").unwrap();
        fs::write(root.join(".well-known/x"), "ok").unwrap();
        fs::write(d.path.join("outside.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(d.path.join("outside.txt"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("a b.txt"), root.join("inside-link")).unwrap();
        std::os::unix::fs::symlink(&d.path, root.join("updir")).unwrap();
        (d, root)
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "wss-static-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[test]
    fn resolves_inside_the_root_only() {
        let (_d, root) = tree();
        let r = |p: &str| resolve(&root, p.as_bytes(), "index.html");
        let file = |p: &str| match r(p) {
            Ok(Target::File(f)) => fs::read_to_string(f).unwrap(),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(file("/"), "home");
        assert_eq!(file("/a%20b.txt"), "spaced");
        assert_eq!(file("/sub/"), "sub home");
        assert_eq!(file("/./sub//index.html"), "sub home");
        assert_eq!(file("/inside-link"), "spaced");
        assert_eq!(file("/.well-known/x"), "ok");
        assert_eq!(r("/sub"), Ok(Target::Redirect("/sub/".into())));
        for (p, status) in [
            ("/../outside.txt", Status::FORBIDDEN),
            ("/sub/../../outside.txt", Status::FORBIDDEN),
            ("/%2e%2e/outside.txt", Status::FORBIDDEN),
            ("/%2E%2E/outside.txt", Status::FORBIDDEN),
            ("/sub/..%2f..%2foutside.txt", Status::FORBIDDEN),
            ("/sub%2findex.html", Status::FORBIDDEN),
            ("/..\\outside.txt", Status::FORBIDDEN),
            ("/%5c..%5coutside.txt", Status::FORBIDDEN),
            ("/index.html%00.txt", Status::FORBIDDEN),
            ("/escape", Status::FORBIDDEN),
            ("/updir/outside.txt", Status::FORBIDDEN),
            ("/.git/config", Status::FORBIDDEN),
            ("/missing", Status::NOT_FOUND),
            ("/noindex/", Status::NOT_FOUND),
            ("relative", Status::BAD_REQUEST),
        ] {
            assert_eq!(r(p), Err(status), "{p}");
        }
    }

    #[test]
    fn conditional_and_range_plans() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tag = etag(1000, t);
        let lm = httpdate::fmt_http_date(t);
        let p = |c: Conditions<'_>| plan(1000, t, "text/plain", &c);
        let full = p(Conditions::default());
        assert_eq!((full.status, full.start, full.len), (Status::OK, 0, 1000));
        assert!(full.headers.contains(&format!("ETag: {tag}\r\n")));
        assert!(full.headers.contains(&format!("Last-Modified: {lm}\r\n")));
        let inm = format!("\"x\", W/{tag}");
        assert_eq!(
            p(Conditions {
                if_none_match: Some(inm.as_bytes()),
                ..Default::default()
            })
            .status,
            Status::NOT_MODIFIED
        );
        assert_eq!(
            p(Conditions {
                if_none_match: Some(b"\"other\""),
                ..Default::default()
            })
            .status,
            Status::OK
        );
        assert_eq!(
            p(Conditions {
                if_modified_since: Some(lm.as_bytes()),
                ..Default::default()
            })
            .status,
            Status::NOT_MODIFIED
        );
        let earlier = httpdate::fmt_http_date(t - Duration::from_secs(1));
        assert_eq!(
            p(Conditions {
                if_modified_since: Some(earlier.as_bytes()),
                ..Default::default()
            })
            .status,
            Status::OK
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            p(Conditions {
                if_none_match: Some(b"\"other\""),
                if_modified_since: Some(lm.as_bytes()),
                ..Default::default()
            })
            .status,
            Status::OK
        );
        let range = |r: &str| {
            let pl = p(Conditions {
                range: Some(r.as_bytes()),
                ..Default::default()
            });
            (pl.status.0, pl.start, pl.len)
        };
        assert_eq!(range("bytes=0-99"), (206, 0, 100));
        assert_eq!(range("bytes=990-"), (206, 990, 10));
        assert_eq!(range("bytes=-5"), (206, 995, 5));
        assert_eq!(range("bytes=-5000"), (206, 0, 1000));
        assert_eq!(range("bytes=900-5000"), (206, 900, 100));
        assert_eq!(range("bytes=1000-"), (416, 0, 0));
        assert_eq!(range("bytes=-0"), (416, 0, 0));
        assert_eq!(range("bytes=5-1"), (200, 0, 1000));
        assert_eq!(range("bytes=0-1,5-6"), (200, 0, 1000));
        assert_eq!(range("items=0-1"), (200, 0, 1000));
        let pl = p(Conditions {
            range: Some(b"bytes=0-1"),
            if_range: Some(b"\"stale\""),
            ..Default::default()
        });
        assert_eq!(pl.status, Status::OK, "If-Range mismatch: whole file");
        let pl = p(Conditions {
            range: Some(b"bytes=0-1"),
            if_range: Some(tag.as_bytes()),
            ..Default::default()
        });
        assert_eq!(pl.status, Status::PARTIAL_CONTENT);
        assert!(pl.headers.contains("Content-Range: bytes 0-1/1000\r\n"));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a.html"), ""),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.PNG"), ""), "image/png");
        assert_eq!(content_type(Path::new("a.wasm"), ""), "application/wasm");
        assert_eq!(
            content_type(Path::new("noext"), ""),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(Path::new("a.log"), "log=text/x-log, .md=text/markdown"),
            "text/x-log"
        );
    }
}
