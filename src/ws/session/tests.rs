//! Session tests at the byte level: one group per Autobahn|Testsuite
//! category (1 framing, 2 pings, 3 reserved bits, 4 opcodes, 5
//! fragmentation, 6 UTF-8, 7 close, 9 limits, 12/13 compression), then split
//! points, client/server conversations, the sending API and a fuzz test.

use super::message::STREAM_PIECE;
use super::*;
use crate::bufpool::BufPool;
use crate::ws::close;
use crate::ws::deflate::DeflateParams;
use crate::ws::frame::{encode_header, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::ws::mask::apply_mask;
use crate::ws::opcode::OpCode;
use flate2::{Compress, Compression, FlushCompress};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

// ---------------------------------------------------------------- helpers

/// Any frame. `rsv` is Autobahn's 3-bit RSV value (4 = RSV1, 2 = RSV2, 1 =
/// RSV3); `opcode` is raw so that reserved values can be sent.
fn raw_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        fin,
        rsv1: rsv & 4 != 0,
        rsv2: rsv & 2 != 0,
        rsv3: rsv & 1 != 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .write(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

/// A masked client frame, as a server receives it.
fn cf(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, payload, Some(KEY))
}

fn text(payload: &[u8]) -> Vec<u8> {
    cf(true, 1, payload)
}

fn binary(payload: &[u8]) -> Vec<u8> {
    cf(true, 2, payload)
}

fn ping(payload: &[u8]) -> Vec<u8> {
    cf(true, 9, payload)
}

fn pong(payload: &[u8]) -> Vec<u8> {
    cf(true, 10, payload)
}

fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    cf(true, 8, &close_body(code, reason))
}

/// The exact bytes a server sends for one frame.
fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_server_frame(opcode, payload, &mut out);
    out
}

/// The exact bytes of the close frame a server sends on `failure`.
fn failure_bytes(failure: Failure) -> Vec<u8> {
    server_frame(
        OpCode::Close,
        &close_body(failure.code, failure.reason.as_bytes()),
    )
}

fn server() -> Session {
    Session::new(SessionConfig::new(Role::Server))
}

fn server_with(change: impl FnOnce(&mut SessionConfig)) -> Session {
    let mut config = SessionConfig::new(Role::Server);
    change(&mut config);
    Session::new(config)
}

