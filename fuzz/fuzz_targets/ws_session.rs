//! The WebSocket session, both roles (the server reads masked frames, the client
//! unmasked ones; with and without permessage-deflate), fed in pieces: no panic, limits
//! hold, only a partial header is ever left unconsumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsserver::ws::deflate::{DeflateConfig, DeflateParams};
use wsserver::ws::{Role, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let [mode, role, input @ ..] = data else { return };
    let mode = *mode;
    let mut cfg = SessionConfig::new(if role & 1 == 0 { Role::Server } else { Role::Client });
    cfg.max_frame_size = 64 << 10;
    cfg.max_message_size = 256 << 10;
    cfg.stream_fragments = mode & 1 != 0;
    if mode & 2 != 0 {
        let params = DeflateParams {
            server_no_context_takeover: mode & 4 != 0,
            client_no_context_takeover: mode & 8 != 0,
            server_max_window_bits: 9 + (mode >> 5),
            client_max_window_bits: 15,
        };
        cfg = cfg.with_deflate(params, &DeflateConfig::default());
    }
    let piece = usize::from(mode >> 4).max(1) * 7;
    let mut s = Session::new(cfg);
    let (mut items, mut out) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        match s.read(&mut buf, &mut items, &mut out) {
            Ok(n) => {
                buf.drain(..n);
                assert!(buf.len() < 14, "only a partial header may wait");
            }
            Err(f) => {
                assert!(matches!(f.code, 1002 | 1007 | 1009));
                return;
            }
        }
        for it in items.drain(..) {
            if let wsserver::ws::Incoming::Message { data, .. } = it {
                assert!(data.len() <= 256 << 10);
            }
        }
        out.clear();
    }
});
