/* UTF-8. Text messages must be valid UTF-8 on the wire; gwsocket replaces each byte of
 * an invalid sequence with '?' before sending text, and so does wspipe (the length
 * stays the same). A sequence cut by the end of a PIPE_BUF read is kept for the next
 * read instead (standard mode), so multi-byte characters survive the chunking. */
#include "wspipe.h"

#include <string.h>

enum { U_OK, U_BAD, U_SHORT };

/* Checks the sequence at p[0..n), n >= 1. U_OK: valid, *len its length; U_BAD: invalid,
 * *len the bytes of its maximal invalid part (>= 1); U_SHORT: a valid start cut by the
 * end of the buffer, *len = n. */
static int utf8_check(const uint8_t *p, size_t n, size_t *len) {
  uint8_t b = p[0], lo = 0x80, hi = 0xBF;
  size_t need;
  if (b < 0x80) {
    *len = 1;
    return U_OK;
  }
  if (b >= 0xC2 && b <= 0xDF) {
    need = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    *len = 1;
    return U_BAD;
  }
  for (size_t i = 1; i < need; i++) {
    if (i >= n) {
      *len = n;
      return U_SHORT;
    }
    uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (p[i] < l || p[i] > h) {
      *len = i;
      return U_BAD;
    }
  }
  *len = need;
  return U_OK;
}

/* Replaces invalid sequences in place with '?'. With keep_tail, a sequence cut by the
 * end is left alone and its length returned (the caller keeps it for later). */
size_t utf8_sanitize(uint8_t *p, size_t n, bool keep_tail) {
  size_t i = 0;
  while (i < n) {
    size_t len;
    int r = utf8_check(p + i, n - i, &len);
    if (r == U_OK) {
      i += len;
      continue;
    }
    if (r == U_SHORT && keep_tail) return n - i;
    memset(p + i, '?', len);
    i += len;
  }
  return 0;
}
