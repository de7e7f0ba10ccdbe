//! Negotiation tables, then compression round trips, limits and the RFC 7692
//! examples.

use super::codec::TAIL;
use super::*;
use flate2::{Compress, Compression, FlushCompress};

// The reference inflater, shared with the integration tests: miniz_oxide, independent of
// the zlib-rs backend under test, as a peer with a 2^bits window.
#[path = "../../../tests/common/inflate.rs"]
mod oracle;

fn cfg() -> DeflateConfig {
    DeflateConfig::default()
}

fn negotiate(config: &DeflateConfig, headers: &[&str]) -> Option<String> {
    config
        .negotiate(headers.iter().map(|h| h.as_bytes()))
        .map(|r| r.header_value)
}

#[test]
fn negotiation_table() {
    let default = cfg();
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["permessage-deflate"], Some("permessage-deflate")),
        (&["Permessage-Deflate"], Some("permessage-deflate")),
        (&["permessage-deflate; client_max_window_bits"], Some("permessage-deflate")),
        (
            &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            &["permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &["permessage-deflate; server_max_window_bits=\"8\""],
            Some("permessage-deflate; server_max_window_bits=8"),
        ),
        (
            &["permessage-deflate; server_max_window_bits=15"],
            Some("permessage-deflate; server_max_window_bits=15"),
        ),
        (&["permessage-deflate; client_max_window_bits=10"], Some("permessage-deflate")),
        // Invalid offers are skipped; the next acceptable one wins.
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; server_max_window_bits=7"], None),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits=08"], None),
        (&["permessage-deflate; server_max_window_bits=+9"], None),
        (&["permessage-deflate; client_max_window_bits=0"], None),
        (&["permessage-deflate; server_no_context_takeover=1"], None),
        (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (&["permessage-deflate; client_max_window_bits; client_max_window_bits=9"], None),
        (&["permessage-deflate; foo"], None),
        (&["permessage-deflate; server_max_window_bits=\"1,0\""], None),
        (&["x-webkit-deflate-frame"], None),
        (&[""], None),
        (&[";;;"], None),
        (
            &["permessage-deflate; foo, permessage-deflate; server_max_window_bits=12"],
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        (
            &["x-foo", "permessage-deflate; server_max_window_bits=16", "permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        (
            &["permessage-deflate;   server_no_context_takeover  ;client_max_window_bits , permessage-deflate"],
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        // Autobahn 13.x-style offers.
        (
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits"],
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=8"),
        ),
        (
            &["permessage-deflate; client_no_context_takeover; client_max_window_bits"],
            Some("permessage-deflate; client_no_context_takeover"),
        ),
    ];
    for (headers, expected) in cases {
        assert_eq!(
            negotiate(&default, headers).as_deref(),
            *expected,
            "{headers:?}"
        );
    }
}

#[test]
fn negotiation_with_server_preferences() {
    let config = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 11,
        client_max_window_bits: 12,
        ..cfg()
    };
    let all = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11";
    assert_eq!(
        negotiate(&config, &["permessage-deflate"]).as_deref(),
        Some(all)
    );
    assert_eq!(
        negotiate(&config, &["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some(&*format!("{all}; client_max_window_bits=12"))
    );
    // The client's hint is smaller than our limit: no need to send ours.
    assert_eq!(
        negotiate(&config, &["permessage-deflate; client_max_window_bits=9"]).as_deref(),
        Some(all)
    );
    let r = config
        .negotiate([
            &b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=13"[..],
        ])
        .unwrap();
    assert_eq!(
        r.header_value,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"
    );
    assert_eq!(
        r.params,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 9,
            client_max_window_bits: 12,
        }
    );
}

#[test]
fn client_offer_and_response() {
    let default = cfg();
    assert_eq!(
        default.client_offer(),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(
        default.accept_response([&b"permessage-deflate"[..]]),
        Ok(DeflateParams::default())
    );
    let p = default
        .accept_response([
            &b"permessage-deflate; server_no_context_takeover; client_max_window_bits=9"[..],
        ])
        .unwrap();
    assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (15, 9)
    );

    let asking = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        ..cfg()
    };
    assert_eq!(
        asking.client_offer(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    );
    let p = asking
        .accept_response([&b"permessage-deflate; server_max_window_bits=10"[..]])
        .unwrap();
    assert!(p.client_no_context_takeover);
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (10, 11)
    );

    let bad: &[(&DeflateConfig, &str, ExtensionError)] = &[
        (
            &default,
            "permessage-deflate; foo",
            ExtensionError::InvalidParameter,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits",
            ExtensionError::InvalidParameter,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=16",
            ExtensionError::InvalidParameter,
        ),
        (
            &asking,
            "permessage-deflate; server_max_window_bits=11",
            ExtensionError::InvalidParameter,
        ),
        (
            &asking,
            "permessage-deflate; client_max_window_bits=12",
            ExtensionError::InvalidParameter,
        ),
        (
            &default,
            "permessage-deflate, permessage-deflate",
            ExtensionError::NotOffered,
        ),
        (
            &default,
            "x-webkit-deflate-frame",
            ExtensionError::NotOffered,
        ),
        (&default, "permessage-deflate; =", ExtensionError::Malformed),
    ];
    for (config, response, error) in bad {
        assert_eq!(
            config.accept_response([response.as_bytes()]),
            Err(*error),
            "{response}"
        );
    }
}

/// The server's answer is always acceptable to a client with the same
/// preferences: negotiation is consistent with itself.
#[test]
fn server_answers_are_accepted_by_clients() {
    for server_bits in 8..=15 {
        for client_bits in 8..=15 {
            for flags in 0..4 {
                let config = DeflateConfig {
                    server_no_context_takeover: flags & 1 != 0,
                    client_no_context_takeover: flags & 2 != 0,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                    ..cfg()
                };
                let offer = config.client_offer();
                let response = config
                    .negotiate([offer.as_bytes()])
                    .expect("own offer acceptable");
                let client = config
                    .accept_response([response.header_value.as_bytes()])
                    .unwrap();
                assert_eq!(
                    client, response.params,
                    "{offer} -> {}",
                    response.header_value
                );
            }
        }
    }
}

fn sample_text(len: usize) -> Vec<u8> {
    let words = [
        "alpha ",
        "beta ",
        "gamma ",
        "delta ",
        "epsilon ",
        "zeta ",
        "κόσμε ",
        "\u{1f600} ",
    ];
    let mut state = 12345u32;
    let mut out = Vec::new();
    while out.len() < len {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(words[(state >> 16) as usize % words.len()].as_bytes());
    }
    out.truncate(len);
    out
}

/// Data whose repeats lie far apart, so that a large window helps and a
/// small one must not be used.
fn far_repeats() -> Vec<u8> {
    let mut state = 7u32;
    let block: Vec<u8> = (0..3000)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    let mut data = block.clone();
    data.extend(sample_text(20_000));
    data.extend_from_slice(&block);
    data.extend_from_slice(&block[..1000]);
    data
}

/// Inflates the messages as a peer that agreed to a 2^`bits` window would, keeping its
/// window from one message to the next unless `no_context_takeover`.
fn peer_inflate(
    messages: &[Vec<u8>],
    bits: u8,
    no_context_takeover: bool,
) -> Result<Vec<Vec<u8>>, String> {
    let mut peer = oracle::Inflate::new(bits, !no_context_takeover);
    messages.iter().map(|m| peer.message(m)).collect()
}

#[test]
fn round_trip_every_window_with_and_without_context_takeover() {
    let messages: Vec<Vec<u8>> = vec![
        sample_text(5000),
        far_repeats(),
        sample_text(5000),
        Vec::new(),
        b"x".to_vec(),
    ];
    for bits in 8..=15u8 {
        for no_context_takeover in [false, true] {
            let mut deflater = Deflater::new(6, bits, no_context_takeover);
            let compressed: Vec<Vec<u8>> = messages
                .iter()
                .map(|m| {
                    let mut out = Vec::new();
                    deflater.compress(m, &mut out).unwrap();
                    assert!(!out.ends_with(&TAIL) || m.is_empty());
                    out
                })
                .collect();
            // An independent inflater with the agreed window gets the messages back:
            // no reference reaches beyond the window, nor, without context takeover,
            // into an earlier message...
            assert_eq!(
                peer_inflate(&compressed, bits, no_context_takeover),
                Ok(messages.clone()),
                "bits {bits}"
            );
            // ...and so does ours, fed in awkward pieces.
            let mut inflater = Inflater::new(no_context_takeover);
            for (c, m) in compressed.iter().zip(&messages) {
                let mut out = Vec::new();
                for piece in c.chunks(7) {
                    inflater
                        .inflate_capped(piece, false, &mut out, 1 << 20)
                        .unwrap();
                }
                inflater
                    .inflate_capped(&[], true, &mut out, 1 << 20)
                    .unwrap();
                assert_eq!(&out, m, "bits {bits}");
            }
            if bits == 8 {
                // Level 0: stored blocks only, no compression at all.
                assert!(compressed[1].len() >= messages[1].len());
            }
        }
    }
}

#[test]
fn small_window_check_is_meaningful() {
    // A 15-bit stream of far repeats does not inflate with a 9-bit window.
    let mut deflater = Deflater::new(6, 15, false);
    let mut out = Vec::new();
    deflater.compress(&far_repeats(), &mut out).unwrap();
    assert!(out.len() < far_repeats().len() - 2000);
    let err = peer_inflate(&[out.clone()], 9, false).unwrap_err();
    assert!(err.contains("beyond the 512-byte window"), "{err}");
    assert_eq!(peer_inflate(&[out], 15, false), Ok(vec![far_repeats()]));
}

#[test]
fn context_takeover_shrinks_repeated_messages() {
    let message = sample_text(2000);
    for (no_context_takeover, expect_small) in [(false, true), (true, false)] {
        let mut deflater = Deflater::new(6, 15, no_context_takeover);
        let mut first = Vec::new();
        deflater.compress(&message, &mut first).unwrap();
        let mut second = Vec::new();
        deflater.compress(&message, &mut second).unwrap();
        assert_eq!(
            second.len() < first.len() / 4,
            expect_small,
            "{} vs {}",
            first.len(),
            second.len()
        );
    }
}

#[test]
fn decompression_bomb_is_capped() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let mut deflater = Deflater::new(9, 15, true);
    let mut bomb = Vec::new();
    deflater.compress(&zeros, &mut bomb).unwrap();
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let cap = 1024 * 1024;

    // All at once.
    let mut inflater = Inflater::new(true);
    let mut out = Vec::new();
    assert_eq!(
        inflater.inflate_capped(&bomb, true, &mut out, cap),
        Err(InflateError::TooBig)
    );
    assert!(out.capacity() <= cap + 64 * 1024, "{}", out.capacity());

    // In small pieces, as a socket would deliver it.
    let mut inflater = Inflater::new(true);
    let mut out = Vec::new();
    let mut result = Ok(());
    for piece in bomb.chunks(100) {
        let budget = cap - out.len();
        result = inflater.inflate_capped(piece, false, &mut out, budget);
        assert!(out.capacity() <= cap + 64 * 1024, "{}", out.capacity());
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(InflateError::TooBig));

    // Streaming: bounded pieces, the whole thing inflates piece by piece.
    let mut inflater = Inflater::new(true);
    let mut total = 0;
    let mut input: &[u8] = &bomb;
    loop {
        let mut piece = Vec::new();
        let used = inflater
            .inflate(input, true, &mut piece, 64 * 1024)
            .unwrap();
        input = &input[used..];
        assert!(piece.len() <= 64 * 1024 && piece.capacity() <= 64 * 1024);
        assert!(piece.iter().all(|&b| b == 0));
        total += piece.len();
        if input.is_empty() && !inflater.has_pending_output() {
            break;
        }
    }
    assert_eq!(total, zeros.len());
}

