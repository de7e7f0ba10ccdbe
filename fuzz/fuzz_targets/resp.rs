//! RESP replies, and the broker session reading them from Redis: no panic; the same
//! replies (or the same failure) whatever the split; a proper prefix of a reply consumes
//! nothing; nothing parsed or buffered beyond the limits; what parses encodes back to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use wsserver::broker::resp::{encode, parse, Decoder, Limits, Value};
use wsserver::broker::{Config, Kind, Link, NodeId, Output, Session};

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_bulk_len: 1024,
    max_array_len: 16,
    max_depth: 4,
    max_line_len: 64,
    max_frame_len: 4096,
};

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) | Value::Push(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, input @ ..] = data else { return };
    let step = usize::from(mode & 0x1f) + 1;

    // The whole input at once: replies until an incomplete one or an error.
    let (mut whole, mut at, mut whole_err) = (Vec::new(), 0, false);
    loop {
        match parse(&input[at..], &LIMITS) {
            Ok(Some((v, n))) => {
                assert!(n > 0 && n <= input.len() - at && n <= LIMITS.max_frame_len);
                assert!(depth(&v) <= LIMITS.max_depth);
                if whole.is_empty() && n <= 256 {
                    for cut in 0..n {
                        assert_eq!(parse(&input[..cut], &LIMITS), Ok(None), "cut {cut}");
                    }
                }
                let mut again = Vec::new();
                encode(&mut again, &v);
                let (back, m) = parse(&again, &LIMITS).unwrap().unwrap();
                assert_eq!((&back, m), (&v, again.len()));
                whole.push(v);
                at += n;
            }
            Ok(None) => break,
            Err(_) => {
                whole_err = true;
                break;
            }
        }
    }

    // The same bytes in pieces through a decoder.
    let mut d = Decoder::new(LIMITS);
    let (mut pieces, mut pieces_err) = (Vec::new(), false);
    'feed: for chunk in input.chunks(step) {
        d.feed(chunk);
        loop {
            match d.next_value() {
                Ok(Some(v)) => pieces.push(v),
                Ok(None) => break,
                Err(_) => {
                    pieces_err = true;
                    break 'feed;
                }
            }
        }
        assert!(d.buffered() <= LIMITS.max_frame_len);
    }
    assert_eq!(pieces, whole);
    assert_eq!(pieces_err, whole_err);

    // A session whose links are up, fed the bytes as a server's replies.
    let now = Instant::now();
    let cfg = Config {
        prefix: b"p:".to_vec(),
        node_id: Some(NodeId([1; 16])),
        limits: LIMITS,
        accept_foreign: mode & 0x20 != 0,
        ..Config::default()
    };
    let mut s = Session::new(cfg, now);
    for link in Link::ALL {
        s.connected(link, now);
        let n = s.outgoing(link).len();
        s.written(link, n);
        s.received(link, b"+PONG\r\n", now);
    }
    s.add_topic(b"t");
    s.add_topic(b"");
    s.publish(b"t", b"x", Kind::Text, now);
    let link = if mode & 0x40 != 0 { Link::Pub } else { Link::Sub };
    for chunk in input.chunks(step) {
        s.received(link, chunk, now);
        while let Some(o) = s.poll_output() {
            if let Output::Deliver(d) = o {
                if d.kind == Kind::Text {
                    assert!(std::str::from_utf8(&d.payload).is_ok());
                }
                assert!(d.topic == b"t" || d.topic.is_empty());
            }
        }
        let n = s.outgoing(link).len();
        s.written(link, n);
    }
    let c = s.counters();
    assert!(c.delivered <= c.received);
    s.tick(now + Duration::from_secs(60));
});
