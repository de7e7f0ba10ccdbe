//! permessage-deflate inflation of arbitrary input in pieces, with a hard cap: never a
//! panic, never more output than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsserver::ws::deflate::Inflater;

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let mut inf = Inflater::new(mode & 1 != 0);
    let piece = usize::from(mode >> 1).max(1) * 3;
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = input.chunks(piece).collect();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        // The cap is per call: pass what is left of the message's budget, as the
        // session does, so that the whole message stays within CAP.
        let left = CAP - out.len();
        if inf.inflate_capped(p, last, &mut out, left).is_err() {
            break;
        }
        assert!(out.len() <= CAP);
    }
});
