//! WebSocket conformance over real sockets, organised by the Autobahn test-suite case
//! categories: 1 framing, 2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation,
//! 6 UTF-8, 7 close handling, 9 limits and large messages, 10 misc, 12-13 compression.
//!
//! Each test drives exact bytes from a raw masked client (tests/common/ws.rs) against an
//! echo server built on the C API, and asserts the exact answer: the echo's bytes, the
//! close code, or the TCP close.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wsserver::ffi::event::wss_event_kind::*;
use wsserver::ffi::opts::wss_listen_opts;

/// An echo server on ws://127.0.0.1:0 with default limits.
fn server() -> Loop {
    Loop::serve("ws://127.0.0.1:0", None, echo)
}

fn server_with(f: impl FnOnce(&mut wss_listen_opts)) -> Loop {
    let mut o = listen_opts();
    f(&mut o);
    Loop::serve("ws://127.0.0.1:0", Some(o), echo)
}

/// A fresh connection to `srv`.
fn ws(srv: &Loop) -> Ws {
    Ws::connect(&srv.addr())
}

/// Sends a valid message, then `bad`; expects the message echoed, then a close with
/// `code` and the TCP close.
fn echo_then_fail(srv: &Loop, bad: &[u8], code: u16) {
    let mut c = ws(srv);
    let mut bytes = msg(OP_TEXT, b"Hello, world!");
    bytes.extend_from_slice(bad);
    c.send_raw(&bytes);
    c.expect_echo(OP_TEXT, b"Hello, world!");
    c.expect_close(Some(code));
}

/// Sends `bad` on a fresh connection and expects a close with `code`, then the TCP close.
fn fails_with(srv: &Loop, bad: &[u8], code: u16) {
    let mut c = ws(srv);
    c.send_raw_lossy(bad);
    c.expect_close(Some(code));
}

// =============================================================================================
// 1 Framing

#[test]
fn c1_text_and_binary_at_every_length_form() {
    let srv = server();
    let mut c = ws(&srv);
    for len in [0usize, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 20] {
        c.roundtrip(OP_TEXT, &utf8_text(len));
        c.roundtrip(OP_BINARY, &pattern(len));
    }
    c.close_handshake(1000);
}

#[test]
fn c1_length_encodings_on_the_wire() {
    let srv = server();
    let mut c = ws(&srv);
    // 7-bit, 16-bit and 64-bit length forms, exactly as the server writes them.
    let cases: [(usize, &[u8]); 6] = [
        (0, &[0x82, 0x00]),
        (125, &[0x82, 0x7d]),
        (126, &[0x82, 0x7e, 0x00, 0x7e]),
        (127, &[0x82, 0x7e, 0x00, 0x7f]),
        (65535, &[0x82, 0x7e, 0xff, 0xff]),
        (65536, &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    for (len, head) in cases {
        let p = pattern(len);
        c.send(OP_BINARY, &p);
        let f = c.recv();
        assert_eq!(f.head, head, "length {len}");
        assert_eq!(f.payload, p);
    }
}

#[test]
fn c1_payload_written_in_small_pieces() {
    // Autobahn 1.1.8 / 1.2.8: a 65536-byte message written in chunks of 997 bytes.
    let srv = server();
    let mut c = ws(&srv);
    for op in [OP_TEXT, OP_BINARY] {
        let p = if op == OP_TEXT {
            utf8_text(65536)
        } else {
            pattern(65536)
        };
        let bytes = msg(op, &p);
        for chunk in bytes.chunks(997) {
            c.send_raw(chunk);
        }
        c.expect_echo(op, &p);
    }
}

#[test]
fn c1_unmasked_client_frame_is_1002() {
    let srv = server();
    let mut bad = header(true, 0, OP_TEXT, 5, None);
    bad.extend_from_slice(b"Hello");
    echo_then_fail(&srv, &bad, 1002);
    // An unmasked ping too.
    fails_with(&srv, &[0x89, 0x00], 1002);
}

#[test]
fn c1_64_bit_length_with_the_top_bit_set_is_1009() {
    // RFC 6455 5.2: "the most significant bit MUST be 0". The library answers it like
    // every frame over its size limit (1009), so 2^63 and 2^63 - 1 get the same answer.
    let srv = server();
    let mut bad = vec![0x82, 0xff];
    bad.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bad.extend_from_slice(&[1, 2, 3, 4]);
    fails_with(&srv, &bad, 1009);
    let mut bad = vec![0x82, 0xff];
    bad.extend_from_slice(&u64::MAX.to_be_bytes());
    bad.extend_from_slice(&[1, 2, 3, 4]);
    fails_with(&srv, &bad, 1009);
    let mut bad = vec![0x82, 0xff];
    bad.extend_from_slice(&((1u64 << 63) - 1).to_be_bytes());
    bad.extend_from_slice(&[1, 2, 3, 4]);
    fails_with(&srv, &bad, 1009);
}

#[test]
fn c1_zero_masking_key_is_fine() {
    let srv = server();
    let mut c = ws(&srv);
    let mut f = header(true, 0, OP_TEXT, 5, Some([0, 0, 0, 0]));
    f.extend_from_slice(b"plain");
    c.send_raw(&f);
    c.expect_echo(OP_TEXT, b"plain");
}

// =============================================================================================
// 2 Pings and pongs

#[test]
fn c2_ping_is_answered_with_the_same_payload() {
    let srv = server();
    let mut c = ws(&srv);
    c.send(OP_PING, b"");
    assert_eq!(c.recv().wire(), [0x8a, 0x00], "empty pong");
    c.send(OP_PING, b"Hello, world!");
    let mut expected = vec![0x8a, 13];
    expected.extend_from_slice(b"Hello, world!");
    assert_eq!(c.recv().wire(), expected);
    // Binary payload, every byte value up to the 125-byte maximum.
    let p: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    c.send(OP_PING, &p);
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, &p));
    // The server reports pings to the application.
    srv.wait_for("three ping events", |log| {
        log.iter()
            .filter(|e| e.is(WSS_EV_WS_CTL) && e.flags == 9)
            .count()
            == 3
    });
    c.close_handshake(1000);
}

#[test]
fn c2_ping_over_125_bytes_is_1002() {
    let srv = server();
    echo_then_fail(&srv, &frame(true, 0, OP_PING, &[b'*'; 126]), 1002);
    // Announced in the header only: refused before the payload comes.
    let mut c = ws(&srv);
    c.send_raw(&header(true, 0, OP_PING, 126, Some([1, 2, 3, 4])));
    c.expect_close(Some(1002));
}

#[test]
fn c2_unsolicited_pongs_are_ignored() {
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = msg(OP_PONG, b"unsolicited");
    bytes.extend_from_slice(&msg(OP_PONG, b""));
    bytes.extend_from_slice(&msg(OP_TEXT, b"after the pongs"));
    c.send_raw(&bytes);
    // The next frame is the echo: no answer to the pongs.
    c.expect_echo(OP_TEXT, b"after the pongs");
    srv.wait_for("pong events", |log| {
        log.iter()
            .filter(|e| e.is(WSS_EV_WS_CTL) && e.flags == 10)
            .count()
            == 2
    });
    // A pong followed by a ping: only the ping is answered.
    let mut bytes = msg(OP_PONG, b"p");
    bytes.extend_from_slice(&msg(OP_PING, b"q"));
    c.send_raw(&bytes);
    assert_eq!(c.recv().wire(), [0x8a, 1, b'q']);
    c.close_handshake(1000);
}

