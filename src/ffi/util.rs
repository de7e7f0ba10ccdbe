//! Encodings and digests: base64, hex, crc32, md5, sha1. None needs a manager; all
//! are thread-safe. Output buffers come with their capacity; when it is too small the
//! call returns WSS_RESULT_INSUFFICIENT_SIZE and writes the size needed to `*len_out`.

use super::boundary::{boundary, check_null, slice};
use super::result::wss_result;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha1::Digest;
use std::ffi::c_char;

/// Writes `bytes` plus a NUL into `dst` (of `cap` bytes); the length without the NUL
/// goes to `*len_out` in every case, so a caller can size a second attempt.
///
/// # Safety
/// `dst` is null or has `cap` writable bytes; `len_out` is valid.
unsafe fn write_out(
    bytes: &[u8],
    nul: bool,
    dst: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    let need = bytes.len() + usize::from(nul);
    // SAFETY: valid out-parameter (checked by the callers).
    unsafe { *len_out = bytes.len() };
    if dst.is_null() || cap < need {
        return wss_result::WSS_RESULT_INSUFFICIENT_SIZE;
    }
    // SAFETY: `cap >= need` writable bytes at `dst`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
        if nul {
            *dst.add(bytes.len()) = 0;
        }
    }
    wss_result::WSS_RESULT_OK
}

