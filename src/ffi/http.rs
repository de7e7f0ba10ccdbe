//! HTTP: reading the current request, replying.

use super::boundary::{boundary, check_null, cstr, slice};
use super::event::wss_str;
use super::opts::{read_opts, text_field, wss_serve_opts};
use super::result::wss_result;
use super::{call, wss_id, wss_mgr};
use crate::error::{Error, Result};
use crate::http::request::Request;
use crate::mgr::Manager;
use std::ffi::c_char;
use std::os::unix::ffi::OsStrExt;

/// The request behind the current `WSS_EV_HTTP_MSG` of a connection. LIFETIME: the
/// views stay valid until the request is answered and then the next drain or poll call
/// on the manager (or until the connection's close event is drained).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wss_http_request {
    /// Method, e.g. "GET".
    pub method: wss_str,
    /// Path, still percent-encoded, without the query: "/a%20b".
    pub path: wss_str,
    /// Raw query string without the "?" (empty when absent).
    pub query: wss_str,
    /// Whole request target as received ("/a%20b?x=1").
    pub target: wss_str,
    /// "HTTP/1.0" or "HTTP/1.1".
    pub version: wss_str,
    /// Body (de-chunked).
    pub body: wss_str,
    /// Number of header lines (see `wss_http_header_at`).
    pub header_count: usize,
}

fn with_request<T>(
    m: &mut Manager,
    conn: wss_id,
    f: impl FnOnce(&Request) -> Result<T>,
) -> Result<T> {
    let c = m.conn_mut(conn)?;
    let h = c
        .http_mut()
        .ok_or(Error::WrongKind("not an HTTP connection"))?;
    let r = h
        .request()
        .ok_or_else(|| Error::InvalidState(format!("connection {conn} has no request waiting")))?;
    f(r)
}