#[test]
fn c2_many_pings_are_answered_in_order() {
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = Vec::new();
    for i in 0..1000 {
        bytes.extend_from_slice(&msg(OP_PING, format!("ping {i}").as_bytes()));
    }
    c.send_raw(&bytes);
    for i in 0..1000 {
        let f = c.recv();
        assert_eq!(
            f.wire(),
            server_frame(true, 0, OP_PONG, format!("ping {i}").as_bytes())
        );
    }
    // A ping written one byte at a time.
    for b in msg(OP_PING, b"slow") {
        c.send_raw(&[b]);
    }
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"slow"));
    c.close_handshake(1000);
}

#[test]
fn c2_ping_then_close_gets_pong_then_close() {
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = msg(OP_PING, b"last");
    bytes.extend_from_slice(&msg(OP_CLOSE, &close_payload(1000, b"")));
    c.send_raw(&bytes);
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"last"));
    c.expect_close(Some(1000));
}

// =============================================================================================
// 3 Reserved bits

#[test]
fn c3_reserved_bits_on_data_frames_are_1002() {
    let srv = server();
    for rsv in 1..=7u8 {
        echo_then_fail(&srv, &frame(true, rsv, OP_TEXT, b"bad"), 1002);
        echo_then_fail(&srv, &frame(true, rsv, OP_BINARY, &[0xff; 10]), 1002);
    }
}

#[test]
fn c3_reserved_bits_on_control_frames_are_1002() {
    let srv = server();
    for rsv in 1..=7u8 {
        echo_then_fail(&srv, &frame(true, rsv, OP_PING, b"bad"), 1002);
        echo_then_fail(&srv, &frame(true, rsv, OP_PONG, b""), 1002);
        echo_then_fail(
            &srv,
            &frame(true, rsv, OP_CLOSE, &close_payload(1000, b"")),
            1002,
        );
    }
}

#[test]
fn c3_reserved_bits_on_a_continuation_are_1002() {
    let srv = server();
    for rsv in 1..=7u8 {
        let mut bad = frame(false, 0, OP_TEXT, b"frag");
        bad.extend_from_slice(&frame(true, rsv, OP_CONT, b"ment"));
        echo_then_fail(&srv, &bad, 1002);
    }
}

#[test]
fn c3_a_ping_before_the_bad_frame_is_answered_first() {
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = msg(OP_PING, b"before");
    bytes.extend_from_slice(&frame(true, 2, OP_TEXT, b"bad"));
    c.send_raw(&bytes);
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"before"));
    c.expect_close(Some(1002));
}

// =============================================================================================
// 4 Opcodes

#[test]
fn c4_reserved_opcodes_are_1002() {
    let srv = server();
    for op in (3..=7u8).chain(11..=15) {
        echo_then_fail(&srv, &frame(true, 0, op, b""), 1002);
        echo_then_fail(&srv, &frame(true, 0, op, b"reserved opcode payload"), 1002);
        // A fragmented message interrupted by one.
        let mut bad = frame(false, 0, OP_TEXT, b"frag");
        bad.extend_from_slice(&frame(true, 0, op, b""));
        echo_then_fail(&srv, &bad, 1002);
    }
}

// =============================================================================================
// 5 Fragmentation

#[test]
fn c5_two_and_three_fragments() {
    let srv = server();
    let mut c = ws(&srv);
    for op in [OP_TEXT, OP_BINARY] {
        c.send_frame(false, 0, op, b"fragment1");
        c.send_frame(true, 0, OP_CONT, b"fragment2");
        c.expect_echo(op, b"fragment1fragment2");
        c.send_frame(false, 0, op, b"one ");
        c.send_frame(false, 0, OP_CONT, b"two ");
        c.send_frame(true, 0, OP_CONT, b"three");
        c.expect_echo(op, b"one two three");
        // Empty fragments anywhere.
        c.send_frame(false, 0, op, b"");
        c.send_frame(false, 0, OP_CONT, b"");
        c.send_frame(false, 0, OP_CONT, b"x");
        c.send_frame(true, 0, OP_CONT, b"");
        c.expect_echo(op, b"x");
        c.send_frame(false, 0, op, b"");
        c.send_frame(true, 0, OP_CONT, b"");
        c.expect_echo(op, b"");
    }
    // All of a fragmented message in one write.
    let mut bytes = frame(false, 0, OP_BINARY, &pattern(300));
    bytes.extend_from_slice(&frame(false, 0, OP_CONT, &pattern(70000)));
    bytes.extend_from_slice(&frame(true, 0, OP_CONT, &pattern(5)));
    c.send_raw(&bytes);
    let mut whole = pattern(300);
    whole.extend_from_slice(&pattern(70000));
    whole.extend_from_slice(&pattern(5));
    c.expect_echo(OP_BINARY, &whole);
    c.close_handshake(1000);
}

#[test]
fn c5_pings_between_fragments_are_answered_at_once() {
    let srv = server();
    let mut c = ws(&srv);
    c.send_frame(false, 0, OP_TEXT, b"fragment1");
    c.send(OP_PING, b"ping 1");
    // Answered before the message is complete.
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"ping 1"));
    c.send_frame(false, 0, OP_CONT, b"fragment2");
    c.send(OP_PONG, b"unsolicited in between");
    c.send(OP_PING, b"ping 2");
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"ping 2"));
    c.send_frame(true, 0, OP_CONT, b"fragment3");
    c.expect_echo(OP_TEXT, b"fragment1fragment2fragment3");
    // The same, in one write.
    let mut bytes = frame(false, 0, OP_BINARY, b"a");
    bytes.extend_from_slice(&msg(OP_PING, b"x"));
    bytes.extend_from_slice(&frame(true, 0, OP_CONT, b"b"));
    c.send_raw(&bytes);
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"x"));
    c.expect_echo(OP_BINARY, b"ab");
    c.close_handshake(1000);
}

#[test]
fn c5_continuation_without_a_start_is_1002() {
    let srv = server();
    echo_then_fail(&srv, &frame(true, 0, OP_CONT, b"orphan"), 1002);
    echo_then_fail(&srv, &frame(false, 0, OP_CONT, b"orphan"), 1002);
    // A continuation after a finished message.
    let mut bad = frame(false, 0, OP_TEXT, b"a");
    bad.extend_from_slice(&frame(true, 0, OP_CONT, b"b"));
    bad.extend_from_slice(&frame(true, 0, OP_CONT, b"c"));
    let mut c = ws(&srv);
    c.send_raw(&bad);
    c.expect_echo(OP_TEXT, b"ab");
    c.expect_close(Some(1002));
}