/// Base64-encodes `n` bytes of `src` into `dst` (NUL-terminated). `url_safe` selects the
/// URL alphabet (`-_`, no padding) instead of the standard one (`+/`, padded).
/// `*len_out` receives the text length (without the NUL); `cap` must be at least that + 1.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INSUFFICIENT_SIZE` (length needed in `*len_out`);
/// `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_base64_encode(
    src: *const u8,
    n: usize,
    url_safe: bool,
    dst: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    boundary(|| {
        check_null!(len_out);
        // SAFETY: `n` readable bytes (or n 0).
        let Some(src) = (unsafe { slice(src, n) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        let text = if url_safe {
            URL_SAFE_NO_PAD.encode(src)
        } else {
            STANDARD.encode(src)
        };
        // SAFETY: forwarded buffer contract.
        unsafe { write_out(text.as_bytes(), true, dst.cast(), cap, len_out) }
    })
}

/// Decodes `n` characters of base64 from `src` into `dst` (not NUL-terminated).
/// Padding is optional in both alphabets; whitespace is not accepted.
/// Returns: `WSS_RESULT_OK` with the byte count in `*len_out`; `WSS_RESULT_INVALID_ARGUMENT`
/// for malformed input; `WSS_RESULT_INSUFFICIENT_SIZE` (bytes needed in `*len_out`).
#[no_mangle]
pub unsafe extern "C" fn wss_base64_decode(
    src: *const c_char,
    n: usize,
    url_safe: bool,
    dst: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    boundary(|| {
        check_null!(len_out);
        // SAFETY: `n` readable bytes (or n 0).
        let Some(src) = (unsafe { slice(src.cast(), n) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        let trimmed = src
            .strip_suffix(b"==")
            .or_else(|| src.strip_suffix(b"="))
            .unwrap_or(src);
        let engine = if url_safe {
            URL_SAFE_NO_PAD
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD
        };
        match engine.decode(trimmed) {
            // SAFETY: forwarded buffer contract.
            Ok(bytes) => unsafe { write_out(&bytes, false, dst, cap, len_out) },
            Err(_) => wss_result::WSS_RESULT_INVALID_ARGUMENT,
        }
    })
}

/// Lower-case hex of `n` bytes into `dst` (NUL-terminated; needs 2n + 1 bytes).
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_INSUFFICIENT_SIZE` (length needed in `*len_out`).
#[no_mangle]
pub unsafe extern "C" fn wss_hex(
    src: *const u8,
    n: usize,
    dst: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> wss_result {
    boundary(|| {
        check_null!(len_out);
        // SAFETY: `n` readable bytes (or n 0).
        let Some(src) = (unsafe { slice(src, n) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        let text = hex(src);
        // SAFETY: forwarded buffer contract.
        unsafe { write_out(text.as_bytes(), true, dst.cast(), cap, len_out) }
    })
}

/// Lower-case hex text of bytes.
pub fn hex(src: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(src.len() * 2);
    for &b in src {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// CRC-32 (IEEE 802.3, as zlib's crc32) of `len` bytes, continuing from `crc` (0 to
/// start): `wss_crc32(wss_crc32(0, a, n), b, m)` equals the CRC of a then b. Returns the
/// CRC; a NULL `data` with `len` > 0 returns `crc` unchanged.
#[no_mangle]
pub unsafe extern "C" fn wss_crc32(crc: u32, data: *const u8, len: usize) -> u32 {
    boundary(|| {
        // SAFETY: `len` readable bytes (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return crc;
        };
        let mut h = crc32fast::Hasher::new_with_initial(crc);
        h.update(data);
        h.finalize()
    })
}

/// Runs a digest over the caller's bytes and copies it into `out` (raw) or writes it
/// as hex plus a NUL (`hex`): the shared body of the four digest functions.
///
/// # Safety
/// `data` has `len` readable bytes (or is NULL with `len` 0); `out` has room for the
/// digest (twice its size plus one in hex).
unsafe fn digest_into(
    data: *const u8,
    len: usize,
    out: *mut u8,
    hex_out: bool,
    digest: fn(&[u8]) -> Vec<u8>,
) -> wss_result {
    boundary(|| {
        check_null!(out);
        // SAFETY: `len` readable bytes (or len 0).
        let Some(data) = (unsafe { slice(data, len) }) else {
            return wss_result::WSS_RESULT_NULL_PARAMETER;
        };
        let d = digest(data);
        let mut n = 0;
        if hex_out {
            let text = hex(&d);
            // SAFETY: the caller provides 2 * digest length + 1 writable bytes.
            unsafe { write_out(text.as_bytes(), true, out, text.len() + 1, &mut n) }
        } else {
            // SAFETY: the caller provides the digest's length in writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), out, d.len()) };
            wss_result::WSS_RESULT_OK
        }
    })
}

fn md5_of(b: &[u8]) -> Vec<u8> {
    md5::compute(b).0.to_vec()
}

fn sha1_of(b: &[u8]) -> Vec<u8> {
    sha1::Sha1::digest(b).to_vec()
}

/// MD5 digest of `len` bytes into `out[16]`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_md5(data: *const u8, len: usize, out: *mut u8) -> wss_result {
    // SAFETY: forwarded contract (16 bytes at `out`).
    unsafe { digest_into(data, len, out, false, md5_of) }
}

/// SHA-1 digest of `len` bytes into `out[20]`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_sha1(data: *const u8, len: usize, out: *mut u8) -> wss_result {
    // SAFETY: forwarded contract (20 bytes at `out`).
    unsafe { digest_into(data, len, out, false, sha1_of) }
}

/// MD5 of `len` bytes as 32 hex digits + NUL into `out[33]`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_md5_hex(data: *const u8, len: usize, out: *mut c_char) -> wss_result {
    // SAFETY: forwarded contract (33 bytes at `out`).
    unsafe { digest_into(data, len, out.cast(), true, md5_of) }
}

/// SHA-1 of `len` bytes as 40 hex digits + NUL into `out[41]`.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn wss_sha1_hex(data: *const u8, len: usize, out: *mut c_char) -> wss_result {
    // SAFETY: forwarded contract (41 bytes at `out`).
    unsafe { digest_into(data, len, out.cast(), true, sha1_of) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors() {
        let mut out = [0u8; 41];
        unsafe { wss_sha1_hex(b"abc".as_ptr(), 3, out.as_mut_ptr().cast()) };
        assert_eq!(&out[..40], b"a9993e364706816aba3e25717850c26c9cd0d89d");
        unsafe { wss_md5_hex(b"".as_ptr(), 0, out.as_mut_ptr().cast()) };
        assert_eq!(&out[..32], b"d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            unsafe { wss_crc32(0, b"123456789".as_ptr(), 9) },
            0xCBF43926
        );
        let part = unsafe { wss_crc32(0, b"1234".as_ptr(), 4) };
        assert_eq!(unsafe { wss_crc32(part, b"56789".as_ptr(), 5) }, 0xCBF43926);
    }

    #[test]
    fn base64_sizes_and_errors() {
        let mut n = 0;
        let r = unsafe {
            wss_base64_encode(b"foob".as_ptr(), 4, false, std::ptr::null_mut(), 0, &mut n)
        };
        assert_eq!((r, n), (wss_result::WSS_RESULT_INSUFFICIENT_SIZE, 8));
        let mut buf = [0 as c_char; 9];
        let r =
            unsafe { wss_base64_encode(b"foob".as_ptr(), 4, false, buf.as_mut_ptr(), 9, &mut n) };
        assert_eq!(r, wss_result::WSS_RESULT_OK);
        assert_eq!(
            unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_bytes(),
            b"Zm9vYg=="
        );
        let mut raw = [0u8; 4];
        let r = unsafe { wss_base64_decode(buf.as_ptr(), 8, false, raw.as_mut_ptr(), 4, &mut n) };
        assert_eq!((r, &raw[..n]), (wss_result::WSS_RESULT_OK, &b"foob"[..]));
        let r = unsafe { wss_base64_decode(c"!!".as_ptr(), 2, false, raw.as_mut_ptr(), 4, &mut n) };
        assert_eq!(r, wss_result::WSS_RESULT_INVALID_ARGUMENT);
        let r = unsafe {
            wss_base64_encode(b"\xfb\xff".as_ptr(), 2, true, buf.as_mut_ptr(), 9, &mut n)
        };
        assert_eq!(
            (
                r,
                unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_bytes()
            ),
            (wss_result::WSS_RESULT_OK, &b"-_8"[..])
        );
    }
}