fn message(text: bool, data: &[u8]) -> Incoming {
    Incoming::Message {
        text,
        data: data.to_vec(),
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<Incoming>,
    out: Vec<u8>,
    failure: Option<Failure>,
    leftover: usize,
}

/// Feeds `input` in pieces ending at `splits`, keeping the unconsumed bytes
/// as a caller would, and checks that only a partial header is ever left.
fn feed(session: &mut Session, input: &[u8], splits: &[usize]) -> Outcome {
    let mut pending = Vec::new();
    let mut items = Vec::new();
    let mut out = Vec::new();
    let mut failure = None;
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&input.len())) {
        pending.extend_from_slice(&input[start..end]);
        start = end;
        match session.read(&mut pending, &mut items, &mut out) {
            Ok(n) => {
                pending.drain(..n);
                assert!(
                    pending.len() < MAX_HEADER_LEN,
                    "left {} bytes",
                    pending.len()
                );
            }
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    Outcome {
        items,
        out,
        failure,
        leftover: pending.len(),
    }
}

fn feed_all(session: &mut Session, input: &[u8]) -> Outcome {
    feed(session, input, &[])
}

fn feed_bytewise(session: &mut Session, input: &[u8]) -> Outcome {
    let splits: Vec<usize> = (1..input.len()).collect();
    feed(session, input, &splits)
}

/// Asserts that the outcome is a failure with `code`, with exactly the
/// expected items before it and the failure's close frame after `out_before`.
fn assert_failed(outcome: &Outcome, code: u16, items: &[Incoming], out_before: &[u8]) {
    let failure = outcome
        .failure
        .unwrap_or_else(|| panic!("expected failure {code}, got {outcome:?}"));
    assert_eq!(failure.code, code, "{failure:?}");
    assert_eq!(outcome.items, items);
    assert_eq!(outcome.out, concat(&[out_before, &failure_bytes(failure)]));
}

fn assert_ok(outcome: &Outcome, items: &[Incoming], out: &[u8]) {
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(outcome.items, items);
    assert_eq!(outcome.out, out);
    assert_eq!(outcome.leftover, 0);
}

/// Decodes the frames in `bytes` (unmasking masked ones).
fn frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut result = Vec::new();
    while !bytes.is_empty() {
        let (header, len) = FrameHeader::parse(bytes).unwrap().expect("whole frames");
        let end = len + header.payload_len as usize;
        let mut payload = bytes[len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        result.push((header, payload));
        bytes = &bytes[end..];
    }
    result
}

/// Compresses `message` the way another implementation would (zlib, 15-bit
/// window, sync flush, tail stripped), with a fresh compressor.
fn foreign_deflate(message: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() + 64);
    c.compress_vec(message, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn deflate_server(params: DeflateParams) -> Session {
    server_with(|c| c.deflate = Some(params))
}

// ------------------------------------------------------ 1.x framing

#[test]
fn autobahn_1_framing() {
    for len in [0, 125, 126, 127, 128, 65535, 65536] {
        for (opcode, is_text) in [(1, true), (2, false)] {
            let payload = vec![b'*'; len];
            let input = cf(true, opcode, &payload);
            let whole = feed_all(&mut server(), &input);
            assert_ok(&whole, &[message(is_text, &payload)], b"");
            // 1.1.8 / 1.2.8: the same frame in 997-byte chops.
            let chops: Vec<usize> = (997..input.len()).step_by(997).collect();
            assert_eq!(feed(&mut server(), &input, &chops), whole);
        }
    }
}

#[test]
fn incomplete_headers_consume_nothing() {
    let input = binary(&[7; 70_000]);
    for cut in 0..MAX_HEADER_LEN {
        let mut buf = input[..cut].to_vec();
        let mut items = Vec::new();
        let mut out = Vec::new();
        assert_eq!(
            server().read(&mut buf, &mut items, &mut out),
            Ok(0),
            "cut {cut}"
        );
        assert!(items.is_empty() && out.is_empty());
    }
    // Once the header is complete, everything given is consumed.
    let mut buf = input[..MAX_HEADER_LEN + 5].to_vec();
    assert_eq!(
        server().read(&mut buf, &mut Vec::new(), &mut Vec::new()),
        Ok(MAX_HEADER_LEN + 5)
    );
}

// ------------------------------------------------------ 2.x pings and pongs

#[test]
fn autobahn_2_pings_and_pongs() {
    let payloads: [&[u8]; 4] = [
        b"",
        b"Hello, world!",
        &[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff],
        &[0xfe; 125],
    ];
    for payload in payloads {
        let expected_out = server_frame(OpCode::Pong, payload);
        let r = feed_all(&mut server(), &ping(payload));
        assert_ok(&r, &[Incoming::Ping(payload.to_vec())], &expected_out);
        // 2.6: the same byte by byte.
        assert_eq!(feed_bytewise(&mut server(), &ping(payload)), r);
    }
    // 2.5: a ping with a 126-byte payload.
    let r = feed_all(&mut server(), &ping(&[0xfe; 126]));
    assert_failed(&r, 1002, &[], b"");
    // 2.7, 2.8: unsolicited pongs are reported and need no answer.
    assert_ok(
        &feed_all(&mut server(), &pong(b"")),
        &[Incoming::Pong(vec![])],
        b"",
    );
    assert_ok(
        &feed_all(&mut server(), &pong(b"unsolicited")),
        &[Incoming::Pong(b"unsolicited".to_vec())],
        b"",
    );
    // 2.9: an unsolicited pong, then a ping.
    let r = feed_all(
        &mut server(),
        &concat(&[&pong(b"unsolicited"), &ping(b"ping")]),
    );
    assert_ok(
        &r,
        &[
            Incoming::Pong(b"unsolicited".to_vec()),
            Incoming::Ping(b"ping".to_vec()),
        ],
        &server_frame(OpCode::Pong, b"ping"),
    );
    // 2.10, 2.11: ten pings, answered in order, whole and byte by byte.
    let pings: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect();
    let input: Vec<u8> = pings.iter().flat_map(|p| ping(p)).collect();
    let out: Vec<u8> = pings
        .iter()
        .flat_map(|p| server_frame(OpCode::Pong, p))
        .collect();
    let items: Vec<Incoming> = pings.iter().map(|p| Incoming::Ping(p.clone())).collect();
    assert_ok(&feed_all(&mut server(), &input), &items, &out);
    assert_ok(&feed_bytewise(&mut server(), &input), &items, &out);
}

// ------------------------------------------------------ 3.x reserved bits

#[test]
fn autobahn_3_reserved_bits() {
    let hello = message(true, b"Hello");
    let pong_out = server_frame(OpCode::Pong, b"");
    // (frames, items before the failure, out before the failure)
    let cases: Vec<(Vec<u8>, Vec<Incoming>, Vec<u8>)> = vec![
        // 3.1: text with RSV = 1.
        (raw_frame(true, 1, 1, b"Hello", Some(KEY)), vec![], vec![]),
        // 3.2: text, text with RSV = 2, ping.
        (
            concat(&[
                &text(b"Hello"),
                &raw_frame(true, 2, 1, b"Hello", Some(KEY)),
                &ping(b""),
            ]),
            vec![hello.clone()],
            vec![],
        ),
        // 3.3: text, text with RSV = 3, ping, in frame-wise chops.
        (
            concat(&[
                &text(b"Hello"),
                &raw_frame(true, 3, 1, b"Hello", Some(KEY)),
                &ping(b""),
            ]),
            vec![hello.clone()],
            vec![],
        ),
        // 3.4: text, text with RSV = 4 (RSV1 without deflate), ping.
        (
            concat(&[
                &text(b"Hello"),
                &raw_frame(true, 4, 1, b"Hello", Some(KEY)),
                &ping(b""),
            ]),
            vec![hello.clone()],
            vec![],
        ),
        // 3.5: binary with RSV = 5.
        (raw_frame(true, 5, 2, &[0xff; 8], Some(KEY)), vec![], vec![]),
        // 3.6: ping with RSV = 6.
        (raw_frame(true, 6, 9, b"ping", Some(KEY)), vec![], vec![]),
        // 3.7: close with RSV = 7.
        (
            raw_frame(true, 7, 8, &close_body(1000, b""), Some(KEY)),
            vec![],
            vec![],
        ),
        // A ping before the bad frame is still answered.
        (
            concat(&[&ping(b""), &raw_frame(true, 2, 2, b"x", Some(KEY))]),
            vec![Incoming::Ping(vec![])],
            pong_out,
        ),
    ];
    for (input, items, out) in cases {
        assert_failed(&feed_all(&mut server(), &input), 1002, &items, &out);
        assert_failed(&feed_bytewise(&mut server(), &input), 1002, &items, &out);
    }
    // RSV1 is meaningful only with permessage-deflate, and only on the first
    // frame of a data message.
    let deflate = DeflateParams::default();
    let cases = [
        raw_frame(true, 4, 9, b"", Some(KEY)),
        raw_frame(true, 4, 8, &close_body(1000, b""), Some(KEY)),
        concat(&[
            &raw_frame(false, 0, 1, b"He", Some(KEY)),
            &raw_frame(true, 4, 0, b"llo", Some(KEY)),
        ]),
    ];
    for input in cases {
        assert_failed(
            &feed_all(&mut deflate_server(deflate), &input),
            1002,
            &[],
            b"",
        );
    }
}

// ------------------------------------------------------ 4.x opcodes

#[test]
fn autobahn_4_reserved_opcodes() {
    for opcode in (3..=7).chain(11..=15) {
        // 4.x.1: the frame alone; 4.x.2: with a payload; 4.x.3-5: after a
        // valid message and followed by a ping.
        assert_failed(
            &feed_all(&mut server(), &cf(true, opcode, b"")),
            1002,
            &[],
            b"",
        );
        let input = concat(&[
            &text(b"Hello"),
            &cf(true, opcode, b"reserved opcode payload"),
            &ping(b""),
        ]);
        assert_failed(
            &feed_all(&mut server(), &input),
            1002,
            &[message(true, b"Hello")],
            b"",
        );
        assert_failed(
            &feed_bytewise(&mut server(), &input),
            1002,
            &[message(true, b"Hello")],
            b"",
        );
    }
}

// ------------------------------------------------------ 5.x fragmentation

#[test]
fn autobahn_5_fragmentation() {
    let frag = |fin, opcode, p: &[u8]| cf(fin, opcode, p);
    let f1f2 = message(true, b"fragment1fragment2");
    let pong_out = server_frame(OpCode::Pong, b"ping");

    // 5.1, 5.2: fragmented ping / pong.
    for opcode in [9, 10] {
        let input = concat(&[
            &frag(false, opcode, b"fragment1"),
            &frag(true, 0, b"fragment2"),
        ]);
        assert_failed(&feed_all(&mut server(), &input), 1002, &[], b"");
    }
    // 5.3-5.5: text in two fragments, whole, in chops, byte by byte.
    let input = concat(&[&frag(false, 1, b"fragment1"), &frag(true, 0, b"fragment2")]);
    assert_ok(
        &feed_all(&mut server(), &input),
        std::slice::from_ref(&f1f2),
        b"",
    );
    assert_ok(
        &feed_bytewise(&mut server(), &input),
        std::slice::from_ref(&f1f2),
        b"",
    );
    // 5.6-5.8: with a ping in between.
    let input = concat(&[
        &frag(false, 1, b"fragment1"),
        &ping(b"ping"),
        &frag(true, 0, b"fragment2"),
    ]);
    let items = [Incoming::Ping(b"ping".to_vec()), f1f2.clone()];
    assert_ok(&feed_all(&mut server(), &input), &items, &pong_out);
    assert_ok(&feed_bytewise(&mut server(), &input), &items, &pong_out);
    // 5.9-5.11: a continuation with nothing to continue.
    for fin in [false, true] {
        let input = concat(&[
            &frag(fin, 0, b"fragment1"),
            &frag(true, 1, b"fragment2"),
            &frag(true, 0, b"fragment3"),
        ]);
        assert_failed(&feed_all(&mut server(), &input), 1002, &[], b"");
    }
    // 5.12-5.17: the same, repeated, chopped.
    for fin in [false, true] {
        let input = concat(&[
            &frag(fin, 0, b"fragment1"),
            &frag(true, 1, b"fragment2"),
            &frag(true, 0, b"fragment3"),
            &frag(fin, 0, b"fragment4"),
        ]);
        assert_failed(&feed_bytewise(&mut server(), &input), 1002, &[], b"");
    }
    // 5.15: a whole fragmented message, then a stray continuation.
    let input = concat(&[
        &frag(false, 1, b"fragment1"),
        &frag(true, 0, b"fragment2"),
        &frag(false, 0, b"fragment3"),
        &frag(true, 1, b"fragment4"),
    ]);
    assert_failed(
        &feed_all(&mut server(), &input),
        1002,
        std::slice::from_ref(&f1f2),
        b"",
    );
    // 5.18: a new text frame inside a fragmented message.
    let input = concat(&[&frag(false, 1, b"fragment1"), &frag(true, 1, b"fragment2")]);
    assert_failed(&feed_all(&mut server(), &input), 1002, &[], b"");
    // 5.19, 5.20: five fragments with two pings in between, in separate reads.
    let input = concat(&[
        &frag(false, 1, b"fragment1"),
        &frag(false, 0, b"fragment2"),
        &ping(b"pongme 1!"),
        &frag(false, 0, b"fragment3"),
        &frag(false, 0, b"fragment4"),
        &ping(b"pongme 2!"),
        &frag(true, 0, b"fragment5"),
    ]);
    let items = [
        Incoming::Ping(b"pongme 1!".to_vec()),
        Incoming::Ping(b"pongme 2!".to_vec()),
        message(true, b"fragment1fragment2fragment3fragment4fragment5"),
    ];
    let out = concat(&[
        &server_frame(OpCode::Pong, b"pongme 1!"),
        &server_frame(OpCode::Pong, b"pongme 2!"),
    ]);
    assert_ok(&feed_all(&mut server(), &input), &items, &out);
    assert_ok(&feed_bytewise(&mut server(), &input), &items, &out);
}

#[test]
fn fragments_of_one_byte_and_empty_fragments() {
    let mut input = frag_text(b"", false, true);
    for b in b"abc" {
        input.extend(frag_text(&[*b], false, false));
    }
    input.extend(frag_text(b"", true, false));
    assert_ok(
        &feed_all(&mut server(), &input),
        &[message(true, b"abc")],
        b"",
    );
}

fn frag_text(payload: &[u8], fin: bool, first: bool) -> Vec<u8> {
    cf(fin, if first { 1 } else { 0 }, payload)
}

// ------------------------------------------------------ 6.x UTF-8

#[test]
fn autobahn_6_1_empty_text_frames() {
    assert_ok(
        &feed_all(&mut server(), &text(b"")),
        &[message(true, b"")],
        b"",
    );
    let input = concat(&[&cf(false, 1, b""), &cf(false, 0, b""), &cf(true, 0, b"")]);
    assert_ok(&feed_all(&mut server(), &input), &[message(true, b"")], b"");
    let input = concat(&[
        &cf(false, 1, b""),
        &cf(false, 0, b"middle frame payload"),
        &cf(true, 0, b""),
    ]);
    assert_ok(
        &feed_all(&mut server(), &input),
        &[message(true, b"middle frame payload")],
        b"",
    );
}

#[test]
fn autobahn_6_2_valid_utf8() {
    let hello = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    assert_ok(
        &feed_all(&mut server(), &text(hello)),
        &[message(true, hello)],
        b"",
    );
    // 6.2.2: split into two frames at a code point boundary; 6.2.3/6.2.4:
    // one frame per byte, splitting every code point.
    let input = concat(&[&cf(false, 1, &hello[..7]), &cf(true, 0, &hello[7..])]);
    assert_ok(
        &feed_all(&mut server(), &input),
        &[message(true, hello)],
        b"",
    );
    let mut input = cf(false, 1, &hello[..1]);
    for (i, b) in hello[1..].iter().enumerate() {
        input.extend(cf(i == hello.len() - 2, 0, &[*b]));
    }
    assert_ok(
        &feed_all(&mut server(), &input),
        &[message(true, hello)],
        b"",
    );
    assert_ok(
        &feed_bytewise(&mut server(), &text(hello)),
        &[message(true, hello)],
        b"",
    );
}

#[test]
fn autobahn_6_3_invalid_utf8() {
    let bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
    assert_failed(&feed_all(&mut server(), &text(bad)), 1007, &[], b"");
    let mut input = cf(false, 1, &bad[..1]);
    for (i, b) in bad[1..].iter().enumerate() {
        input.extend(cf(i == bad.len() - 2, 0, &[*b]));
    }
    assert_failed(&feed_all(&mut server(), &input), 1007, &[], b"");
}

/// Feeds `pieces` one read at a time and returns the index of the read that
/// failed (and the outcome of that read).
fn failing_read(pieces: &[Vec<u8>]) -> (usize, Outcome) {
    let mut session = server();
    for (i, piece) in pieces.iter().enumerate() {
        let r = feed_all(&mut session, piece);
        if r.failure.is_some() {
            // Nothing more is processed after a failure.
            let mut rest: Vec<u8> = pieces[i + 1..].concat();
            let mut items = Vec::new();
            let mut out = Vec::new();
            assert_eq!(
                session.read(&mut rest, &mut items, &mut out),
                Ok(rest.len())
            );
            assert!(items.is_empty() && out.is_empty());
            assert_eq!(session.state(), State::Failed);
            return (i, r);
        }
        assert_ok(&r, &[], b"");
    }
    panic!("no read failed");
}

#[test]
fn autobahn_6_4_fail_fast() {
    let kosme = "κόσμε".as_bytes();
    // 6.4.1: three frames; the second makes the text invalid.
    let pieces = vec![
        cf(false, 1, kosme),
        cf(false, 0, b"\xf4\x90\x80\x80"),
        cf(true, 0, b"edited"),
    ];
    let (at, r) = failing_read(&pieces);
    assert_eq!(at, 1);
    assert_failed(&r, 1007, &[], b"");
    // 6.4.2: the invalid sequence straddles frames; fail on the byte that
    // makes it invalid.
    let pieces = vec![
        cf(false, 1, &concat(&[kosme, b"\xf4"])),
        cf(false, 0, b"\x90"),
        cf(true, 0, b"\x80\x80edited"),
    ];
    assert_eq!(failing_read(&pieces).0, 1);
    // 6.4.3, 6.4.4: ONE frame delivered in three chops; fail on the second
    // chop, long before the frame is complete.
    for (a, b) in [
        (concat(&[kosme]), b"\xf4\x90\x80\x80".to_vec()),
        (concat(&[kosme, b"\xf4"]), b"\x90".to_vec()),
    ] {
        let payload = concat(&[
            &a,
            &b,
            b"\x80\x80edited-and-a-lot-more-text-that-never-arrives",
        ]);
        let frame = text(&payload);
        let header_len = frame.len() - payload.len();
        let cut1 = header_len + a.len();
        let cut2 = cut1 + b.len();
        let pieces = vec![
            frame[..cut1].to_vec(),
            frame[cut1..cut2].to_vec(),
            frame[cut2..].to_vec(),
        ];
        let (at, r) = failing_read(&pieces);
        assert_eq!(at, 1);
        assert_failed(&r, 1007, &[], b"");
    }
}

#[test]
fn autobahn_6_5_onwards_utf8_table() {
    let sequences: &[&[u8]] = &[
        // Valid: 6.5 to 6.7 boundaries, 6.22 non-characters, 6.23 U+FFFD.
        "κόσμε".as_bytes(),
        b"\x00",
        b"\xc2\x80",
        b"\xe0\xa0\x80",
        b"\xf0\x90\x80\x80",
        b"\x7f",
        b"\xdf\xbf",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
        b"\xed\x9f\xbf",
        b"\xee\x80\x80",
        b"\xef\xbf\xbd",
        b"\xef\xb7\x90",
        // Invalid: 6.8 five/six-byte forms, 6.9-6.10 continuations, 6.11
        // lonely starts, 6.12-6.16 truncations, 6.17-6.19 overlongs, 6.20-6.21
        // surrogates.
        b"\xf8\x88\x80\x80\x80",
        b"\xfc\x84\x80\x80\x80\x80",
        b"\xf7\xbf\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\x80",
        b"\xbf",
        b"\x80\xbf\x80",
        b"\xc0 \xc1 ",
        b"\xe0 ",
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xfe",
        b"\xff",
        b"\xfe\xfe\xff\xff",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xf0\x80\x80\xaf",
        b"\xc1\xbf",
        b"\xe0\x9f\xbf",
        b"\xf0\x8f\xbf\xbf",
        b"\xed\xa0\x80",
        b"\xed\xad\xbf",
        b"\xed\xbf\xbf",
        b"\xed\xa0\x80\xed\xb0\x80",
    ];
    for seq in sequences {
        let valid = std::str::from_utf8(seq).is_ok();
        for input in [
            text(seq),
            concat(&[&cf(false, 1, b"prefix "), &cf(true, 0, seq)]),
        ] {
            for r in [
                feed_all(&mut server(), &input),
                feed_bytewise(&mut server(), &input),
            ] {
                if valid {
                    assert_eq!(r.failure, None, "{seq:02x?}");
                    assert_eq!(r.items.len(), 1);
                } else {
                    assert_failed(&r, 1007, &[], b"");
                }
            }
        }
    }
}

// ------------------------------------------------------ 7.x close handling

#[test]
fn autobahn_7_1_after_close() {
    let echo = server_frame(OpCode::Close, &close_body(1000, b""));
    let close_item = Incoming::Close {
        code: 1000,
        reason: vec![],
    };
    // 7.1.1: a message, then a close.
    let r = feed_all(
        &mut server(),
        &concat(&[&text(b"Hello World!"), &close_frame(1000, b"")]),
    );
    assert_ok(
        &r,
        &[message(true, b"Hello World!"), close_item.clone()],
        &echo,
    );
    // 7.1.2-7.1.4: a second close, a ping, a text after the close: ignored.
    for after in [close_frame(1000, b""), ping(b"x"), text(b"late")] {
        let mut session = server();
        let r = feed_all(&mut session, &concat(&[&close_frame(1000, b""), &after]));
        assert_ok(&r, std::slice::from_ref(&close_item), &echo);
        assert_eq!(session.state(), State::CloseReceived);
        // And in a later read too.
        assert_ok(&feed_all(&mut session, &after), &[], b"");
    }
    // 7.1.5: a close between two fragments of a message.
    let input = concat(&[
        &cf(false, 1, b"fragment1"),
        &close_frame(1000, b""),
        &cf(true, 0, b"fragment2"),
    ]);
    assert_ok(
        &feed_all(&mut server(), &input),
        std::slice::from_ref(&close_item),
        &echo,
    );
    // 7.1.6: a big message, a close, a ping.
    let big = vec![b'*'; 256 * 1024];
    let input = concat(&[&text(&big), &close_frame(1000, b""), &ping(b"")]);
    let r = feed(&mut server(), &input, &[1000, 70_000]);
    assert_ok(&r, &[message(true, &big), close_item], &echo);
}

#[test]
fn autobahn_7_3_close_payloads() {
    // 7.3.1: no payload: reply with no payload, report 1005.
    let mut session = server();
    let r = feed_all(&mut session, &cf(true, 8, b""));
    assert_ok(
        &r,
        &[Incoming::Close {
            code: 1005,
            reason: vec![],
        }],
        &[0x88, 0x00],
    );
    assert_eq!(session.state(), State::CloseReceived);
    // 7.3.2: a one-byte payload.
    assert_failed(
        &feed_all(&mut server(), &cf(true, 8, b"\x03")),
        1002,
        &[],
        b"",
    );
    // 7.3.3-7.3.5: code, code + reason, code + 123-byte reason: the code is
    // echoed (without the reason).
    for reason in [&b""[..], b"Hello World!", &[b'*'; 123]] {
        let r = feed_all(&mut server(), &close_frame(1000, reason));
        assert_ok(
            &r,
            &[Incoming::Close {
                code: 1000,
                reason: reason.to_vec(),
            }],
            &server_frame(OpCode::Close, &[0x03, 0xe8]),
        );
    }
    // 7.3.6: a 124-byte reason makes a 126-byte control frame.
    assert_failed(
        &feed_all(&mut server(), &close_frame(1000, &[b'*'; 124])),
        1002,
        &[],
        b"",
    );
    // 7.5.1: a reason that is not UTF-8.
    let r = feed_all(
        &mut server(),
        &close_frame(
            1000,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        ),
    );
    assert_failed(&r, 1007, &[], b"");
}

#[test]
fn autobahn_7_7_to_7_13_close_codes() {
    for code in 0..=u16::MAX {
        let r = feed_all(&mut server(), &close_frame(code, b""));
        if close::is_valid_code(code) {
            assert_ok(
                &r,
                &[Incoming::Close {
                    code,
                    reason: vec![],
                }],
                &server_frame(OpCode::Close, &code.to_be_bytes()),
            );
        } else {
            assert_failed(&r, 1002, &[], b"");
        }
    }
}

#[test]
fn we_close_first() {
    let mut session = server();
    let mut out = Vec::new();
    session.close(1001, b"going away", &mut out).unwrap();
    assert_eq!(
        out,
        server_frame(OpCode::Close, &close_body(1001, b"going away"))
    );
    assert_eq!(session.state(), State::CloseSent);
    assert_eq!(session.close(1000, b"", &mut out), Err(SendError::NotOpen));
    assert_eq!(
        session.send(OpCode::Text, b"x", &mut out),
        Err(SendError::NotOpen)
    );
    // Data is discarded, pings still answered, the peer's close completes it
    // without a second close from us.
    let input = concat(&[
        &cf(false, 1, b"discarded"),
        &ping(b"still answered"),
        &cf(true, 0, b"\xff\xff not even validated"),
        &binary(b"discarded too"),
        &close_frame(1001, b""),
        &text(b"after the close"),
    ]);
    let items = [
        Incoming::Ping(b"still answered".to_vec()),
        Incoming::Close {
            code: 1001,
            reason: vec![],
        },
    ];
    let pong_out = server_frame(OpCode::Pong, b"still answered");
    let mut s2 = server();
    s2.close(1001, b"going away", &mut Vec::new()).unwrap();
    assert_ok(&feed_all(&mut session, &input), &items, &pong_out);
    assert_ok(&feed_bytewise(&mut s2, &input), &items, &pong_out);
    assert_eq!(session.state(), State::Closed);
    assert_eq!(s2.state(), State::Closed);

    // A message under way when we close is dropped, even its last frame.
    let mut session = server();
    let r = feed_all(&mut session, &cf(false, 1, b"first half, "));
    assert_ok(&r, &[], b"");
    session.close(1000, b"", &mut Vec::new()).unwrap();
    let r = feed(
        &mut session,
        &concat(&[&cf(true, 0, b"second half"), &close_frame(1000, b"")]),
        &[4],
    );
    assert_ok(
        &r,
        &[Incoming::Close {
            code: 1000,
            reason: vec![],
        }],
        b"",
    );
    // Also when the close happens in the middle of a frame.
    let mut session = server();
    let frame = cf(true, 1, b"0123456789");
    assert_ok(&feed_all(&mut session, &frame[..9]), &[], b"");
    session.close(1000, b"", &mut Vec::new()).unwrap();
    let r = feed_all(
        &mut session,
        &concat(&[&frame[9..], &close_frame(1000, b"")]),
    );
    assert_ok(
        &r,
        &[Incoming::Close {
            code: 1000,
            reason: vec![],
        }],
        b"",
    );

    // A protocol error after our close fails without a second close frame.
    let mut session = server();
    session.close(1000, b"", &mut Vec::new()).unwrap();
    let r = feed_all(&mut session, &cf(true, 3, b""));
    assert_eq!(r.failure.map(|f| f.code), Some(1002));
    assert!(r.out.is_empty());
    assert_eq!(session.state(), State::Failed);
}

// ------------------------------------------------------ 9.x limits

#[test]
fn autobahn_9_large_messages() {
    // 9.1/9.2: up to several MiB in one frame, read in 64 KiB chops; 9.4: in
    // many 4 KiB frames.
    let big: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|i| b"abcdefghij"[i % 10])
        .collect();
    let input = text(&big);
    let chops: Vec<usize> = (65536..input.len()).step_by(65536).collect();
    assert_ok(
        &feed(&mut server(), &input, &chops),
        &[message(true, &big)],
        b"",
    );
    let mut input = Vec::new();
    let pieces: Vec<&[u8]> = big.chunks(4096).collect();
    for (i, piece) in pieces.iter().enumerate() {
        input.extend(cf(i == pieces.len() - 1, if i == 0 { 2 } else { 0 }, piece));
    }
    assert_ok(
        &feed(&mut server(), &input, &chops),
        &[message(false, &big)],
        b"",
    );
}

#[test]
fn frame_and_message_limits() {
    let limited = || {
        server_with(|c| {
            c.max_frame_size = 1000;
            c.max_message_size = 1500;
        })
    };
    // Frame at the limit: fine. One byte more: 1009 from the header alone,
    // before any payload byte arrives, and nothing allocated.
    assert_ok(
        &feed_all(&mut limited(), &binary(&[1; 1000])),
        &[message(false, &[1; 1000])],
        b"",
    );
    let frame = binary(&[1; 1001]);
    let mut session = limited();
    let r = feed_all(&mut session, &frame[..8]);
    assert_failed(&r, 1009, &[], b"");
    assert_eq!(session.buffer.capacity(), 0);
    // A frame announcing 2^63 - 1 bytes: the same.
    let mut header = Vec::new();
    encode_header(
        true,
        false,
        OpCode::Binary,
        Some(KEY),
        u64::MAX >> 1,
        &mut header,
    );
    assert_failed(&feed_all(&mut limited(), &header), 1009, &[], b"");
    // The top bit set (2^63 bytes announced): too big, like any oversized frame.
    let mut header = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    header.extend_from_slice(&KEY);
    assert_failed(&feed_all(&mut limited(), &header), 1009, &[], b"");
    // Messages: 1500 in two frames fine, 1501 fails at the second header.
    let input = concat(&[&cf(false, 2, &[1; 1000]), &cf(true, 0, &[2; 500])]);
    assert_eq!(feed_all(&mut limited(), &input).items.len(), 1);
    let input = concat(&[&cf(false, 2, &[1; 1000]), &cf(true, 0, &[2; 501])]);
    let mut session = limited();
    assert_failed(&feed(&mut session, &input, &[1010]), 1009, &[], b"");
    assert_eq!(session.buffer.capacity(), 0, "released after the failure");
}

#[test]
fn compressed_message_limit_applies_after_inflation() {
    let params = DeflateParams::default();
    let limited = || {
        server_with(|c| {
            c.deflate = Some(params);
            c.max_message_size = 100_000;
        })
    };
    let exact = foreign_deflate(&[b'z'; 100_000]);
    assert_eq!(
        feed_all(&mut limited(), &raw_frame(true, 4, 2, &exact, Some(KEY))).items,
        vec![message(false, &[b'z'; 100_000])]
    );
    let bomb = foreign_deflate(&vec![0u8; 10_000_000]);
    assert!(bomb.len() < 20_000);
    for streaming in [false, true] {
        let mut session = limited();
        session.stream_fragments = streaming;
        let input = raw_frame(true, 4, 2, &bomb, Some(KEY));
        let mut items = Vec::new();
        let mut out = Vec::new();
        let mut buf = input.clone();
        let failure = session.read(&mut buf, &mut items, &mut out).unwrap_err();
        assert_eq!(failure.code, 1009);
        let delivered: usize = items
            .iter()
            .map(|i| match i {
                Incoming::Fragment { data, .. } => data.len(),
                _ => panic!("{i:?}"),
            })
            .sum();
        assert!(delivered <= 100_000);
        assert_eq!(out, failure_bytes(failure));
    }
}

// ------------------------------------------------------ 12.x / 13.x compression

/// A client and a server session that agreed on `params`.
fn pair(params: Option<DeflateParams>, threshold: usize) -> (Session, Session) {
    let make = |role| {
        let mut config = SessionConfig::new(role);
        config.deflate = params;
        config.compress_threshold = threshold;
        Session::new(config)
    };
    (make(Role::Client), make(Role::Server))
}

/// Sends `messages` from `from` to `to` one by one, checks what arrives and
/// returns the frames on the wire.
fn converse(
    from: &mut Session,
    to: &mut Session,
    messages: &[(bool, Vec<u8>)],
) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut wire = Vec::new();
    for (is_text, data) in messages {
        let mut out = Vec::new();
        let opcode = if *is_text {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        from.send(opcode, data, &mut out).unwrap();
        wire.extend_from_slice(&out);
        let r = feed(to, &out, &[out.len() / 2]);
        assert_ok(&r, &[message(*is_text, data)], b"");
    }
    frames(&wire)
}

/// Messages like Autobahn 12.x/13.x send: compressible text of growing
/// sizes, each twice (so context takeover matters), and some poorly
/// compressible binary in between; up to `max_size` bytes.
fn autobahn_12_messages(max_size: usize) -> Vec<(bool, Vec<u8>)> {
    let mut messages = Vec::new();
    let mut state = 1u32;
    for size in [16usize, 64, 256, 1024, 4096, 16384, 32768, 131072]
        .into_iter()
        .filter(|&s| s <= max_size)
    {
        let text = String::from_utf8_lossy(
            &"Hello, permessage-deflate κόσμε! "
                .bytes()
                .cycle()
                .take(size)
                .collect::<Vec<u8>>(),
        )
        .into_owned()
        .into_bytes();
        messages.push((true, text.clone()));
        if size <= 4096 {
            let noise = (0..size)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            messages.push((false, noise));
        }
        messages.push((true, text));
    }
    messages
}

#[test]
fn autobahn_12_13_compression_every_window_and_takeover() {
    // Every window size on each side (paired so that small windows, which
    // make zlib slow in a debug build, meet large ones), with every
    // combination of no_context_takeover flags.
    for server_bits in 8..=15 {
        {
            let client_bits = 23 - server_bits;
            // Small windows make zlib slide its hash table every few hundred
            // bytes, which is slow in a debug build: big messages only with
            // big windows.
            let messages = autobahn_12_messages(if server_bits.min(client_bits) >= 12 {
                131072
            } else {
                32768
            });
            for flags in 0..4 {
                let params = DeflateParams {
                    server_no_context_takeover: flags & 1 != 0,
                    client_no_context_takeover: flags & 2 != 0,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                };
                let (mut client, mut server) = pair(Some(params), 64);
                let sent_by_server = converse(&mut server, &mut client, &messages);
                let sent_by_client = converse(&mut client, &mut server, &messages);
                for (frames, masked) in [(&sent_by_server, false), (&sent_by_client, true)] {
                    for ((header, payload), (_, data)) in frames.iter().zip(&messages) {
                        assert_eq!(header.mask.is_some(), masked);
                        assert!(header.fin && !header.rsv2 && !header.rsv3);
                        // Below the threshold: never compressed. Compressible
                        // text: always, and smaller.
                        if data.len() < 64 {
                            assert!(!header.rsv1);
                        }
                        if header.rsv1 {
                            // Incompressible data costs at worst 9 bits a
                            // byte: with a window smaller than a block zlib
                            // cannot fall back to a stored block.
                            assert!(
                                payload.len() <= data.len() * 9 / 8 + 16,
                                "{} -> {}",
                                data.len(),
                                payload.len()
                            );
                        }
                    }
                }
                // Compressible text at a >= 9-bit window must shrink.
                let (h, p) = &sent_by_server[messages.len() - 1];
                if server_bits >= 9 {
                    assert!(
                        h.rsv1 && p.len() < messages[messages.len() - 1].1.len() / 4,
                        "bits {server_bits}"
                    );
                }
            }
        }
    }
}

#[test]
fn compressed_message_from_another_implementation() {
    let msg = "Hello, world! ".repeat(100).into_bytes();
    let compressed = foreign_deflate(&msg);
    // In one frame, and fragmented with RSV1 on the first frame only.
    let (a, b) = compressed.split_at(compressed.len() / 3);
    let (b, c) = b.split_at(b.len() / 2);
    let inputs = [
        raw_frame(true, 4, 1, &compressed, Some(KEY)),
        concat(&[
            &raw_frame(false, 4, 1, a, Some(KEY)),
            &ping(b""),
            &raw_frame(false, 0, 0, b, Some(KEY)),
            &raw_frame(true, 0, 0, c, Some(KEY)),
        ]),
    ];
    for input in inputs {
        let s = || deflate_server(DeflateParams::default());
        let whole = feed_all(&mut s(), &input);
        assert_eq!(whole.failure, None);
        assert_eq!(whole.items.last(), Some(&message(true, &msg)));
        assert_eq!(feed_bytewise(&mut s(), &input), whole);
    }
    // Corrupt data: 1007. Invalid UTF-8 inside compressed text: 1007.
    let corrupt = raw_frame(true, 4, 1, &[0xff, 0xff, 0xff], Some(KEY));
    assert_failed(
        &feed_all(&mut deflate_server(DeflateParams::default()), &corrupt),
        1007,
        &[],
        b"",
    );
    let bad_text = raw_frame(
        true,
        4,
        1,
        &foreign_deflate(b"ok \xed\xa0\x80 bad"),
        Some(KEY),
    );
    assert_failed(
        &feed_all(&mut deflate_server(DeflateParams::default()), &bad_text),
        1007,
        &[],
        b"",
    );
    // An empty compressed message (RFC 7692 §7.2.3.6), and the same with no
    // payload at all, which must not upset the next message.
    let empty = raw_frame(true, 4, 1, &[0x00], Some(KEY));
    assert_ok(
        &feed_all(&mut deflate_server(DeflateParams::default()), &empty),
        &[message(true, b"")],
        b"",
    );
    let input = concat(&[
        &raw_frame(true, 4, 1, b"", Some(KEY)),
        &raw_frame(false, 4, 2, b"", Some(KEY)),
        &raw_frame(true, 0, 0, b"", Some(KEY)),
        &raw_frame(true, 4, 1, &foreign_deflate(b"next"), Some(KEY)),
    ]);
    let items = [
        message(true, b""),
        message(false, b""),
        message(true, b"next"),
    ];
    assert_ok(
        &feed_all(&mut deflate_server(DeflateParams::default()), &input),
        &items,
        b"",
    );
}

#[test]
fn compressed_text_fails_fast_while_inflating() {
    // Invalid UTF-8 near the start of a long compressed text frame is caught
    // in the read that carries it, not at the end of the frame.
    let mut msg = b"ok \xed\xa0\x80 then ".to_vec();
    let mut state = 5u32;
    msg.extend((0..200_000).map(|_| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        b'a' + (state >> 16) as u8 % 26
    }));
    let compressed = foreign_deflate(&msg);
    let frame = raw_frame(true, 4, 1, &compressed, Some(KEY));
    for streaming in [false, true] {
        let mut session = deflate_server(DeflateParams::default());
        session.stream_fragments = streaming;
        let mut first = frame[..200].to_vec();
        let mut out = Vec::new();
        let failure = session
            .read(&mut first, &mut Vec::new(), &mut out)
            .unwrap_err();
        assert_eq!(failure.code, 1007);
    }
}

