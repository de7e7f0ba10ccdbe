//! Frame header parsing: never panics, never claims more than it was given, and what it
//! parses encodes back to an equivalent header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsserver::ws::frame::FrameHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, n))) = FrameHeader::parse(data) {
        assert!(n <= data.len() && n <= 14);
        let mut again = Vec::new();
        h.write(&mut again);
        let (h2, _) = FrameHeader::parse(&again).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.payload_len), (h2.fin, h2.opcode, h2.mask, h2.payload_len));
    }
});
