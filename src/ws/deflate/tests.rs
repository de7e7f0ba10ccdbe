//! Negotiation tables, then compression round trips, limits and the RFC 7692
//! examples.

use super::codec::TAIL;
use super::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::Read;

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

/// Inflates with an independent reader, the way a peer would: the
/// concatenated messages with the tail re-appended to each.
fn independent_inflate(messages: &[Vec<u8>], reset_each: bool) -> Vec<Vec<u8>> {
    if reset_each {
        return messages
            .iter()
            .map(|m| {
                let mut input = m.clone();
                input.extend_from_slice(&TAIL);
                let mut out = Vec::new();
                let mut reader = flate2::read::DeflateDecoder::new(&input[..]);
                // A sync-flushed stream has no end marker: read until the
                // reader runs dry.
                let _ = reader.read_to_end(&mut out);
                out
            })
            .collect();
    }
    let mut d = Decompress::new(false);
    messages
        .iter()
        .map(|m| {
            let mut input = m.clone();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(1 << 20);
            d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .unwrap();
            out
        })
        .collect()
}

/// Inflates the messages (tail re-appended) with [`puff`], an
/// independent DEFLATE decoder, and checks that no back-reference
/// reaches further than 2^bits bytes. zlib-rs cannot check this: its
/// decompressor always keeps a 32 KiB window whatever it is told.
fn inflate_with_window(messages: &[Vec<u8>], bits: u8) -> Result<Vec<u8>, &'static str> {
    let mut stream = Vec::new();
    for m in messages {
        stream.extend_from_slice(m);
        stream.extend_from_slice(&TAIL);
    }
    let (data, max_distance) = puff::inflate(&stream).ok_or("corrupt")?;
    if max_distance > 1 << bits {
        return Err("distance beyond the window");
    }
    Ok(data)
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
            // An independent inflater gets the messages back...
            assert_eq!(
                independent_inflate(&compressed, no_context_takeover),
                messages,
                "bits {bits}"
            );
            // ...so does ours, fed in awkward pieces...
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
            // ...and the stream never reaches back beyond the window.
            assert_eq!(
                inflate_with_window(&compressed, bits),
                Ok(messages.concat()),
                "bits {bits}"
            );
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
    assert_eq!(
        inflate_with_window(&[out.clone()], 9),
        Err("distance beyond the window")
    );
    assert_eq!(inflate_with_window(&[out], 15), Ok(far_repeats()));
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

/// A minimal DEFLATE decoder (after Mark Adler's puff.c) that also
/// reports the longest back-reference distance used. Test-only.
mod puff {
    struct Bits<'a> {
        input: &'a [u8],
        pos: usize,
        buf: u64,
        cnt: u32,
    }

    impl Bits<'_> {
        fn bits(&mut self, n: u32) -> Option<u32> {
            while self.cnt < n {
                let b = *self.input.get(self.pos)?;
                self.pos += 1;
                self.buf |= u64::from(b) << self.cnt;
                self.cnt += 8;
            }
            let v = (self.buf & ((1u64 << n) - 1)) as u32;
            self.buf >>= n;
            self.cnt -= n;
            Some(v)
        }

        fn align(&mut self) {
            self.buf = 0;
            self.cnt = 0;
        }
    }

    struct Huffman {
        count: [i32; 16],
        symbol: Vec<u16>,
    }

    impl Huffman {
        fn new(lengths: &[u8]) -> Self {
            let mut count = [0i32; 16];
            for &l in lengths {
                count[usize::from(l)] += 1;
            }
            count[0] = 0;
            let mut offs = [0usize; 16];
            for len in 1..15 {
                offs[len + 1] = offs[len] + count[len] as usize;
            }
            let mut symbol = vec![0u16; lengths.len()];
            for (sym, &l) in lengths.iter().enumerate() {
                if l != 0 {
                    symbol[offs[usize::from(l)]] = sym as u16;
                    offs[usize::from(l)] += 1;
                }
            }
            Self { count, symbol }
        }

        fn decode(&self, bits: &mut Bits<'_>) -> Option<usize> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= bits.bits(1)? as i32;
                let count = self.count[len];
                if code - count < first {
                    return self
                        .symbol
                        .get((index + code - first) as usize)
                        .map(|&s| usize::from(s));
                }
                index += count;
                first += count;
                first <<= 1;
                code <<= 1;
            }
            None
        }
    }

    const LBASE: [usize; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEXT: [u32; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DBASE: [usize; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DEXT: [u32; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    fn codes(
        bits: &mut Bits<'_>,
        out: &mut Vec<u8>,
        max: &mut usize,
        lit: &Huffman,
        dist: &Huffman,
    ) -> Option<()> {
        loop {
            let sym = lit.decode(bits)?;
            match sym {
                0..=255 => out.push(sym as u8),
                256 => return Some(()),
                _ => {
                    let i = sym - 257;
                    let len = LBASE.get(i)? + bits.bits(*LEXT.get(i)?)? as usize;
                    let d = dist.decode(bits)?;
                    let distance = DBASE.get(d)? + bits.bits(*DEXT.get(d)?)? as usize;
                    if distance > out.len() {
                        return None;
                    }
                    *max = (*max).max(distance);
                    for _ in 0..len {
                        out.push(out[out.len() - distance]);
                    }
                }
            }
        }
    }

    /// Decodes non-final blocks until the input is used up; returns the
    /// output and the longest distance seen.
    pub fn inflate(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut bits = Bits {
            input,
            pos: 0,
            buf: 0,
            cnt: 0,
        };
        let mut out = Vec::new();
        let mut max = 0;
        while bits.pos < input.len() {
            let last = bits.bits(1)?;
            match bits.bits(2)? {
                0 => {
                    bits.align();
                    let len = bits.bits(16)?;
                    let nlen = bits.bits(16)?;
                    if len != !nlen & 0xffff {
                        return None;
                    }
                    let data = input.get(bits.pos..bits.pos + len as usize)?;
                    out.extend_from_slice(data);
                    bits.pos += len as usize;
                }
                1 => {
                    let mut lengths = [8u8; 288];
                    lengths[144..256].fill(9);
                    lengths[256..280].fill(7);
                    let lit = Huffman::new(&lengths);
                    let dist = Huffman::new(&[5u8; 30]);
                    codes(&mut bits, &mut out, &mut max, &lit, &dist)?;
                }
                2 => {
                    let nlen = bits.bits(5)? as usize + 257;
                    let ndist = bits.bits(5)? as usize + 1;
                    let ncode = bits.bits(4)? as usize + 4;
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for &o in &ORDER[..ncode] {
                        cl[o] = bits.bits(3)? as u8;
                    }
                    let lencode = Huffman::new(&cl);
                    let mut lengths = vec![0u8; nlen + ndist];
                    let mut i = 0;
                    while i < nlen + ndist {
                        let sym = lencode.decode(&mut bits)?;
                        let (value, repeat) = match sym {
                            0..=15 => (sym as u8, 1),
                            16 => (*lengths.get(i.checked_sub(1)?)?, 3 + bits.bits(2)? as usize),
                            17 => (0, 3 + bits.bits(3)? as usize),
                            _ => (0, 11 + bits.bits(7)? as usize),
                        };
                        for _ in 0..repeat {
                            *lengths.get_mut(i)? = value;
                            i += 1;
                        }
                    }
                    let lit = Huffman::new(&lengths[..nlen]);
                    let dist = Huffman::new(&lengths[nlen..]);
                    codes(&mut bits, &mut out, &mut max, &lit, &dist)?;
                }
                _ => return None,
            }
            if last == 1 {
                break;
            }
        }
        Some((out, max))
    }
}
