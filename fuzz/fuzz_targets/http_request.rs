//! The HTTP/1.1 request reader (head parsing, Content-Length and chunked bodies,
//! pipelining) fed the input in pieces whose sizes come from the input itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use wsserver::http::request::HeadLimits;
use wsserver::http::server::{Feed, HttpConn};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let limits = HeadLimits { max_header_bytes: 4096, max_uri_bytes: 1024, max_body_bytes: 8192 };
    let mut h = HttpConn::default();
    let mut pool = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let now = Instant::now();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let (n, feed) = h.feed(&buf, &limits, now, &mut pool);
            assert!(n <= buf.len());
            buf.drain(..n);
            match feed {
                Feed::More => break,
                Feed::Continue => {}
                Feed::Request => {
                    let r = h.request().expect("a request is waiting");
                    assert!(r.body.len() as u64 <= limits.max_body_bytes);
                    let _ = (r.method(), r.path(), r.query(), r.header(b"host"));
                    if let Some(mut r) = h.finish() {
                        r.clear();
                        pool.push(r);
                    }
                }
                Feed::Reject(r) => {
                    assert!((400..=505).contains(&r.status.0));
                    return;
                }
            }
        }
        // A head still incomplete can never hold more than the limit (+ one piece).
        assert!(buf.len() <= limits.max_header_bytes + piece + limits.max_uri_bytes + 64);
    }
});
