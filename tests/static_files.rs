//! Static files over real sockets: types, index, redirects, ranges, conditional
//! requests, HEAD, large files, and every path-traversal attempt; then `curl`.

mod common;

use common::*;
use std::ffi::CString;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use wsserver::ffi::event::wss_event_kind::*;
use wsserver::ffi::http::*;
use wsserver::ffi::opts::wss_serve_opts;
use wsserver::ffi::result::wss_result::*;

struct Tree {
    base: PathBuf,
    root: PathBuf,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn tree(name: &str) -> Tree {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("static-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("www");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(root.join("style.css"), "body{}").unwrap();
    std::fs::write(root.join("docs/index.html"), "docs").unwrap();
    std::fs::write(root.join("notes.md"), "# notes").unwrap();
    std::fs::write(root.join(".git/config"), "secret").unwrap();
    std::fs::write(base.join("secret.txt"), "outside the root").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link-out")).unwrap();
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    Tree { base, root }
}

fn serve(t: &Tree) -> Loop {
    let root = CString::new(t.root.to_str().unwrap()).unwrap();
    let mime = CString::new("md=text/markdown").unwrap();
    let extra = CString::new("Cache-Control: no-cache").unwrap();
    let single = CString::new(t.root.join("style.css").to_str().unwrap()).unwrap();
    Loop::serve("http://127.0.0.1:0", None, move |ctx, ev| {
        if !ev.is(WSS_EV_HTTP_MSG) {
            return;
        }
        let mut o: wss_serve_opts = unsafe { std::mem::zeroed() };
        o.struct_size = std::mem::size_of::<wss_serve_opts>() as u32;
        o.root_dir = root.as_ptr();
        o.mime_types = mime.as_ptr();
        o.extra_headers = extra.as_ptr();
        let mut r: wss_http_request = unsafe { std::mem::zeroed() };
        unsafe { wss_http_request_get(ctx.mgr, ev.conn, &mut r) };
        let path = unsafe { std::slice::from_raw_parts(r.path.ptr, r.path.len) };
        let res = if path == b"/the-css" {
            unsafe { wss_http_serve_file(ctx.mgr, ev.conn, single.as_ptr(), std::ptr::null()) }
        } else {
            unsafe { wss_http_serve_dir(ctx.mgr, ev.conn, &o) }
        };
        assert_eq!(res, OK);
    })
}

fn get(srv: &Loop, path: &str, headers: &str) -> Response {
    let mut c = srv.tcp();
    roundtrip(
        &mut c,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n"),
    )
}

#[test]
fn files_types_index_and_redirects() {
    let t = tree("basic");
    let srv = serve(&t);
    let r = get(&srv, "/", "");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(
        get(&srv, "/style.css", "")
            .header("content-type")
            .as_deref(),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        get(&srv, "/notes.md", "").header("content-type").as_deref(),
        Some("text/markdown")
    );
    assert_eq!(get(&srv, "/docs/", "").text(), "docs");
    let r = get(&srv, "/docs?x=1", "");
    assert_eq!(
        (r.status, r.header("location").as_deref()),
        (301, Some("/docs/?x=1"))
    );
    assert_eq!(get(&srv, "/missing.txt", "").status, 404);
    assert_eq!(
        get(&srv, "/the-css", "").text(),
        "body{}",
        "serve_file ignores the request path"
    );
    let mut c = srv.tcp();
    assert_eq!(
        roundtrip(
            &mut c,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        )
        .status,
        405
    );
}

#[test]
fn nothing_outside_the_root_is_ever_served() {
    let t = tree("escape");
    let srv = serve(&t);
    for path in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2e/secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/index.html%00.css",
        "/link-out",
        "/.git/config",
        "/%2egit/config",
    ] {
        let r = get(&srv, path, "");
        assert!(r.status == 403 || r.status == 404, "{path}: {}", r.status);
        assert!(
            !r.text().contains("outside the root") && !r.text().contains("secret"),
            "{path} leaked"
        );
    }
}

#[test]
fn conditional_requests_and_ranges() {
    let t = tree("cond");
    let srv = serve(&t);
    let first = get(&srv, "/style.css", "");
    let etag = first.header("etag").unwrap();
    let lm = first.header("last-modified").unwrap();
    assert_eq!(
        get(&srv, "/style.css", &format!("If-None-Match: {etag}\r\n")).status,
        304
    );
    assert_eq!(
        get(&srv, "/style.css", "If-None-Match: \"nope\"\r\n").status,
        200
    );
    assert_eq!(
        get(&srv, "/style.css", &format!("If-Modified-Since: {lm}\r\n")).status,
        304
    );
    assert_eq!(
        get(
            &srv,
            "/style.css",
            "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
        )
        .status,
        200
    );
    let r = get(&srv, "/style.css", "Range: bytes=1-3\r\n");
    assert_eq!((r.status, r.text().as_str()), (206, "ody"));
    assert_eq!(r.header("content-range").as_deref(), Some("bytes 1-3/6"));
    assert_eq!(get(&srv, "/style.css", "Range: bytes=-2\r\n").text(), "{}");
    let r = get(&srv, "/style.css", "Range: bytes=10-\r\n");
    assert_eq!(
        (r.status, r.header("content-range").as_deref()),
        (416, Some("bytes */6"))
    );
    let r = get(
        &srv,
        "/style.css",
        "Range: bytes=0-1\r\nIf-Range: \"old\"\r\n",
    );
    assert_eq!(r.status, 200, "If-Range mismatch sends the whole file");
    // Large file ranges stream the right bytes.
    let r = get(&srv, "/big.bin", "Range: bytes=1000000-1999999\r\n");
    assert_eq!(r.status, 206);
    let want: Vec<u8> = (1_000_000u32..2_000_000).map(|i| (i % 251) as u8).collect();
    assert!(r.body == want);
}

#[test]
fn head_and_large_files_keep_the_connection_in_sync() {
    let t = tree("big");
    let srv = serve(&t);
    let mut c = srv.tcp();
    let head = roundtrip(&mut c, "HEAD /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(head.header("content-length").as_deref(), Some("5242880"));
    assert!(head.body.is_empty());
    let r = roundtrip(&mut c, "GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.body.len(), 5 << 20);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    // Pipelined after a streamed file.
    c.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\nGET /style.css HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).body.len(), 5 << 20);
    assert_eq!(read_response(&mut c, false).text(), "body{}");
}

#[test]
fn serve_misuse() {
    let srv = Loop::serve("http://127.0.0.1:0", None, |ctx, ev| {
        if ev.is(WSS_EV_HTTP_MSG) {
            assert_eq!(
                unsafe { wss_http_serve_dir(ctx.mgr, ev.conn, std::ptr::null()) },
                WSS_RESULT_NULL_PARAMETER
            );
            let mut o: wss_serve_opts = unsafe { std::mem::zeroed() };
            o.struct_size = std::mem::size_of::<wss_serve_opts>() as u32;
            assert_eq!(
                unsafe { wss_http_serve_dir(ctx.mgr, ev.conn, &o) },
                WSS_RESULT_INVALID_ARGUMENT,
                "no root"
            );
            let missing = CString::new("/nonexistent/file").unwrap();
            assert_eq!(
                unsafe {
                    wss_http_serve_file(ctx.mgr, ev.conn, missing.as_ptr(), std::ptr::null())
                },
                OK
            );
            assert_eq!(
                unsafe {
                    wss_http_serve_file(ctx.mgr, ev.conn, missing.as_ptr(), std::ptr::null())
                },
                WSS_RESULT_INVALID_STATE
            );
        }
    });
    assert_eq!(get(&srv, "/", "").status, 404);
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_keep_alive_ranges_and_conditionals() {
    let t = tree("curl");
    let srv = serve(&t);
    let base = format!("http://127.0.0.1:{}", srv.port);
    // Several URLs on one connection.
    let (out, err) = curl(&[
        "-v",
        &format!("{base}/"),
        &format!("{base}/style.css"),
        &format!("{base}/docs/"),
    ]);
    assert_eq!(out, "<h1>home</h1>body{}docs");
    assert!(err.contains("Re-using existing connection"), "{err}");
    assert_eq!(
        srv.events(WSS_EV_ACCEPT).len(),
        1,
        "one connection for three requests"
    );
    // --range
    let (out, _) = curl(&["--range", "2-4", &format!("{base}/style.css")]);
    assert_eq!(out, "dy{");
    // A conditional request with the ETag curl saw.
    let (head, _) = curl(&["-I", &format!("{base}/style.css")]);
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("ETag: ")
                .or_else(|| l.strip_prefix("etag: "))
        })
        .unwrap()
        .trim()
        .to_string();
    let (code, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("If-None-Match: {etag}"),
        &format!("{base}/style.css"),
    ]);
    assert_eq!(code, "304");
    // -z: If-Modified-Since from a date.
    let (code, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-z",
        "Jan 1 2001",
        &format!("{base}/style.css"),
    ]);
    assert_eq!(code, "200");
    let (code, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-z",
        "Jan 1 2100",
        &format!("{base}/style.css"),
    ]);
    assert_eq!(code, "304");
    // A large download, compared byte for byte.
    let dest = t.base.join("download.bin");
    curl(&["-o", dest.to_str().unwrap(), &format!("{base}/big.bin")]);
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(t.root.join("big.bin")).unwrap());
    // curl refuses to follow nothing: a path with .. is normalised by curl itself, so use --path-as-is.
    let (code, _) = curl(&[
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/../secret.txt"),
    ]);
    assert!(code == "403" || code == "404", "{code}");
}