#[test]
fn exact_budget_is_not_too_big() {
    let message = sample_text(1000);
    let mut deflater = Deflater::new(6, 15, true);
    let mut c = Vec::new();
    deflater.compress(&message, &mut c).unwrap();
    let mut inflater = Inflater::new(true);
    let mut out = Vec::new();
    inflater.inflate_capped(&c, true, &mut out, 1000).unwrap();
    assert_eq!(out, message);
    let mut out = Vec::new();
    assert_eq!(
        inflater.inflate_capped(&c, true, &mut out, 999),
        Err(InflateError::TooBig)
    );
}

#[test]
fn corrupt_and_bfinal_streams() {
    let mut inflater = Inflater::new(false);
    let mut out = Vec::new();
    // BTYPE=11 is reserved.
    assert_eq!(
        inflater.inflate_capped(&[0xff, 0xff], true, &mut out, 100),
        Err(InflateError::Corrupt)
    );

    // A peer may end each message with a BFINAL block (RFC 7692 §7.2.3.3).
    let mut c = Compress::new(Compression::default(), false);
    let mut stream = Vec::with_capacity(100);
    c.compress_vec(b"Hello", &mut stream, FlushCompress::Finish)
        .unwrap();
    let mut inflater = Inflater::new(false);
    for _ in 0..2 {
        let mut out = Vec::new();
        inflater
            .inflate_capped(&stream, true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
    }
    // Data after the final block is refused.
    let mut doubled = stream.clone();
    doubled.extend_from_slice(&stream);
    let mut out = Vec::new();
    assert_eq!(
        inflater.inflate_capped(&doubled, true, &mut out, 100),
        Err(InflateError::Corrupt)
    );
}

#[test]
fn rfc7692_examples() {
    // §7.2.3.1: "Hello" compressed is 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
    let mut inflater = Inflater::new(false);
    let mut out = Vec::new();
    inflater
        .inflate_capped(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.2: the same again with context takeover: 0xf2 0x00 0x11 0x00 0x00.
    out.clear();
    inflater
        .inflate_capped(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.4: stored block "Hello": 0x00 0x05 0x00 0xfa 0xff 'H' 'e' 'l' 'l' 'o' 0x00.
    out.clear();
    let mut fresh = Inflater::new(false);
    fresh
        .inflate_capped(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
            ],
            true,
            &mut out,
            100,
        )
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.6: an empty message is the single byte 0x00.
    out.clear();
    fresh.inflate_capped(&[0x00], true, &mut out, 100).unwrap();
    assert!(out.is_empty());
}
