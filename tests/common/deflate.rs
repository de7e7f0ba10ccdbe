//! permessage-deflate (RFC 7692) on the test's side: the client's compressor, and
//! reading the server's extension answer. Its decompressor is the reference inflater,
//! [`Inflate`](super::inflate::Inflate).

use flate2::{Compress, Compression, FlushCompress};

/// A compressor for one direction: raw DEFLATE with a 2^bits window; `takeover` false
/// resets it after each message.
pub struct Deflate {
    c: Compress,
    takeover: bool,
}

impl Deflate {
    pub fn new(bits: u8, takeover: bool) -> Self {
        Deflate {
            c: Compress::new_with_window_bits(Compression::new(6), false, bits),
            takeover,
        }
    }

    /// One message, compressed and ended with a sync flush whose `00 00 ff ff` is removed.
    pub fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let before = self.c.total_in();
            self.c
                .compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
                .unwrap();
            pos += (self.c.total_in() - before) as usize;
            // Done when all input is taken and the flush left room to spare.
            if pos == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
        out.truncate(out.len() - 4);
        if !self.takeover {
            self.c.reset();
        }
        out
    }
}

/// Parses a `Sec-WebSocket-Extensions` response value for permessage-deflate into
/// `(name, value)` parameters.
pub fn extension_params(value: &str) -> Vec<(String, Option<String>)> {
    let mut parts = value.split(';').map(str::trim);
    assert_eq!(parts.next(), Some("permessage-deflate"), "{value}");
    parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (
                n.trim().to_string(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.to_string(), None),
        })
        .collect()
}
