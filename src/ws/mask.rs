//! Payload masking (RFC 6455 §5.3).
//!
//! "The masked data is obtained by applying the masking key octet-wise:
//! `transformed-octet-i = original-octet-i XOR masking-key-octet-j` where
//! `j = i MOD 4`." Masking is its own inverse, so the same function masks
//! outgoing client payloads and unmasks incoming ones.

/// XORs `buf` with the masking `key`, in place.
///
/// `offset` is the position of `buf[0]` within the frame payload, so a payload
/// that arrives in several reads can be unmasked piece by piece: pass the
/// number of payload bytes already unmasked (only `offset % 4` matters).
///
/// Works a block of [`BLOCK`] bytes at a time, then a 64-bit word at a time; the
/// result is identical to [`apply_mask_simple`] for every length, offset and buffer
/// alignment.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    // Blocks and words are multiples of 4 bytes, so each one starts at a payload
    // position ≡ offset and the same key pattern fits every one of them.
    let block = key_block(key);
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for chunk in &mut blocks {
        // Exactly BLOCK bytes by `chunks_exact_mut`: the conversion cannot fail and
        // gives the compiler the fixed length it needs to vectorise.
        let chunk: &mut [u8; BLOCK] = chunk.try_into().expect("chunks_exact_mut");
        xor_block(chunk, &block);
    }
    let word = key_word(key);
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for chunk in &mut words {
        // `chunks_exact_mut` guarantees 8 bytes; the conversion cannot fail
        // and compiles to an unaligned load, so no `unsafe` alignment games.
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    apply_mask_simple(words.into_remainder(), key, 0);
}

/// Appends `src` unmasked with `key` (from payload position 0) to `dst`: one pass
/// over the bytes instead of a copy and then an in-place [`apply_mask`].
pub fn extend_unmasked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let n = src.len();
    dst.reserve(n);
    let start = dst.len();
    let block = key_block(key);
    let word = key_word(key);
    // SAFETY: `reserve` made room for `n` bytes past `start`; every read is within
    // `src` (i + BLOCK <= n, i + 8 <= n, then i < n) and every write within that
    // room; unaligned accesses are spelled as such. All `n` bytes are written before
    // `set_len`.
    unsafe {
        let out = dst.as_mut_ptr().add(start);
        let from = src.as_ptr();
        let mut i = 0;
        while i + BLOCK <= n {
            let mut b = std::ptr::read_unaligned(from.add(i).cast::<[u8; BLOCK]>());
            xor_block(&mut b, &block);
            std::ptr::write_unaligned(out.add(i).cast::<[u8; BLOCK]>(), b);
            i += BLOCK;
        }
        while i + 8 <= n {
            let w = std::ptr::read_unaligned(from.add(i).cast::<u64>()) ^ word;
            std::ptr::write_unaligned(out.add(i).cast::<u64>(), w);
            i += 8;
        }
        // i is a multiple of 8 here, so the key's phase is i & 3 = 0 onwards.
        while i < n {
            *out.add(i) = *from.add(i) ^ key[i & 3];
            i += 1;
        }
        dst.set_len(start + n);
    }
}

/// Bytes masked per step of the main loops. A fixed-size XOR of this many bytes
/// compiles to vector instructions (SSE2, part of every x86-64; NEON on aarch64)
/// without `unsafe` intrinsics or runtime feature checks: two 16-byte registers.
const BLOCK: usize = 32;

/// The key repeated over one block.
#[inline]
fn key_block(key: [u8; 4]) -> [u8; BLOCK] {
    std::array::from_fn(|i| key[i & 3])
}

/// XORs one block with the repeated key.
#[inline(always)]
fn xor_block(chunk: &mut [u8; BLOCK], block: &[u8; BLOCK]) {
    for (byte, k) in chunk.iter_mut().zip(block) {
        *byte ^= k;
    }
}

/// The key twice over in one word (as bytes in memory: k0 k1 k2 k3 k0 k1 k2 k3), built
/// with a shift rather than byte by byte.
#[inline]
fn key_word(key: [u8; 4]) -> u64 {
    let k = u64::from(u32::from_ne_bytes(key));
    k | (k << 32)
}

/// Byte-at-a-time reference implementation of [`apply_mask`]; used for short
/// tails and as the oracle in tests.
pub fn apply_mask_simple(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset.wrapping_add(i)) & 3];
    }
}

/// The key as seen from payload position `offset`: rotated left so that
/// `rotated[0]` masks the byte at `offset`.
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset & 3);
    rotated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn extend_unmasked_matches_a_copy_then_unmask() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=200 {
            for prefix in 0..3 {
                let data = pattern(len);
                let mut expected = vec![0xee; prefix];
                let mut tail = data.clone();
                apply_mask_simple(&mut tail, key, 0);
                expected.extend_from_slice(&tail);
                let mut out = vec![0xee; prefix];
                extend_unmasked(&mut out, &data, key);
                assert_eq!(out, expected, "len {len} prefix {prefix}");
            }
        }
    }

    #[test]
    fn fast_matches_simple_for_all_lengths_offsets_alignments() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=200 {
            for offset in 0..4 {
                for align in 0..8 {
                    let mut backing = vec![0u8; len + 8];
                    let data = pattern(len);
                    backing[align..align + len].copy_from_slice(&data);
                    let mut expected = data.clone();
                    apply_mask_simple(&mut expected, key, offset);
                    apply_mask(&mut backing[align..align + len], key, offset);
                    assert_eq!(
                        &backing[align..align + len],
                        &expected[..],
                        "len {len} offset {offset} align {align}"
                    );
                }
            }
        }
    }

    #[test]
    fn resuming_at_an_offset_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data = pattern(100);
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..=data.len() {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }

    #[test]
    fn rfc6455_masked_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn masking_twice_is_identity() {
        let data = pattern(77);
        let mut buf = data.clone();
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        assert_eq!(buf, data);
    }
}
