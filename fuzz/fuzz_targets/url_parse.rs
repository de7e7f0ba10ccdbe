//! URL parsing for listen/connect: never a panic; a parsed URL has a host and a path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsserver::url::Url;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = Url::parse(s) {
            assert!(!u.host.is_empty());
            assert!(u.path.starts_with('/'));
            let _ = u.host_header();
        }
    }
});