// ------------------------------------------------------ streaming mode

#[test]
fn streaming_fragments() {
    let streaming = || server_with(|c| c.stream_fragments = true);
    let input = concat(&[
        &cf(false, 1, b"Hel"),
        &ping(b""),
        &cf(false, 0, b""),
        &cf(true, 0, b"lo"),
    ]);
    let fragment = |data: &[u8], first, fin| Incoming::Fragment {
        text: true,
        data: data.to_vec(),
        first,
        fin,
    };
    let r = feed_all(&mut streaming(), &input);
    assert_ok(
        &r,
        &[
            fragment(b"Hel", true, false),
            Incoming::Ping(vec![]),
            fragment(b"lo", false, true),
        ],
        &server_frame(OpCode::Pong, b""),
    );
    // A frame arriving over several reads comes out in several pieces.
    let frame = binary(b"0123456789");
    let r = feed(&mut streaming(), &frame, &[8, 12]);
    let pieces: Vec<(Vec<u8>, bool, bool)> = r
        .items
        .into_iter()
        .map(|i| match i {
            Incoming::Fragment {
                data,
                first,
                fin,
                text,
            } => {
                assert!(!text);
                (data, first, fin)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        pieces,
        vec![
            (b"01".to_vec(), true, false),
            (b"2345".to_vec(), false, false),
            (b"6789".to_vec(), false, true)
        ]
    );
    // An empty message is one empty first-and-last fragment.
    assert_ok(
        &feed_all(&mut streaming(), &text(b"")),
        &[fragment(b"", true, true)],
        b"",
    );
    // Streaming keeps the message limit over the sum of fragments.
    let mut session = server_with(|c| {
        c.stream_fragments = true;
        c.max_message_size = 10;
    });
    let input = concat(&[&cf(false, 2, &[0; 6]), &cf(true, 0, &[0; 5])]);
    assert_eq!(
        feed_all(&mut session, &input).failure.map(|f| f.code),
        Some(1009)
    );
    // Compressed streaming: bounded pieces whose concatenation is the message.
    let msg: Vec<u8> = "streaming κόσμε ".bytes().cycle().take(1_000_000).collect();
    let msg = String::from_utf8_lossy(&msg).into_owned().into_bytes();
    let input = raw_frame(true, 4, 1, &foreign_deflate(&msg), Some(KEY));
    let mut session = deflate_server(DeflateParams::default());
    session.stream_fragments = true;
    let r = feed_all(&mut session, &input);
    assert_eq!(r.failure, None);
    let mut joined = Vec::new();
    for (i, item) in r.items.iter().enumerate() {
        let Incoming::Fragment {
            data,
            first,
            fin,
            text,
        } = item
        else {
            panic!()
        };
        assert!(*text && data.len() <= STREAM_PIECE);
        assert_eq!(*first, i == 0);
        assert_eq!(*fin, i == r.items.len() - 1);
        joined.extend_from_slice(data);
    }
    assert!(r.items.len() >= 4);
    assert_eq!(joined, msg);
}

// ------------------------------------------------------ split points

/// Text, fragmented text with a ping in between, binary 300 B, binary 70 KB,
/// close; masked with `mask` (client to server) or not.
fn sequence(mask: Option<[u8; 4]>) -> Vec<u8> {
    let binary_70k: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let kosme = "frag κόσμε".as_bytes();
    concat(&[
        &raw_frame(true, 0, 1, "Hello κόσμε".as_bytes(), mask),
        // Split inside a two-byte character.
        &raw_frame(false, 0, 1, &kosme[..8], mask),
        &raw_frame(true, 0, 9, b"in between", mask),
        &raw_frame(true, 0, 0, &kosme[8..], mask),
        &raw_frame(true, 0, 2, &[0xab; 300], mask),
        &raw_frame(true, 0, 2, &binary_70k, mask),
        &raw_frame(true, 0, 8, &close_body(1000, b"bye"), mask),
    ])
}

/// What a client receives, with the random masking keys of its replies
/// taken out so that runs compare equal.
fn unkeyed(mut outcome: Outcome) -> (Outcome, Vec<(bool, u8, Vec<u8>)>) {
    let sent = frames(&outcome.out)
        .into_iter()
        .map(|(h, p)| (h.fin, h.opcode, p))
        .collect();
    outcome.out.clear();
    (outcome, sent)
}

#[test]
fn every_split_point_gives_the_same_result() {
    // Exhaustive, on the client side: server frames are unmasked, which
    // keeps each of the ~71,000 runs cheap even in a debug build.
    let input = sequence(None);
    let client = || Session::new(SessionConfig::new(Role::Client));
    let whole = unkeyed(feed_all(&mut client(), &input));
    assert_eq!(whole.0.failure, None);
    assert_eq!(whole.0.items.len(), 6);
    assert_eq!(
        whole.1,
        vec![
            (true, 10, b"in between".to_vec()),
            (true, 8, vec![0x03, 0xe8])
        ]
    );
    for split in 0..=input.len() {
        assert_eq!(
            unkeyed(feed(&mut client(), &input, &[split])),
            whole,
            "split at {split}"
        );
    }
    assert_eq!(unkeyed(feed_bytewise(&mut client(), &input)), whole);

    // On the server side (masked frames, unmasked in place at every
    // possible mask phase): every split point in and around the small frames
    // and the 70 KB frame's header and end, a stride through its middle, and
    // byte by byte.
    let input = sequence(Some(KEY));
    let whole = feed_all(&mut server(), &input);
    assert_eq!(
        (whole.items.clone(), whole.failure),
        (
            unkeyed(feed_all(&mut client(), &sequence(None))).0.items,
            None
        )
    );
    assert_eq!(
        whole.out,
        concat(&[
            &server_frame(OpCode::Pong, b"in between"),
            &server_frame(OpCode::Close, &[0x03, 0xe8])
        ])
    );
    let edges = 0..=1000;
    let tail = input.len() - 1000..=input.len();
    for split in (0..=input.len()).filter(|s| edges.contains(s) || tail.contains(s) || s % 61 == 0)
    {
        assert_eq!(
            feed(&mut server(), &input, &[split]),
            whole,
            "split at {split}"
        );
    }
    assert_eq!(feed_bytewise(&mut server(), &input), whole);

    // Streaming mode: the concatenated fragments match whatever the splits.
    let streaming = || server_with(|c| c.stream_fragments = true);
    let join = |o: &Outcome| {
        o.items
            .iter()
            .filter_map(|i| match i {
                Incoming::Fragment { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .concat()
    };
    let whole_stream = feed_all(&mut streaming(), &input);
    for split in (0..=input.len()).step_by(97) {
        let r = feed(&mut streaming(), &input, &[split]);
        assert_eq!((join(&r), &r.out), (join(&whole_stream), &whole_stream.out));
    }
}

#[test]
fn every_split_point_of_compressed_traffic() {
    let (mut client, _) = pair(Some(DeflateParams::default()), 0);
    let mut wire = Vec::new();
    for m in [
        &b"compressed hello hello hello"[..],
        b"and again hello hello",
        &[7u8; 3000],
    ] {
        client.send(OpCode::Binary, m, &mut wire).unwrap();
    }
    client.send(OpCode::Ping, b"p", &mut wire).unwrap();
    let s = || deflate_server(DeflateParams::default());
    let whole = feed_all(&mut s(), &wire);
    assert_eq!(whole.items.len(), 4);
    for split in 0..=wire.len() {
        assert_eq!(feed(&mut s(), &wire, &[split]), whole, "split at {split}");
    }
    assert_eq!(feed_bytewise(&mut s(), &wire), whole);
}

// ------------------------------------------------------ client and server

#[test]
fn client_and_server_talk() {
    for params in [None, Some(DeflateParams::default())] {
        let (mut client, mut server) = pair(params, 16);
        let mut to_server = Vec::new();
        client
            .send(
                OpCode::Text,
                "hello from the client, hello!".as_bytes(),
                &mut to_server,
            )
            .unwrap();
        client
            .send_fragment(OpCode::Binary, b"part one, ", false, &mut to_server)
            .unwrap();
        client
            .send(OpCode::Ping, b"are you there", &mut to_server)
            .unwrap();
        client
            .send_fragment(OpCode::Continuation, b"part two", true, &mut to_server)
            .unwrap();
        // Client frames are masked, each with its own key.
        let sent = frames(&to_server);
        assert!(sent.iter().all(|(h, _)| h.mask.is_some()));
        let keys: Vec<_> = sent.iter().map(|(h, _)| h.mask).collect();
        assert!(keys.windows(2).all(|w| w[0] != w[1]));

        let r = feed_all(&mut server, &to_server);
        assert_eq!(
            r.items,
            vec![
                message(true, b"hello from the client, hello!"),
                Incoming::Ping(b"are you there".to_vec()),
                message(false, b"part one, part two"),
            ]
        );
        // The server's pong goes back, unmasked, and the client accepts it.
        let mut to_client = r.out;
        server
            .send(OpCode::Binary, &[9; 1000], &mut to_client)
            .unwrap();
        server.close(1000, b"done", &mut to_client).unwrap();
        let r = feed_all(&mut client, &to_client);
        assert_eq!(
            r.items,
            vec![
                Incoming::Pong(b"are you there".to_vec()),
                message(false, &[9; 1000]),
                Incoming::Close {
                    code: 1000,
                    reason: b"done".to_vec(),
                },
            ]
        );
        assert_eq!(client.state(), State::CloseReceived);
        // The client's reply completes the server's handshake.
        let r = feed_all(&mut server, &r.out);
        assert_eq!(
            r.items,
            vec![Incoming::Close {
                code: 1000,
                reason: vec![],
            }]
        );
        assert!(r.out.is_empty());
        assert_eq!(server.state(), State::Closed);
    }
}

#[test]
fn client_refuses_masked_server_frames() {
    let (mut client, _) = pair(None, 0);
    assert_failed_masked(feed_all(&mut client, &text(b"masked")));
    fn assert_failed_masked(r: Outcome) {
        let failure = r.failure.unwrap();
        assert_eq!(failure.code, 1002);
        // The client's close frame is masked.
        let sent = frames(&r.out);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0.mask.is_some());
        assert_eq!(sent[0].1, close_body(1002, failure.reason.as_bytes()));
    }
    // And a server refuses unmasked client frames.
    let r = feed_all(&mut server(), &raw_frame(true, 0, 1, b"unmasked", None));
    assert_failed(&r, 1002, &[], b"");
}

// ------------------------------------------------------ sending API

#[test]
fn sending_rules() {
    let mut s = server();
    let mut out = Vec::new();
    assert_eq!(
        s.send(OpCode::Ping, &[0; 126], &mut out),
        Err(SendError::ControlTooLong)
    );
    assert_eq!(
        s.send(OpCode::Close, b"", &mut out),
        Err(SendError::WrongOpcode)
    );
    assert_eq!(
        s.send(OpCode::Continuation, b"", &mut out),
        Err(SendError::WrongOpcode)
    );
    assert_eq!(
        s.send(OpCode::Text, b"\xff", &mut out),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(
        s.send_fragment(OpCode::Continuation, b"", true, &mut out),
        Err(SendError::NoMessageInProgress)
    );
    assert_eq!(
        s.send_fragment(OpCode::Ping, b"", true, &mut out),
        Err(SendError::WrongOpcode)
    );
    assert!(out.is_empty());

    s.send_fragment(OpCode::Text, "κ".as_bytes()[..1].as_ref(), false, &mut out)
        .unwrap();
    assert_eq!(
        s.send(OpCode::Binary, b"x", &mut out),
        Err(SendError::MessageInProgress)
    );
    assert_eq!(
        s.send_fragment(OpCode::Text, b"x", true, &mut out),
        Err(SendError::MessageInProgress)
    );
    // A bad continuation is refused without breaking the message...
    assert_eq!(
        s.send_fragment(OpCode::Continuation, b"\x41", true, &mut out),
        Err(SendError::InvalidUtf8)
    );
    // ...an unfinished sequence cannot end it...
    assert_eq!(
        s.send_fragment(OpCode::Continuation, b"", true, &mut out),
        Err(SendError::InvalidUtf8)
    );
    // ...and a control frame may interleave.
    s.send(OpCode::Pong, b"", &mut out).unwrap();
    s.send_fragment(
        OpCode::Continuation,
        "κ".as_bytes()[1..].as_ref(),
        true,
        &mut out,
    )
    .unwrap();
    let sent = frames(&out);
    assert_eq!(
        sent.iter()
            .map(|(h, p)| (h.fin, h.opcode, p.clone()))
            .collect::<Vec<_>>(),
        vec![
            (false, 1, vec![0xce]),
            (true, 10, vec![]),
            (true, 0, vec![0xba])
        ]
    );

    assert_eq!(
        s.close(1005, b"", &mut out),
        Err(SendError::InvalidClose(close::CloseError::InvalidCode(
            1005
        )))
    );
    assert_eq!(
        s.close(1000, &[b'a'; 124], &mut out),
        Err(SendError::InvalidClose(close::CloseError::ReasonTooLong))
    );
    s.close(4000, b"app", &mut out).unwrap();
    assert_eq!(s.send(OpCode::Ping, b"", &mut out), Err(SendError::NotOpen));
}

#[test]
fn small_messages_and_control_frames_are_never_compressed() {
    let (_, mut server) = pair(Some(DeflateParams::default()), 64);
    let mut out = Vec::new();
    server.send(OpCode::Text, &[b'a'; 63], &mut out).unwrap();
    server.send(OpCode::Ping, &[b'a'; 125], &mut out).unwrap();
    server.send(OpCode::Text, &[b'a'; 64], &mut out).unwrap();
    server
        .send_fragment(OpCode::Text, &[b'a'; 1000], true, &mut out)
        .unwrap();
    let rsv1: Vec<bool> = frames(&out).iter().map(|(h, _)| h.rsv1).collect();
    assert_eq!(rsv1, [false, false, true, false]);
}

#[test]
fn incompressible_messages_without_context_takeover_go_out_plain() {
    let params = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let (mut client, mut server) = pair(Some(params), 0);
    let mut state = 3u32;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    let mut out = Vec::new();
    server.send(OpCode::Binary, &noise, &mut out).unwrap();
    let sent = frames(&out);
    assert!(!sent[0].0.rsv1);
    assert_eq!(
        feed_all(&mut client, &out).items,
        vec![message(false, &noise)]
    );
}

#[test]
fn sessions_can_move_between_threads() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Session>();
    assert_send::<Incoming>();
}

#[test]
fn broadcast_frames() {
    let mut out = Vec::new();
    encode_server_frame(OpCode::Text, b"Hello", &mut out);
    assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    let (mut client, _) = pair(None, 0);
    assert_eq!(
        feed_all(&mut client, &out).items,
        vec![message(true, b"Hello")]
    );
}

// ------------------------------------------------------ fuzz

/// xorshift64*: small, deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random, mostly well-formed frame so that the fuzzer gets past the
/// header checks and into payload handling.
fn random_frame(rng: &mut Rng, masked: bool) -> Vec<u8> {
    let opcode = [0u8, 1, 2, 8, 9, 10, 3, 11][rng.below(8) as usize];
    let len = match rng.below(10) {
        0 => rng.below(70_000) as usize,
        1..=3 => rng.below(200) as usize,
        _ => rng.below(20) as usize,
    };
    let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if rng.below(2) == 0 {
        // Plausible text, or a plausible close body.
        for b in &mut payload {
            *b = b'a' + (*b % 26);
        }
        if opcode == 8 && len >= 2 {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
    }
    let rsv = if rng.below(8) == 0 {
        rng.below(8) as u8
    } else {
        0
    };
    let fin = rng.below(4) != 0;
    let mask = if masked == (rng.below(30) != 0) {
        Some((rng.next() as u32).to_be_bytes())
    } else {
        None
    };
    raw_frame(fin, rsv, opcode, &payload, mask)
}

#[test]
fn random_input_never_panics_or_outgrows_the_limits() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..1500 {
        let role = if round % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let mut config = SessionConfig::new(role);
        config.max_frame_size = 4096;
        config.max_message_size = 16_384;
        config.stream_fragments = round % 3 == 0;
        if round % 4 < 2 {
            config.deflate = Some(DeflateParams {
                server_no_context_takeover: rng.below(2) == 0,
                client_no_context_takeover: rng.below(2) == 0,
                ..DeflateParams::default()
            });
        }
        let mut session = Session::new(config);
        let mut input = Vec::new();
        if round % 5 == 0 {
            input = (0..rng.below(4000)).map(|_| rng.next() as u8).collect();
        } else {
            for _ in 0..rng.below(12) {
                input.extend(random_frame(&mut rng, role == Role::Server));
            }
            if round % 7 == 0 && !input.is_empty() {
                // Flip a few bits anywhere.
                for _ in 0..3 {
                    let i = rng.below(input.len() as u64) as usize;
                    input[i] ^= 1 << rng.below(8);
                }
            }
        }
        let mut pending = Vec::new();
        let mut items = Vec::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let take = (1 + rng.below(3000) as usize).min(input.len() - pos);
            pending.extend_from_slice(&input[pos..pos + take]);
            pos += take;
            match session.read(&mut pending, &mut items, &mut out) {
                Ok(n) => {
                    pending.drain(..n);
                    assert!(pending.len() < MAX_HEADER_LEN);
                }
                Err(f) => {
                    assert!(matches!(f.code, 1002 | 1007 | 1009), "{f:?}");
                    break;
                }
            }
            assert!(
                session.buffer.capacity() <= 16_384 + 1,
                "{}",
                session.buffer.capacity()
            );
            assert!(session.control.capacity() <= 2 * MAX_CONTROL_PAYLOAD);
        }
        for item in &items {
            match item {
                Incoming::Message { data, .. } => assert!(data.len() <= 16_384),
                Incoming::Fragment { data, .. } => assert!(data.len() <= 16_384),
                Incoming::Ping(p) | Incoming::Pong(p) => assert!(p.len() <= 125),
                Incoming::Close { reason, .. } => assert!(reason.len() <= 123),
            }
        }
        // Text that was delivered whole is valid UTF-8.
        for item in &items {
            if let Incoming::Message { text: true, data } = item {
                assert!(std::str::from_utf8(data).is_ok());
            }
        }
    }
}

// ---------------------------------------------------------------- bulk reads

/// Feeds `input` as the manager does: `read_size` bytes per read, through
/// [`Session::read_bulk`] whenever the session wants it and nothing is pending.
/// Returns the outcome and how many reads went the bulk way.
fn feed_with_bulk(session: &mut Session, input: &[u8], read_size: usize) -> (Outcome, usize) {
    let (mut large, mut small) = (BufPool::new(8, 1 << 30), BufPool::new(8, 1 << 30));
    let mut pending = Vec::new();
    let mut items = Vec::new();
    let mut out = Vec::new();
    let mut failure = None;
    let mut bulk_reads = 0;
    let mut pos = 0;
    while pos < input.len() && failure.is_none() {
        if pending.is_empty() && session.wants_bulk() {
            let rest = &input[pos..];
            let spares = Spares {
                large: &mut large,
                small: &mut small,
            };
            let read = |buf: &mut Vec<u8>, max: usize| {
                let n = max.min(read_size).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                Ok(n)
            };
            let (n, r) = session
                .read_bulk(read, &mut items, &mut out, spares)
                .unwrap();
            assert!(n > 0);
            pos += n;
            bulk_reads += 1;
            failure = r.err();
            continue;
        }
        let n = read_size.min(input.len() - pos);
        pending.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        match session.read(&mut pending, &mut items, &mut out) {
            Ok(used) => {
                pending.drain(..used);
            }
            Err(f) => failure = Some(f),
        }
    }
    let outcome = Outcome {
        items,
        out,
        failure,
        leftover: pending.len(),
    };
    (outcome, bulk_reads)
}

/// Large frames of every kind a bulk read meets: binary, text split inside
/// characters across fragments, a ping between fragments, small messages after.
fn large_sequence() -> Vec<u8> {
    let bin: Vec<u8> = (0..200_003u32).map(|i| (i % 253) as u8).collect();
    let txt: Vec<u8> = "κόσμε ascii €𝄞 ".repeat(15_000).into_bytes();
    concat(&[
        &binary(&bin),
        // 100_001 ends inside a multi-byte character.
        &cf(false, 1, &txt[..100_001]),
        &ping(b"between"),
        &cf(false, 0, &txt[100_001..250_000]),
        &cf(true, 0, &txt[250_000..]),
        &text(b"small"),
        &binary(&bin[..70_000]),
        &close_frame(1000, b"bye"),
    ])
}

#[test]
fn bulk_reads_give_what_reads_through_a_buffer_give() {
    let input = large_sequence();
    let expected = feed_all(&mut server(), &input);
    assert!(expected.failure.is_none(), "{:?}", expected.failure);
    assert_eq!(expected.items.len(), 6);
    for read_size in [1000, 4096, 65_536, 99_999, 1 << 20] {
        let (outcome, bulk_reads) = feed_with_bulk(&mut server(), &input, read_size);
        assert_eq!(outcome, expected, "reads of {read_size}");
        // Reads of 1 MiB take the whole input at once: nothing is left for bulk reads.
        assert_eq!(bulk_reads > 0, read_size < 1 << 20, "reads of {read_size}");
    }
}

#[test]
fn bulk_reads_check_utf8_and_fail_with_1007() {
    let mut bad = "é".repeat(100_000).into_bytes();
    bad[150_001] = 0xff;
    let input = text(&bad);
    let expected = feed_all(&mut server(), &input);
    assert_eq!(expected.failure.map(|f| f.code), Some(1007));
    let (outcome, bulk_reads) = feed_with_bulk(&mut server(), &input, 70_000);
    assert!(bulk_reads > 0);
    assert_eq!(outcome.failure, expected.failure);
    assert_eq!(outcome.out, expected.out);
    assert!(outcome.items.is_empty());
}

#[test]
fn bulk_reads_grow_the_buffer_with_what_arrives() {
    // A header announcing 16 MiB, then 300 KB of it: the buffer holds what came,
    // not what was announced.
    let mut session = server();
    let mut header = Vec::new();
    FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: 2,
        mask: Some(KEY),
        payload_len: 16 << 20,
    }
    .write(&mut header);
    let mut input = header;
    input.extend(std::iter::repeat_n(7u8, 300_000));
    let (outcome, bulk_reads) = feed_with_bulk(&mut session, &input, 65_536);
    assert!(outcome.failure.is_none() && outcome.items.is_empty());
    assert!(bulk_reads > 0);
    assert!(
        session.buffer.capacity() <= 4 * 300_000,
        "{}",
        session.buffer.capacity()
    );
}

#[test]
fn whole_frames_in_one_read_match_frames_read_byte_by_byte() {
    // A whole frame in one read takes the one-pass path (`take_whole_frame`); read
    // byte by byte the same frames take the general one. Both must agree on
    // messages, replies and failures, including the cases the one-pass path leaves
    // to the general one.
    let long: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary", binary(b"hello")),
        ("empty", binary(b"")),
        ("16-bit length", binary(&long)),
        ("text", text("h\u{e9}llo \u{1f600}".as_bytes())),
        ("two in a row", concat(&[&text(b"a"), &binary(b"bc")])),
        (
            "invalid UTF-8",
            concat(&[&binary(b"ok"), &text(&[0x61, 0xff])]),
        ),
        ("over the frame limit", binary(&long[..1001])),
        ("over the message limit after a fragment", {
            concat(&[&cf(false, 2, &long[..800]), &cf(true, 0, &long[..800])])
        }),
        ("a fragment then a whole frame", {
            concat(&[&cf(false, 1, b"a"), &binary(b"b")])
        }),
        ("unmasked", raw_frame(true, 0, 2, b"x", None)),
        (
            "RSV1 without deflate",
            raw_frame(true, 4, 2, b"x", Some(KEY)),
        ),
        ("ping between", concat(&[&ping(b"p"), &binary(b"after")])),
        (
            "close then data",
            concat(&[&close_frame(1000, b""), &binary(b"late")]),
        ),
    ];
    let limited = || {
        server_with(|c| {
            c.max_frame_size = 1000;
            c.max_message_size = 1500;
        })
    };
    for (name, input) in cases {
        let whole = feed_all(&mut limited(), &input);
        let bytewise = feed_bytewise(&mut limited(), &input);
        assert_eq!(whole.items, bytewise.items, "{name}: items");
        assert_eq!(whole.out, bytewise.out, "{name}: replies");
        assert_eq!(whole.failure, bytewise.failure, "{name}: failure");
    }
    let m = feed_all(&mut server(), &binary(&long));
    assert_eq!(m.items, vec![message(false, &long)]);
}