#[test]
fn c5_new_data_frame_inside_a_fragmented_message_is_1002() {
    let srv = server();
    for (first, second) in [
        (OP_TEXT, OP_TEXT),
        (OP_TEXT, OP_BINARY),
        (OP_BINARY, OP_BINARY),
        (OP_BINARY, OP_TEXT),
    ] {
        let mut bad = frame(false, 0, first, b"first");
        bad.extend_from_slice(&frame(true, 0, second, b"second"));
        echo_then_fail(&srv, &bad, 1002);
    }
}

#[test]
fn c5_fragmented_control_frames_are_1002() {
    let srv = server();
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut bad = frame(false, 0, op, b"");
        bad.extend_from_slice(&frame(true, 0, OP_CONT, b""));
        echo_then_fail(&srv, &bad, 1002);
        // Without the continuation: refused from the first frame's header.
        echo_then_fail(&srv, &frame(false, 0, op, b"xy"), 1002);
    }
}

#[test]
fn c5_one_byte_fragments() {
    let srv = server();
    let mut c = ws(&srv);
    for (op, p) in [(OP_TEXT, utf8_text(200)), (OP_BINARY, pattern(200))] {
        let mut bytes = Vec::new();
        for (i, b) in p.iter().enumerate() {
            let fop = if i == 0 { op } else { OP_CONT };
            bytes.extend_from_slice(&frame(i == p.len() - 1, 0, fop, &[*b]));
        }
        c.send_raw(&bytes);
        c.expect_echo(op, &p);
    }
    c.close_handshake(1000);
}

// =============================================================================================
// 6 UTF-8

/// Texts with two-, three- and four-byte characters.
const TEXTS: [&str; 3] = [
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\u{1D11E} clef, \u{10FFFF} last, \u{FFFF} and \u{FEFF}",
];

#[test]
fn c6_valid_text_split_inside_code_points_across_fragments() {
    let srv = server();
    let mut c = ws(&srv);
    for t in TEXTS {
        let t = t.as_bytes();
        for k in 0..=t.len() {
            c.send_frame(false, 0, OP_TEXT, &t[..k]);
            c.send_frame(true, 0, OP_CONT, &t[k..]);
            c.expect_echo(OP_TEXT, t);
        }
        // Three fragments at every pair of split points of the short one.
        if t.len() <= 12 {
            for i in 0..=t.len() {
                for j in i..=t.len() {
                    let mut bytes = frame(false, 0, OP_TEXT, &t[..i]);
                    bytes.extend_from_slice(&frame(false, 0, OP_CONT, &t[i..j]));
                    bytes.extend_from_slice(&frame(true, 0, OP_CONT, &t[j..]));
                    c.send_raw(&bytes);
                    c.expect_echo(OP_TEXT, t);
                }
            }
        }
    }
    c.close_handshake(1000);
}

#[test]
fn c6_valid_text_split_inside_code_points_across_tcp_writes() {
    let srv = server();
    let mut c = ws(&srv);
    for t in TEXTS {
        let bytes = msg(OP_TEXT, t.as_bytes());
        for k in 1..bytes.len() {
            c.send_raw(&bytes[..k]);
            c.send_raw(&bytes[k..]);
            c.expect_echo(OP_TEXT, t.as_bytes());
        }
    }
    c.close_handshake(1000);
}

#[test]
fn c6_boundary_code_points_are_valid() {
    let srv = server();
    let mut c = ws(&srv);
    let points: [&[u8]; 10] = [
        b"\x00",
        b"\x7f",
        b"\xc2\x80",
        b"\xdf\xbf",
        b"\xe0\xa0\x80",
        b"\xed\x9f\xbf", // U+D7FF, just below the surrogates
        b"\xee\x80\x80", // U+E000, just above them
        b"\xef\xbf\xbf", // U+FFFF
        b"\xf0\x90\x80\x80",
        b"\xf4\x8f\xbf\xbf", // U+10FFFF
    ];
    for p in points {
        c.roundtrip(OP_TEXT, p);
    }
    c.close_handshake(1000);
}

/// Invalid UTF-8 (Autobahn 6.3-6.21 kinds): overlong forms, surrogates, code points
/// above U+10FFFF, bytes that never appear, stray continuation bytes, truncations.
const INVALID: [&[u8]; 18] = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
    b"\xc0\x80",
    b"\xc1\xbf",
    b"\xe0\x80\x80",
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80",
    b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf7\xbf\xbf\xbf",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\x80",
    b"abc\xbf",
    b"\xce",
    b"\xf0\x9d\x84",
];

#[test]
fn c6_invalid_utf8_is_1007() {
    let srv = server();
    for bad in INVALID {
        echo_then_fail(&srv, &msg(OP_TEXT, bad), 1007);
    }
}

#[test]
fn c6_invalid_utf8_in_a_later_fragment_is_1007() {
    let srv = server();
    for bad in INVALID {
        let mut bytes = frame(false, 0, OP_TEXT, "κόσμε".as_bytes());
        bytes.extend_from_slice(&frame(true, 0, OP_CONT, bad));
        echo_then_fail(&srv, &bytes, 1007);
    }
    // A sequence begun in one fragment and broken in the next.
    let mut bytes = frame(false, 0, OP_TEXT, b"ab\xf0\x9d");
    bytes.extend_from_slice(&frame(true, 0, OP_CONT, b"\x84"));
    echo_then_fail(&srv, &bytes, 1007);
    let mut bytes = frame(false, 0, OP_TEXT, b"ab\xf0\x9d");
    bytes.extend_from_slice(&frame(true, 0, OP_CONT, b"\x84x"));
    echo_then_fail(&srv, &bytes, 1007);
}

#[test]
fn c6_fail_fast_on_the_first_fragment() {
    // Autobahn 6.4.1: the first fragment holds an invalid sequence and has no FIN. The
    // 1007 close must come before the rest of the message is sent.
    let srv = server();
    let mut c = ws(&srv);
    c.send_frame(
        false,
        0,
        OP_TEXT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
    );
    let f = c.recv();
    assert_eq!(f.close_code(), Some(1007), "{f:?}");
    // Only now the rest of the message (the server may have closed already).
    c.send_raw_lossy(&frame(true, 0, OP_CONT, b"\x65\x64\x69\x74\x65\x64"));
    c.expect_eof();
    srv.wait_for("the error event", |log| {
        log.iter().any(|e| e.is(WSS_EV_ERROR) && e.code == 1007)
    });
    assert!(srv.events(WSS_EV_WS_MSG).is_empty());
}

#[test]
fn c6_fail_fast_inside_one_frame() {
    // Autobahn 6.4.3/6.4.4: a single frame announcing 1000 bytes whose first bytes are
    // invalid. The close comes before the rest of the frame's payload is sent.
    let srv = server();
    let mut c = ws(&srv);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut head = header(true, 0, OP_TEXT, 1000, Some(key));
    let mut start = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80".to_vec();
    mask_in_place(&mut start, key, 0);
    head.extend_from_slice(&start);
    c.send_raw(&head);
    let f = c.recv();
    assert_eq!(f.close_code(), Some(1007), "{f:?}");
    let mut rest = vec![b'a'; 1000 - start.len()];
    mask_in_place(&mut rest, key, start.len());
    c.send_raw_lossy(&rest);
    c.expect_eof();
}

