//! Upgrade requests (server side) and handshake responses (client side) built from an
//! HTTP head parsed out of the input: never a panic; an accepted upgrade is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsserver::ws::deflate::DeflateConfig;
use wsserver::ws::handshake::{accept, ClientHandshake, ServerOptions};

fuzz_target!(|data: &[u8]| {
    let mut raw = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut raw);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let headers: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
        let deflate = DeflateConfig::default();
        let origins = ["http://a.test", "*.b"];
        let opts = ServerOptions {
            allowed_origins: Some(&origins),
            protocols: &["chat", "v2"],
            chosen_protocol: None,
            deflate: Some(&deflate),
        };
        if let Ok(acc) = accept(req.method.unwrap_or(""), req.version.unwrap_or(1), &headers, &opts) {
            assert!(acc.response_head.starts_with("HTTP/1.1 101 "));
            assert!(!acc.response_head.contains("\r\n\r\n"));
            assert!(acc.response_head.bytes().all(|b| b != 0 && b != b'\n' || b == b'\n'));
        }
    }
    let mut raw = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut raw);
    if let Ok(httparse::Status::Complete(_)) = resp.parse(data) {
        let headers: Vec<(&str, &[u8])> = resp.headers.iter().map(|h| (h.name, h.value)).collect();
        let hs = ClientHandshake::new("h", "/", None, &["chat"], Some(DeflateConfig::default()), &[]).unwrap();
        let _ = hs.check_response(resp.code.unwrap_or(0), &headers);
    }
});