/// Fills `*out` with views of the request waiting on `conn` (see `wss_http_request`).
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_WRONG_KIND` (not HTTP);
/// `WSS_RESULT_INVALID_STATE` when no request is waiting (already answered).
#[no_mangle]
pub unsafe extern "C" fn wss_http_request_get(
    mgr: *mut wss_mgr,
    conn: wss_id,
    out: *mut wss_http_request,
) -> wss_result {
    boundary(|| {
        check_null!(out);
        let mut got = None;
        let r = call(mgr, |m| {
            got = Some(with_request(m, conn, |r| {
                Ok(wss_http_request {
                    method: wss_str::of(r.method()),
                    path: wss_str::of(r.path()),
                    query: wss_str::of(r.query()),
                    target: wss_str::of(r.target.get(&r.head)),
                    version: wss_str::of(if r.minor_version == 0 {
                        b"HTTP/1.0"
                    } else {
                        b"HTTP/1.1"
                    }),
                    body: wss_str::of(&r.body),
                    header_count: r.headers.len(),
                })
            })?);
            Ok(())
        });
        if let Some(v) = got {
            // SAFETY: non-null out-parameter.
            unsafe { *out = v };
        }
        r
    })
}

/// The first value of header `name` (case-insensitive, NUL-terminated) of the request
/// waiting on `conn`, in `*value_out` (same lifetime as `wss_http_request`).
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND` when the header is absent (or the
/// id is stale); `WSS_RESULT_INVALID_STATE` when no request is waiting.
#[no_mangle]
pub unsafe extern "C" fn wss_http_header(
    mgr: *mut wss_mgr,
    conn: wss_id,
    name: *const c_char,
    value_out: *mut wss_str,
) -> wss_result {
    boundary(|| {
        check_null!(name, value_out);
        // SAFETY: non-null, NUL-terminated.
        let name = unsafe { cstr(name) }.unwrap_or_default();
        let mut got = None;
        let r = call(mgr, |m| {
            got = Some(with_request(m, conn, |r| {
                r.header(name).map(wss_str::of).ok_or_else(|| {
                    Error::Missing(format!("no header {}", crate::error::excerpt(name)))
                })
            })?);
            Ok(())
        });
        if let Some(v) = got {
            // SAFETY: non-null out-parameter.
            unsafe { *value_out = v };
        }
        r
    })
}

/// Header line `index` (0-based, in arrival order) of the request waiting on `conn`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND` when `index >= header_count`.
#[no_mangle]
pub unsafe extern "C" fn wss_http_header_at(
    mgr: *mut wss_mgr,
    conn: wss_id,
    index: usize,
    name_out: *mut wss_str,
    value_out: *mut wss_str,
) -> wss_result {
    boundary(|| {
        check_null!(name_out, value_out);
        let mut got = None;
        let r = call(mgr, |m| {
            got = Some(with_request(m, conn, |r| {
                r.header_at(index)
                    .map(|(n, v)| (wss_str::of(n), wss_str::of(v)))
                    .ok_or_else(|| Error::Missing(format!("no header line {index}")))
            })?);
            Ok(())
        });
        if let Some((n, v)) = got {
            // SAFETY: non-null out-parameters.
            unsafe {
                *name_out = n;
                *value_out = v;
            }
        }
        r
    })
}

/// Answers the request waiting on `conn` with a whole reply: status line, `Date`,
/// `Content-Length` (unless `extra_headers` has one, or the status has no body),
/// `Connection` as needed, the extra headers, then `len` bytes of `body` (omitted for
/// HEAD requests; the length is still announced). The bytes are copied.
///
/// The library frames the body: a `Transfer-Encoding` line in `extra_headers` is
/// refused, and so is a `Content-Length` that is not `len` (except in replies to HEAD
/// and in 304 replies, where it announces the length a GET would get, and never in
/// 1xx or 204 replies, which have no body).
///
/// `extra_headers`: NULL or header lines "Name: value\r\n" (a final CRLF may be left
/// out; LF alone is accepted). Each line is checked: a line that could split the reply
/// (bad name, control characters, a bare CR) fails the call with
/// WSS_RESULT_INVALID_ARGUMENT. The block is lines by definition: a caller that builds
/// it from untrusted values must refuse CR and LF in them (as the Lua layer does). A
/// "Connection: close" among them closes the connection after the reply.
///
/// After the reply the next pipelined request, if any, is delivered; or the connection
/// closes (HTTP/1.0 without keep-alive, "Connection: close", the peer half-closed).
///
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_STATE` when no request is waiting or a
/// reply is under way; `WSS_RESULT_INVALID_ARGUMENT` (status outside 100-599 or 101,
/// bad headers, framing headers that contradict the body); `WSS_RESULT_NOT_FOUND`;
/// `WSS_RESULT_CLOSED`; `WSS_RESULT_LIMIT`.
///
/// Example:
/// ```c
/// const char *hi = "hello\n";
/// wss_http_reply(mgr, ev.conn, 200, "Content-Type: text/plain\r\n", (const uint8_t *)hi, strlen(hi));
/// ```
#[no_mangle]
pub unsafe extern "C" fn wss_http_reply(
    mgr: *mut wss_mgr,
    conn: wss_id,
    status: u16,
    extra_headers: *const c_char,
    body: *const u8,
    len: usize,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `body` (or len 0).
        let Some(body) = (unsafe { slice(body, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        // SAFETY: NULL or NUL-terminated.
        let extra = unsafe { cstr(extra_headers) }.unwrap_or_default();
        call(mgr, |m| {
            m.with_conn(conn, |core, c| {
                crate::mgr::http_reply(core, c, status, extra, body)
            })
        })
    })
}

/// Starts a reply whose body follows in pieces (`wss_http_chunk`): HTTP/1.1 clients get
/// `Transfer-Encoding: chunked`; HTTP/1.0 clients get the body until the connection
/// closes. Headers as for `wss_http_reply`, except that neither `Content-Length` nor
/// `Transfer-Encoding` may be among them (WSS_RESULT_INVALID_ARGUMENT).
/// Returns: as `wss_http_reply`.
#[no_mangle]
pub unsafe extern "C" fn wss_http_chunked_begin(
    mgr: *mut wss_mgr,
    conn: wss_id,
    status: u16,
    extra_headers: *const c_char,
) -> wss_result {
    boundary(|| {
        // SAFETY: NULL or NUL-terminated.
        let extra = unsafe { cstr(extra_headers) }.unwrap_or_default();
        call(mgr, |m| {
            m.with_conn(conn, |core, c| {
                crate::mgr::http_chunked_begin(core, c, status, extra)
            })
        })
    })
}

/// Sends one piece of a reply started with `wss_http_chunked_begin`; `len` 0 ends the
/// reply (then the next request, if any, is delivered). The bytes are copied.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INVALID_STATE` when no chunked reply is under
/// way; `WSS_RESULT_NOT_FOUND`; `WSS_RESULT_CLOSED`; `WSS_RESULT_LIMIT`.
#[no_mangle]
pub unsafe extern "C" fn wss_http_chunk(
    mgr: *mut wss_mgr,
    conn: wss_id,
    data: *const u8,
    len: usize,
) -> wss_result {
    boundary(|| {
        // SAFETY: `len` readable bytes at `data` (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        call(mgr, |m| {
            m.with_conn(conn, |core, c| crate::mgr::http_chunk(core, c, data))
        })
    })
}