// =============================================================================================
// 7 Close handling

#[test]
fn c7_close_1000_is_echoed_and_tcp_closed() {
    let srv = server();
    let mut c = ws(&srv);
    c.roundtrip(OP_TEXT, b"before the close");
    c.send(OP_CLOSE, &close_payload(1000, b"bye bye"));
    let f = c.expect_close(Some(1000));
    // The code is echoed (RFC 6455 5.5.1), exactly.
    assert_eq!(f.wire(), [0x88, 0x02, 0x03, 0xe8]);
    srv.wait_for("the close event", |log| {
        log.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    let ev = srv.events(WSS_EV_CLOSE).pop().unwrap();
    assert_eq!(ev.code, 1000);
    assert_eq!(ev.data, b"bye bye");
}

#[test]
fn c7_close_event_of_a_peer_initiated_close_is_by_peer() {
    let srv = server();
    let mut c = ws(&srv);
    c.send(OP_CLOSE, &close_payload(1000, b"bye bye"));
    c.expect_close(Some(1000));
    srv.wait_for("the close event", |log| {
        log.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    let ev = srv.events(WSS_EV_CLOSE).pop().unwrap();
    assert_ne!(ev.flags & FLAG_BY_PEER, 0, "the peer closed: {ev:?}");
}

#[test]
fn c7_empty_close_gets_an_empty_close() {
    let srv = server();
    let mut c = ws(&srv);
    c.send(OP_CLOSE, b"");
    let f = c.expect_close(None);
    assert_eq!(f.wire(), [0x88, 0x00]);
    srv.wait_for("the close event", |log| {
        log.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    let ev = srv.events(WSS_EV_CLOSE).pop().unwrap();
    assert_eq!(ev.code, 1005, "no status received");
    assert!(ev.data.is_empty());
}

#[test]
fn c7_one_byte_close_payload_is_1002() {
    let srv = server();
    echo_then_fail(&srv, &msg(OP_CLOSE, &[0x03]), 1002);
}

#[test]
fn c7_invalid_close_codes_are_1002() {
    let srv = server();
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        echo_then_fail(&srv, &msg(OP_CLOSE, &close_payload(code, b"")), 1002);
    }
    // With a reason too.
    echo_then_fail(&srv, &msg(OP_CLOSE, &close_payload(1005, b"why")), 1002);
}

#[test]
fn c7_valid_close_codes_are_echoed() {
    let srv = server();
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut c = ws(&srv);
        c.send(OP_CLOSE, &close_payload(code, b"reason"));
        let f = c.expect_close(Some(code));
        assert_eq!(f.payload, code.to_be_bytes());
    }
}

#[test]
fn c7_close_reason_must_be_utf8() {
    let srv = server();
    echo_then_fail(
        &srv,
        &msg(
            OP_CLOSE,
            &close_payload(
                1000,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            ),
        ),
        1007,
    );
    echo_then_fail(&srv, &msg(OP_CLOSE, &close_payload(1000, b"\xff")), 1007);
    // A valid multi-byte reason of the maximal length (123 bytes) is fine.
    let mut c = ws(&srv);
    let mut reason = "κ".repeat(61).into_bytes();
    reason.push(b'!');
    assert_eq!(reason.len(), 123);
    c.send(OP_CLOSE, &close_payload(1000, &reason));
    c.expect_close(Some(1000));
    // One more byte makes the close frame 126 bytes: a control frame too long.
    reason.push(b'!');
    echo_then_fail(&srv, &msg(OP_CLOSE, &close_payload(1000, &reason)), 1002);
}

#[test]
fn c7_nothing_is_delivered_after_a_close() {
    let srv = server();
    let mut c = ws(&srv);
    c.roundtrip(OP_TEXT, b"before");
    let mut bytes = msg(OP_CLOSE, &close_payload(1000, b""));
    bytes.extend_from_slice(&msg(OP_TEXT, b"after the close"));
    bytes.extend_from_slice(&msg(OP_PING, b"after the close"));
    bytes.extend_from_slice(&frame(true, 5, 13, b"even garbage"));
    c.send_raw(&bytes);
    // The close echo then the TCP close: no echo, no pong, no error close.
    c.expect_close(Some(1000));
    srv.wait_for("the close event", |log| {
        log.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    let msgs = srv.events(WSS_EV_WS_MSG);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(srv.events(WSS_EV_WS_CTL).is_empty());
    assert!(srv.events(WSS_EV_ERROR).is_empty());
}

#[test]
fn c7_message_then_close_in_one_write_is_echoed_first() {
    // Autobahn 7.1.1 ("send a message followed by a close frame": the echo, then a clean
    // close), with both frames in one TCP segment. Failures already hold their close
    // frame back until the application has answered earlier messages (category 3); a
    // close from the peer should too.
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = msg(OP_TEXT, b"Hello World!");
    bytes.extend_from_slice(&msg(OP_CLOSE, &close_payload(1000, b"")));
    c.send_raw(&bytes);
    c.expect_echo(OP_TEXT, b"Hello World!");
    c.expect_close(Some(1000));
}

#[test]
fn c7_close_in_the_middle_of_a_fragmented_message() {
    // Autobahn 7.1.5 kind: a close between fragments ends the connection; the partial
    // message is never delivered.
    let srv = server();
    let mut c = ws(&srv);
    c.send_frame(false, 0, OP_TEXT, b"frag");
    c.send(OP_CLOSE, &close_payload(1000, b""));
    c.send_raw_lossy(&frame(true, 0, OP_CONT, b"ment"));
    c.expect_close(Some(1000));
    srv.wait_for("the close event", |log| {
        log.iter().any(|e| e.is(WSS_EV_CLOSE))
    });
    assert!(srv.events(WSS_EV_WS_MSG).is_empty());
}

#[test]
fn c7_server_closes_tcp_first_after_the_handshake() {
    // RFC 6455 7.1.1: the server closes the TCP connection first; the client keeps its
    // side open and must see EOF (expect_close asserts it within the read timeout).
    let srv = server();
    let mut c = ws(&srv);
    c.send(OP_CLOSE, &close_payload(1001, b"going away"));
    let t0 = Instant::now();
    c.expect_close(Some(1001));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

// =============================================================================================
// 9 Limits and large messages

#[test]
fn c9_frame_over_max_frame_bytes_is_1009_from_the_header() {
    let srv = server_with(|o| o.max_frame_bytes = 1000);
    let mut c = ws(&srv);
    c.roundtrip(OP_BINARY, &pattern(1000));
    // Announce 1001 bytes and send none of them: the header alone must be answered.
    c.send_raw(&header(true, 0, OP_BINARY, 1001, Some([9, 9, 9, 9])));
    c.expect_close(Some(1009));
    // The 16-bit and 64-bit forms, and a fragment.
    for (fin, op, len) in [
        (true, OP_TEXT, 65535u64),
        (true, OP_BINARY, 1 << 40),
        (false, OP_TEXT, 2000),
    ] {
        let mut c = ws(&srv);
        c.send_raw(&header(fin, 0, op, len, Some([1, 2, 3, 4])));
        c.expect_close(Some(1009));
    }
    srv.wait_for("error events", |log| {
        log.iter()
            .filter(|e| e.is(WSS_EV_ERROR) && e.code == 1009)
            .count()
            == 4
    });
}

#[test]
fn c9_message_over_max_message_bytes_is_1009_from_the_header() {
    let srv = server_with(|o| {
        o.max_message_bytes = 1000;
        o.max_frame_bytes = 1 << 20;
    });
    let mut c = ws(&srv);
    // Exactly at the limit: fine, in one frame or in two.
    c.roundtrip(OP_TEXT, &utf8_text(1000));
    c.send_frame(false, 0, OP_BINARY, &pattern(600));
    c.send_frame(true, 0, OP_CONT, &pattern(400));
    let mut whole = pattern(600);
    whole.extend_from_slice(&pattern(400));
    c.expect_echo(OP_BINARY, &whole);
    // 600 + an announced 401, payload never sent.
    c.send_frame(false, 0, OP_BINARY, &pattern(600));
    c.send_raw(&header(true, 0, OP_CONT, 401, Some([5, 6, 7, 8])));
    c.expect_close(Some(1009));
    // A single frame announcing 1001.
    let mut c = ws(&srv);
    c.send_raw(&header(true, 0, OP_TEXT, 1001, Some([5, 6, 7, 8])));
    c.expect_close(Some(1009));
}

#[test]
fn c9_default_limits_announce_a_huge_frame() {
    let srv = server();
    let mut c = ws(&srv);
    c.send_raw(&header(
        true,
        0,
        OP_BINARY,
        (16 << 20) + 1,
        Some([1, 2, 3, 4]),
    ));
    c.expect_close(Some(1009));
}

#[test]
fn c9_default_message_limit_is_64_mib() {
    // Four 16 MiB fragments reach the default limit exactly; one more byte announced
    // in the next header is refused from that header.
    let srv = server();
    let mut c = ws(&srv);
    let piece = pattern(16 << 20);
    for i in 0..4 {
        c.send_frame(false, 0, if i == 0 { OP_BINARY } else { OP_CONT }, &piece);
    }
    c.send_raw(&header(true, 0, OP_CONT, 1, Some([1, 2, 3, 4])));
    c.expect_close(Some(1009));
}

/// Sends `bytes` from a thread while the caller reads (big transfers in both directions).
fn send_in_background(c: &Ws, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = c.w.try_clone().unwrap();
    std::thread::spawn(move || w.write_all(&bytes).unwrap())
}

#[test]
fn c9_16_mib_in_one_frame() {
    let srv = server();
    let mut c = ws(&srv);
    let p = pattern(16 << 20);
    let t = send_in_background(&c, msg(OP_BINARY, &p));
    c.expect_echo(OP_BINARY, &p);
    t.join().unwrap();
    let p = utf8_text(16 << 20);
    let t = send_in_background(&c, msg(OP_TEXT, &p));
    c.expect_echo(OP_TEXT, &p);
    t.join().unwrap();
    c.close_handshake(1000);
}

#[test]
fn c9_16_mib_in_many_fragments() {
    let srv = server();
    let mut c = ws(&srv);
    let p = utf8_text(16 << 20);
    let mut bytes = Vec::with_capacity(p.len() + 4096 * 8);
    // 4099-byte fragments: they split multi-byte characters all over the place.
    let pieces: Vec<&[u8]> = p.chunks(4099).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { OP_TEXT } else { OP_CONT };
        bytes.extend_from_slice(&frame(i == pieces.len() - 1, 0, op, piece));
    }
    let t = send_in_background(&c, bytes);
    c.expect_echo(OP_TEXT, &p);
    t.join().unwrap();
    c.close_handshake(1000);
}

#[test]
fn c9_many_large_messages_back_to_back() {
    // Autobahn 9.7/9.8 kind: a stream of messages, echoes read while sending.
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = Vec::new();
    let sizes: Vec<usize> = (0..40).map(|i| 1000 + i * 25_000).collect();
    for &n in &sizes {
        bytes.extend_from_slice(&msg(OP_BINARY, &pattern(n)));
    }
    let t = send_in_background(&c, bytes);
    for &n in &sizes {
        c.expect_echo(OP_BINARY, &pattern(n));
    }
    t.join().unwrap();
    c.close_handshake(1000);
}

// =============================================================================================
// 10 Misc

#[test]
fn c10_every_split_point_of_a_multi_frame_sequence() {
    let srv = server();
    let mut c = ws(&srv);
    let bin = pattern(130);
    let mut seq = frame(false, 0, OP_TEXT, "Hé".as_bytes());
    seq.extend_from_slice(&msg(OP_PING, b"p"));
    seq.extend_from_slice(&frame(true, 0, OP_CONT, "llo €".as_bytes()));
    seq.extend_from_slice(&msg(OP_BINARY, &bin));
    seq.extend_from_slice(&msg(OP_PONG, b""));
    seq.extend_from_slice(&msg(OP_TEXT, b""));
    for k in 1..seq.len() {
        c.send_raw(&seq[..k]);
        c.send_raw(&seq[k..]);
        assert_eq!(
            c.recv().wire(),
            server_frame(true, 0, OP_PONG, b"p"),
            "split {k}"
        );
        c.expect_echo(OP_TEXT, "Héllo €".as_bytes());
        c.expect_echo(OP_BINARY, &bin);
        c.expect_echo(OP_TEXT, b"");
    }
    c.close_handshake(1000);
}

#[test]
fn c10_the_whole_sequence_one_byte_per_write() {
    let srv = server();
    let mut c = ws(&srv);
    let mut seq = frame(false, 0, OP_BINARY, &pattern(200));
    seq.extend_from_slice(&msg(OP_PING, b"ping"));
    seq.extend_from_slice(&frame(true, 0, OP_CONT, &pattern(10)));
    for b in &seq {
        c.send_raw(&[*b]);
    }
    assert_eq!(c.recv().wire(), server_frame(true, 0, OP_PONG, b"ping"));
    let mut whole = pattern(200);
    whole.extend_from_slice(&pattern(10));
    c.expect_echo(OP_BINARY, &whole);
}

#[test]
fn c10_pipelined_messages_come_back_in_order() {
    let srv = server();
    let mut c = ws(&srv);
    let mut bytes = Vec::new();
    for i in 0..500 {
        let op = if i % 2 == 0 { OP_TEXT } else { OP_BINARY };
        bytes.extend_from_slice(&msg(op, format!("message {i}").as_bytes()));
    }
    c.send_raw(&bytes);
    for i in 0..500 {
        let op = if i % 2 == 0 { OP_TEXT } else { OP_BINARY };
        c.expect_echo(op, format!("message {i}").as_bytes());
    }
    c.close_handshake(1000);
}

#[test]
fn c10_frames_right_behind_the_handshake_request() {
    let srv = server();
    let key = new_key();
    let mut req = upgrade_request("/", &key, "").into_bytes();
    req.extend_from_slice(&msg(OP_TEXT, b"eager"));
    req.extend_from_slice(&msg(OP_PING, b"too"));
    let mut s = std::net::TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&req).unwrap();
    let mut r = std::io::BufReader::new(s);
    let head = read_head(&mut r).unwrap();
    assert_eq!(head.status, 101);
    // The pong is the library's, the echo the application's: either may come first.
    let mut got = vec![
        read_frame(&mut r).unwrap().unwrap().wire(),
        read_frame(&mut r).unwrap().unwrap().wire(),
    ];
    got.sort();
    let mut want = vec![
        server_frame(true, 0, OP_TEXT, b"eager"),
        server_frame(true, 0, OP_PONG, b"too"),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn c10_one_bad_connection_harms_no_other() {
    let srv = server();
    let mut good = ws(&srv);
    good.roundtrip(OP_TEXT, b"one");
    fails_with(&srv, &frame(true, 0, 5, b""), 1002);
    fails_with(&srv, &msg(OP_TEXT, b"\xff"), 1007);
    good.roundtrip(OP_TEXT, b"two");
    good.close_handshake(1000);
}

// =============================================================================================
// 12-13 Compression (permessage-deflate, RFC 7692)

fn deflate_server() -> Loop {
    server_with(|o| o.ws_deflate = true)
}

/// Connects offering `offer`; returns the client and the agreed parameters.
fn ws_deflate(srv: &Loop, offer: &str) -> (Ws, Vec<(String, Option<String>)>) {
    let c = Ws::open(
        &srv.addr(),
        "/",
        &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
    )
    .unwrap();
    let ext = c.response.headers("sec-websocket-extensions");
    assert_eq!(ext.len(), 1, "{}", c.response.head);
    let params = extension_params(&ext[0]);
    (c, params)
}

fn param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
}

/// Text that compresses well inside any window, with lines that repeat only at a
/// distance of more than 2^bits + 256 bytes (so a compressor using a larger window
/// than agreed produces references a 2^bits decompressor refuses).
fn far_repeats(bits: u8, copies: usize) -> Vec<u8> {
    let seed = random_bytes(4096);
    let mut block = Vec::new();
    let mut i = 0;
    while block.len() < (1usize << bits) + 1000 {
        block.extend_from_slice(
            format!(
                "{:02x}{:02x}{:02x}{:02x} lorem ipsum dolor sit amet\n",
                seed[i % 4096],
                seed[(i + 1) % 4096],
                seed[(i + 2) % 4096],
                seed[(i + 3) % 4096]
            )
            .as_bytes(),
        );
        i += 4;
    }
    block.repeat(copies)
}

/// Sends `data` compressed as one text frame and expects a compressed echo that
/// `inflate` turns back into `data`.
fn compressed_roundtrip(
    c: &mut Ws,
    deflate: &mut Deflate,
    inflate: &mut Inflate,
    data: &[u8],
) -> Frame {
    let z = deflate.message(data);
    c.send_frame(true, 4, OP_TEXT, &z);
    let f = c.recv();
    assert!(f.fin && f.opcode == OP_TEXT && !f.masked, "{f:?}");
    assert_eq!(f.rsv, 4, "the echo is compressed (RSV1): {f:?}");
    let back = inflate
        .message(&f.payload)
        .expect("the echo inflates in the agreed window");
    assert!(
        back == data,
        "inflated echo differs ({} vs {} bytes)",
        back.len(),
        data.len()
    );
    f
}

#[test]
fn c12_window_checker_self_test() {
    // The check the window tests rely on: data with far repeats compressed with a 15-bit
    // window reaches back beyond 2^9 bytes, so a peer with a 9-bit window cannot inflate
    // it; compressed with a 9-bit window it can.
    let data = far_repeats(9, 3);
    let wide = Deflate::new(15, false).message(&data);
    assert_eq!(Inflate::new(15, false).message(&wide).unwrap(), data);
    let err = Inflate::new(9, false).message(&wide).unwrap_err();
    assert!(err.contains("beyond the 512-byte window"), "{err}");
    let narrow = Deflate::new(9, false).message(&data);
    assert_eq!(Inflate::new(9, false).message(&narrow).unwrap(), data);
    // And a decoder without context takeover refuses references to the previous message.
    let mut d = Deflate::new(15, true);
    let mut i = Inflate::new(15, false);
    i.message(&d.message(&data)).unwrap();
    let err = i.message(&d.message(&data)).unwrap_err();
    assert!(err.contains("before the stream's start"), "{err}");
}

#[test]
fn c12_window_bits_9_to_15_are_agreed_and_honoured() {
    let srv = deflate_server();
    for bits in 9..=15u8 {
        let offer = format!(
            "permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}"
        );
        let (mut c, params) = ws_deflate(&srv, &offer);
        assert_eq!(
            param(&params, "server_max_window_bits"),
            Some(Some(bits.to_string().as_str())),
            "{params:?}"
        );
        // The server may omit client_max_window_bits (we offered our own limit), or
        // lower it; never raise it.
        let client_bits = match param(&params, "client_max_window_bits") {
            None => bits,
            Some(v) => v.unwrap().parse().unwrap(),
        };
        assert!(client_bits <= bits);
        let mut d = Deflate::new(client_bits, true);
        // A peer with a 2^bits window: an echo reaching back further does not inflate.
        let mut i = Inflate::new(bits, true);
        let data = far_repeats(bits, 3);
        for round in 0..4 {
            let data = if round < 3 {
                data.clone()
            } else {
                utf8_text(5000)
            };
            compressed_roundtrip(&mut c, &mut d, &mut i, &data);
        }
        c.close_handshake(1000);
    }
}

#[test]
fn c12_window_bits_8_is_agreed_and_honoured() {
    // zlib cannot compress with a 256-byte window; the library sends stored blocks,
    // which any window can inflate.
    let srv = deflate_server();
    let (mut c, params) = ws_deflate(&srv, "permessage-deflate; server_max_window_bits=8");
    assert_eq!(param(&params, "server_max_window_bits"), Some(Some("8")));
    let mut d = Deflate::new(15, true);
    // A peer with a 256-byte window.
    let mut i = Inflate::new(8, true);
    let data = far_repeats(8, 3);
    for _ in 0..2 {
        compressed_roundtrip(&mut c, &mut d, &mut i, &data);
    }
    c.close_handshake(1000);
}

#[test]
fn c12_server_no_context_takeover() {
    let srv = deflate_server();
    let (mut c, params) = ws_deflate(&srv, "permessage-deflate; server_no_context_takeover");
    assert_eq!(
        param(&params, "server_no_context_takeover"),
        Some(None),
        "{params:?}"
    );
    let mut d = Deflate::new(15, true);
    let data = far_repeats(12, 2);
    let mut echoes = Vec::new();
    // Without context takeover: an echo referring to an earlier one does not inflate.
    let mut i = Inflate::new(15, false);
    for _ in 0..3 {
        let f = compressed_roundtrip(&mut c, &mut d, &mut i, &data);
        echoes.push(f.payload);
    }
    assert_eq!(echoes[0], echoes[1]);
    assert_eq!(echoes[1], echoes[2]);
    c.close_handshake(1000);
}

#[test]
fn c12_context_takeover_both_ways() {
    let srv = deflate_server();
    let (mut c, params) = ws_deflate(&srv, "permessage-deflate");
    assert!(
        param(&params, "server_no_context_takeover").is_none(),
        "{params:?}"
    );
    assert!(
        param(&params, "client_no_context_takeover").is_none(),
        "{params:?}"
    );
    let mut d = Deflate::new(15, true);
    let mut i = Inflate::new(15, true);
    let data = far_repeats(12, 1);
    let first = compressed_roundtrip(&mut c, &mut d, &mut i, &data);
    // Our second message refers back to the first: the server kept its context.
    let second = compressed_roundtrip(&mut c, &mut d, &mut i, &data);
    // And its echo refers back to its first echo: much smaller.
    assert!(
        second.payload.len() * 4 < first.payload.len(),
        "{} then {}",
        first.payload.len(),
        second.payload.len()
    );
    // It cannot be decoded without the first echo.
    assert!(Inflate::new(15, true).message(&second.payload).is_err());
    c.close_handshake(1000);
}

#[test]
fn c12_client_no_context_takeover() {
    let srv = deflate_server();
    let (mut c, params) = ws_deflate(&srv, "permessage-deflate; client_no_context_takeover");
    assert_eq!(
        param(&params, "client_no_context_takeover"),
        Some(None),
        "{params:?}"
    );
    let mut d = Deflate::new(15, false);
    let mut i = Inflate::new(15, true);
    let data = far_repeats(11, 2);
    for _ in 0..3 {
        compressed_roundtrip(&mut c, &mut d, &mut i, &data);
    }
    c.close_handshake(1000);
}

#[test]
fn c12_all_parameters_at_once() {
    let srv = deflate_server();
    let (mut c, params) = ws_deflate(
        &srv,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits",
    );
    assert_eq!(param(&params, "server_no_context_takeover"), Some(None));
    assert_eq!(param(&params, "client_no_context_takeover"), Some(None));
    assert_eq!(param(&params, "server_max_window_bits"), Some(Some("10")));
    let client_bits = match param(&params, "client_max_window_bits") {
        None => 15,
        Some(v) => v.unwrap().parse().unwrap(),
    };
    let mut d = Deflate::new(client_bits, false);
    // A peer with a 1 KiB window and no context takeover.
    let mut i = Inflate::new(10, false);
    for _ in 0..2 {
        let data = far_repeats(10, 3);
        compressed_roundtrip(&mut c, &mut d, &mut i, &data);
    }
    c.close_handshake(1000);
}

#[test]
fn c12_offers_that_cannot_be_honoured_are_declined() {
    let srv = deflate_server();
    for bad in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "x-webkit-deflate-frame",
    ] {
        let c = Ws::open(
            &srv.addr(),
            "/",
            &format!("Sec-WebSocket-Extensions: {bad}\r\n"),
        )
        .unwrap_or_else(|h| panic!("{bad}: {h:?}"));
        assert!(
            c.response.header("sec-websocket-extensions").is_none(),
            "{bad}: {}",
            c.response.head
        );
    }
    // A bad offer followed by an acceptable one: the second is taken.
    let (mut c, params) = ws_deflate(
        &srv,
        "permessage-deflate; server_max_window_bits=99, permessage-deflate; client_no_context_takeover",
    );
    assert_eq!(param(&params, "client_no_context_takeover"), Some(None));
    assert!(param(&params, "server_max_window_bits").is_none());
    let mut d = Deflate::new(15, false);
    let mut i = Inflate::new(15, true);
    compressed_roundtrip(&mut c, &mut d, &mut i, &far_repeats(9, 2));
}

#[test]
fn c12_fragmented_compressed_message() {
    let srv = deflate_server();
    let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
    let mut d = Deflate::new(15, true);
    let mut i = Inflate::new(15, true);
    for op in [OP_TEXT, OP_BINARY] {
        let data = if op == OP_TEXT {
            utf8_text(100_000)
        } else {
            pattern(100_000)
        };
        let z = d.message(&data);
        // RSV1 on the first frame only; continuation frames carry the rest.
        let third = z.len() / 3;
        let mut bytes = frame(false, 4, op, &z[..third]);
        bytes.extend_from_slice(&frame(false, 0, OP_CONT, &z[third..2 * third]));
        bytes.extend_from_slice(&msg(OP_PING, b"in between"));
        bytes.extend_from_slice(&frame(true, 0, OP_CONT, &z[2 * third..]));
        c.send_raw(&bytes);
        assert_eq!(
            c.recv().wire(),
            server_frame(true, 0, OP_PONG, b"in between")
        );
        let f = c.recv();
        assert_eq!((f.opcode, f.rsv), (op, 4), "{f:?}");
        assert!(i.message(&f.payload).unwrap() == data);
    }
    // One compressed byte per frame.
    let data = b"Hello, Hello, Hello, Hello, Hello, Hello, Hello, Hello, Hello, Hello!".to_vec();
    let z = d.message(&data);
    let mut bytes = Vec::new();
    for (k, b) in z.iter().enumerate() {
        let (rsv, op) = if k == 0 { (4, OP_TEXT) } else { (0, OP_CONT) };
        bytes.extend_from_slice(&frame(k == z.len() - 1, rsv, op, &[*b]));
    }
    c.send_raw(&bytes);
    let f = c.recv();
    assert_eq!(f.opcode, OP_TEXT);
    let back = if f.rsv == 4 {
        i.message(&f.payload).unwrap()
    } else {
        f.payload
    };
    assert_eq!(back, data);
    c.close_handshake(1000);
}

#[test]
fn c12_rsv1_on_a_continuation_is_1002() {
    let srv = deflate_server();
    let mut d = Deflate::new(15, true);
    let z = d.message(&utf8_text(1000));
    let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
    c.send_frame(false, 4, OP_TEXT, &z[..10]);
    c.send_frame(true, 4, OP_CONT, &z[10..]);
    c.expect_close(Some(1002));
    // On an uncompressed message's continuation too.
    let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
    c.send_frame(false, 0, OP_TEXT, b"plain ");
    c.send_frame(true, 4, OP_CONT, b"text");
    c.expect_close(Some(1002));
    // And on control frames.
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
        c.send_frame(true, 4, op, b"");
        c.expect_close(Some(1002));
    }
}

#[test]
fn c12_rsv1_without_negotiation_is_1002() {
    // Compression offered by the client, not enabled on the listener: no extension
    // agreed, so RSV1 is a protocol error.
    let srv = server();
    let mut c = Ws::open(
        &srv.addr(),
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .unwrap();
    assert!(c.response.header("sec-websocket-extensions").is_none());
    let z = Deflate::new(15, false).message(b"Hello");
    c.send_frame(true, 4, OP_TEXT, &z);
    c.expect_close(Some(1002));
}

#[test]
fn c12_uncompressed_and_small_messages_on_a_deflate_connection() {
    let srv = deflate_server();
    let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
    let mut i = Inflate::new(15, true);
    // Uncompressed messages (RSV1 clear) are fine; small echoes stay uncompressed.
    c.roundtrip(OP_TEXT, b"tiny");
    c.roundtrip(OP_BINARY, b"");
    // A large uncompressed message comes back compressed.
    let data = utf8_text(20_000);
    c.send(OP_TEXT, &data);
    let f = c.recv();
    assert_eq!((f.opcode, f.rsv), (OP_TEXT, 4));
    assert!(i.message(&f.payload).unwrap() == data);
    // The empty compressed message (RFC 7692 7.2.3.6: a single 0x00 byte).
    c.send_frame(true, 4, OP_BINARY, &[0x00]);
    let f = c.recv();
    assert_eq!(f.opcode, OP_BINARY);
    let back = if f.rsv == 4 {
        i.message(&f.payload).unwrap()
    } else {
        f.payload
    };
    assert!(back.is_empty());
    // Compressed data with a final block (BFINAL) ends that message's stream.
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(256);
    z.compress_vec(b"final block", &mut out, flate2::FlushCompress::Finish)
        .unwrap();
    c.send_frame(true, 4, OP_TEXT, &out);
    c.expect_echo(OP_TEXT, b"final block");
    c.roundtrip(OP_TEXT, b"still fine");
    c.close_handshake(1000);
}

#[test]
fn c12_corrupt_compressed_data_is_1007() {
    let srv = deflate_server();
    let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
    // BTYPE 11 is reserved: invalid block type.
    c.send_frame(true, 4, OP_BINARY, &[0xff, 0xff, 0xff, 0xff]);
    c.expect_close(Some(1007));
}

#[test]
fn c12_invalid_utf8_inside_compressed_text_is_1007() {
    let srv = deflate_server();
    for bad in INVALID {
        let (mut c, _) = ws_deflate(&srv, "permessage-deflate");
        let mut d = Deflate::new(15, false);
        c.roundtrip(OP_TEXT, b"ok");
        c.send_frame(true, 4, OP_TEXT, &d.message(bad));
        c.expect_close(Some(1007));
    }
}

/// A raw DEFLATE stream (fixed Huffman codes, no final block) that inflates to `total`
/// zero bytes, ended like a permessage-deflate message (sync flush, tail stripped):
/// one literal 0 then matches of length 258 at distance 1, 13 bits each.
fn zero_bomb(total: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, count: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += count;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            let rev = code.reverse_bits() >> (32 - len);
            self.put(rev, len);
        }
    }
    let mut b = Bits {
        out: Vec::with_capacity(total / 150),
        acc: 0,
        n: 0,
    };
    b.put(0, 1); // BFINAL = 0
    b.put(1, 2); // BTYPE = 01, fixed Huffman
    b.code(0x30, 8); // literal 0
    let mut made = 1;
    while made + 258 <= total {
        b.code(0b1100_0101, 8); // length symbol 285: 258
        b.code(0, 5); // distance code 0: 1
        made += 258;
    }
    while made < total {
        b.code(0x30, 8);
        made += 1;
    }
    b.code(0, 7); // end of block (256)
    b.put(0, 3); // the empty stored block of the sync flush, then byte alignment...
    if b.n > 0 {
        b.put(0, 8 - b.n);
    }
    // ...whose LEN/NLEN (00 00 ff ff) the receiver appends.
    b.out
}

#[test]
fn c13_zero_bomb_helper_inflates_right() {
    let z = zero_bomb(1_000_000);
    let out = Inflate::new(15, false).message(&z).unwrap();
    assert_eq!(out.len(), 1_000_000);
    assert!(out.iter().all(|&b| b == 0));
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Not a test on its own: the server process of `c13_decompression_bomb_...`, run by
/// that test as a child (with WSS_BOMB_CHILD set) so that its memory can be measured
/// alone. It serves two listeners (whole messages, streaming) with 1 MiB messages.
#[test]
#[ignore = "helper process of c13_decompression_bomb_is_1009_and_memory_stays_bounded"]
fn bomb_server_child() {
    if std::env::var_os("WSS_BOMB_CHILD").is_none() {
        return;
    }
    let opts = |stream: bool| {
        let mut o = listen_opts();
        o.ws_deflate = true;
        o.ws_stream = stream;
        o.max_message_bytes = 1 << 20;
        o
    };
    let whole = Loop::serve("ws://127.0.0.1:0", Some(opts(false)), echo);
    let stream = Loop::serve("ws://127.0.0.1:0", Some(opts(true)), |_, _| {});
    println!("BOMB-PORTS {} {}", whole.port, stream.port);
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin (bounded: the parent is bounded too).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn c13_decompression_bomb_is_1009_and_memory_stays_bounded() {
    let bomb = zero_bomb(100_000_000);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "bomb_server_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WSS_BOMB_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Read the ports on a thread, so that a child that never prints cannot hang us.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("BOMB-PORTS ") {
                let ports: Vec<u16> = line[i + 11..]
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
                let _ = tx.send(ports);
            }
        }
    });
    let Ok(ports) = rx.recv_timeout(WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server child did not print its ports");
    };
    let result = std::panic::catch_unwind(|| {
        // Warm up both listeners with a normal compressed message first.
        for &port in &ports {
            let addr = format!("127.0.0.1:{port}");
            let mut c = Ws::open(
                &addr,
                "/",
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            )
            .unwrap();
            c.send_frame(
                true,
                4,
                OP_BINARY,
                &Deflate::new(15, false).message(&pattern(1000)),
            );
            if port == ports[0] {
                assert_eq!(c.recv().opcode, OP_BINARY);
            }
            c.close_handshake(1000);
        }
        let before = vm_kib(pid, "VmHWM:");
        for &port in &ports {
            for fragmented in [false, true] {
                let addr = format!("127.0.0.1:{port}");
                let mut c = Ws::open(
                    &addr,
                    "/",
                    "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                )
                .unwrap();
                let bytes = if fragmented {
                    let mut v = Vec::new();
                    let pieces: Vec<&[u8]> = bomb.chunks(4096).collect();
                    for (k, p) in pieces.iter().enumerate() {
                        let (rsv, op) = if k == 0 { (4, OP_BINARY) } else { (0, OP_CONT) };
                        v.extend_from_slice(&frame(k == pieces.len() - 1, rsv, op, p));
                    }
                    v
                } else {
                    frame(true, 4, OP_BINARY, &bomb)
                };
                let mut w = c.w.try_clone().unwrap();
                let t = std::thread::spawn(move || {
                    let _ = w.write_all(&bytes);
                });
                let f = c.recv();
                assert_eq!(
                    f.close_code(),
                    Some(1009),
                    "port {port} fragmented {fragmented}: {f:?}"
                );
                c.expect_eof();
                t.join().unwrap();
            }
        }
        let after = vm_kib(pid, "VmHWM:");
        eprintln!("bomb server peak memory: {before} KiB before, {after} KiB after");
        // 100 MB would be inflated without the cap; allow 24 MiB of noise.
        assert!(
            after.saturating_sub(before) < 24 * 1024,
            "server peak memory grew from {before} KiB to {after} KiB"
        );
    });
    drop(child.stdin.take());
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