fn serve_spec(opts: *const wss_serve_opts) -> Result<crate::mgr::ServeSpec> {
    // SAFETY: NULL or a valid options struct.
    let o = unsafe { read_opts(opts, "wss_serve_opts") }?;
    let Some(o) = o else {
        return Ok(crate::mgr::ServeSpec::default());
    };
    // SAFETY: each field is NULL or NUL-terminated.
    let text = |p, name| unsafe { text_field(p, name) };
    let mut extra = Vec::new();
    if let Some(h) = text(o.extra_headers, "extra_headers")? {
        crate::http::response::normalize_headers(h.as_bytes(), &mut extra)
            .map_err(Error::InvalidArgument)?;
    }
    Ok(crate::mgr::ServeSpec {
        root: text(o.root_dir, "root_dir")?.map(std::path::PathBuf::from),
        index: text(o.index_file, "index_file")?.unwrap_or_default(),
        extra_headers: extra,
        mime_types: text(o.mime_types, "mime_types")?.unwrap_or_default(),
        url_prefix: text(o.url_prefix, "url_prefix")?.unwrap_or_default(),
    })
}

/// Answers the request waiting on `conn` with a file from `opts->root_dir`, chosen by
/// the request path: content type by extension, `index.html` for directories (a path
/// without its trailing slash is redirected with 301), `ETag` and `Last-Modified` with
/// `If-None-Match` / `If-Modified-Since` (304), a single `Range` (206, or 416 when no
/// byte of it exists; `If-Range` honoured), HEAD. Large files are streamed from disk
/// as the socket drains; memory does not grow with the file size.
///
/// Nothing outside the root is ever served: `..` segments, `%2e%2e`, an encoded
/// slash `%2f`, backslashes, NUL bytes, hidden files (`.git`, but not `.well-known`)
/// and symlinks whose target lies outside get 403; missing files get 404; methods
/// other than GET and HEAD get 405. These answers are replies, not call failures.
///
/// Returns: `WSS_RESULT_OK` once a reply is under way; `WSS_RESULT_INVALID_ARGUMENT`
/// (no `root_dir`, bad `extra_headers`); `WSS_RESULT_INVALID_STATE`; `WSS_RESULT_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn wss_http_serve_dir(
    mgr: *mut wss_mgr,
    conn: wss_id,
    opts: *const wss_serve_opts,
) -> wss_result {
    boundary(|| {
        check_null!(opts);
        call(mgr, |m| {
            let spec = serve_spec(opts)?;
            if spec.root.is_none() {
                return Err(Error::InvalidArgument(
                    "wss_serve_opts.root_dir is required".into(),
                ));
            }
            m.with_conn(conn, |core, c| crate::mgr::http_serve(core, c, &spec, None))
        })
    })
}

/// Answers the request waiting on `conn` with the file at `path` (whatever the request
/// path), with the same conditional, range and HEAD handling as `wss_http_serve_dir`.
/// `opts` may be NULL. A missing file is answered with 404.
/// Returns: as `wss_http_serve_dir`.
#[no_mangle]
pub unsafe extern "C" fn wss_http_serve_file(
    mgr: *mut wss_mgr,
    conn: wss_id,
    path: *const c_char,
    opts: *const wss_serve_opts,
) -> wss_result {
    boundary(|| {
        check_null!(path);
        call(mgr, |m| {
            let spec = serve_spec(opts)?;
            // SAFETY: non-null, NUL-terminated.
            let p = unsafe { cstr(path) }.unwrap_or_default();
            let p = std::path::Path::new(std::ffi::OsStr::from_bytes(p));
            m.with_conn(conn, |core, c| {
                crate::mgr::http_serve(core, c, &spec, Some(p))
            })
        })
    })
}
